"""The cross-partition flusher: a round's items run on several worker threads at once, each
waiter gets its own item's error only, logs are flushed once per round, and the counters."""

from __future__ import annotations

import errno
import threading
import time

import pytest
import trio

from raftlog.errors import LogFencedError
from raftlog.runtime.flusher import Flusher
from raftlog.storage.files import Fault, SimFileSystem
from raftlog.storage.log import PartitionLog
from tests.storage_helpers import make_batch


async def test_jobs_of_a_round_run_concurrently() -> None:
    flusher = Flusher(workers=4)
    barrier = threading.Barrier(4, timeout=5)  # breaks unless 4 jobs run at the same time
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        async with trio.open_nursery() as jobs:
            for _ in range(4):
                jobs.start_soon(flusher.run_in_thread, barrier.wait)
        nursery.cancel_scope.cancel()
    assert flusher.stats.jobs == 4


async def test_a_round_of_slow_jobs_takes_about_one_job_per_worker() -> None:
    flusher = Flusher(workers=8)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        t0 = time.monotonic()
        async with trio.open_nursery() as jobs:
            for _ in range(16):
                jobs.start_soon(flusher.run_in_thread, lambda: time.sleep(0.05))
        took = time.monotonic() - t0
        nursery.cancel_scope.cancel()
    assert took < 16 * 0.05 / 2, took  # one thread would take 0.8 s
    assert flusher.stats.round_items_max >= 2


async def test_one_worker_runs_jobs_in_submission_order() -> None:
    flusher = Flusher(workers=1)
    seen: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        async with trio.open_nursery() as jobs:
            for i in range(20):
                jobs.start_soon(flusher.run_in_thread, lambda i=i: seen.append(i))
                await trio.sleep(0)
        nursery.cancel_scope.cancel()
    assert sorted(seen) == list(range(20))
    # jobs of one round keep their order; rounds follow each other
    assert seen == sorted(seen)


async def test_each_waiter_gets_only_its_own_error() -> None:
    flusher = Flusher(workers=4)
    results: dict[int, str] = {}

    async def job(i: int) -> None:
        def work() -> None:
            if i % 3 == 0:
                raise OSError(errno.EIO, f"job {i}")

        try:
            await flusher.run_in_thread(work)
            results[i] = "ok"
        except OSError as e:
            results[i] = str(e)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        async with trio.open_nursery() as jobs:
            for i in range(12):
                jobs.start_soon(job, i)
        nursery.cancel_scope.cancel()
    for i in range(12):
        assert (results[i] == "ok") == (i % 3 != 0), results


async def test_log_flushes_make_appends_durable_and_fence_only_the_failing_log() -> None:
    fs = SimFileSystem()
    logs = [PartitionLog.open(fs, f"/d/t/{i}") for i in range(6)]
    for plog in logs:
        plog.append_as_leader(make_batch(), 1)
    fs.inject(Fault("fsync", errno.EIO, path_contains="/d/t/2/", count=-1))
    flusher = Flusher(workers=3)
    outcome: dict[int, str] = {}

    async def flush(i: int) -> None:
        try:
            await flusher.flush(logs[i])
            outcome[i] = "ok"
        except LogFencedError:
            outcome[i] = "fenced"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        async with trio.open_nursery() as waiters:
            for i in range(6):
                waiters.start_soon(flush, i)
        nursery.cancel_scope.cancel()
    assert outcome == {i: ("fenced" if i == 2 else "ok") for i in range(6)}
    for i, plog in enumerate(logs):
        assert plog.durable_offset == (0 if i == 2 else plog.log_end_offset())
    assert flusher.flushed_logs == 6 and flusher.rounds >= 1


async def test_stats_line_is_logged_when_rounds_ran(caplog: pytest.LogCaptureFixture) -> None:
    flusher = Flusher(workers=2, stats_interval_s=0.05)
    caplog.set_level("INFO", logger="raftlog.flusher")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        await flusher.run_in_thread(lambda: None)
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records if "flusher_stats" in r.getMessage()]
    assert len(lines) == 1 and "jobs=1" in lines[0]


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Flusher(workers=0)
