"""Consumer group administration: list, describe, reset the offsets of, and delete groups.

Every request goes to the group coordinator (``raftlog.client.group.Coordinator``: found
with FIND_COORDINATOR, found again when it moves). ``describe_group`` adds to the
coordinator's DESCRIBE_GROUPS the committed offsets (OFFSET_FETCH), the log ends
(LIST_OFFSETS "latest") and the lag; ``reset_offsets`` computes the new offsets here
(LIST_OFFSETS, or the committed ones shifted) and commits them as a commit to a group
without members (generation -1, member id ""): only a group with no active members can be
reset. ``AsyncAdmin`` and ``Admin`` (``raftlog.client.admin``) call these functions; ``Admin``
documents each one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from raftlog.client.async_consumer import AsyncConsumer
from raftlog.client.cluster import Cluster
from raftlog.client.errors import BrokerError, ProtocolError, broker_error
from raftlog.client.group import Coordinator, TopicPartition, commit_offsets, fetch_committed
from raftlog.errors import ErrorCode, RaftlogError
from raftlog.wire import (
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    GroupDescription,
    ListGroupsRequest,
    ListGroupsResponse,
)

log = logging.getLogger("raftlog.client")

ANY_GROUP = "raftlog-admin"
"""The group id LIST_GROUPS finds the coordinator with (one coordinator serves every
group: the metadata leader's broker)."""
_FENCED_RESET = frozenset(
    {
        ErrorCode.NON_EMPTY_GROUP,
        ErrorCode.UNKNOWN_MEMBER_ID,
        ErrorCode.ILLEGAL_GENERATION,
        ErrorCode.REBALANCE_IN_PROGRESS,
    }
)


@dataclass(frozen=True, slots=True)
class GroupOverview:
    """One group as ``list_groups`` shows it: its state ("Empty", "Stable",
    "PreparingRebalance", "CompletingRebalance", "Dead") and how many members it has."""

    group_id: str
    state: str
    members: int


@dataclass(frozen=True, slots=True)
class GroupMemberDescription:
    """A member: its id (given by the coordinator), static instance id (None for a dynamic
    member), client id, host, and the partitions assigned to it."""

    member_id: str
    instance_id: str | None
    client_id: str
    host: str
    assignment: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True)
class GroupPartitionOffsets:
    """One partition of a group: its committed offset (None: none committed), the log end
    (the high watermark; None when it could not be read), ``lag`` = log end - committed
    (None when either is unknown), and the member it is assigned to (None: nobody)."""

    topic: str
    partition: int
    committed: int | None
    log_end: int | None
    lag: int | None
    member_id: str | None


@dataclass(frozen=True, slots=True)
class ConsumerGroupDescription:
    """What ``describe_group`` says of a group: state, generation, strategy, leader,
    members, and per partition (assigned or with a committed offset, sorted) the offsets
    and the lag."""

    group_id: str
    state: str
    generation: int
    strategy: str
    leader_id: str
    members: tuple[GroupMemberDescription, ...]
    partitions: tuple[GroupPartitionOffsets, ...]

    @property
    def lag(self) -> int:
        """The total lag over the partitions whose lag is known."""
        return sum(p.lag for p in self.partitions if p.lag is not None)


async def list_groups(cluster: Cluster) -> list[GroupOverview]:
    """Every group with its state and member count; see ``Admin.list_groups``."""
    coordinator = Coordinator(cluster, ANY_GROUP)
    answer = await coordinator.request(ListGroupsRequest())
    if not isinstance(answer, ListGroupsResponse):
        raise ProtocolError(f"LIST_GROUPS answered with {type(answer).__name__}")
    groups = sorted(answer.groups, key=lambda g: g.group_id)
    return [GroupOverview(g.group_id, g.state, g.members) for g in groups]


async def _group(coordinator: Coordinator, group_id: str) -> GroupDescription:
    answer = await coordinator.request(DescribeGroupsRequest((group_id,)))
    if not isinstance(answer, DescribeGroupsResponse):
        raise ProtocolError(f"DESCRIBE_GROUPS answered with {type(answer).__name__}")
    for g in answer.groups:
        if g.group_id == group_id:
            if g.error != ErrorCode.NONE:
                raise broker_error(g.error, g.message, f"describe group {group_id!r}")
            return g
    raise ProtocolError(f"DESCRIBE_GROUPS answered without group {group_id!r}")


async def _log_ends(cluster: Cluster, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
    """The high watermark of each partition; a topic whose offsets cannot be read
    (deleted, no leader) is left out."""
    offsets = AsyncConsumer(cluster)
    out: dict[TopicPartition, int] = {}
    by_topic: dict[str, list[TopicPartition]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp)
    for topic, parts in sorted(by_topic.items()):
        try:
            out.update(await offsets.end_offsets(parts))
        except RaftlogError as exc:
            log.info("event=group_log_end_unknown topic=%s error=%s", topic, exc)
    return out


async def describe_group(cluster: Cluster, group_id: str) -> ConsumerGroupDescription:
    """A group's members, state, offsets and lag; see ``Admin.describe_group``."""
    coordinator = Coordinator(cluster, group_id)
    g = await _group(coordinator, group_id)
    owner: dict[TopicPartition, str] = {}
    members = []
    for m in g.members:
        assigned = tuple(
            sorted(TopicPartition(t.name, int(p)) for t in m.topics for p in t.partitions)
        )
        owner.update(dict.fromkeys(assigned, m.member_id))
        members.append(
            GroupMemberDescription(m.member_id, m.instance_id, m.client_id, m.host, assigned)
        )
    committed = await fetch_committed(coordinator, group_id, None)
    tps = sorted(set(committed) | set(owner))
    ends = await _log_ends(cluster, tps)
    partitions = []
    for tp in tps:
        done, end = committed.get(tp), ends.get(tp)
        lag = None if done is None or end is None else max(0, end - done)
        partitions.append(
            GroupPartitionOffsets(tp.topic, tp.partition, done, end, lag, owner.get(tp))
        )
    return ConsumerGroupDescription(
        group_id=g.group_id,
        state=g.state,
        generation=g.generation,
        strategy=g.strategy,
        leader_id=g.leader_id,
        members=tuple(sorted(members, key=lambda m: m.member_id)),
        partitions=tuple(partitions),
    )


async def reset_offsets(
    cluster: Cluster,
    group_id: str,
    topic: str,
    to: str | None = None,
    *,
    timestamp_ms: int | None = None,
    shift: int | None = None,
    partitions: Sequence[int] | None = None,
    dry_run: bool = False,
) -> dict[TopicPartition, int]:
    """Move a group's committed offsets; see ``Admin.reset_offsets``."""
    given = [x for x in (to, timestamp_ms, shift) if x is not None]
    if len(given) != 1:
        raise ValueError(
            "reset_offsets needs exactly one of to='earliest'|'latest', timestamp_ms=, shift="
        )
    if to is not None and to not in ("earliest", "latest"):
        raise ValueError(f"to must be 'earliest' or 'latest', not {to!r}")
    if timestamp_ms is not None and timestamp_ms < 0:
        raise ValueError(f"timestamp_ms must be ms since the epoch, not {timestamp_ms}")
    coordinator = Coordinator(cluster, group_id)

    def not_empty(members: Sequence[str]) -> BrokerError:
        shown = ", ".join(members[:5]) + (" ..." if len(members) > 5 else "")
        return broker_error(
            ErrorCode.NON_EMPTY_GROUP,
            f"the group has {len(members)} active member(s) ({shown}); stop its "
            "consumers (or wait for their session timeout) before resetting offsets",
            f"reset offsets of group {group_id!r}",
        )

    try:
        g = await _group(coordinator, group_id)
    except BrokerError as exc:
        if exc.code != ErrorCode.GROUP_ID_NOT_FOUND:
            raise
    else:
        if g.members:
            raise not_empty([m.member_id for m in g.members])
    if partitions is None:
        meta = await cluster.topic(topic, refresh=True)
        ids = sorted(int(p.partition) for p in meta.partitions)
    else:
        ids = sorted(set(partitions))
        if not ids:
            raise ValueError("partitions must name at least one partition (or be None)")
    tps = [TopicPartition(topic, p) for p in ids]
    offsets = AsyncConsumer(cluster)
    targets: dict[TopicPartition, int]
    if to == "earliest":
        targets = await offsets.beginning_offsets(tps)
    elif to == "latest":
        targets = await offsets.end_offsets(tps)
    elif timestamp_ms is not None:
        found = await offsets.offsets_for_times(dict.fromkeys(tps, timestamp_ms))
        ends = await offsets.end_offsets([tp for tp, f in found.items() if f is None])
        targets = {tp: ends[tp] if f is None else f.offset for tp, f in found.items()}
    else:
        assert shift is not None
        committed = await fetch_committed(coordinator, group_id, tps)
        missing = [f"{tp.topic}-{tp.partition}" for tp, o in committed.items() if o is None]
        if missing:
            raise ValueError(
                f"cannot shift the offsets of group {group_id!r}: nothing is committed "
                f"for {', '.join(missing[:10])}; reset those to 'earliest'/'latest' first"
            )
        starts = await offsets.beginning_offsets(tps)
        ends = await offsets.end_offsets(tps)
        targets = {}
        for tp in tps:
            done = committed[tp]
            assert done is not None
            targets[tp] = min(max(done + shift, starts[tp]), ends[tp])
    targets = dict(sorted(targets.items()))
    if not dry_run:
        try:
            await commit_offsets(coordinator, group_id, targets)
        except BrokerError as exc:
            if exc.code not in _FENCED_RESET:
                raise
            raise not_empty(["a consumer joined meanwhile"]) from exc
    return targets


async def delete_group(cluster: Cluster, group_id: str) -> None:
    """Delete a group and its offsets; see ``Admin.delete_group``."""
    coordinator = Coordinator(cluster, group_id)
    answer = await coordinator.request(DeleteGroupsRequest((group_id,)))
    if not isinstance(answer, DeleteGroupsResponse):
        raise ProtocolError(f"DELETE_GROUPS answered with {type(answer).__name__}")
    for r in answer.groups:
        if r.group_id == group_id:
            if r.error != ErrorCode.NONE:
                raise broker_error(r.error, r.message, f"delete group {group_id!r}")
            return
    raise ProtocolError(f"DELETE_GROUPS answered without group {group_id!r}")
