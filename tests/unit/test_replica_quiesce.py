"""Quiet partitions in the runtime: three brokers' replica managers with a failure detector
fed as the peer transport feeds it (a frame from a peer, or its idle ping, marks it
heard). An idle partition goes quiet (no Raft message, no driver ticked); when its
leader's broker falls silent, the others notice and elect a new leader; a produce wakes
the group."""

from __future__ import annotations

from typing import Any

import trio

from raftlog.raft import Message, Role
from raftlog.runtime.flusher import Flusher
from raftlog.runtime.partition import Acks
from raftlog.runtime.replicas import RaftTimings, ReplicaManager
from raftlog.storage.records import Record, build_batch
from tests.unit.test_replica_manager import (
    BROKERS,
    apply_ok,
    model_with_brokers,
    start_managers,
)

TICK_MS = 10


class Liveness:
    def __init__(self, me: int) -> None:
        self.peers = {b: None for b in BROKERS if b != me}
        self.last_heard: dict[int, float] = {}


async def test_a_quiet_partition_sends_nothing_and_fails_over(tmp_path: Any) -> None:
    model = model_with_brokers()
    managers: dict[int, ReplicaManager] = {}
    liveness = {b: Liveness(b) for b in BROKERS}
    dead: set[int] = set()
    sent: list[Message] = []

    def sender(msg: Message) -> None:
        src, dst = int(msg.src), int(msg.dst)
        if src in dead or dst in dead:
            return
        sent.append(msg)
        liveness[dst].last_heard[src] = trio.current_time()
        managers[dst].route(msg)

    async def pinger() -> None:  # the transport's idle frames
        while True:
            for a in BROKERS:
                for b in BROKERS:
                    if a != b and a not in dead and b not in dead:
                        liveness[b].last_heard[a] = trio.current_time()
            await trio.sleep(TICK_MS / 1000)

    flusher = Flusher()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        nursery.start_soon(pinger)
        await start_managers(
            nursery,
            managers,
            str(tmp_path),
            flusher,
            sender,
            timings=lambda b: RaftTimings(tick_ms=TICK_MS),
            liveness=lambda b: liveness[b],
        )
        apply_ok(model, {"op": "create_topic", "rid": "c1", "topic": "t", "partitions": 1,
                         "replication_factor": 3})  # fmt: skip
        for m in managers.values():
            m.reconcile(model.image())
        for m in managers.values():
            await m.wait_opened()

        def replicas() -> dict[int, Any]:
            return {b: m.get("t", 0) for b, m in managers.items() if b not in dead}

        async def wait_for(cond: Any, what: str, timeout_s: float = 5.0) -> None:
            with trio.fail_after(timeout_s):
                while not cond():
                    await trio.sleep(TICK_MS / 1000)

        def leader() -> Any:
            return next((r for r in replicas().values() if r.driver.role is Role.LEADER), None)

        await wait_for(lambda: leader() is not None, "a leader")
        await leader().driver.propose(build_batch([Record(None, b"a")], now_ms=1), 1, Acks.ALL)
        await wait_for(lambda: all(r.driver.core.quiesced for r in replicas().values()), "quiet")
        # quiet: nothing sent and no driver ticked for 20 election timeouts
        assert all(not m._ticking for m in managers.values())
        sent.clear()
        wakeups = {b: r.driver.wakeups for b, r in replicas().items()}
        await trio.sleep(20 * 6 * TICK_MS / 1000)
        assert sent == []
        assert {b: r.driver.wakeups for b, r in replicas().items()} == wakeups

        # the leader's broker dies: the others' detector notices, they elect a new leader
        old = leader()
        old_id = next(b for b, r in replicas().items() if r is old)
        dead.add(old_id)
        t0 = trio.current_time()
        await wait_for(lambda: leader() is not None and leader() is not old, "a new leader")
        took = trio.current_time() - t0
        # silence for an election timeout (detector), then at most another (the clock)
        assert took < 4 * 6 * TICK_MS / 1000 + 0.5, took
        assert all(b not in managers[b].peers_down for b in replicas())
        assert all(old_id in managers[b].peers_down for b in replicas())

        # a produce to the new leader commits on the two live replicas
        new = leader()
        entry = await new.driver.propose(build_batch([Record(None, b"b")], now_ms=1), 1, Acks.ALL)
        await wait_for(
            lambda: all(r.driver.commit_offset > entry.last_offset for r in replicas().values()),
            "the commit on both",
        )
        for m in managers.values():
            await m.close()
        nursery.cancel_scope.cancel()
