"""Ticks of an idle partition driver are applied at once and wake its task only when they
make work; a tick that comes while a Ready is being persisted waits in the inbox. Elections
and replication work as before, also with a slow disk."""

from __future__ import annotations

import random

import trio

from raftlog.config import LogConfig
from raftlog.raft import Membership, Message, RaftConfig, RaftNode, Role
from raftlog.runtime.flusher import Flusher
from raftlog.runtime.partition import Acks, PartitionDriver, ProduceError
from raftlog.runtime.replica_log import ReplicaLog
from raftlog.storage.files import SimFileSystem
from raftlog.storage.log import PartitionLog
from raftlog.storage.records import ControlType, Record, build_batch, control_batch
from raftlog.types import NodeId

IDS = (NodeId(1), NodeId(2), NodeId(3))


def cluster(fs: SimFileSystem, flusher: Flusher) -> dict[NodeId, PartitionDriver]:
    drivers: dict[NodeId, PartitionDriver] = {}

    def send(msg: Message) -> None:
        drivers[msg.dst].step(msg)

    for n in IDS:
        plog = PartitionLog.open(fs, f"/d/n{n}/t/0", LogConfig())
        config = RaftConfig(
            node_id=n,
            group="t/0",
            membership=Membership(IDS),
            noop_data=control_batch(ControlType.LEADER_CHANGE, now_ms=1),
            election_timeout_ticks=6,
        )
        core = RaftNode(config, ReplicaLog(plog), random.Random(int(n)))
        drivers[n] = PartitionDriver(core, ReplicaLog(plog), flusher, send)
    return drivers


async def test_follower_ticks_do_not_wake_the_driver_and_leaders_stay() -> None:
    fs = SimFileSystem()
    flusher = Flusher()
    drivers = cluster(fs, flusher)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        for d in drivers.values():
            nursery.start_soon(d.run)
        drivers[IDS[0]].campaign()
        with trio.fail_after(10):
            while drivers[IDS[0]].role is not Role.LEADER:
                for d in drivers.values():
                    d.tick()
                await trio.sleep(0.01)
        await trio.sleep(0.05)
        term = drivers[IDS[0]].core.status.term
        before = {n: d.wakeups for n, d in drivers.items()}
        for _ in range(50):  # 50 ticks: the leader heartbeats at each, followers answer
            for d in drivers.values():
                d.tick()
            await trio.sleep(0.005)
        woke = {n: drivers[n].wakeups - before[n] for n in IDS}
        # followers wake for the heartbeats they get (50), not also for their 50 ticks
        assert all(woke[n] <= 60 for n in IDS[1:]), woke
        assert drivers[IDS[0]].role is Role.LEADER
        assert drivers[IDS[0]].core.status.term == term
        entry = await drivers[IDS[0]].propose(
            build_batch([Record(None, b"v")], now_ms=1), 1, Acks.ALL
        )
        assert entry.offset >= 1
        nursery.cancel_scope.cancel()


async def test_ticks_during_a_slow_persist_wait_in_the_inbox_and_elections_finish() -> None:
    fs = SimFileSystem(fsync_delay_s=0.02)
    flusher = Flusher()
    drivers = cluster(fs, flusher)
    queued = 0

    async def ticker() -> None:
        nonlocal queued
        while True:
            for d in drivers.values():
                d.tick()
                queued = max(queued, len(d._inbox))
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        for d in drivers.values():
            nursery.start_soon(d.run)
        nursery.start_soon(ticker)
        with trio.fail_after(30):
            while True:
                leaders = [d for d in drivers.values() if d.role is Role.LEADER]
                if leaders:
                    try:
                        batch = build_batch([Record(None, b"v")], now_ms=1)
                        entry = await leaders[0].propose(batch, 1, Acks.ALL, timeout_s=5)
                    except ProduceError:
                        pass
                    else:
                        assert leaders[0].commit_offset > entry.last_offset
                        break
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert queued >= 1  # some tick found its driver busy persisting, and waited
    # every replica's term and vote reached the disk
    for n in IDS:
        assert fs.durable_size(f"/d/n{n}/t/0/raft-hard-state") > 0
