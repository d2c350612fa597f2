"""The client APIs of the native protocol: one frozen dataclass per request and response.

Every API, with its key (stable: it goes on the wire; never renumber one):

====  =================  ===========================================================
key   api                why it exists
====  =================  ===========================================================
0     HELLO              first frame on a connection: who is calling (client or peer
                         broker), which protocol versions it speaks; the broker answers
                         with its id and the cluster id
1     METADATA           brokers, the metadata leader, topics and their partitions
                         (leader, leader term, replicas, high watermark)
2     PRODUCE            append record batches (acks 0/1/-1); ``acks=0`` gets no answer
3     FETCH              read committed records from an offset; long-polls up to
                         ``max_wait_ms`` until ``min_bytes`` are there
4     LIST_OFFSETS       earliest (-2), latest (-1) or first offset at a timestamp
5     CREATE_TOPICS      see ``raftlog.wire.admin``
6     DELETE_TOPICS      see ``raftlog.wire.admin``
7     DESCRIBE_CONFIGS   see ``raftlog.wire.admin``
8     ALTER_CONFIGS      see ``raftlog.wire.admin``
9     RAFT               broker to broker: partition-Raft messages of many groups in one
                         frame, one way (see ``raftlog.wire.peer``)
11    CREATE_PARTITIONS  see ``raftlog.wire.admin``
12-21 (groups)          FIND_COORDINATOR, JOIN_GROUP, SYNC_GROUP, HEARTBEAT, LEAVE_GROUP,
                        OFFSET_COMMIT, OFFSET_FETCH, LIST_GROUPS, DESCRIBE_GROUPS,
                        DELETE_GROUPS: see ``raftlog.wire.groups``
====  =================  ===========================================================

``ErrorResponse(error, message)`` answers any request that could not be served at all
(unknown API, a body that breaks its schema, a broker-wide failure). Results about one topic
or partition carry their own ``error`` code and optional ``message``; ``retriable`` is
derived from the code (``raftlog.errors.RETRIABLE_CODES``).

Record batches travel in the frame payload: a ``ProducePartition`` lists one or more whole
batches, each checked to be exactly as long as its header says (CRCs are the broker's job);
a ``FetchPartitionResult`` carries its records as one region of zero or more batches. Decoded,
both are ``memoryview`` slices of the frame payload, never copies.
"""

# wire() returns dataclasses.field(metadata=...), which ruff cannot see through
# ruff: noqa: RUF009

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from raftlog.errors import ErrorCode, RaftlogError
from raftlog.storage.record_batch import HEADER_BYTES, peek_size
from raftlog.types import NodeId, Offset, PartitionId, Term, TimestampMs
from raftlog.wire.errors import is_retriable
from raftlog.wire.frames import PROTOCOL_VERSION, Buffer
from raftlog.wire.schema import (
    ERROR_MESSAGE_CHARS_MAX,
    INT32_MAX,
    INT64_MAX,
    Bytes,
    Code,
    Int,
    ListOf,
    OneOf,
    Opt,
    PayloadReader,
    SchemaError,
    Str,
    Struct,
    Text,
    Topic,
    WireMessage,
    wire,
)


class ApiKey(IntEnum):
    """The API of a frame. Stable numbers: never renumber one."""

    HELLO = 0
    METADATA = 1
    PRODUCE = 2
    FETCH = 3
    LIST_OFFSETS = 4
    CREATE_TOPICS = 5
    DELETE_TOPICS = 6
    DESCRIBE_CONFIGS = 7
    ALTER_CONFIGS = 8
    RAFT = 9
    INIT_PRODUCER_ID = 10
    CREATE_PARTITIONS = 11
    FIND_COORDINATOR = 12
    JOIN_GROUP = 13
    SYNC_GROUP = 14
    HEARTBEAT = 15
    LEAVE_GROUP = 16
    OFFSET_COMMIT = 17
    OFFSET_FETCH = 18
    LIST_GROUPS = 19
    DESCRIBE_GROUPS = 20
    DELETE_GROUPS = 21


# ------------------------------------------------------------------ limits and shared specs

TIMEOUT_MS_MAX = 5 * 60 * 1000
FETCH_BYTES_MAX = 64 * 1024 * 1024
TOPICS_PER_REQUEST_MAX = 10_000
PARTITIONS_PER_TOPIC_MAX = 10_000
BATCHES_PER_PARTITION_MAX = 1_000
BROKERS_MAX = 10_000
REPLICAS_MAX = 256
VERSIONS_MAX = 16

EARLIEST_TIMESTAMP = -2
"""``ListOffsetsPartition.timestamp`` asking for the log start offset."""
LATEST_TIMESTAMP = -1
"""``ListOffsetsPartition.timestamp`` asking for the high watermark."""

NODE = Int(0, INT32_MAX)
PARTITION = Int(0, PARTITIONS_PER_TOPIC_MAX - 1)
OFFSET_OR_NONE = Int(-1, INT64_MAX)
TIMESTAMP_OR_NONE = Int(-1, INT64_MAX)
TERM_OR_NONE = Int(-1, INT32_MAX)
TIMEOUT_MS = Int(0, TIMEOUT_MS_MAX)
MESSAGE = Opt(Text(ERROR_MESSAGE_CHARS_MAX))


def _name(item: Any) -> object:
    return item.name


def _partition(item: Any) -> object:
    return item.partition


def _itself(item: Any) -> object:
    return item


class _RecordBatch(Bytes):
    """One whole record batch: at least a header, and exactly as long as it says."""

    __slots__ = ()

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        batch = super().decode(raw, payload)
        if len(batch) < HEADER_BYTES:
            raise SchemaError(f"record batch of {len(batch)} bytes is shorter than its header")
        try:
            size = peek_size(batch)
        except RaftlogError as exc:
            raise SchemaError(exc.message) from None
        if size != len(batch):
            raise SchemaError(f"record batch says {size} bytes but its region has {len(batch)}")
        return batch


class ResultMixin:
    """For results that carry an ``error``: whether retrying may help."""

    __slots__ = ()
    error: ErrorCode

    @property
    def retriable(self) -> bool:
        return is_retriable(self.error)


def partitions_of(spec: type[Any], budget: str = "partitions") -> Any:
    """The ``partitions`` field of a per-topic entry."""
    return wire(
        ListOf(
            Struct(spec),
            PARTITIONS_PER_TOPIC_MAX,
            min_items=1,
            unique=_partition,
            budget=budget,
        )
    )


def topics_of(spec: type[Any], min_items: int = 1) -> Any:
    """The ``topics`` field of a request or response."""
    return wire(ListOf(Struct(spec), TOPICS_PER_REQUEST_MAX, min_items=min_items, unique=_name))


# ------------------------------------------------------------------ errors


@dataclass(frozen=True, slots=True)
class ErrorResponse(ResultMixin, WireMessage):
    """The answer to a request that could not be served at all. Valid for any API key."""

    error: ErrorCode = wire(Code())
    message: str = wire(Text(ERROR_MESSAGE_CHARS_MAX))

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorResponse:
        """A code and a message for any exception; never a traceback."""
        if isinstance(exc, RaftlogError):
            return cls(exc.code, exc.message)
        return cls(ErrorCode.UNKNOWN, f"internal error ({type(exc).__name__}); see broker log")


# ------------------------------------------------------------------ HELLO


AUTH_BYTES_MAX = 64
"""Cap on a peer handshake nonce or proof (they are 32 bytes)."""


def _auth_fields_ok(v: dict[str, Any]) -> str | None:
    for key in ("nonce", "proof"):
        if v.get(key) is not None and len(v[key]) > AUTH_BYTES_MAX:
            return f"{key} is longer than {AUTH_BYTES_MAX} bytes"
    return None


@dataclass(frozen=True, slots=True)
class HelloRequest(WireMessage):
    """``role`` is "client" or "peer"; a peer gives its ``node_id``, a client does not.

    Peers authenticate with the cluster secret by challenge and response (no clocks): the
    first HELLO of a peer carries its ``nonce``; the broker answers with its own nonce and
    a ``proof`` over both; the peer checks it and sends a second HELLO with its ``proof``
    (``raftlog.runtime.transport`` computes them). No Raft message is accepted before."""

    API_KEY: ClassVar[ApiKey] = ApiKey.HELLO
    role: str = wire(Str(choices=("client", "peer")))
    client_id: str = wire(Str())
    versions: tuple[int, ...] = wire(
        ListOf(Int(1, 255), VERSIONS_MAX, min_items=1, unique=_itself),
        default=(PROTOCOL_VERSION,),
    )
    node_id: NodeId | None = wire(Opt(NODE), default=None)
    nonce: Buffer | None = wire(Opt(Bytes()), default=None)
    proof: Buffer | None = wire(Opt(Bytes()), default=None)

    @staticmethod
    def _wire_check(v: dict[str, Any]) -> str | None:
        if v["role"] == "peer" and v["node_id"] is None:
            return "a peer must give its node_id"
        if v["role"] == "client" and v["node_id"] is not None:
            return "a client must not give a node_id"
        return _auth_fields_ok(v)


@dataclass(frozen=True, slots=True)
class HelloResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.HELLO
    broker_id: NodeId = wire(NODE)
    cluster_id: str = wire(Str(min_chars=1))
    version: int = wire(Int(1, 255))
    nonce: Buffer | None = wire(Opt(Bytes()), default=None)
    proof: Buffer | None = wire(Opt(Bytes()), default=None)

    @staticmethod
    def _wire_check(v: dict[str, Any]) -> str | None:
        return _auth_fields_ok(v)


# ------------------------------------------------------------------ METADATA


@dataclass(frozen=True, slots=True)
class MetadataRequest(WireMessage):
    """``topics`` None asks for every topic."""

    API_KEY: ClassVar[ApiKey] = ApiKey.METADATA
    topics: tuple[str, ...] | None = wire(
        Opt(ListOf(Topic(), TOPICS_PER_REQUEST_MAX, unique=_itself)), default=None
    )


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    broker_id: NodeId = wire(NODE)
    host: str = wire(Str(min_chars=1))
    port: int = wire(Int(1, 65535))
    rack: str | None = wire(Opt(Str()), default=None)


@dataclass(frozen=True, slots=True)
class PartitionMetadata(ResultMixin):
    partition: PartitionId = wire(PARTITION)
    leader: NodeId | None = wire(Opt(NODE))
    leader_term: Term = wire(TERM_OR_NONE)
    replicas: tuple[NodeId, ...] = wire(ListOf(NODE, REPLICAS_MAX, unique=_itself))
    high_watermark: Offset | None = wire(Opt(Int(0, INT64_MAX)), default=None)
    error: ErrorCode = wire(Code(), default=ErrorCode.NONE)
    message: str | None = wire(MESSAGE, default=None)


@dataclass(frozen=True, slots=True)
class TopicMetadata(ResultMixin):
    name: str = wire(Topic())
    partitions: tuple[PartitionMetadata, ...] = wire(
        ListOf(
            Struct(PartitionMetadata),
            PARTITIONS_PER_TOPIC_MAX,
            unique=_partition,
            budget="metadata_partitions",
        )
    )
    error: ErrorCode = wire(Code(), default=ErrorCode.NONE)
    message: str | None = wire(MESSAGE, default=None)


@dataclass(frozen=True, slots=True)
class MetadataResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.METADATA
    brokers: tuple[BrokerInfo, ...] = wire(
        ListOf(Struct(BrokerInfo), BROKERS_MAX, unique=lambda b: b.broker_id)
    )
    metadata_leader_id: NodeId | None = wire(Opt(NODE))
    topics: tuple[TopicMetadata, ...] = topics_of(TopicMetadata, min_items=0)


# ------------------------------------------------------------------ PRODUCE


@dataclass(frozen=True, slots=True)
class ProducePartition:
    partition: PartitionId = wire(PARTITION)
    batches: tuple[Buffer, ...] = wire(
        ListOf(_RecordBatch(), BATCHES_PER_PARTITION_MAX, min_items=1)
    )


@dataclass(frozen=True, slots=True)
class ProduceTopic:
    name: str = wire(Topic())
    partitions: tuple[ProducePartition, ...] = partitions_of(ProducePartition)


@dataclass(frozen=True, slots=True)
class ProduceRequest(WireMessage):
    """``acks``: 0 no answer, 1 the leader appended, -1 committed (fsynced on a majority)."""

    API_KEY: ClassVar[ApiKey] = ApiKey.PRODUCE
    acks: int = wire(OneOf(0, 1, -1))
    timeout_ms: int = wire(TIMEOUT_MS)
    topics: tuple[ProduceTopic, ...] = topics_of(ProduceTopic)


@dataclass(frozen=True, slots=True)
class ProducePartitionResult(ResultMixin):
    """``leader_hint`` says where to go on ``NOT_LEADER``; -1 offsets/times mean none."""

    partition: PartitionId = wire(PARTITION)
    error: ErrorCode = wire(Code(), default=ErrorCode.NONE)
    base_offset: Offset = wire(OFFSET_OR_NONE, default=-1)
    log_append_time_ms: TimestampMs = wire(TIMESTAMP_OR_NONE, default=-1)
    log_start_offset: Offset = wire(OFFSET_OR_NONE, default=-1)
    leader_hint: NodeId | None = wire(Opt(NODE), default=None)
    message: str | None = wire(MESSAGE, default=None)


@dataclass(frozen=True, slots=True)
class ProduceTopicResult:
    name: str = wire(Topic())
    partitions: tuple[ProducePartitionResult, ...] = partitions_of(ProducePartitionResult)


@dataclass(frozen=True, slots=True)
class ProduceResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.PRODUCE
    topics: tuple[ProduceTopicResult, ...] = topics_of(ProduceTopicResult)


# ------------------------------------------------------------------ FETCH


@dataclass(frozen=True, slots=True)
class FetchPartition:
    """``current_leader_epoch`` fences a consumer that still follows an older leader."""

    partition: PartitionId = wire(PARTITION)
    fetch_offset: Offset = wire(Int(0, INT64_MAX))
    partition_max_bytes: int = wire(Int(1, FETCH_BYTES_MAX))
    current_leader_epoch: Term | None = wire(Opt(Int(0, INT32_MAX)), default=None)


@dataclass(frozen=True, slots=True)
class FetchTopic:
    name: str = wire(Topic())
    partitions: tuple[FetchPartition, ...] = partitions_of(FetchPartition)


@dataclass(frozen=True, slots=True)
class FetchRequest(WireMessage):
    """Only committed records (below the high watermark) are ever returned."""

    API_KEY: ClassVar[ApiKey] = ApiKey.FETCH
    max_wait_ms: int = wire(TIMEOUT_MS)
    min_bytes: int = wire(Int(0, FETCH_BYTES_MAX))
    max_bytes: int = wire(Int(1, FETCH_BYTES_MAX))
    topics: tuple[FetchTopic, ...] = topics_of(FetchTopic)


@dataclass(frozen=True, slots=True)
class FetchPartitionResult(ResultMixin):
    """``records``: zero or more whole batches back to back, as stored.
    ``last_stable_offset`` equals the high watermark (no transactions yet)."""

    partition: PartitionId = wire(PARTITION)
    error: ErrorCode = wire(Code(), default=ErrorCode.NONE)
    high_watermark: Offset = wire(OFFSET_OR_NONE, default=-1)
    log_start_offset: Offset = wire(OFFSET_OR_NONE, default=-1)
    last_stable_offset: Offset = wire(OFFSET_OR_NONE, default=-1)
    records: Buffer = wire(Bytes(), default=b"")
    leader_hint: NodeId | None = wire(Opt(NODE), default=None)
    message: str | None = wire(MESSAGE, default=None)


@dataclass(frozen=True, slots=True)
class FetchTopicResult:
    name: str = wire(Topic())
    partitions: tuple[FetchPartitionResult, ...] = partitions_of(FetchPartitionResult)


@dataclass(frozen=True, slots=True)
class FetchResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.FETCH
    topics: tuple[FetchTopicResult, ...] = topics_of(FetchTopicResult, min_items=0)


# ------------------------------------------------------------------ LIST_OFFSETS


@dataclass(frozen=True, slots=True)
class ListOffsetsPartition:
    """``timestamp``: ``EARLIEST_TIMESTAMP`` (-2), ``LATEST_TIMESTAMP`` (-1) or ms since
    the epoch (the first offset whose timestamp is at or after it)."""

    partition: PartitionId = wire(PARTITION)
    timestamp: int = wire(Int(EARLIEST_TIMESTAMP, INT64_MAX))


@dataclass(frozen=True, slots=True)
class ListOffsetsTopic:
    name: str = wire(Topic())
    partitions: tuple[ListOffsetsPartition, ...] = partitions_of(ListOffsetsPartition)


@dataclass(frozen=True, slots=True)
class ListOffsetsRequest(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.LIST_OFFSETS
    topics: tuple[ListOffsetsTopic, ...] = topics_of(ListOffsetsTopic)


@dataclass(frozen=True, slots=True)
class ListOffsetsPartitionResult(ResultMixin):
    partition: PartitionId = wire(PARTITION)
    error: ErrorCode = wire(Code(), default=ErrorCode.NONE)
    offset: Offset = wire(OFFSET_OR_NONE, default=-1)
    timestamp: TimestampMs = wire(TIMESTAMP_OR_NONE, default=-1)
    leader_hint: NodeId | None = wire(Opt(NODE), default=None)
    message: str | None = wire(MESSAGE, default=None)


@dataclass(frozen=True, slots=True)
class ListOffsetsTopicResult:
    name: str = wire(Topic())
    partitions: tuple[ListOffsetsPartitionResult, ...] = partitions_of(ListOffsetsPartitionResult)


@dataclass(frozen=True, slots=True)
class ListOffsetsResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.LIST_OFFSETS
    topics: tuple[ListOffsetsTopicResult, ...] = topics_of(ListOffsetsTopicResult)


# ------------------------------------------------------------------ INIT_PRODUCER_ID


@dataclass(frozen=True, slots=True)
class InitProducerIdRequest(WireMessage):
    """An idempotent producer asks for its id (no fields: ids are not tied to a name)."""

    API_KEY: ClassVar[ApiKey] = ApiKey.INIT_PRODUCER_ID
    timeout_ms: int = wire(Int(0, TIMEOUT_MS_MAX), default=30_000)


@dataclass(frozen=True, slots=True)
class InitProducerIdResponse(WireMessage):
    """A failure (the metadata group unreachable) is answered with ``ErrorResponse``."""

    API_KEY: ClassVar[ApiKey] = ApiKey.INIT_PRODUCER_ID
    producer_id: int = wire(Int(0, INT64_MAX))
    producer_epoch: int = wire(Int(0, 32767))


# ------------------------------------------------------------------ shared by admin APIs


@dataclass(frozen=True, slots=True)
class TopicResult(ResultMixin):
    """The outcome for one topic of a create, delete or alter."""

    name: str = wire(Topic())
    error: ErrorCode = wire(Code(), default=ErrorCode.NONE)
    message: str | None = wire(MESSAGE, default=None)
