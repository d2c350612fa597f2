"""The partition Raft core on the real partition log (``ReplicaLog`` over ``PartitionLog``),
three replicas on simulated disks, driven synchronously: elections, replication, a power
loss of a follower and a crash of the leader. It checks that the storage keeps the
``LogStore`` contract the core relies on (the simulator uses an in-memory store)."""

from __future__ import annotations

import random
from collections import deque

import pytest

from raftlog.config import LogConfig
from raftlog.raft import Membership, RaftConfig, RaftNode, Role
from raftlog.raft.messages import Message
from raftlog.runtime.replica_log import ReplicaLog
from raftlog.storage.files import SimFileSystem
from raftlog.storage.log import PartitionLog
from raftlog.storage.records import ControlType, Record, build_batch, control_batch, decode_batches
from raftlog.types import NodeId

IDS = (NodeId(1), NodeId(2), NodeId(3))
NOOP = control_batch(ControlType.LEADER_CHANGE, now_ms=1)


class Replica:
    def __init__(self, node_id: NodeId, seed: int) -> None:
        self.id = node_id
        self.fs = SimFileSystem()
        self.rng = random.Random(seed)
        self.alive = False
        self.start()

    def start(self) -> None:
        log = PartitionLog.open(
            self.fs, "/data/t/0", LogConfig(segment_bytes=4096), clock_ms=lambda: 1
        )
        self.store = ReplicaLog(log)
        config = RaftConfig(
            node_id=self.id, group="t-0", membership=Membership(IDS), noop_data=NOOP
        )
        self.core = RaftNode(config, self.store, self.rng)
        self.alive = True

    def crash(self, *, power_loss: bool) -> None:
        self.alive = False
        if power_loss:
            self.fs.power_loss(self.rng, torn=True)


class Cluster:
    def __init__(self, seed: int) -> None:
        self.replicas = {i: Replica(i, seed + i) for i in IDS}
        self.net: deque[Message] = deque()
        self.acked: dict[int, bytes] = {}

    def pump(self, rounds: int, tick_every: int = 3) -> None:
        for r in range(rounds):
            if r % tick_every == 0:
                for rep in self.live():
                    rep.core.tick()
            for _ in range(len(self.net)):
                msg = self.net.popleft()
                dst = self.replicas[msg.dst]
                if dst.alive:
                    dst.core.step(msg)
            for rep in self.live():
                while rep.core.has_ready():
                    rd = rep.core.ready()
                    assert rd is not None
                    self.net.extend(rd.messages)
                    rep.store.persist(rd)
                    self.net.extend(rd.messages_after_persist)
                    rep.core.advance(rd)

    def live(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.alive]

    def leader(self) -> Replica | None:
        leaders = [r for r in self.live() if r.core.status.role is Role.LEADER]
        return leaders[0] if len(leaders) == 1 else None

    def wait_leader(self) -> Replica:
        for _ in range(200):
            self.pump(5)
            leader = self.leader()
            if leader is not None:
                return leader
        raise AssertionError("no leader elected")

    def propose(self, leader: Replica, value: bytes) -> int:
        batch = build_batch([Record(None, value)], now_ms=2)
        return int(leader.core.propose(batch, 1).offset)


def committed_batches(rep: Replica, upto: int) -> bytes:
    """Every batch below ``upto``, across segments (one read stops at a segment's end)."""
    out = bytearray()
    offset = rep.store.log.log_start_offset()
    while offset < upto:
        chunk = rep.store.log.read(offset, 1 << 30, upto)
        if not chunk:
            break
        out += chunk
        offset = decode_batches(chunk)[-1][0].last_offset + 1
    return bytes(out)


@pytest.mark.parametrize("seed", range(30))
def test_three_replicas_replicate_survive_power_loss_and_a_leader_crash(seed: int) -> None:
    c = Cluster(seed=seed)
    leader = c.wait_leader()
    offsets = {c.propose(leader, b"v%d" % i): b"v%d" % i for i in range(20)}
    c.pump(60)
    hw = leader.core.commit_offset
    assert hw >= max(offsets) + 1, "every proposal committed"

    # power-fail a follower: what it acknowledged was fsynced, so nothing committed is lost
    follower = next(r for r in c.replicas.values() if r is not leader)
    follower.crash(power_loss=True)
    for i in range(20, 40):
        offsets[c.propose(leader, b"v%d" % i)] = b"v%d" % i
    c.pump(60)
    follower.start()
    c.pump(200)
    hw = leader.core.commit_offset
    assert hw >= max(offsets) + 1

    # crash the leader; a new one takes over with everything committed
    leader.crash(power_loss=False)
    new_leader = c.wait_leader()
    assert new_leader is not leader
    for i in range(40, 50):
        offsets[c.propose(new_leader, b"v%d" % i)] = b"v%d" % i
    c.pump(100)
    leader.start()
    c.pump(300)
    hw2 = new_leader.core.commit_offset
    assert hw2 >= max(offsets) + 1
    logs = [committed_batches(r, hw2) for r in c.replicas.values()]
    assert logs[0] == logs[1] == logs[2], "replicas differ in their committed range"
    values = {
        rec.offset: rec.value
        for _, recs in decode_batches(logs[0])
        for rec in recs
        if rec.value is not None and rec.value.startswith(b"v")
    }
    assert values == offsets, "an acknowledged value is missing or moved"

    # every replica loses power at once: everything committed was fsynced on a majority
    leader = c.wait_leader()
    for i in range(50, 60):
        offsets[c.propose(leader, b"v%d" % i)] = b"v%d" % i
    c.pump(40)
    acked = {o: v for o, v in offsets.items() if o < leader.core.commit_offset}
    for rep in c.replicas.values():
        rep.crash(power_loss=True)
    for rep in c.replicas.values():
        rep.start()
    leader = c.wait_leader()
    c.propose(leader, b"after")
    c.pump(200)
    final = committed_batches(leader, leader.core.commit_offset)
    values = {rec.offset: rec.value for _, recs in decode_batches(final) for rec in recs}
    lost = {o: v for o, v in acked.items() if values.get(o) != v}
    assert not lost, f"committed values lost by a power loss of every replica: {lost}"
