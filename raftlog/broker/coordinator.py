"""The consumer-group coordinator: Kafka's group protocol on the metadata leader's broker.

One coordinator serves every group: the broker that leads the metadata Raft group. Clients
find it with FIND_COORDINATOR; any other broker answers NOT_COORDINATOR. When metadata
leadership moves, the new leader's coordinator rebuilds every group from the metadata
(generation, members, assignment) and gives each member a fresh session timeout to find it,
so a stable group keeps working across a coordinator's loss without a rebalance.

A group's life (the eager protocol):

- **Empty** → a JOIN_GROUP starts a rebalance: **PreparingRebalance**. Every member must
  rejoin (the others learn it from HEARTBEAT's REBALANCE_IN_PROGRESS) before the join phase
  ends, at the latest after the longest rebalance timeout of the members; a member that did
  not rejoin is dropped.
- The join phase ends: generation + 1, a leader, a strategy all members support (their
  preference order, the leader's first), and for "sticky", "range" and "roundrobin" the
  assignment computed here (``raftlog.broker.assignors``, with the previous assignment for
  sticky). The group record goes into the metadata (``group_put``) before anyone hears the
  result, then **Stable**. For any other strategy the group waits in **CompletingRebalance**
  for the leader's SYNC_GROUP carrying the assignment.
- Stable → a member joins, leaves (LEAVE_GROUP), changes its subscription, misses its
  session timeout (monotonic clock), or a subscribed topic gains partitions: a new rebalance.
  The last member leaving makes the group Empty (its offsets stay).
- Static members (``instance_id``): one that comes back with a new member id within its
  session timeout, subscribing to the same topics, takes over its old id's assignment
  without a rebalance; the old id is fenced.

Offset commits are fenced twice: here (known member, current generation, not while the next
generation is being decided; during PreparingRebalance the current generation still owns its
partitions and commits them before rejoining, as in Kafka) and by the metadata model
(generation and assignment). They go through the bridge's commit folder, many members'
commits per metadata command.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from raftlog.broker.assignors import STRATEGIES, assign
from raftlog.errors import ErrorCode, RaftlogError
from raftlog.metadata.bridge import MetadataBridge
from raftlog.wire.groups import (
    CommitTopicResult,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    FetchedOffset,
    FetchedTopic,
    GroupDescription,
    GroupListing,
    GroupMemberInfo,
    GroupResult,
    HeartbeatRequest,
    HeartbeatResponse,
    JoinGroupRequest,
    JoinGroupResponse,
    LeaveGroupRequest,
    LeaveGroupResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    MemberDescription,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    PartitionResult,
    SyncGroupRequest,
    SyncGroupResponse,
    TopicPartitions,
)

log = logging.getLogger("raftlog.coordinator")

TICK_S = 0.05
INITIAL_REBALANCE_DELAY_S = 0.5
"""How long the first join of an empty group waits for more members (Kafka's
group.initial.rebalance.delay.ms, 3 s there), so consumers started together share one
rebalance instead of one each."""
PERSIST_TIMEOUT_S = 10.0
Assignment = dict[str, list[int]]


class GroupError(RaftlogError):
    """A group request refused as a whole (answered with ``ErrorResponse``)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class _Member:
    member_id: str
    instance_id: str | None
    client_id: str
    topics: tuple[str, ...]
    strategies: tuple[str, ...]
    session_timeout_s: float
    rebalance_timeout_s: float
    last_seen: float
    joined: bool = False
    assignment: Assignment = field(default_factory=dict)


@dataclass(slots=True)
class _Group:
    group_id: str
    generation: int = 0
    state: str = "Empty"
    leader: str = ""
    strategy: str = ""
    members: dict[str, _Member] = field(default_factory=dict)
    join_deadline: float = 0.0
    join_done: trio.Event = field(default_factory=trio.Event)
    sync_done: trio.Event = field(default_factory=trio.Event)
    completing: bool = False
    hold_until: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    """Partition counts of the subscribed topics the current assignment was made for."""


def _tp(assignment: Assignment) -> tuple[TopicPartitions, ...]:
    return tuple(TopicPartitions(t, tuple(ps)) for t, ps in sorted(assignment.items()) if ps)


class Coordinator:
    """See the module docstring. ``is_coordinator`` says whether this broker leads the
    metadata group now; ``run`` must run in the broker's nursery."""

    def __init__(
        self,
        broker_id: int,
        bridge: MetadataBridge,
        is_coordinator: Callable[[], bool],
        clock_ms: Callable[[], int],
    ) -> None:
        self.broker_id = broker_id
        self.bridge = bridge
        self.is_coordinator = is_coordinator
        self.clock_ms = clock_ms
        self._groups: dict[str, _Group] | None = None  # None: not the coordinator
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            while True:
                await trio.sleep(TICK_S)
                if not self.is_coordinator():
                    if self._groups is not None:
                        log.info("event=coordinator_stopped broker=%d", self.broker_id)
                        self._drop_all()
                    continue
                if self._groups is None:
                    try:
                        await self._take_over()
                    except RaftlogError as e:
                        log.info("event=coordinator_takeover_retry error=%s", e)
                        continue
                self._tick()

    async def _take_over(self) -> None:
        """Rebuild every group from the metadata (after a barrier: every write of the
        previous coordinator is in the image)."""
        image = await self.bridge.barrier(timeout_s=PERSIST_TIMEOUT_S)
        now = trio.current_time()
        groups: dict[str, _Group] = {}
        for gid, g in image.groups.items():
            group = _Group(gid, generation=g.generation, leader=g.leader, strategy=g.protocol)
            for mid, m in g.members.items():
                group.members[mid] = _Member(
                    member_id=mid,
                    instance_id=m.instance_id,
                    client_id=m.client_id,
                    topics=tuple(m.subscription),
                    strategies=(g.protocol,) if g.protocol else STRATEGIES,
                    session_timeout_s=m.session_timeout_ms / 1000,
                    rebalance_timeout_s=m.session_timeout_ms / 1000,
                    last_seen=now,
                    assignment={t: list(ps) for t, ps in m.assignment.items()},
                )
            group.counts = self._counts(group)
            if not group.members:
                group.state = "Empty"
            elif g.state == "Stable":
                group.state = "Stable"
                group.join_done.set()
                group.sync_done.set()
            else:  # the previous coordinator was mid-rebalance: start it again
                self._prepare_rebalance(group, now, "coordinator moved mid-rebalance")
            groups[gid] = group
        self._groups = groups
        log.info("event=coordinator_started broker=%d groups=%d", self.broker_id, len(groups))

    def _drop_all(self) -> None:
        groups, self._groups = self._groups or {}, None
        for g in groups.values():
            g.join_done.set()  # waiters find no group and answer NOT_COORDINATOR
            g.sync_done.set()

    def _tick(self) -> None:
        assert self._groups is not None
        now = trio.current_time()
        for group in list(self._groups.values()):
            # a member waiting in JOIN_GROUP cannot heartbeat: it is alive until the join
            # phase ends (as in Kafka); the phase itself ends at the rebalance timeout
            expired = [
                m
                for m in group.members.values()
                if now - m.last_seen > m.session_timeout_s
                and not (group.state == "PreparingRebalance" and m.joined)
            ]
            for m in expired:
                log.info("event=member_expired group=%s member=%s", group.group_id, m.member_id)
                self._remove_member(group, m.member_id, now, "session timeout")
            if group.state == "PreparingRebalance" and not group.completing:
                if now >= group.hold_until and (
                    all(m.joined for m in group.members.values()) or now >= group.join_deadline
                ):
                    self._complete_join_soon(group)
            elif group.state == "Stable" and group.counts != self._counts(group):
                self._prepare_rebalance(group, now, "a subscribed topic changed")

    # ------------------------------------------------------------------ helpers

    def _counts(self, group: _Group) -> dict[str, int]:
        topics = self.bridge.image().topics
        wanted = {t for m in group.members.values() for t in m.topics}
        return {t: topics[t].partition_count for t in sorted(wanted) if t in topics}

    def _group(self, group_id: str, *, create: bool = False) -> _Group:
        if self._groups is None or not self.is_coordinator():
            raise GroupError(
                ErrorCode.NOT_COORDINATOR,
                f"broker {self.broker_id} is not the group coordinator; find it again",
            )
        group = self._groups.get(group_id)
        if group is None:
            if not create:
                raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"group {group_id!r} has no members")
            stored = self.bridge.image().groups.get(group_id)
            group = _Group(group_id, generation=stored.generation if stored else 0)
            self._groups[group_id] = group
        return group

    def _member(self, group: _Group, member_id: str, generation: int | None) -> _Member:
        m = group.members.get(member_id)
        if m is None:
            raise GroupError(
                ErrorCode.UNKNOWN_MEMBER_ID,
                f"{member_id[:60]!r} is not a member of group {group.group_id!r} (expired, "
                "left or replaced); join again",
            )
        if generation is not None and generation != group.generation:
            raise GroupError(
                ErrorCode.ILLEGAL_GENERATION,
                f"group {group.group_id!r} is at generation {group.generation}, the request "
                f"carries {generation}; join again",
            )
        m.last_seen = trio.current_time()
        return m

    def _prepare_rebalance(self, group: _Group, now: float, why: str) -> None:
        if group.state != "PreparingRebalance":
            log.info("event=rebalance group=%s why=%s", group.group_id, why)
            if group.state == "Empty":
                group.hold_until = now + INITIAL_REBALANCE_DELAY_S
            group.state = "PreparingRebalance"
            group.join_done = trio.Event()
            group.sync_done.set()  # sync waiters of the old generation answer at once
            group.sync_done = trio.Event()
            for m in group.members.values():
                m.joined = False
            # the phase ends at the latest after the longest rebalance timeout of the
            # members it starts with (not pushed back by later joins, leaves or expiries)
            timeouts = [m.rebalance_timeout_s for m in group.members.values()] or [0.0]
            group.join_deadline = now + max(timeouts)

    def _remove_member(self, group: _Group, member_id: str, now: float, why: str) -> None:
        if group.members.pop(member_id, None) is None:
            return
        if group.members:
            self._prepare_rebalance(group, now, f"member left ({why})")
        else:
            self._prepare_rebalance(group, now, f"last member left ({why})")
            self._complete_join_soon(group)

    def _complete_join_soon(self, group: _Group) -> None:
        assert self._nursery is not None
        if group.completing:
            return  # the tick completes the next phase once this one is written
        group.completing = True
        self._nursery.start_soon(self._complete_join, group)

    async def _complete_join(self, group: _Group) -> None:
        """End the join phase: drop who did not rejoin, then the next generation."""
        try:
            for mid in [mid for mid, m in group.members.items() if not m.joined]:
                log.info("event=member_dropped group=%s member=%s", group.group_id, mid)
                del group.members[mid]
            group.generation += 1
            now = trio.current_time()
            for m in group.members.values():
                m.last_seen = now  # their session runs from the end of the join phase
            if not group.members:
                group.state, group.leader, group.strategy = "Empty", "", ""
                group.counts = {}
                await self._persist(group)
                return
            if group.leader not in group.members:
                group.leader = min(group.members)
            group.strategy = self._strategy(group)
            group.counts = self._counts(group)
            if group.strategy in STRATEGIES:
                self._compute(group)
                group.state = "Stable"
                await self._persist(group)
                group.sync_done.set()
            else:
                group.state = "CompletingRebalance"
            log.info(
                "event=generation group=%s generation=%d members=%d strategy=%s",
                group.group_id, group.generation, len(group.members), group.strategy,
            )  # fmt: skip
        except RaftlogError as e:
            log.warning("event=group_persist_failed group=%s error=%s", group.group_id, e)
            self._drop_all()  # a coordinator that cannot write is no coordinator
        finally:
            group.completing = False
            group.join_done.set()

    def _strategy(self, group: _Group) -> str:
        leader = group.members[group.leader]
        for s in leader.strategies:
            if all(s in m.strategies for m in group.members.values()):
                return s
        raise GroupError(
            ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
            f"the members of group {group.group_id!r} share no assignment strategy",
        )

    def _compute(self, group: _Group) -> None:
        result = assign(
            group.strategy,
            {mid: m.topics for mid, m in group.members.items()},
            group.counts,
            {mid: m.assignment for mid, m in group.members.items()},
        )
        for mid, m in group.members.items():
            m.assignment = {t: list(ps) for t, ps in result.get(mid, {}).items()}

    async def _persist(self, group: _Group) -> None:
        members = {
            mid: {
                "client_id": m.client_id,
                "host": "",
                "instance_id": m.instance_id,
                "subscription": list(m.topics),
                "session_timeout_ms": int(m.session_timeout_s * 1000),
            }
            for mid, m in group.members.items()
        }
        command = {
            "op": "group_put",
            "group_id": group.group_id,
            "generation": group.generation,
            "protocol_type": "consumer",
            "protocol": group.strategy,
            "leader": group.leader,
            "state": group.state,
            "members": members,
            "assignment": {mid: m.assignment for mid, m in group.members.items()},
        }
        result = await self.bridge.submit(command, timeout_s=PERSIST_TIMEOUT_S)
        if not result.get("ok"):
            raise GroupError(
                ErrorCode(int(result.get("code", ErrorCode.UNKNOWN))), str(result.get("message"))
            )

    # ------------------------------------------------------------------ JOIN / SYNC

    async def join(self, req: JoinGroupRequest) -> JoinGroupResponse:
        group = self._group(req.group_id, create=True)
        while group.completing:  # a generation is being written: join the next one
            await group.join_done.wait()
            group = self._group(req.group_id, create=True)
        now = trio.current_time()
        member_id = req.member_id
        if member_id == "" and req.instance_id is not None:
            old = next(
                (m for m in group.members.values() if m.instance_id == req.instance_id), None
            )
            if old is not None and group.state == "Stable" and old.topics == tuple(req.topics):
                return await self._static_rejoin(group, old, req)
            if old is not None:
                del group.members[old.member_id]
        if member_id == "":
            member_id = f"{req.client_id or 'consumer'}-{uuid.uuid4().hex[:16]}"
            member = _Member(
                member_id=member_id,
                instance_id=req.instance_id,
                client_id=req.client_id,
                topics=tuple(req.topics),
                strategies=tuple(req.strategies),
                session_timeout_s=req.session_timeout_ms / 1000,
                rebalance_timeout_s=req.rebalance_timeout_ms / 1000,
                last_seen=now,
            )
            group.members[member_id] = member
            self._prepare_rebalance(group, now, f"member {member_id} joined")
        else:
            member = self._member(group, member_id, None)
            changed = member.topics != tuple(req.topics)
            member.topics = tuple(req.topics)
            member.strategies = tuple(req.strategies)
            member.session_timeout_s = req.session_timeout_ms / 1000
            member.rebalance_timeout_s = req.rebalance_timeout_ms / 1000
            if group.state == "Stable" and not changed:
                return self._join_answer(group, member_id)  # nothing to rebalance
            if group.state != "PreparingRebalance" or changed:
                self._prepare_rebalance(group, now, f"member {member_id} rejoined")
        member.joined = True
        done = group.join_done
        if (
            all(m.joined for m in group.members.values())
            and not group.completing
            and now >= group.hold_until
        ):
            self._complete_join_soon(group)
        await done.wait()
        group = self._group(req.group_id)
        if member_id not in group.members:
            raise GroupError(
                ErrorCode.UNKNOWN_MEMBER_ID,
                f"member {member_id} was dropped from group {req.group_id!r} during the "
                "rebalance; join again",
            )
        return self._join_answer(group, member_id)

    def _join_answer(self, group: _Group, member_id: str) -> JoinGroupResponse:
        members: tuple[GroupMemberInfo, ...] = ()
        if member_id == group.leader and group.strategy not in STRATEGIES:
            members = tuple(
                GroupMemberInfo(m.member_id, m.instance_id, m.topics)
                for m in group.members.values()
            )
        return JoinGroupResponse(
            generation=group.generation,
            member_id=member_id,
            leader_id=group.leader,
            strategy=group.strategy or STRATEGIES[0],
            members=members,
        )

    async def _static_rejoin(
        self, group: _Group, old: _Member, req: JoinGroupRequest
    ) -> JoinGroupResponse:
        """A static member back within its session: new id, same partitions, no rebalance."""
        new_id = f"{req.client_id or 'consumer'}-{uuid.uuid4().hex[:16]}"
        del group.members[old.member_id]
        old.member_id = new_id
        old.last_seen = trio.current_time()
        old.session_timeout_s = req.session_timeout_ms / 1000
        old.rebalance_timeout_s = req.rebalance_timeout_ms / 1000
        old.joined = True
        group.members[new_id] = old
        if group.leader not in group.members:
            group.leader = new_id
        await self._persist(group)
        log.info("event=static_rejoin group=%s instance=%s", group.group_id, old.instance_id)
        return self._join_answer(group, new_id)

    async def sync(self, req: SyncGroupRequest) -> SyncGroupResponse:
        group = self._group(req.group_id)
        self._member(group, req.member_id, req.generation)
        if group.state == "PreparingRebalance":
            raise GroupError(ErrorCode.REBALANCE_IN_PROGRESS, "the group is rebalancing; rejoin")
        if group.state == "CompletingRebalance" and req.member_id == group.leader:
            await self._take_leader_assignment(group, req)
        done = group.sync_done
        await done.wait()
        group = self._group(req.group_id)
        member = self._member(group, req.member_id, req.generation)
        if group.state != "Stable":
            raise GroupError(ErrorCode.REBALANCE_IN_PROGRESS, "the group is rebalancing; rejoin")
        return SyncGroupResponse(_tp(member.assignment))

    async def _take_leader_assignment(self, group: _Group, req: SyncGroupRequest) -> None:
        given = {a.member_id: a for a in req.assignments}
        for mid, m in group.members.items():
            a = given.get(mid)
            m.assignment = {t.name: list(t.partitions) for t in a.topics} if a else {}
        group.state = "Stable"
        await self._persist(group)
        group.sync_done.set()

    async def heartbeat(self, req: HeartbeatRequest) -> HeartbeatResponse:
        group = self._group(req.group_id)
        self._member(group, req.member_id, req.generation)
        if group.state == "PreparingRebalance":
            raise GroupError(ErrorCode.REBALANCE_IN_PROGRESS, "the group is rebalancing; rejoin")
        return HeartbeatResponse()

    async def leave(self, req: LeaveGroupRequest) -> LeaveGroupResponse:
        group = self._group(req.group_id)
        if req.member_id in group.members:
            self._remove_member(group, req.member_id, trio.current_time(), "left")
            log.info("event=member_left group=%s member=%s", req.group_id, req.member_id)
        return LeaveGroupResponse()

    # ------------------------------------------------------------------ offsets

    async def commit(self, req: OffsetCommitRequest) -> OffsetCommitResponse:
        simple = req.generation == -1 and req.member_id == ""
        if not simple:
            group = self._group(req.group_id)
            self._member(group, req.member_id, req.generation)
            # as Kafka: members of the current generation may commit while the group
            # prepares a rebalance (eager consumers commit before they rejoin); not while
            # the next generation's assignment is being decided
            if group.state == "CompletingRebalance" or group.completing:
                raise GroupError(
                    ErrorCode.REBALANCE_IN_PROGRESS,
                    "the group is rebalancing: offsets were not committed; rejoin",
                )
        else:
            group = self._group(req.group_id, create=True)
            if group.members:
                raise GroupError(
                    ErrorCode.NON_EMPTY_GROUP,
                    f"group {req.group_id!r} has {len(group.members)} active member(s): only "
                    "its members commit; stop its consumers before resetting offsets",
                )
        now_ms = self.clock_ms()
        offsets = [
            {"topic": t.name, "partition": p.partition, "offset": p.offset,
             "metadata": p.metadata, "commit_ms": now_ms}
            for t in req.topics
            for p in t.partitions
        ]  # fmt: skip
        result = await self.bridge.commit_offsets(
            {"group_id": req.group_id, "generation": req.generation,
             "member_id": req.member_id, "offsets": offsets},
            timeout_s=PERSIST_TIMEOUT_S,
        )  # fmt: skip
        code = ErrorCode.NONE
        message = None
        if not result.get("ok"):
            code = ErrorCode(int(result.get("code", ErrorCode.UNKNOWN)))
            message = str(result.get("message"))
            if code in (ErrorCode.ILLEGAL_GENERATION, ErrorCode.UNKNOWN_MEMBER_ID):
                raise GroupError(code, message)
        return OffsetCommitResponse(
            tuple(
                CommitTopicResult(
                    t.name,
                    tuple(PartitionResult(p.partition, code, message) for p in t.partitions),
                )
                for t in req.topics
            )
        )

    async def fetch_offsets(self, req: OffsetFetchRequest) -> OffsetFetchResponse:
        self._group(req.group_id, create=True)
        stored = self.bridge.image().offsets.get(req.group_id, {})
        by_topic: dict[str, list[FetchedOffset]] = {}
        if req.topics is None:
            for (topic, p), c in stored.items():
                by_topic.setdefault(topic, []).append(FetchedOffset(p, c.offset, c.metadata))
        else:
            for t in req.topics:
                for p in t.partitions:
                    c = stored.get((t.name, p))
                    by_topic.setdefault(t.name, []).append(
                        FetchedOffset(p, -1)
                        if c is None
                        else FetchedOffset(p, c.offset, c.metadata)
                    )
        return OffsetFetchResponse(
            tuple(FetchedTopic(t, tuple(ps)) for t, ps in sorted(by_topic.items()))
        )

    # ------------------------------------------------------------------ admin

    def _all_group_ids(self) -> list[str]:
        assert self._groups is not None
        image = self.bridge.image()
        return sorted(set(self._groups) | set(image.groups) | set(image.offsets))

    async def list_groups(self, req: ListGroupsRequest) -> ListGroupsResponse:
        self._check()
        assert self._groups is not None
        out = []
        for gid in self._all_group_ids():
            g = self._groups.get(gid)
            out.append(GroupListing(gid, g.state if g else "Empty", len(g.members) if g else 0))
        return ListGroupsResponse(tuple(out))

    def _check(self) -> None:
        if self._groups is None or not self.is_coordinator():
            raise GroupError(
                ErrorCode.NOT_COORDINATOR,
                f"broker {self.broker_id} is not the group coordinator; find it again",
            )

    async def describe_groups(self, req: DescribeGroupsRequest) -> DescribeGroupsResponse:
        self._check()
        assert self._groups is not None
        known = set(self._all_group_ids())
        out = []
        for gid in req.group_ids:
            g = self._groups.get(gid)
            if g is None:
                if gid in known:
                    out.append(GroupDescription(gid, state="Empty"))
                else:
                    missing = f"group {gid!r} does not exist"
                    out.append(
                        GroupDescription(gid, error=ErrorCode.GROUP_ID_NOT_FOUND, message=missing)
                    )
                continue
            members = tuple(
                MemberDescription(m.member_id, m.instance_id, m.client_id, "", _tp(m.assignment))
                for m in g.members.values()
            )
            out.append(GroupDescription(gid, g.state, g.generation, g.strategy, g.leader, members))
        return DescribeGroupsResponse(tuple(out))

    async def delete_groups(self, req: DeleteGroupsRequest) -> DeleteGroupsResponse:
        self._check()
        assert self._groups is not None
        out = []
        for gid in req.group_ids:
            g = self._groups.get(gid)
            if g is not None and g.members:
                out.append(GroupResult(gid, ErrorCode.NON_EMPTY_GROUP,
                                       f"group {gid!r} has {len(g.members)} active member(s); "
                                       "stop its consumers first"))  # fmt: skip
                continue
            try:
                result = await self.bridge.submit(
                    {"op": "group_delete", "group_id": gid}, timeout_s=PERSIST_TIMEOUT_S
                )
            except RaftlogError as e:
                out.append(GroupResult(gid, e.code, e.message))
                continue
            if result.get("ok"):
                self._groups.pop(gid, None)
                out.append(GroupResult(gid))
            else:
                code = ErrorCode(int(result.get("code", ErrorCode.UNKNOWN)))
                out.append(GroupResult(gid, code, str(result.get("message"))))
        return DeleteGroupsResponse(tuple(out))

    def describe_for_tests(self) -> dict[str, Any]:
        """Plain state for tests: group id -> (state, generation, members)."""
        return {
            gid: (g.state, g.generation, sorted(g.members))
            for gid, g in (self._groups or {}).items()
        }
