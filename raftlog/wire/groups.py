"""The consumer-group APIs of the native protocol (Kafka's group protocol, in CBOR).

====  ================  ===========================================================
key   api               what it does
====  ================  ===========================================================
12    FIND_COORDINATOR  which broker coordinates groups (the metadata leader's)
13    JOIN_GROUP        join or rejoin; answered when the rebalance's join phase ends
                        (every known member rejoined, or the rebalance timeout passed)
14    SYNC_GROUP        this member's partitions for the generation; the leader sends
                        the assignment only when the group uses a client-side strategy
15    HEARTBEAT         keeps the member alive; REBALANCE_IN_PROGRESS means rejoin
16    LEAVE_GROUP       leave now (a rebalance starts without waiting for expiry)
17    OFFSET_COMMIT     committed offsets, fenced by generation and assignment;
                        generation -1 and member "" is a commit to an empty group
                        (``assign()`` consumers, admin resets)
18    OFFSET_FETCH      committed offsets of a group (some partitions, or all)
19    LIST_GROUPS       every group with its state
20    DESCRIBE_GROUPS   members, their assignments, generation, strategy
21    DELETE_GROUPS     delete empty groups and their offsets
====  ================  ===========================================================

A request the coordinator refuses as a whole (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE,
UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID, ...) is
answered with ``ErrorResponse``; results about one partition or one group carry their own
``error``. Every list is capped (members, topics, partitions) and strings are at most 255
characters, like topic names.
"""

# wire() returns dataclasses.field(metadata=...), which ruff cannot see through
# ruff: noqa: RUF009

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from raftlog.errors import ErrorCode
from raftlog.types import NodeId
from raftlog.wire.messages import (
    MESSAGE,
    NODE,
    PARTITION,
    TIMEOUT_MS,
    TOPICS_PER_REQUEST_MAX,
    ApiKey,
    ResultMixin,
)
from raftlog.wire.schema import (
    INT32_MAX,
    INT64_MAX,
    Code,
    Int,
    ListOf,
    Opt,
    Str,
    Struct,
    Topic,
    WireMessage,
    wire,
)

GROUP_ID = Str(min_chars=1)
MEMBER_ID = Str()
"""A member id; "" for a new member (JOIN_GROUP) or a simple commit (OFFSET_COMMIT)."""
MEMBERS_MAX = 1_000
GROUPS_PER_REQUEST_MAX = 1_000
GROUPS_LISTED_MAX = 100_000
STRATEGIES_MAX = 8
PARTITIONS_MAX = 10_000
OFFSET_METADATA_CHARS_MAX = 4096
SESSION_TIMEOUT_MS = Int(1_000, 30 * 60 * 1000)
GENERATION = Int(-1, INT32_MAX)
PARTITION_LIST = ListOf(PARTITION, PARTITIONS_MAX, unique=lambda p: p)


def _name(item: Any) -> object:
    return item.name


def _topics(spec: type[Any], max_items: int = TOPICS_PER_REQUEST_MAX, min_items: int = 0) -> Any:
    return wire(ListOf(Struct(spec), max_items, min_items=min_items, unique=_name), default=())


@dataclass(frozen=True, slots=True)
class TopicPartitions:
    """Some partitions of one topic (an assignment, or what to fetch offsets of)."""

    name: str = wire(Topic())
    partitions: tuple[int, ...] = wire(PARTITION_LIST)


# ------------------------------------------------------------------ FIND_COORDINATOR


@dataclass(frozen=True, slots=True)
class FindCoordinatorRequest(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.FIND_COORDINATOR
    group_id: str = wire(GROUP_ID)


@dataclass(frozen=True, slots=True)
class FindCoordinatorResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.FIND_COORDINATOR
    node_id: NodeId = wire(NODE)
    host: str = wire(Str(min_chars=1))
    port: int = wire(Int(1, 65535))


# ------------------------------------------------------------------ JOIN_GROUP


@dataclass(frozen=True, slots=True)
class JoinGroupRequest(WireMessage):
    """``strategies``: the assignment strategies this member can use, preferred first
    ("sticky", "range", "roundrobin" are computed by the coordinator; any other name means
    the group's leader computes the assignment and sends it with SYNC_GROUP)."""

    API_KEY: ClassVar[ApiKey] = ApiKey.JOIN_GROUP
    group_id: str = wire(GROUP_ID)
    topics: tuple[str, ...] = wire(
        ListOf(Topic(), TOPICS_PER_REQUEST_MAX, min_items=1, unique=lambda t: t)
    )
    member_id: str = wire(MEMBER_ID, default="")
    instance_id: str | None = wire(Opt(Str(min_chars=1)), default=None)
    client_id: str = wire(Str(), default="")
    session_timeout_ms: int = wire(SESSION_TIMEOUT_MS, default=10_000)
    rebalance_timeout_ms: int = wire(TIMEOUT_MS, default=30_000)
    strategies: tuple[str, ...] = wire(
        ListOf(Str(min_chars=1), STRATEGIES_MAX, min_items=1, unique=lambda s: s),
        default=("sticky", "range", "roundrobin"),
    )


@dataclass(frozen=True, slots=True)
class GroupMemberInfo:
    member_id: str = wire(MEMBER_ID)
    instance_id: str | None = wire(Opt(Str(min_chars=1)), default=None)
    topics: tuple[str, ...] = wire(ListOf(Topic(), TOPICS_PER_REQUEST_MAX), default=())


@dataclass(frozen=True, slots=True)
class JoinGroupResponse(WireMessage):
    """``members`` is filled for the leader of a client-side strategy only."""

    API_KEY: ClassVar[ApiKey] = ApiKey.JOIN_GROUP
    generation: int = wire(GENERATION)
    member_id: str = wire(MEMBER_ID)
    leader_id: str = wire(MEMBER_ID)
    strategy: str = wire(Str(min_chars=1))
    members: tuple[GroupMemberInfo, ...] = wire(
        ListOf(Struct(GroupMemberInfo), MEMBERS_MAX), default=()
    )


# ------------------------------------------------------------------ SYNC_GROUP


@dataclass(frozen=True, slots=True)
class MemberAssignment:
    member_id: str = wire(MEMBER_ID)
    topics: tuple[TopicPartitions, ...] = _topics(TopicPartitions)


@dataclass(frozen=True, slots=True)
class SyncGroupRequest(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.SYNC_GROUP
    group_id: str = wire(GROUP_ID)
    generation: int = wire(GENERATION)
    member_id: str = wire(MEMBER_ID)
    assignments: tuple[MemberAssignment, ...] = wire(
        ListOf(Struct(MemberAssignment), MEMBERS_MAX, unique=lambda m: m.member_id), default=()
    )


@dataclass(frozen=True, slots=True)
class SyncGroupResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.SYNC_GROUP
    topics: tuple[TopicPartitions, ...] = _topics(TopicPartitions)


# ------------------------------------------------------------------ HEARTBEAT / LEAVE_GROUP


@dataclass(frozen=True, slots=True)
class HeartbeatRequest(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.HEARTBEAT
    group_id: str = wire(GROUP_ID)
    generation: int = wire(GENERATION)
    member_id: str = wire(MEMBER_ID)


@dataclass(frozen=True, slots=True)
class HeartbeatResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.HEARTBEAT


@dataclass(frozen=True, slots=True)
class LeaveGroupRequest(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.LEAVE_GROUP
    group_id: str = wire(GROUP_ID)
    member_id: str = wire(MEMBER_ID)


@dataclass(frozen=True, slots=True)
class LeaveGroupResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.LEAVE_GROUP


# ------------------------------------------------------------------ OFFSET_COMMIT / FETCH


@dataclass(frozen=True, slots=True)
class CommitPartition:
    partition: int = wire(PARTITION)
    offset: int = wire(Int(0, INT64_MAX))
    metadata: str = wire(Str(OFFSET_METADATA_CHARS_MAX), default="")


@dataclass(frozen=True, slots=True)
class CommitTopic:
    name: str = wire(Topic())
    partitions: tuple[CommitPartition, ...] = wire(
        ListOf(Struct(CommitPartition), PARTITIONS_MAX, min_items=1, unique=lambda p: p.partition)
    )


@dataclass(frozen=True, slots=True)
class OffsetCommitRequest(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.OFFSET_COMMIT
    group_id: str = wire(GROUP_ID)
    topics: tuple[CommitTopic, ...] = _topics(CommitTopic, min_items=1)
    generation: int = wire(GENERATION, default=-1)
    member_id: str = wire(MEMBER_ID, default="")


@dataclass(frozen=True, slots=True)
class PartitionResult(ResultMixin):
    partition: int = wire(PARTITION)
    error: ErrorCode = wire(Code(), default=ErrorCode.NONE)
    message: str | None = wire(MESSAGE, default=None)


@dataclass(frozen=True, slots=True)
class CommitTopicResult:
    name: str = wire(Topic())
    partitions: tuple[PartitionResult, ...] = wire(
        ListOf(Struct(PartitionResult), PARTITIONS_MAX, unique=lambda p: p.partition)
    )


@dataclass(frozen=True, slots=True)
class OffsetCommitResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.OFFSET_COMMIT
    topics: tuple[CommitTopicResult, ...] = _topics(CommitTopicResult)


@dataclass(frozen=True, slots=True)
class OffsetFetchRequest(WireMessage):
    """``topics`` None: every partition the group has an offset for."""

    API_KEY: ClassVar[ApiKey] = ApiKey.OFFSET_FETCH
    group_id: str = wire(GROUP_ID)
    topics: tuple[TopicPartitions, ...] | None = wire(
        Opt(ListOf(Struct(TopicPartitions), TOPICS_PER_REQUEST_MAX, unique=_name)), default=None
    )


@dataclass(frozen=True, slots=True)
class FetchedOffset:
    """``offset`` -1: nothing committed for this partition."""

    partition: int = wire(PARTITION)
    offset: int = wire(Int(-1, INT64_MAX))
    metadata: str = wire(Str(OFFSET_METADATA_CHARS_MAX), default="")


@dataclass(frozen=True, slots=True)
class FetchedTopic:
    name: str = wire(Topic())
    partitions: tuple[FetchedOffset, ...] = wire(
        ListOf(Struct(FetchedOffset), PARTITIONS_MAX, unique=lambda p: p.partition)
    )


@dataclass(frozen=True, slots=True)
class OffsetFetchResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.OFFSET_FETCH
    topics: tuple[FetchedTopic, ...] = _topics(FetchedTopic)


# ------------------------------------------------------------------ LIST / DESCRIBE / DELETE


@dataclass(frozen=True, slots=True)
class ListGroupsRequest(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.LIST_GROUPS


@dataclass(frozen=True, slots=True)
class GroupListing:
    group_id: str = wire(GROUP_ID)
    state: str = wire(Str())
    members: int = wire(Int(0, MEMBERS_MAX))


@dataclass(frozen=True, slots=True)
class ListGroupsResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.LIST_GROUPS
    groups: tuple[GroupListing, ...] = wire(
        ListOf(Struct(GroupListing), GROUPS_LISTED_MAX), default=()
    )


@dataclass(frozen=True, slots=True)
class DescribeGroupsRequest(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.DESCRIBE_GROUPS
    group_ids: tuple[str, ...] = wire(
        ListOf(GROUP_ID, GROUPS_PER_REQUEST_MAX, min_items=1, unique=lambda g: g)
    )


@dataclass(frozen=True, slots=True)
class MemberDescription:
    member_id: str = wire(MEMBER_ID)
    instance_id: str | None = wire(Opt(Str(min_chars=1)), default=None)
    client_id: str = wire(Str(), default="")
    host: str = wire(Str(), default="")
    topics: tuple[TopicPartitions, ...] = _topics(TopicPartitions)


@dataclass(frozen=True, slots=True)
class GroupDescription(ResultMixin):
    group_id: str = wire(GROUP_ID)
    state: str = wire(Str(), default="Dead")
    generation: int = wire(GENERATION, default=0)
    strategy: str = wire(Str(), default="")
    leader_id: str = wire(MEMBER_ID, default="")
    members: tuple[MemberDescription, ...] = wire(
        ListOf(Struct(MemberDescription), MEMBERS_MAX), default=()
    )
    error: ErrorCode = wire(Code(), default=ErrorCode.NONE)
    message: str | None = wire(MESSAGE, default=None)


@dataclass(frozen=True, slots=True)
class DescribeGroupsResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.DESCRIBE_GROUPS
    groups: tuple[GroupDescription, ...] = wire(
        ListOf(Struct(GroupDescription), GROUPS_PER_REQUEST_MAX), default=()
    )


@dataclass(frozen=True, slots=True)
class DeleteGroupsRequest(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.DELETE_GROUPS
    group_ids: tuple[str, ...] = wire(
        ListOf(GROUP_ID, GROUPS_PER_REQUEST_MAX, min_items=1, unique=lambda g: g)
    )


@dataclass(frozen=True, slots=True)
class GroupResult(ResultMixin):
    group_id: str = wire(GROUP_ID)
    error: ErrorCode = wire(Code(), default=ErrorCode.NONE)
    message: str | None = wire(MESSAGE, default=None)


@dataclass(frozen=True, slots=True)
class DeleteGroupsResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.DELETE_GROUPS
    groups: tuple[GroupResult, ...] = wire(
        ListOf(Struct(GroupResult), GROUPS_PER_REQUEST_MAX), default=()
    )


GROUP_REQUESTS: tuple[type[Any], ...] = (
    FindCoordinatorRequest,
    JoinGroupRequest,
    SyncGroupRequest,
    HeartbeatRequest,
    LeaveGroupRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
    ListGroupsRequest,
    DescribeGroupsRequest,
    DeleteGroupsRequest,
)
GROUP_RESPONSES: tuple[type[Any], ...] = (
    FindCoordinatorResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    OffsetCommitResponse,
    OffsetFetchResponse,
    ListGroupsResponse,
    DescribeGroupsResponse,
    DeleteGroupsResponse,
)
