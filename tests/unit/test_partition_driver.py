"""Three partition drivers on trio in one process, on real files: elections, acks=all and
acks=1, not-leader answers, long-poll on the high watermark, group commit across
partitions, and a deposed leader whose pending proposal must never be reported written
unless it was."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import trio

from raftlog.config import LogConfig
from raftlog.errors import ErrorCode
from raftlog.raft import Membership, Message, RaftConfig, RaftNode, Role
from raftlog.runtime.flusher import Flusher
from raftlog.runtime.partition import Acks, PartitionDriver, ProduceError
from raftlog.runtime.replica_log import ReplicaLog
from raftlog.storage.files import OsFileSystem
from raftlog.storage.log import PartitionLog
from raftlog.storage.records import ControlType, Record, build_batch, control_batch, decode_batches
from raftlog.types import NodeId

IDS = (NodeId(1), NodeId(2), NodeId(3))
TICK_S = 0.01


class Net:
    def __init__(self) -> None:
        self.drivers: dict[tuple[str, NodeId], PartitionDriver] = {}
        self.cut: set[NodeId] = set()

    def sender(self, src: NodeId) -> Callable[[Message], None]:
        def send(msg: Message) -> None:
            if src in self.cut or msg.dst in self.cut:
                return
            self.drivers[(str(msg.group), msg.dst)].step(msg)

        return send


def make_driver(root: str, net: Net, flusher: Flusher, node: NodeId, group: str) -> PartitionDriver:
    folder = os.path.join(root, f"n{node}", group)
    plog = PartitionLog.open(OsFileSystem(), folder, LogConfig())
    config = RaftConfig(
        node_id=node,
        group=group,
        membership=Membership(IDS),
        noop_data=control_batch(ControlType.LEADER_CHANGE, now_ms=1),
        election_timeout_ticks=10,
    )
    core = RaftNode(config, ReplicaLog(plog), random.Random(node * 7 + len(group)))
    driver = PartitionDriver(core, ReplicaLog(plog), flusher, net.sender(node))
    net.drivers[(group, node)] = driver
    return driver


async def ticker(drivers: list[PartitionDriver]) -> None:
    while True:
        await trio.sleep(TICK_S)
        for d in drivers:
            d.tick()


async def wait_leader(
    drivers: list[PartitionDriver], exclude: set[NodeId] | None = None
) -> PartitionDriver:
    with trio.fail_after(10):
        while True:
            leaders = [
                d for d in drivers if d.role is Role.LEADER and d.core.id not in (exclude or set())
            ]
            if len(leaders) == 1:
                return leaders[0]
            await trio.sleep(TICK_S)


def batch(value: bytes) -> bytes:
    return build_batch([Record(None, value)], now_ms=5)


def read_values(driver: PartitionDriver) -> dict[int, bytes]:
    log = driver.store.log
    out: dict[int, bytes] = {}
    offset = log.log_start_offset()
    while offset < driver.commit_offset:
        data = log.read(offset, 1 << 20, driver.commit_offset)
        if not data:
            break
        for h, recs in decode_batches(data):
            for r in recs:
                if r.value is not None:
                    out[r.offset] = r.value
            offset = h.last_offset + 1
    return out


async def test_drivers_elect_replicate_and_answer_precisely(tmp_path: Any) -> None:
    root = str(tmp_path)
    net = Net()
    flusher = Flusher()
    groups = ["orders-0", "orders-1", "orders-2", "orders-3"]
    all_drivers: list[PartitionDriver] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        for g in groups:
            for n in IDS:
                d = make_driver(root, net, flusher, n, g)
                all_drivers.append(d)
                nursery.start_soon(d.run)
        nursery.start_soon(ticker, all_drivers)
        drivers = [net.drivers[("orders-0", n)] for n in IDS]
        leader = await wait_leader(drivers)

        # acks=all, many in flight at once: distinct offsets, all committed
        results: list[Any] = []

        async def produce(i: int) -> None:
            results.append(await leader.propose(batch(b"v%d" % i), 1, Acks.ALL))

        async with trio.open_nursery() as n:
            for i in range(50):
                n.start_soon(produce, i)
        offsets = sorted(e.offset for e in results)
        assert len(set(offsets)) == 50
        assert leader.commit_offset > offsets[-1]

        # acks=1 and acks=0
        e1 = await leader.propose(batch(b"one"), 1, Acks.LEADER)
        assert leader.durable_end > e1.last_offset
        await leader.propose(batch(b"zero"), 1, Acks.NONE)

        # a follower refuses with the leader's id as a hint
        follower = next(d for d in drivers if d is not leader)
        try:
            await follower.propose(batch(b"x"), 1, Acks.ALL)
            raise AssertionError("a follower accepted a proposal")
        except ProduceError as e:
            assert e.code == ErrorCode.NOT_LEADER and e.leader_hint == leader.core.id

        # long-poll: a waiting fetch wakes within a few ms of a commit, and waits when idle
        hw = leader.commit_offset
        t0 = trio.current_time()
        assert await follower.wait_commit_beyond(hw + 50, timeout_s=0.2) <= hw + 50
        assert trio.current_time() - t0 >= 0.19
        woke: list[float] = []

        async def poller() -> None:
            await leader.wait_commit_beyond(leader.commit_offset - 1 + 1, timeout_s=5)
            woke.append(trio.current_time())

        async with trio.open_nursery() as n:
            n.start_soon(poller)
            await trio.sleep(0.05)
            t_produce = trio.current_time()
            await leader.propose(batch(b"wake"), 1, Acks.ALL)
        assert woke and woke[0] - t_produce < 0.1

        # group commit: the four partitions' fsyncs share rounds
        others = [await wait_leader([net.drivers[(g, n)] for n in IDS]) for g in groups[1:]]
        rounds_before, logs_before = flusher.rounds, flusher.flushed_logs
        async with trio.open_nursery() as n:
            for d in [leader, *others]:
                for i in range(20):
                    n.start_soon(d.propose, batch(b"g%d" % i), 1, Acks.ALL)
        assert flusher.flushed_logs - logs_before > flusher.rounds - rounds_before

        # cut the leader off; what it accepts meanwhile must never be reported written
        # unless it really was
        net.cut.add(leader.core.id)
        outcomes: list[Any] = []

        async def doomed() -> None:
            try:
                outcomes.append(await leader.propose(batch(b"doomed"), 1, Acks.ALL, timeout_s=3))
            except ProduceError as e:
                outcomes.append(e)

        async with trio.open_nursery() as n:
            n.start_soon(doomed)
            new_leader = await wait_leader(drivers, exclude={leader.core.id})
            await new_leader.propose(batch(b"after"), 1, Acks.ALL)
            net.cut.clear()
        (outcome,) = outcomes
        final = await new_leader.propose(batch(b"final"), 1, Acks.ALL)
        with trio.fail_after(5):
            while any(d.commit_offset <= final.last_offset for d in drivers):
                await trio.sleep(TICK_S)
        values = read_values(new_leader)
        if isinstance(outcome, ProduceError):
            assert outcome.code in (ErrorCode.NOT_LEADER, ErrorCode.UNKNOWN_OUTCOME)
            if outcome.code == ErrorCode.NOT_LEADER:
                assert b"doomed" not in values.values(), "reported not written, but it was"
        else:
            assert values.get(outcome.offset) == b"doomed", "reported written, but it is not"
        # every replica holds the same committed values
        assert read_values(drivers[0]) == read_values(drivers[1]) == read_values(drivers[2])
        nursery.cancel_scope.cancel()


async def test_a_cut_off_leader_answers_its_waiting_producers_soon(tmp_path: Any) -> None:
    # found by S03: a leader isolated from its peers steps down (check-quorum) but its
    # acks=all producers waited their whole request timeout; now they hear "unknown
    # outcome" after two election timeouts and go find the new leader
    root = str(tmp_path)
    net = Net()
    flusher = Flusher()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        drivers = [make_driver(root, net, flusher, n, "p-0") for n in IDS]
        for d in drivers:
            nursery.start_soon(d.run)
        nursery.start_soon(ticker, drivers)
        leader = await wait_leader(drivers)
        await leader.propose(batch(b"before"), 1, Acks.ALL)
        net.cut.add(leader.core.id)
        t0 = trio.current_time()
        error: ProduceError | None = None
        try:
            with trio.fail_after(5):
                await leader.propose(batch(b"during"), 1, Acks.ALL)
        except ProduceError as e:
            error = e
        assert error is not None and error.code == ErrorCode.UNKNOWN_OUTCOME, error
        # election timeout 10 ticks of 10 ms: step down after ~1 timeout, answer after 2 more
        assert trio.current_time() - t0 < 2.0
        new = await wait_leader(drivers, exclude={leader.core.id})
        assert new is not leader
        net.cut.clear()
        nursery.cancel_scope.cancel()
