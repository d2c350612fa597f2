"""Consumer groups against real broker processes (the broker-side coordinator): blocking
``Consumer`` members, each in its own thread, sharing the partitions of a topic.

- 4 partitions over 3, 5 and 4 members (one member owns two; one idles; one each), every
  record read exactly once;
- a member that closes cleanly commits and leaves: the others take its partitions over
  from the committed offsets, nothing skipped (three brokers);
- ``Admin.describe_group`` shows members, offsets and lag; ``reset_offsets`` refuses a
  group with members, and to "earliest" on an empty group makes a new member read
  everything again; ``delete_group``;
- a static member (``group_instance_id``) that restarts within its session timeout takes
  its partitions back without a rebalance;
- a member that processes slowly (no poll for several session timeouts) is not expired:
  its heartbeats run in the background;
- the coordinator's broker (the metadata leader) is killed: the members find the new
  coordinator and keep their partitions, and every acknowledged record is read (three
  brokers).

Every wait has a deadline (``wait_until``); the fixtures stop the brokers by PID.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from raftlog.client import (
    Admin,
    BrokerError,
    ConsumerGroupDescription,
    Producer,
    TopicPartition,
)
from raftlog.client.consumer import Consumer
from raftlog.errors import ErrorCode
from raftlog.testing.procs import wait_until
from tests.integration import test_broker_single, test_client_cluster
from tests.integration.test_broker_cluster import IDS
from tests.integration.test_broker_cluster import Cluster as ThreeBrokers
from tests.integration.test_broker_single import Node

pytestmark = pytest.mark.integration

node = test_broker_single.node  # one broker
cluster = test_client_cluster.cluster  # three brokers

GROUP = "readers"
DEADLINE_S = 60.0
MEMBER_SETTINGS: dict[str, Any] = {
    "auto_offset_reset": "earliest",
    "heartbeat_interval_ms": 300,
    "session_timeout_ms": 6000,
    "auto_commit_interval_ms": 300,
    "fetch_max_wait_ms": 200,
}


class Member:
    """A blocking ``Consumer`` in the group, polling in a thread of its own until
    ``close``; it records what it read and what the listener told it."""

    def __init__(self, bootstrap: str | list[str], name: str, topic: str, **settings: Any):
        self.bootstrap, self.name, self.topic = bootstrap, name, topic
        self.settings = {**MEMBER_SETTINGS, **settings}
        self.lock = threading.Lock()
        self.records: list[tuple[int, int, bytes | None]] = []
        self.current: list[TopicPartition] | None = None
        """The partitions of the last on_assigned; None after on_revoked."""
        self.assignments: list[list[TopicPartition]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"member-{name}", daemon=True)

    def start(self) -> Member:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            with Consumer(
                self.bootstrap, group_id=GROUP, client_id=self.name, **self.settings
            ) as consumer:
                consumer.subscribe(
                    [self.topic], on_assigned=self._assigned, on_revoked=self._revoked
                )
                while not self.stop.is_set():
                    batch = consumer.poll(timeout_ms=200)
                    with self.lock:
                        self.records.extend((r.partition, r.offset, r.value) for r in batch)
        except BaseException as exc:  # seen by close()
            self.error = exc

    def _assigned(self, tps: list[TopicPartition]) -> None:
        with self.lock:
            self.current = sorted(tps)
            self.assignments.append(sorted(tps))

    def _revoked(self, tps: list[TopicPartition]) -> None:
        with self.lock:
            self.current = None

    def read(self) -> list[tuple[int, int, bytes | None]]:
        with self.lock:
            return list(self.records)

    def close(self) -> None:
        """Stop polling and close the consumer (commit, LEAVE_GROUP), with a deadline."""
        self.stop.set()
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive(), f"member {self.name} did not close"
        if self.error is not None:
            raise self.error


@contextlib.contextmanager
def members(
    bootstrap: str | list[str], names: Sequence[str], topic: str, **settings: Any
) -> Iterator[list[Member]]:
    started = [Member(bootstrap, name, topic, **settings).start() for name in names]
    try:
        yield started
    finally:
        for m in started:
            m.stop.set()
        for m in started:
            m.thread.join(DEADLINE_S)


def describe(admin: Admin) -> ConsumerGroupDescription | None:
    """The group's description; None while the coordinator does not know the group yet
    (its first rebalance has not ended)."""
    try:
        return admin.describe_group(GROUP)
    except BrokerError as exc:
        if exc.code != ErrorCode.GROUP_ID_NOT_FOUND:
            raise
        return None


def stable_picture(
    admin: Admin, group: Sequence[Member], partitions: int, topic: str
) -> dict[str, list[TopicPartition]] | None:
    """The assignment by member name once the coordinator says the group is Stable with
    exactly ``group`` as members, and each of them took that assignment (on_assigned)."""
    d = describe(admin)
    if d is None or d.state != "Stable" or len(d.members) != len(group):
        return None
    by_name = {m.client_id: sorted(m.assignment) for m in d.members}
    if set(by_name) != {m.name for m in group}:
        return None
    for m in group:
        with m.lock:
            if m.current != by_name[m.name]:
                return None
    owned = sorted(tp for tps in by_name.values() for tp in tps)
    assert owned == [TopicPartition(topic, p) for p in range(partitions)], by_name
    return by_name


def wait_stable(
    admin: Admin, group: Sequence[Member], partitions: int, topic: str
) -> dict[str, list[TopicPartition]]:
    picture: dict[str, list[TopicPartition]] | None = wait_until(
        lambda: stable_picture(admin, group, partitions, topic),
        timeout_s=DEADLINE_S,
        interval_s=0.2,
        what=f"group {GROUP} to be Stable with {len(group)} members",
    )
    assert picture is not None
    return picture


def all_committed(admin: Admin, partitions: int) -> ConsumerGroupDescription | None:
    """The group's description once every partition's committed offset is its log end."""
    d = admin.describe_group(GROUP)
    if len(d.partitions) == partitions and all(p.lag == 0 for p in d.partitions):
        return d
    return None


def produce(
    bootstrap: str | list[str], topic: str, count: int, partitions: int, tag: str
) -> set[tuple[int, int]]:
    """``count`` records spread over the partitions; their (partition, offset) pairs."""
    with Producer(bootstrap, linger_ms=5) as producer:
        futures = [
            producer.send(topic, f"{tag}-{i}".encode(), partition=i % partitions)
            for i in range(count)
        ]
        producer.flush(DEADLINE_S)
        metas = [f.result(0) for f in futures]
    return {(m.partition, m.offset) for m in metas}


def reads(group: Sequence[Member]) -> Counter[tuple[int, int]]:
    return Counter((p, o) for m in group for p, o, _ in m.read())


def wait_read(group: Sequence[Member], wanted: set[tuple[int, int]]) -> None:
    wait_until(
        lambda: wanted <= set(reads(group)),
        timeout_s=DEADLINE_S,
        interval_s=0.05,
        what=f"the group to read {len(wanted)} records",
    )


def bootstrap(n: Node) -> str:
    return f"127.0.0.1:{n.port}"


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(3, [1, 1, 2]), (5, [0, 1, 1, 1, 1]), (4, [1, 1, 1, 1])],
    ids=["3-members-one-owns-two", "5-members-one-idles", "4-members-one-each"],
)
def test_four_partitions_are_shared_and_every_record_read_once(
    node: Node, count: int, sizes: list[int]
) -> None:
    bs = bootstrap(node)
    with Admin(bs) as admin:
        admin.create_topic("spread", partitions=4)
        with members(bs, [f"c{i}" for i in range(count)], "spread") as group:
            picture = wait_stable(admin, group, 4, "spread")
            assert sorted(len(tps) for tps in picture.values()) == sizes
            produced = produce(bs, "spread", 400, 4, "r")
            wait_read(group, produced)
            wait_until(
                lambda: all_committed(admin, 4),
                timeout_s=DEADLINE_S,
                interval_s=0.2,
                what="auto-commit to reach the log ends",
            )
            before_close = reads(group)
            for m in group:
                m.close()
    got = reads(group)
    assert got == before_close  # closing (with its rebalances) read nothing again
    assert set(got) == produced
    assert max(got.values()) == 1, "a record was read twice"
    for m in group:
        mine = {tp.partition for tp in picture[m.name]}
        assert {p for p, _, _ in m.read()} <= mine, (m.name, mine)
        if not mine:
            assert m.read() == []  # the idle member


def test_a_member_closing_cleanly_hands_over_from_the_committed_offsets(
    cluster: ThreeBrokers,
) -> None:
    bs = [f"127.0.0.1:{cluster.ports[i]}" for i in IDS]
    with Admin(bs) as admin:
        admin.create_topic("handover", partitions=4, replication_factor=3)
        with (
            members(bs, ["stay-1", "stay-2"], "handover") as stayers,
            # commits only when it closes (its interval never comes)
            members(bs, ["leaver"], "handover", auto_commit_interval_ms=600_000) as leavers,
        ):
            group = [*stayers, *leavers]
            leaver = leavers[0]
            picture = wait_stable(admin, group, 4, "handover")
            assert sorted(len(tps) for tps in picture.values()) == [1, 1, 2]
            first = produce(bs, "handover", 300, 4, "a")
            wait_read(group, first)
            theirs = {tp.partition for tp in picture["leaver"]}

            def stayers_committed() -> ConsumerGroupDescription | None:
                d = admin.describe_group(GROUP)
                done = [p for p in d.partitions if p.partition not in theirs and p.lag == 0]
                return d if len(done) == 4 - len(theirs) else None

            d = wait_until(stayers_committed, timeout_s=DEADLINE_S, interval_s=0.2,
                           what="the stayers' auto-commits")  # fmt: skip
            assert d is not None
            assert all(p.committed is None for p in d.partitions if p.partition in theirs)
            ends = {p: max(o for q, o in first if q == p) + 1 for p in range(4)}

            leaver.close()  # commits its positions, then LEAVE_GROUP
            after = admin.describe_group(GROUP)
            at_move = {p.partition: p.committed for p in after.partitions}
            for p in theirs:
                assert at_move[p] == ends[p], "the leaver's close did not commit its positions"
            picture = wait_stable(admin, stayers, 4, "handover")
            assert sorted(len(tps) for tps in picture.values()) == [2, 2]
            read_before = reads(stayers)
            second = produce(bs, "handover", 300, 4, "b")
            wait_read(group, second)
            wait_until(lambda: all_committed(admin, 4), timeout_s=DEADLINE_S, interval_s=0.2,
                       what="auto-commit to reach the log ends")  # fmt: skip
            for m in stayers:
                m.close()
    got = reads(group)
    assert set(got) == first | second, "a record was skipped"
    for (p, o), n in got.items():
        committed = at_move.get(p)
        if n > 1:  # read again only past the last commit before the partitions moved
            assert committed is not None and o >= committed, (p, o, n, committed)
    # the stayers read the leaver's partitions from its commit on, nothing before it
    took_over = [(p, o) for p, o in set(reads(stayers)) - set(read_before) if p in theirs]
    assert took_over and all(o >= ends[p] for p, o in took_over)
    assert {p for p, _, _ in leaver.read()} == theirs


def test_admin_describes_resets_and_deletes_a_group(node: Node) -> None:
    bs = bootstrap(node)
    tp0, tp1 = TopicPartition("audit", 0), TopicPartition("audit", 1)
    with Admin(bs) as admin:
        admin.create_topic("audit", partitions=2)
        produced = produce(bs, "audit", 100, 2, "x")
        ends = {p: max(o for q, o in produced if q == p) + 1 for p in range(2)}
        starts = {p: min(o for q, o in produced if q == p) for p in range(2)}
        reader = Consumer(bs, group_id=GROUP, client_id="reader", enable_auto_commit=False,
                          **{**MEMBER_SETTINGS, "auto_offset_reset": "earliest"})  # fmt: skip
        try:
            reader.subscribe(["audit"])
            got = 0
            end = time.monotonic() + DEADLINE_S
            while got < 100:
                assert time.monotonic() < end, f"read {got} of 100"
                got += len(reader.poll(timeout_ms=200))
            reader.commit({tp0: starts[0] + 20, tp1: starts[1] + 30})
            assert reader.committed(tp0) == starts[0] + 20

            d = admin.describe_group(GROUP)
            assert (d.state, d.strategy) == ("Stable", "sticky") and d.generation >= 1
            (m,) = d.members
            assert (m.client_id, m.instance_id, m.assignment) == ("reader", None, (tp0, tp1))
            assert d.leader_id == m.member_id
            rows = {p.partition: p for p in d.partitions}
            for p, done in ((0, starts[0] + 20), (1, starts[1] + 30)):
                assert (rows[p].committed, rows[p].log_end) == (done, ends[p])
                assert rows[p].lag == ends[p] - done and rows[p].member_id == m.member_id
            assert d.lag == ends[0] - (starts[0] + 20) + ends[1] - (starts[1] + 30)
            assert [(g.group_id, g.state, g.members) for g in admin.list_groups()
                    if g.group_id == GROUP] == [(GROUP, "Stable", 1)]  # fmt: skip

            with pytest.raises(BrokerError) as info:
                admin.reset_offsets(GROUP, "audit", to="earliest")
            assert info.value.code == ErrorCode.NON_EMPTY_GROUP
            assert "active member" in info.value.message
            with pytest.raises(BrokerError) as info:
                admin.delete_group(GROUP)
            assert info.value.code == ErrorCode.NON_EMPTY_GROUP
            assert reader.committed(tp0) == starts[0] + 20  # unchanged
        finally:
            reader.close()  # no auto-commit: leaves without committing

        wait_until(lambda: admin.describe_group(GROUP).state == "Empty", timeout_s=DEADLINE_S,
                   interval_s=0.1, what="the group to be empty")  # fmt: skip
        assert admin.reset_offsets(GROUP, "audit", to="latest", dry_run=True) == {
            tp0: ends[0],
            tp1: ends[1],
        }
        assert admin.describe_group(GROUP).partitions[0].committed == starts[0] + 20  # dry run
        assert admin.reset_offsets(GROUP, "audit", shift=-5, dry_run=True) == {
            tp0: starts[0] + 15,
            tp1: starts[1] + 25,
        }
        reset = admin.reset_offsets(GROUP, "audit", to="earliest")
        assert reset == {tp0: 0, tp1: 0}  # the log start (a control batch may come first)
        d = admin.describe_group(GROUP)
        assert d.members == () and [p.committed for p in d.partitions] == [0, 0]
        assert [p.lag for p in d.partitions] == [ends[0], ends[1]]

        # a new member starts at the reset offsets (its own auto_offset_reset says latest)
        again = Member(bs, "again", "audit", auto_offset_reset="latest").start()
        try:
            wait_read([again], produced)
        finally:
            again.close()
        assert len(again.read()) == 100

        admin.delete_group(GROUP)
        assert GROUP not in [g.group_id for g in admin.list_groups()]
        with pytest.raises(BrokerError) as info:
            admin.delete_group(GROUP)
        assert info.value.code == ErrorCode.GROUP_ID_NOT_FOUND


def test_the_group_keeps_reading_when_the_coordinator_dies(cluster: ThreeBrokers) -> None:
    bs = [f"127.0.0.1:{cluster.ports[i]}" for i in IDS]
    acked: set[tuple[int, int]] = set()
    stop = threading.Event()

    def produce_until_stopped() -> None:
        with Producer(bs, acks="all", request_timeout_ms=3000,
                      delivery_timeout_ms=30_000) as producer:  # fmt: skip
            i = 0
            while not stop.is_set():
                future = producer.send("steady", b"%d" % i, partition=i % 4)
                with contextlib.suppress(Exception):  # the kill may leave some unknown
                    md = future.result(DEADLINE_S)
                    acked.add((md.partition, md.offset))
                i += 1
                time.sleep(0.005)

    with Admin(bs) as admin:
        admin.create_topic("steady", partitions=4, replication_factor=3)
        coordinator = admin.describe_cluster().metadata_leader
        assert coordinator is not None
        with members(bs, ["m1", "m2"], "steady") as group:
            picture = wait_stable(admin, group, 4, "steady")
            producer = threading.Thread(target=produce_until_stopped, name="producer")
            producer.start()
            try:
                wait_until(lambda: len(acked) >= 200, timeout_s=DEADLINE_S, what="200 acks")
                cluster.drop_client(coordinator)
                cluster.pg.kill(f"n{coordinator}", signal.SIGKILL)
                killed_at = len(acked)
                wait_until(lambda: len(acked) >= killed_at + 300, timeout_s=DEADLINE_S,
                           what="300 acks after the kill")  # fmt: skip
            finally:
                stop.set()
                producer.join(DEADLINE_S)
            wait_read(group, acked)
            # the new coordinator rebuilt the group from the metadata: no rebalance
            assert [m.assignments for m in group] == [[picture["m1"]], [picture["m2"]]]
            assert admin.describe_cluster().metadata_leader != coordinator
            for m in group:
                m.close()


def test_a_slow_member_is_not_expired_between_polls(node: Node) -> None:
    bs = bootstrap(node)
    with Admin(bs) as admin:
        admin.create_topic("slow", partitions=1)
        first = produce(bs, "slow", 10, 1, "s")
        assigned: list[list[TopicPartition]] = []
        with Consumer(bs, group_id=GROUP, auto_offset_reset="earliest", session_timeout_ms=2000,
                      heartbeat_interval_ms=300) as consumer:  # fmt: skip
            consumer.subscribe(["slow"], on_assigned=assigned.append)
            got: set[tuple[int, int]] = set()
            end = time.monotonic() + DEADLINE_S
            while got != first:
                assert time.monotonic() < end, f"read {len(got)} of 10"
                got |= {(r.partition, r.offset) for r in consumer.poll(timeout_ms=200)}
            generation = admin.describe_group(GROUP).generation
            time.sleep(6.0)  # the slow processing under test: three session timeouts, no poll
            d = admin.describe_group(GROUP)
            assert (d.state, len(d.members), d.generation) == ("Stable", 1, generation)
            second = produce(bs, "slow", 5, 1, "t")
            while not second <= got:
                assert time.monotonic() < end + 10, "the records after the pause never came"
                got |= {(r.partition, r.offset) for r in consumer.poll(timeout_ms=200)}
        assert assigned == [[TopicPartition("slow", 0)]]  # one assignment: no rebalance


def test_a_static_member_restarts_without_a_rebalance(node: Node) -> None:
    bs = bootstrap(node)
    with Admin(bs) as admin:
        admin.create_topic("static", partitions=4)
        a = Member(bs, "a", "static", group_instance_id="host-a").start()
        b = Member(bs, "b", "static", group_instance_id="host-b").start()
        again = Member(bs, "a", "static", group_instance_id="host-a")
        try:
            picture = wait_stable(admin, [a, b], 4, "static")
            before = admin.describe_group(GROUP)
            a.close()  # a static member does not send LEAVE_GROUP
            d = admin.describe_group(GROUP)
            assert (d.state, len(d.members), d.generation) == ("Stable", 2, before.generation)
            again.start()  # within its session timeout
            assert wait_stable(admin, [again, b], 4, "static") == picture
            d = admin.describe_group(GROUP)
            assert d.generation == before.generation  # no rebalance
            ids = {m.instance_id: m.member_id for m in d.members}
            old = {m.instance_id: m.member_id for m in before.members}
            assert ids["host-a"] != old["host-a"] and ids["host-b"] == old["host-b"]
            assert b.assignments == [picture["b"]]  # b was never revoked
            again.close()
            b.close()
        finally:
            for m in (a, b, again):
                m.stop.set()
                if m.thread.is_alive():
                    m.thread.join(DEADLINE_S)
