"""Group commit across partitions: worker threads fsync every log that asked, together.

Partition drivers write to the page cache on the trio thread (a ``pwrite`` is cheap) and
then ``await flusher.flush(log)``; a Ready whose writes block (hard state, truncation) is
handed over whole with ``await flusher.run_in_thread(job)``. The flusher runs rounds: a
round takes every log and every job that asked since the last round began, runs them on up
to ``workers`` worker threads at once, and wakes every waiter of the round. Requests that
arrive while a round runs go into the next one, so one fsync per log covers everything
appended while the previous fsync ran.

Why several threads: the items of a round are fsyncs of different files, and an fsync
mostly waits for the disk. One thread doing them one after the other makes a round as long
as the sum of its fsyncs; with hundreds of partitions electing at once (each replica saves
its term and vote) that was longer than an election timeout, so votes and append answers
came too late and terms climbed. Run at once, the file system commits concurrent fsyncs in
a shared journal commit (ext4's jbd2 batches them), so a round of N saves costs a few
fsyncs' time, not N. A thread hop costs 0.1-0.17 ms (NOTES-dependencies.md): the round
makes at most ``workers`` hops, each worker taking items until none are left.

Order: the items of one round run concurrently, in no particular order. A partition driver
has at most one item in the flusher at a time (it awaits each), so the order that matters,
one partition's writes before its next, is kept by the driver.

An fsync error fences that log (``PartitionLog`` raises ``LogFencedError``): its waiters get
the error and never an acknowledgement; other logs of the round are unaffected.

The GIL: each system call of an item gives the GIL up and must take it back, and while
the event loop is busy (a thousand partitions' heartbeats) a worker waits up to the
interpreter's switch interval (5 ms by default) for it each time: an in-place save that
takes 0.1 ms on this disk took 10 ms (p50) and 34 ms (p90) next to a busy thread. So
``run`` lowers the switch interval to ``switch_interval_s`` (1 ms; 6 ms p50, 8 ms p90
then), a process-wide setting that costs nothing while no other thread wants the GIL.

Counters (``stats``) say how big rounds were and how long they and their items took, and
``event=flusher_stats`` is logged every ``stats_interval_s`` seconds in which rounds ran.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import trio

from raftlog.storage.log import PartitionLog

log = logging.getLogger("raftlog.flusher")

WORKERS_DEFAULT = 8
STATS_INTERVAL_S = 10.0
SWITCH_INTERVAL_S = 0.001


class _Round:
    def __init__(self) -> None:
        self.logs: dict[int, PartitionLog] = {}
        self.jobs: list[Callable[[], None]] = []
        self.done = trio.Event()
        self.errors: dict[int, BaseException] = {}


@dataclass
class FlusherStats:
    """Totals since the flusher started (``*_max`` since the last stats line)."""

    rounds: int = 0
    jobs: int = 0
    logs: int = 0
    round_s: float = 0.0
    item_s: float = 0.0
    round_items_max: int = 0
    round_s_max: float = 0.0
    item_s_max: float = 0.0


class Flusher:
    """Run ``run()`` in a nursery for the broker's lifetime. ``workers``: how many worker
    threads a round uses at most (1: every item on one thread, in order)."""

    def __init__(
        self,
        *,
        workers: int = WORKERS_DEFAULT,
        stats_interval_s: float = STATS_INTERVAL_S,
        switch_interval_s: float | None = SWITCH_INTERVAL_S,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.stats_interval_s = stats_interval_s
        self.switch_interval_s = switch_interval_s
        """Lower the interpreter's switch interval to this (never raise it); None: leave it."""
        self._next = _Round()
        self._running: _Round | None = None  # the round on worker threads now
        self._wake = trio.Event()
        self.stats = FlusherStats()
        self._stats_lock = threading.Lock()
        self._logged = FlusherStats()

    @property
    def rounds(self) -> int:
        return self.stats.rounds

    @property
    def flushed_logs(self) -> int:
        return self.stats.logs

    async def flush(self, log: PartitionLog) -> None:
        """Return once everything written to ``log`` before this call is durable; raise
        the log's error (``LogFencedError``) if its fsync failed."""
        rnd = self._next
        rnd.logs[id(log)] = log
        self._wake.set()
        await rnd.done.wait()
        err = rnd.errors.get(id(log))
        if err is not None:
            raise err

    async def run_in_thread(self, job: Callable[[], None]) -> None:
        """Run a blocking storage job (hard state, truncation) on a worker thread in the
        next round, concurrently with the round's other items; raises what it raised."""
        rnd = self._next
        box: list[BaseException] = []

        def wrapped() -> None:
            try:
                job()
            except BaseException as e:  # handed back to the waiter
                box.append(e)

        rnd.jobs.append(wrapped)
        self._wake.set()
        await rnd.done.wait()
        if box:
            raise box[0]

    async def wait_round_done(self) -> None:
        """Return once no round is on the worker threads (at once if none is). Call it
        after stopping the writers and before closing their files: a round's threads are
        not cancelled, and an fsync of a file closed under it fails (EBADF)."""
        rnd = self._running
        if rnd is not None:
            await rnd.done.wait()

    async def run(self) -> None:
        if self.switch_interval_s is not None:
            sys.setswitchinterval(min(sys.getswitchinterval(), self.switch_interval_s))
        last_log = time.monotonic()
        while True:
            if self.stats_interval_s > 0:
                with trio.move_on_after(self.stats_interval_s):
                    await self._wake.wait()
                now = time.monotonic()
                if now - last_log >= self.stats_interval_s:
                    last_log = now
                    self._log_stats()
                if not self._wake.is_set():
                    continue
            else:
                await self._wake.wait()
            self._wake = trio.Event()
            rnd, self._next = self._next, _Round()
            t0 = time.monotonic()
            self._running = rnd
            try:
                await self._run_round(rnd)
            finally:
                self._running = None
            took = time.monotonic() - t0
            s = self.stats
            with self._stats_lock:
                s.rounds += 1
                s.jobs += len(rnd.jobs)
                s.logs += len(rnd.logs)
                s.round_s += took
                s.round_s_max = max(s.round_s_max, took)
                s.round_items_max = max(s.round_items_max, len(rnd.jobs) + len(rnd.logs))
            rnd.done.set()

    async def _run_round(self, rnd: _Round) -> None:
        items: deque[Callable[[], None]] = deque(rnd.jobs)
        for key, plog in rnd.logs.items():
            items.append(self._log_flush(rnd, key, plog))
        threads = min(self.workers, len(items))
        if threads <= 1:
            await trio.to_thread.run_sync(self._drain, items, abandon_on_cancel=False)
            return
        async with trio.open_nursery() as nursery:
            for _ in range(threads):
                nursery.start_soon(self._drain_in_thread, items)

    async def _drain_in_thread(self, items: deque[Callable[[], None]]) -> None:
        await trio.to_thread.run_sync(self._drain, items, abandon_on_cancel=False)

    def _drain(self, items: deque[Callable[[], None]]) -> None:
        """Take items until none are left (worker thread; ``popleft`` is atomic)."""
        while True:
            try:
                item = items.popleft()
            except IndexError:
                return
            t0 = time.monotonic()
            item()
            took = time.monotonic() - t0
            with self._stats_lock:
                self.stats.item_s += took
                self.stats.item_s_max = max(self.stats.item_s_max, took)

    @staticmethod
    def _log_flush(rnd: _Round, key: int, plog: PartitionLog) -> Callable[[], None]:
        def flush() -> None:
            try:
                plog.flush()
            except Exception as e:  # the waiter of this log gets it
                rnd.errors[key] = e

        return flush

    def _log_stats(self) -> None:
        with self._stats_lock:
            s, last = self.stats, self._logged
            rounds = s.rounds - last.rounds
            if rounds == 0:
                return
            items = s.jobs + s.logs - last.jobs - last.logs
            log.info(
                "event=flusher_stats rounds=%d jobs=%d logs=%d round_ms_avg=%.1f "
                "round_ms_max=%.1f round_items_max=%d item_ms_avg=%.2f item_ms_max=%.1f",
                rounds,
                s.jobs - last.jobs,
                s.logs - last.logs,
                1000 * (s.round_s - last.round_s) / rounds,
                1000 * s.round_s_max,
                s.round_items_max,
                1000 * (s.item_s - last.item_s) / max(1, items),
                1000 * s.item_s_max,
            )
            self._logged = FlusherStats(s.rounds, s.jobs, s.logs, s.round_s, s.item_s)
            s.round_s_max = s.item_s_max = 0.0
            s.round_items_max = 0
