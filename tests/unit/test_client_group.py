"""The client side of consumer groups without a broker's coordinator: ``GroupMember``'s
state machine and ``Coordinator``'s retries against scripted fakes, the rebalance listener
adapter, and the consumer's group logic (listener order, auto-commit of what earlier polls
returned, lost membership, fenced commits, close) over the fake cluster's data path with a
scripted coordinator in place of the real one."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from raftlog.client import (
    AsyncConsumer,
    CommitFailedError,
    Consumer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    IllegalStateError,
    TopicPartition,
)
from raftlog.client.cluster import ClientConfig, Cluster
from raftlog.client.errors import BrokerError
from raftlog.client.group import (
    Coordinator,
    GroupConfig,
    GroupMember,
    Listener,
    MemberState,
)
from raftlog.errors import ErrorCode
from raftlog.storage.records import Record
from raftlog.testing.fake_broker import FakeCluster, running_fake_cluster
from raftlog.types import NodeId
from raftlog.wire import (
    FindCoordinatorResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    JoinGroupRequest,
    JoinGroupResponse,
    LeaveGroupRequest,
    LeaveGroupResponse,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    Request,
    Response,
    SyncGroupRequest,
    SyncGroupResponse,
    TopicPartitions,
)
from raftlog.wire.groups import (
    CommitTopicResult,
    FetchedOffset,
    FetchedTopic,
    PartitionResult,
)

TP0, TP1 = TopicPartition("t", 0), TopicPartition("t", 1)


def err(code: ErrorCode) -> BrokerError:
    return BrokerError(code, f"{code.name} (scripted)")


class FakeCoordinator:
    """A scripted coordinator of one group, in process.

    By default it behaves like a coordinator whose group has just this member: JOIN_GROUP
    gives the next generation (a new member id for member ""), SYNC_GROUP the partitions in
    ``assignment``, HEARTBEAT and LEAVE_GROUP succeed, OFFSET_COMMIT stores, OFFSET_FETCH
    reads what was stored. ``script[api]`` (a deque) overrides the next answers of an api
    with an error code, an exception or a response. Every request goes to ``log`` and its
    api name to ``events`` (shared with listeners, to check the order of things)."""

    def __init__(self, events: list[Any] | None = None) -> None:
        self.events: list[Any] = [] if events is None else events
        self.log: list[Request] = []
        self.script: dict[str, deque[Any]] = {}
        self.assignment: list[TopicPartition] = [TP0, TP1]
        self.generation = 0
        self.members = 0
        self.committed: dict[TopicPartition, int] = {}
        self.commits: list[tuple[int, str, dict[TopicPartition, int]]] = []
        self.closed = False

    def then(self, api: str, *answers: Any) -> None:
        self.script.setdefault(api, deque()).extend(answers)

    async def find(self) -> int:
        return 1

    def close(self) -> None:
        self.closed = True

    async def request(self, msg: Request, *, timeout_ms: int | None = None) -> Response:
        api = msg.API_KEY.name
        self.log.append(msg)
        self.events.append(api)
        await trio.sleep(0)
        scripted = self.script.get(api)
        if scripted:
            answer = scripted.popleft()
            if isinstance(answer, trio.Event):  # park the request until it is set
                await answer.wait()
                return self._default(msg)
            if isinstance(answer, ErrorCode):
                raise err(answer)
            if isinstance(answer, BaseException):
                raise answer
            return answer  # type: ignore[no-any-return]
        return self._default(msg)

    def _default(self, msg: Request) -> Response:
        if isinstance(msg, JoinGroupRequest):
            self.generation += 1
            member_id = msg.member_id
            if not member_id:
                self.members += 1
                member_id = f"m{self.members}"
            return JoinGroupResponse(self.generation, member_id, member_id, "sticky")
        if isinstance(msg, SyncGroupRequest):
            by_topic: dict[str, list[int]] = {}
            for tp in self.assignment:
                by_topic.setdefault(tp.topic, []).append(tp.partition)
            return SyncGroupResponse(
                tuple(TopicPartitions(t, tuple(ps)) for t, ps in by_topic.items())
            )
        if isinstance(msg, HeartbeatRequest):
            return HeartbeatResponse()
        if isinstance(msg, LeaveGroupRequest):
            return LeaveGroupResponse()
        if isinstance(msg, OffsetCommitRequest):
            offsets = {
                TopicPartition(t.name, p.partition): p.offset
                for t in msg.topics
                for p in t.partitions
            }
            self.commits.append((msg.generation, msg.member_id, offsets))
            self.committed.update(offsets)
            return OffsetCommitResponse(
                tuple(
                    CommitTopicResult(
                        t.name, tuple(PartitionResult(p.partition) for p in t.partitions)
                    )
                    for t in msg.topics
                )
            )
        if isinstance(msg, OffsetFetchRequest):
            asked = [
                TopicPartition(t.name, p) for t in (msg.topics or ()) for p in t.partitions
            ] or list(self.committed)
            by: dict[str, list[FetchedOffset]] = {}
            for tp in asked:
                by.setdefault(tp.topic, []).append(
                    FetchedOffset(tp.partition, self.committed.get(tp, -1))
                )
            return OffsetFetchResponse(tuple(FetchedTopic(t, tuple(ps)) for t, ps in by.items()))
        raise AssertionError(f"unexpected {msg!r}")

    def sent(self, kind: type[Any]) -> list[Any]:
        return [m for m in self.log if isinstance(m, kind)]


def member(fake: FakeCoordinator, **config: Any) -> GroupMember:
    return GroupMember(fake, GroupConfig("g", retry_backoff_ms=1, **config))


# ---------------------------------------------------------------------- GroupMember


async def test_join_then_sync_gives_the_sorted_assignment() -> None:
    fake = FakeCoordinator()
    fake.assignment = [TP1, TP0]
    m = member(fake, instance_id="i-1", session_timeout_ms=6000, rebalance_timeout_ms=9000)
    assert m.needs_join and m.state == MemberState.UNJOINED
    assert await m.join(["t"]) == [TP0, TP1]
    assert (m.state, m.member_id, m.generation, m.needs_join) == (
        MemberState.STABLE,
        "m1",
        1,
        False,
    )
    join, sync = fake.log
    assert isinstance(join, JoinGroupRequest) and isinstance(sync, SyncGroupRequest)
    assert (join.member_id, join.instance_id, join.topics) == ("", "i-1", ("t",))
    assert (join.session_timeout_ms, join.rebalance_timeout_ms) == (6000, 9000)
    assert join.strategies == ("sticky", "range", "roundrobin")
    assert (sync.generation, sync.member_id) == (1, "m1")


async def test_sync_rebalance_in_progress_rejoins_keeping_the_member_id() -> None:
    fake = FakeCoordinator()
    fake.then("SYNC_GROUP", ErrorCode.REBALANCE_IN_PROGRESS)
    m = member(fake)
    assert await m.join(["t"]) == [TP0, TP1]
    joins = fake.sent(JoinGroupRequest)
    assert [j.member_id for j in joins] == ["", "m1"]
    assert m.generation == 2


@pytest.mark.parametrize("code", [ErrorCode.ILLEGAL_GENERATION, ErrorCode.UNKNOWN_MEMBER_ID])
async def test_sync_fenced_rejoins_as_a_new_member(code: ErrorCode) -> None:
    fake = FakeCoordinator()
    fake.then("SYNC_GROUP", code)
    m = member(fake)
    await m.join(["t"])
    assert [j.member_id for j in fake.sent(JoinGroupRequest)] == ["", ""]
    assert m.member_id == "m2"


async def test_join_unknown_member_id_forgets_the_member_id() -> None:
    fake = FakeCoordinator()
    fake.then("JOIN_GROUP", ErrorCode.UNKNOWN_MEMBER_ID)
    m = member(fake)
    m.member_id = "stale"
    await m.join(["t"])
    assert [j.member_id for j in fake.sent(JoinGroupRequest)] == ["stale", ""]


async def test_join_raises_what_rejoining_cannot_fix() -> None:
    fake = FakeCoordinator()
    fake.then("JOIN_GROUP", ErrorCode.FENCED_INSTANCE_ID)
    m = member(fake, instance_id="i")
    with pytest.raises(BrokerError) as info:
        await m.join(["t"])
    assert info.value.code == ErrorCode.FENCED_INSTANCE_ID
    assert m.state == MemberState.UNJOINED and m.needs_join


async def test_heartbeat_ok_and_rebalance_in_progress_keeps_the_member() -> None:
    fake = FakeCoordinator()
    changes: list[int] = []
    m = GroupMember(fake, GroupConfig("g"), on_change=lambda: changes.append(1))
    await m.join(["t"])
    await m.heartbeat()
    assert not m.needs_join and not changes
    fake.then("HEARTBEAT", ErrorCode.REBALANCE_IN_PROGRESS)
    await m.heartbeat()
    assert m.needs_join and not m.lost and changes == [1]
    assert (m.member_id, m.generation, m.state) == ("m1", 1, MemberState.STABLE)
    hb = fake.sent(HeartbeatRequest)[-1]
    assert (hb.generation, hb.member_id) == (1, "m1")


@pytest.mark.parametrize(
    "code",
    [ErrorCode.ILLEGAL_GENERATION, ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_INSTANCE_ID],
)
async def test_heartbeat_fenced_loses_the_membership(code: ErrorCode) -> None:
    fake = FakeCoordinator()
    m = member(fake)
    await m.join(["t"])
    fake.then("HEARTBEAT", code)
    await m.heartbeat()
    assert m.lost and m.needs_join
    assert (m.member_id, m.generation, m.state, m.assignment) == ("", -1, MemberState.UNJOINED, [])
    await m.join(["t"])  # the next join is as a new member
    assert fake.sent(JoinGroupRequest)[-1].member_id == ""
    assert not m.lost


async def test_heartbeat_not_sent_while_not_stable_and_retriable_errors_raise() -> None:
    fake = FakeCoordinator()
    m = member(fake)
    await m.heartbeat()
    assert fake.log == []
    await m.join(["t"])
    fake.then("HEARTBEAT", ErrorCode.COORDINATOR_NOT_AVAILABLE)
    with pytest.raises(BrokerError):
        await m.heartbeat()
    assert m.state == MemberState.STABLE and not m.needs_join


async def test_heartbeats_run_every_interval_in_the_background(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeCoordinator()
    m = member(fake, heartbeat_interval_ms=1000, session_timeout_ms=3000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(m.run_heartbeats)
        await trio.sleep(2.5)
        assert fake.sent(HeartbeatRequest) == []  # not a member yet
        await m.join(["t"])
        await trio.sleep(5.01)
        assert len(fake.sent(HeartbeatRequest)) == 5
        fake.then("HEARTBEAT", ErrorCode.REBALANCE_IN_PROGRESS)
        await trio.sleep(5)
        # still beating while the rejoin waits for a poll: the member must not expire
        assert len(fake.sent(HeartbeatRequest)) == 10 and m.needs_join
        joining = trio.Event()
        fake.then("JOIN_GROUP", joining)  # parks the join: no heartbeats while joining

        nursery.start_soon(m.join, ["t"])
        await trio.sleep(5)
        assert m.state == MemberState.JOINING and len(fake.sent(HeartbeatRequest)) == 10
        nursery.cancel_scope.cancel()


async def test_commit_as_a_member_and_its_fencing() -> None:
    fake = FakeCoordinator()
    m = member(fake)
    with pytest.raises(CommitFailedError):  # not a member of any generation: nothing sent
        await m.commit({TP0: 3})
    assert fake.log == []
    await m.join(["t"])
    await m.commit({TP0: 3, TP1: 4})
    assert fake.commits == [(1, "m1", {TP0: 3, TP1: 4})]
    fake.then("OFFSET_COMMIT", ErrorCode.REBALANCE_IN_PROGRESS)
    with pytest.raises(CommitFailedError) as info:
        await m.commit({TP0: 5})
    assert info.value.code == ErrorCode.REBALANCE_IN_PROGRESS
    assert "lost its partitions" in info.value.message
    assert "not committed" in info.value.message
    assert m.needs_join and not m.lost
    await m.join(["t"])
    fake.then("OFFSET_COMMIT", ErrorCode.ILLEGAL_GENERATION)
    with pytest.raises(CommitFailedError):
        await m.commit({TP0: 5})
    assert m.lost and m.member_id == ""
    assert fake.committed == {TP0: 3, TP1: 4}


async def test_leave_is_sent_by_a_dynamic_member_only() -> None:
    fake = FakeCoordinator()
    m = member(fake)
    await m.join(["t"])
    await m.leave()
    assert [(x.group_id, x.member_id) for x in fake.sent(LeaveGroupRequest)] == [("g", "m1")]
    assert m.state == MemberState.CLOSED and not m.needs_join
    static = FakeCoordinator()
    s = member(static, instance_id="host-1")
    await s.join(["t"])
    await s.leave()  # keeps its assignment for its session timeout: a restart takes it back
    assert static.sent(LeaveGroupRequest) == []


def test_group_config_is_checked() -> None:
    with pytest.raises(ValueError, match="heartbeat_interval_ms"):
        GroupConfig("g", heartbeat_interval_ms=10_000, session_timeout_ms=10_000).check()
    with pytest.raises(ValueError, match="partition_assignment_strategy"):
        GroupConfig("g", strategies=("mine",)).check()
    with pytest.raises(ValueError, match="session_timeout_ms"):
        GroupConfig("g", session_timeout_ms=10).check()


# ---------------------------------------------------------------------- Coordinator


class ScriptedConnection:
    def __init__(self, answers: deque[Any]) -> None:
        self.answers = answers
        self.closed = False

    async def request(self, msg: Request, *, timeout_ms: int) -> Response:
        answer = self.answers.popleft()
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]


class ScriptedCluster:
    """What ``Coordinator`` uses of a ``Cluster``: FIND_COORDINATOR to any broker, then
    the coordinator's pooled connection."""

    def __init__(self, finds: list[Any], answers: list[Any]) -> None:
        self.config = ClientConfig(retry_backoff_ms=10, request_timeout_ms=2000)
        self.finds = deque(finds)
        self.found = 0
        self.conn = ScriptedConnection(deque(answers))
        self.connected: list[int] = []

    async def request_any(self, msg: Request, timeout_ms: int | None = None) -> Response:
        self.found += 1
        answer = self.finds.popleft() if self.finds else FindCoordinatorResponse(NodeId(2), "h", 1)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]

    async def connection(self, broker_id: int) -> ScriptedConnection:
        self.connected.append(broker_id)
        return self.conn

    def drop_connection(self, broker_id: int) -> None:
        pass


async def test_coordinator_finds_the_coordinator_again_after_not_coordinator(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cluster = ScriptedCluster(
        finds=[err(ErrorCode.COORDINATOR_NOT_AVAILABLE)],
        answers=[err(ErrorCode.NOT_COORDINATOR), HeartbeatResponse()],
    )
    coordinator = Coordinator(cluster, "g")  # type: ignore[arg-type]
    answer = await coordinator.request(HeartbeatRequest("g", 1, "m"))
    assert isinstance(answer, HeartbeatResponse)
    assert cluster.found == 3  # election, found, moved: found again
    assert cluster.connected == [2, 2] and coordinator.node_id == 2


async def test_coordinator_raises_other_refusals_at_once_and_gives_up_at_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cluster = ScriptedCluster(finds=[], answers=[err(ErrorCode.ILLEGAL_GENERATION)])
    coordinator = Coordinator(cluster, "g")  # type: ignore[arg-type]
    with pytest.raises(BrokerError) as info:
        await coordinator.request(HeartbeatRequest("g", 1, "m"))
    assert info.value.code == ErrorCode.ILLEGAL_GENERATION and cluster.found == 1
    cluster.conn.answers.extend([err(ErrorCode.NOT_COORDINATOR)] * 1000)
    t0 = trio.current_time()
    with pytest.raises(BrokerError) as info:
        await coordinator.request(HeartbeatRequest("g", 1, "m"))
    assert info.value.code == ErrorCode.NOT_COORDINATOR
    assert 1.0 <= trio.current_time() - t0 <= 2.0  # request_timeout_ms, with backoff


# ---------------------------------------------------------------------- Listener


async def test_listener_object_callables_and_fallbacks() -> None:
    seen: list[Any] = []

    class Half(ConsumerRebalanceListener):
        def on_partitions_revoked(self, partitions: list[TopicPartition]) -> None:
            seen.append(("revoked", partitions))

    listener = Listener(Half())
    await listener.lost([TP0])  # on_partitions_lost falls back to on_partitions_revoked
    await listener.assigned([TP1])  # the base class's no-op

    async def assigned(tps: list[TopicPartition]) -> None:
        await trio.sleep(0)
        seen.append(("assigned async", tps))

    both = Listener(Half(), on_assigned=assigned)
    await both.assigned([TP1])
    assert seen == [("revoked", [TP0]), ("assigned async", [TP1])]

    def boom(tps: list[TopicPartition]) -> None:
        raise RuntimeError("listener bug")

    failing = Listener(on_revoked=boom)
    await failing.revoked([TP0])  # logged and kept, not raised here
    error = failing.take_error()
    assert isinstance(error, RuntimeError) and failing.take_error() is None
    with pytest.raises(TypeError, match="not a rebalance listener"):
        Listener(object())


async def test_listener_in_a_thread() -> None:
    threads: list[str] = []
    listener = Listener(
        on_assigned=lambda tps: threads.append(threading.current_thread().name), in_thread=True
    )
    await listener.assigned([TP0])
    assert threads and threads[0] != threading.current_thread().name


# ---------------------------------------------------------------------- the consumer


def records(*values: bytes) -> list[Record]:
    return [Record(None, v) for v in values]


def group_consumer(
    cluster: Cluster, nursery: trio.Nursery, fake: FakeCoordinator, **settings: Any
) -> AsyncConsumer:
    settings.setdefault("heartbeat_interval_ms", 20)
    settings.setdefault("session_timeout_ms", 1000)
    consumer = AsyncConsumer(
        cluster, nursery=nursery, group_id="g", auto_offset_reset="earliest", **settings
    )
    consumer._new_coordinator = lambda: fake  # type: ignore[method-assign,assignment,return-value]
    return consumer


async def poll_until(
    consumer: AsyncConsumer, done: Callable[[list[ConsumerRecord]], bool], max_records: int = 500
) -> list[ConsumerRecord]:
    out: list[ConsumerRecord] = []
    with trio.fail_after(10):
        while not done(out):
            out.extend(await consumer.poll(timeout_ms=50, max_records=max_records))
    return out


async def test_listener_order_revoked_before_the_join_assigned_after_the_sync() -> None:
    events: list[Any] = []
    fake = FakeCoordinator(events)
    async with FakeCluster().serving() as cluster_fake, trio.open_nursery() as nursery:
        cluster_fake.create_topic("t", 2)
        cluster_fake.append("t", 0, records(b"a", b"b"))
        cluster_fake.append("t", 1, records(b"c"))
        cluster = Cluster(cluster_fake.bootstrap, nursery, ClientConfig())
        consumer = group_consumer(cluster, nursery, fake)

        class Recorder(ConsumerRebalanceListener):
            def on_partitions_revoked(self, partitions: list[TopicPartition]) -> None:
                # still assigned (its position can be read) while the callback runs
                events.append(("revoked", partitions, consumer.assignment()))

            def on_partitions_assigned(self, partitions: list[TopicPartition]) -> None:
                events.append(("assigned", partitions))

        await consumer.subscribe(["t"], Recorder())
        got = await poll_until(consumer, lambda out: len(out) == 3)
        assert sorted((r.partition, r.offset) for r in got) == [(0, 0), (0, 1), (1, 0)]
        assert consumer.assignment() == [TP0, TP1]
        first = [e for e in events if e != "HEARTBEAT"]
        assert first[:4] == ["JOIN_GROUP", "SYNC_GROUP", ("assigned", [TP0, TP1]), "OFFSET_FETCH"]

        # the coordinator starts a rebalance; the next poll revokes (after committing),
        # rejoins, and assigns what the new generation gives this member
        events.clear()
        fake.assignment = [TP1]
        fake.then("HEARTBEAT", ErrorCode.REBALANCE_IN_PROGRESS)
        with trio.fail_after(10):
            while ("assigned", [TP1]) not in events:
                await consumer.poll(timeout_ms=50)
        order = [e for e in events if e != "HEARTBEAT"][:5]
        assert order == [
            "OFFSET_COMMIT",
            ("revoked", [TP0, TP1], [TP0, TP1]),
            "JOIN_GROUP",
            "SYNC_GROUP",
            ("assigned", [TP1]),
        ]
        assert fake.commits[-1] == (1, "m1", {TP0: 2, TP1: 1})
        assert fake.sent(JoinGroupRequest)[-1].member_id == "m1"
        assert consumer.assignment() == [TP1]
        cluster_fake.append("t", 1, records(b"d"))
        got = await poll_until(consumer, lambda out: len(out) == 1)
        assert [(r.partition, r.offset, r.value) for r in got] == [(1, 1, b"d")]  # from the commit
        await consumer.aclose()
        cluster.close()
        nursery.cancel_scope.cancel()


async def test_auto_commit_commits_only_what_earlier_polls_returned() -> None:
    fake = FakeCoordinator()
    fake.assignment = [TP0]
    async with FakeCluster().serving() as cluster_fake, trio.open_nursery() as nursery:
        cluster_fake.create_topic("t", 1)
        cluster_fake.append("t", 0, records(*[b"%d" % i for i in range(12)]))
        cluster = Cluster(cluster_fake.bootstrap, nursery, ClientConfig())
        consumer = group_consumer(cluster, nursery, fake, auto_commit_interval_ms=1)
        await consumer.subscribe("t")
        returned = 0  # the offset after the last record returned so far
        polls = 0
        with trio.fail_after(10):
            while returned < 12:
                before = returned
                got = await consumer.poll(timeout_ms=50, max_records=3)
                await trio.sleep(0.005)  # past auto_commit_interval_ms before the next poll
                await trio.testing.wait_all_tasks_blocked()  # the background commits land
                for _, _, offsets in fake.commits:
                    # never past what the caller had before this poll: the records this
                    # poll returned are not processed yet
                    assert offsets[TP0] <= before, (offsets, before)
                if got:
                    polls += 1
                    assert [r.offset for r in got] == list(range(returned, returned + 3))
                    returned = got[-1].offset + 1
                    if polls >= 2:
                        assert fake.committed[TP0] == before  # and what came before, is
        assert fake.committed[TP0] == 9
        assert all(m == "m1" and g == 1 for g, m, _ in fake.commits)
        await consumer.aclose()  # close commits what the last poll returned
        assert fake.committed[TP0] == 12
        assert isinstance(fake.log[-1], LeaveGroupRequest)
        cluster.close()
        nursery.cancel_scope.cancel()


async def test_lost_membership_drops_the_partitions_without_committing() -> None:
    events: list[Any] = []
    fake = FakeCoordinator(events)
    async with FakeCluster().serving() as cluster_fake, trio.open_nursery() as nursery:
        cluster_fake.create_topic("t", 2)
        cluster_fake.append("t", 0, records(b"a"))
        cluster = Cluster(cluster_fake.bootstrap, nursery, ClientConfig())
        consumer = group_consumer(cluster, nursery, fake, enable_auto_commit=True)
        await consumer.subscribe(
            ["t"],
            on_revoked=lambda tps: events.append(("revoked", tps)),
            on_lost=lambda tps: events.append(("lost", tps)),
            on_assigned=lambda tps: events.append(("assigned", tps)),
        )
        await poll_until(consumer, lambda out: len(out) == 1)
        events.clear()
        fake.then("HEARTBEAT", ErrorCode.UNKNOWN_MEMBER_ID)
        with trio.fail_after(10):
            while ("assigned", [TP0, TP1]) not in events:
                await consumer.poll(timeout_ms=50)
        order = [e for e in events if e != "HEARTBEAT"][:4]
        # on_lost, not on_revoked; nothing committed for lost partitions
        assert order == [("lost", [TP0, TP1]), "JOIN_GROUP", "SYNC_GROUP", ("assigned", [TP0, TP1])]
        assert fake.sent(JoinGroupRequest)[-1].member_id == ""  # rejoined as a new member
        consumer.close()
        cluster.close()
        nursery.cancel_scope.cancel()


async def test_a_fenced_commit_raises_commit_failed_and_the_next_poll_rejoins() -> None:
    events: list[Any] = []
    fake = FakeCoordinator(events)
    async with FakeCluster().serving() as cluster_fake, trio.open_nursery() as nursery:
        cluster_fake.create_topic("t", 2)
        cluster_fake.append("t", 1, records(b"a", b"b"))
        cluster = Cluster(cluster_fake.bootstrap, nursery, ClientConfig())
        consumer = group_consumer(cluster, nursery, fake, enable_auto_commit=False)
        await consumer.subscribe(["t"], on_lost=lambda tps: events.append(("lost", tps)))
        await poll_until(consumer, lambda out: len(out) == 2)
        await consumer.commit()
        assert fake.commits == [(1, "m1", {TP0: 0, TP1: 2})]
        await consumer.commit({("t", 1): 1})
        assert fake.committed == {TP0: 0, TP1: 1}
        assert await consumer.committed("t", 1) == 1
        fake.then("OFFSET_COMMIT", ErrorCode.ILLEGAL_GENERATION)
        with pytest.raises(CommitFailedError):
            await consumer.commit()
        assert fake.committed == {TP0: 0, TP1: 1}
        got = await poll_until(consumer, lambda out: len(out) == 1)
        assert ("lost", [TP0, TP1]) in events and fake.generation == 2
        assert (got[0].partition, got[0].offset) == (1, 1)  # from the last good commit
        with pytest.raises(ValueError):
            await consumer.commit({("t", 0): -1})
        consumer.close()
        cluster.close()
        nursery.cancel_scope.cancel()


async def test_an_idle_member_polls_nothing_and_commit_async_reports_back() -> None:
    fake = FakeCoordinator()
    fake.assignment = []
    assigned: list[list[TopicPartition]] = []
    async with FakeCluster().serving() as cluster_fake, trio.open_nursery() as nursery:
        cluster_fake.create_topic("t", 1)
        cluster_fake.append("t", 0, records(b"a"))
        cluster = Cluster(cluster_fake.bootstrap, nursery, ClientConfig())
        consumer = group_consumer(cluster, nursery, fake)
        await consumer.subscribe(["t"], on_assigned=assigned.append)
        with trio.fail_after(10):
            while not assigned:
                assert await consumer.poll(timeout_ms=50) == []
        assert assigned == [[]] and consumer.assignment() == []
        assert await consumer.poll(timeout_ms=100) == []
        results: list[Any] = []
        consumer.commit_async(
            {("t", 0): 1}, lambda offsets, error: results.append((offsets, error))
        )
        with trio.fail_after(5):
            while not results:
                await trio.sleep(0.01)
        assert results == [({TP0: 1}, None)]  # the scripted coordinator does not check owners
        consumer.close()
        cluster.close()
        nursery.cancel_scope.cancel()


async def test_assign_mode_with_a_group_id_starts_at_the_committed_offsets() -> None:
    fake = FakeCoordinator()
    fake.committed = {TP0: 2}
    async with FakeCluster().serving() as cluster_fake, trio.open_nursery() as nursery:
        cluster_fake.create_topic("t", 2)
        cluster_fake.append("t", 0, records(b"a", b"b", b"c", b"d"))
        cluster_fake.append("t", 1, records(b"e"))
        cluster = Cluster(cluster_fake.bootstrap, nursery, ClientConfig())
        consumer = group_consumer(cluster, nursery, fake)
        consumer.assign([TP0, TP1])
        got = await poll_until(consumer, lambda out: len(out) == 3)
        assert sorted((r.partition, r.offset) for r in got) == [(0, 2), (0, 3), (1, 0)]
        assert await consumer.position(TP0) == 4
        await consumer.commit()
        assert fake.commits[-1] == (-1, "", {TP0: 4, TP1: 1})  # no member: generation -1
        assert fake.sent(JoinGroupRequest) == []
        consumer.close()
        cluster.close()
        nursery.cancel_scope.cancel()


async def test_pattern_subscription_without_a_group() -> None:
    async with FakeCluster().serving() as cluster_fake, trio.open_nursery() as nursery:
        for name in ("orders-eu", "orders-us", "other", "xorders-eu"):
            cluster_fake.create_topic(name, 1)
            cluster_fake.append(name, 0, records(name.encode()))
        cluster = Cluster(cluster_fake.bootstrap, nursery, ClientConfig())
        consumer = AsyncConsumer(cluster, nursery=nursery, auto_offset_reset="earliest")
        await consumer.subscribe(pattern=r"orders-.*")
        assert consumer.subscription() == {"orders-eu", "orders-us"}
        got = await poll_until(consumer, lambda out: len(out) == 2)
        assert sorted(r.value or b"" for r in got) == [b"orders-eu", b"orders-us"]
        with pytest.raises(ValueError, match="not both"):
            await consumer.subscribe(["a"], pattern="a")
        with pytest.raises(ValueError, match="needs a group_id"):
            await consumer.subscribe(["a"], on_assigned=print)
        consumer.close()
        cluster.close()
        nursery.cancel_scope.cancel()


async def test_group_subscribe_needs_a_nursery_and_commit_needs_a_group() -> None:
    async with FakeCluster().serving() as cluster_fake, trio.open_nursery() as nursery:
        cluster = Cluster(cluster_fake.bootstrap, nursery, ClientConfig())
        with pytest.raises(IllegalStateError, match="nursery"):
            await AsyncConsumer(cluster, group_id="g").subscribe(["t"])
        with pytest.raises(IllegalStateError, match="group_id"):
            await AsyncConsumer(cluster).commit()
        with pytest.raises(ValueError, match="group_instance_id"):
            AsyncConsumer(cluster, group_instance_id="i")
        cluster.close()
        nursery.cancel_scope.cancel()


def test_blocking_consumer_listener_runs_in_a_thread_that_may_call_the_consumer() -> None:
    """The blocking Consumer runs the listener in a worker thread: from there it can call
    the consumer (commit, position) while poll waits for it, without a deadlock."""
    fake = FakeCoordinator()
    seen: list[Any] = []
    with running_fake_cluster() as cluster_fake:
        cluster_fake.call(cluster_fake.create_topic, "t", 2)
        cluster_fake.call(cluster_fake.append, "t", 0, records(b"a", b"b"))
        consumer = Consumer(
            cluster_fake.bootstrap,
            group_id="g",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            heartbeat_interval_ms=20,
            session_timeout_ms=1000,
        )

        def install() -> None:
            consumer._core._new_coordinator = lambda: fake  # type: ignore[method-assign,assignment,return-value]

        consumer._call(install)

        def revoked(tps: list[TopicPartition]) -> None:
            seen.append(("revoked", tps, consumer.position(TP0)))
            consumer.commit()  # commit what was processed before giving them up

        def assigned(tps: list[TopicPartition]) -> None:
            if tps:
                consumer.seek(tps[0], 1)  # a seek here wins over the committed offset
            seen.append(("assigned", tps))

        with consumer:
            consumer.subscribe(["t"], on_revoked=revoked, on_assigned=assigned)
            got: list[ConsumerRecord] = []
            end = time.monotonic() + 10
            while not got:
                assert time.monotonic() < end
                got.extend(consumer.poll(timeout_ms=100))
            assert [(r.partition, r.offset) for r in got] == [(0, 1)]
        assert seen == [("assigned", [TP0, TP1]), ("revoked", [TP0, TP1], 2)]
        assert fake.committed == {TP0: 2, TP1: 0}
        assert isinstance(fake.log[-1], LeaveGroupRequest)


async def test_pattern_subscription_in_a_group_rejoins_when_a_matching_topic_appears() -> None:
    fake = FakeCoordinator()
    fake.assignment = [TopicPartition("orders-eu", 0)]
    async with FakeCluster().serving() as cluster_fake, trio.open_nursery() as nursery:
        cluster_fake.create_topic("orders-eu", 1)
        cluster_fake.create_topic("other", 1)
        cluster = Cluster(cluster_fake.bootstrap, nursery, ClientConfig())
        consumer = group_consumer(cluster, nursery, fake, metadata_max_age_ms=50)
        await consumer.subscribe(pattern="orders-.*")
        with trio.fail_after(10):
            while consumer.assignment() != [TopicPartition("orders-eu", 0)]:
                await consumer.poll(timeout_ms=20)
        assert fake.sent(JoinGroupRequest)[-1].topics == ("orders-eu",)
        cluster_fake.create_topic("orders-us", 2)
        fake.assignment = [TopicPartition("orders-us", 0), TopicPartition("orders-us", 1)]
        with trio.fail_after(10):
            while consumer.assignment() != fake.assignment:
                await consumer.poll(timeout_ms=20)
        join = fake.sent(JoinGroupRequest)[-1]
        assert (join.topics, join.member_id) == (("orders-eu", "orders-us"), "m1")
        assert consumer.subscription() == {"orders-eu", "orders-us"}

        # no topic matches any more: revoke and leave; one appears: join again, as new
        del cluster_fake.topics["orders-eu"], cluster_fake.topics["orders-us"]
        with trio.fail_after(10):
            while not fake.sent(LeaveGroupRequest):
                await consumer.poll(timeout_ms=20)
        assert consumer.assignment() == [] and consumer.subscription() == set()
        assert fake.sent(LeaveGroupRequest)[-1].member_id == "m1"
        cluster_fake.create_topic("orders-x", 1)
        fake.assignment = [TopicPartition("orders-x", 0)]
        with trio.fail_after(10):
            while consumer.assignment() != fake.assignment:
                await consumer.poll(timeout_ms=20)
        join = fake.sent(JoinGroupRequest)[-1]
        assert (join.topics, join.member_id) == (("orders-x",), "")
        consumer.close()
        cluster.close()
        nursery.cancel_scope.cancel()
