"""Replicas are opened on worker threads: the event loop keeps running while many new
partitions open on a slow disk, and a replica removed (or its topic re-created) while it
opens is removed once its open ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import trio

from raftlog.raft import Message
from raftlog.runtime.flusher import Flusher
from raftlog.runtime.replicas import RaftTimings, ReplicaManager
from raftlog.storage.files import SimFileSystem

ROOT = "/data"


def image(topics: dict[str, tuple[int, int]], broker: int = 1) -> Any:
    """An image with ``{name: (topic_id, partitions)}``, every partition held by
    ``broker`` alone."""
    return SimpleNamespace(
        topics={
            name: SimpleNamespace(
                name=name,
                topic_id=tid,
                configs={},
                partitions=[SimpleNamespace(partition=i, replicas=[broker]) for i in range(n)],
            )
            for name, (tid, n) in topics.items()
        }
    )


def manager(fs: SimFileSystem, flusher: Flusher) -> ReplicaManager:
    def send(msg: Message) -> None:
        pass

    return ReplicaManager(1, ROOT, fs, flusher, send, timings=RaftTimings(tick_ms=10), seed=1)


async def test_the_loop_keeps_running_while_partitions_open_on_a_slow_disk() -> None:
    fs = SimFileSystem(fsync_delay_s=0.002)  # ~5 fsyncs per replica: ~10 ms each
    flusher = Flusher()
    m = manager(fs, flusher)
    seen: list[int] = []  # replicas open, at each wake-up of another task

    async def heartbeat() -> None:
        while True:
            await trio.sleep(0.005)
            seen.append(len(m.replicas))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        await nursery.start(m.run)
        m.reconcile(image({"orders": (7, 60)}))
        assert not m.replicas  # opening, not open
        nursery.start_soon(heartbeat)
        with trio.fail_after(30):
            await m.wait_opened()
        assert len(m.replicas) == 60
        # every replica is the only voter: each elects itself
        with trio.fail_after(30):
            while any(r.driver.role.value != "leader" for r in m.replicas.values()):
                await trio.sleep(0.01)
        await m.close()
        nursery.cancel_scope.cancel()
    # opened on the trio thread, the 60 replicas (~0.6 s of fsyncs) would all exist before
    # any other task ran again; here other tasks ran while they opened (load-independent)
    assert sum(1 for n in seen if n < 60) >= 3, seen[:20]
    for i in range(60):
        assert fs.exists(f"{ROOT}/orders/{i}/replica.meta")


@asynccontextmanager
async def slow_disk_manager() -> AsyncIterator[tuple[SimFileSystem, ReplicaManager]]:
    """A running manager on a disk whose fsyncs take 10 ms; closed on the way out."""
    fs = SimFileSystem(fsync_delay_s=0.01)
    flusher = Flusher()
    m = manager(fs, flusher)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        await nursery.start(m.run)
        yield fs, m
        await m.close()
        nursery.cancel_scope.cancel()


async def test_a_replica_removed_while_it_opens_is_removed_after() -> None:
    async with slow_disk_manager() as (fs, m):
        m.reconcile(image({"orders": (7, 3)}))
        m.reconcile(image({}))  # deleted before the opens end
        with trio.fail_after(10):
            await m.wait_opened()
        assert not m.replicas
        for i in range(3):
            assert not fs.exists(f"{ROOT}/orders/{i}")


async def test_a_topic_recreated_while_it_opens_gets_the_new_one() -> None:
    async with slow_disk_manager() as (fs, m):
        m.reconcile(image({"orders": (7, 2)}))
        m.reconcile(image({"orders": (9, 2)}))  # same name, new topic id
        with trio.fail_after(10):
            while len(m.replicas) < 2:
                await m.wait_opened()
                await trio.sleep(0.01)
        assert {r.topic_id for r in m.replicas.values()} == {9}
        for i in range(2):
            meta = fs.raw(f"{ROOT}/orders/{i}/replica.meta")
            assert b'"topic_id": 9' in meta
