"""Request handlers: what the broker answers to each client API.

Each handler takes a decoded request and returns its response (``None`` for a PRODUCE with
``acks=0``, which gets no answer). They never raise for a client's mistake: a partition
that cannot be served gets an error code and a message in its own result, and the rest of
the request goes on.

- PRODUCE goes through the partition's Raft group on its leader: every batch is validated
  (header, CRC, ``max.message.bytes``) without decoding its records, its base offset and
  epoch fields are cleared (Raft assigns them), and the answer waits per ``acks``.
- FETCH reads committed data only (below the high watermark), whole batches, and parks
  (long-poll) until some partition has data past its fetch offset or ``max_wait_ms``.
- Admin requests go through the metadata group (``bridge.submit``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from raftlog.config import TOPIC_CONFIG_KEYS, validate_topic_configs
from raftlog.errors import (
    CorruptRecordError,
    ErrorCode,
    InvalidConfigError,
    RaftlogError,
    RecordTooLargeError,
)
from raftlog.metadata.bridge import MetadataBridge
from raftlog.runtime.partition import Acks, ProduceError
from raftlog.runtime.replicas import LocalReplica, ReplicaManager
from raftlog.storage.record_batch import stamp, validate_batch
from raftlog.types import NodeId, Offset, PartitionId, Term
from raftlog.wire import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    AlterConfigsRequest,
    AlterConfigsResponse,
    BrokerInfo,
    ConfigEntry,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    ErrorResponse,
    FetchPartitionResult,
    FetchRequest,
    FetchResponse,
    FetchTopicResult,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    InitProducerIdRequest,
    InitProducerIdResponse,
    ListOffsetsPartitionResult,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopicResult,
    MetadataRequest,
    MetadataResponse,
    PartitionMetadata,
    ProducePartitionResult,
    ProduceRequest,
    ProduceResponse,
    ProduceTopicResult,
    TopicConfigs,
    TopicMetadata,
)
from raftlog.wire.messages import TopicResult

log = logging.getLogger("raftlog.broker")

_ACKS = {0: Acks.NONE, 1: Acks.LEADER, -1: Acks.ALL}
PRODUCER_ID_BLOCK = 1000
"""Producer ids a broker takes from the metadata group at a time (as Kafka's brokers do)."""


class Handlers:
    """The broker's answers; see the module docstring."""

    def __init__(
        self,
        broker_id: int,
        replicas: ReplicaManager,
        bridge: MetadataBridge,
        metadata_leader: Callable[[], int | None],
        clock_ms: Callable[[], int],
        metadata_ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.broker_id = broker_id
        self.replicas = replicas
        self.bridge = bridge
        self.metadata_leader = metadata_leader
        self.clock_ms = clock_ms
        self.metadata_ready = metadata_ready
        self.coordinator: Any = None  # the group coordinator (set by the broker)
        self._producer_ids: list[int] = []  # this broker's unused block, next id last
        self._producer_ids_lock = trio.Lock()

    # ------------------------------------------------------------------ helpers

    def _leader_hint(self, topic: str, partition: int) -> NodeId | None:
        replica = self.replicas.get(topic, partition)
        if replica is not None and replica.driver.leader is not None:
            return NodeId(replica.driver.leader)
        p = self.bridge.image().partition(topic, partition)
        return None if p is None or p.leader is None else NodeId(p.leader)

    def _lead(self, topic: str, partition: int) -> tuple[LocalReplica | None, ErrorCode, str]:
        """The local leader replica, or why it cannot serve."""
        if self.bridge.image().partition(topic, partition) is None:
            return None, *self._missing(f"{topic}/{partition}")
        replica = self.replicas.get(topic, partition)
        if replica is None or replica.driver.role.value != "leader":
            return None, ErrorCode.NOT_LEADER, f"broker {self.broker_id} does not lead it"
        if replica.driver.fenced is not None:
            return None, ErrorCode.KAFKA_STORAGE_ERROR, "the replica is fenced by a disk error"
        return replica, ErrorCode.NONE, ""

    def _missing(self, what: str) -> tuple[ErrorCode, str]:
        """Unknown here: final once this broker's metadata caught up, retriable before
        (a broker that just restarted has not replayed the metadata yet)."""
        if self.metadata_ready():
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"{what} does not exist"
        why = f"broker {self.broker_id} has not caught up with the metadata yet; retry"
        return ErrorCode.LEADER_NOT_AVAILABLE, why

    # ------------------------------------------------------------------ METADATA

    async def metadata(self, req: MetadataRequest) -> MetadataResponse:
        image = self.bridge.image()
        brokers = []
        for b in image.brokers.values():
            host, _, port = b.client_address.rpartition(":")
            brokers.append(BrokerInfo(NodeId(b.broker_id), host, int(port), b.rack))
        names = sorted(image.topics) if req.topics is None else list(req.topics)
        topics = []
        for name in names:
            t = image.topics.get(name)
            if t is None:
                topics.append(TopicMetadata(name, (), *self._missing(f"topic {name!r}")))
                continue
            parts = []
            for p in t.partitions:
                replica = self.replicas.get(name, p.partition)
                leader, term = p.leader, p.leader_term
                if replica is not None:
                    # a local replica knows better than a report that may predate a restart
                    leader, term = replica.driver.leader, int(replica.driver.core.status.term)
                elif leader == self.broker_id:
                    # a report from before a restart: the replica is still opening here
                    leader = None
                parts.append(
                    PartitionMetadata(
                        PartitionId(p.partition),
                        None if leader is None else NodeId(leader),
                        Term(term),
                        tuple(NodeId(r) for r in p.replicas),
                        Offset(replica.driver.commit_offset) if replica else None,
                    )
                )
            topics.append(TopicMetadata(name, tuple(parts)))
        leader = self.metadata_leader()
        return MetadataResponse(
            tuple(brokers), None if leader is None else NodeId(leader), tuple(topics)
        )

    # ------------------------------------------------------------------ PRODUCE

    async def produce(self, req: ProduceRequest) -> ProduceResponse | None:
        acks = _ACKS[req.acks]
        timeout_s = req.timeout_ms / 1000
        results: dict[tuple[str, int], ProducePartitionResult] = {}

        async def one(topic: str, partition: int, batches: tuple[Any, ...]) -> None:
            results[(topic, partition)] = await self._produce_partition(
                topic, partition, batches, acks, timeout_s
            )

        async with trio.open_nursery() as nursery:
            for t in req.topics:
                for p in t.partitions:
                    nursery.start_soon(one, t.name, int(p.partition), p.batches)
        if acks is Acks.NONE:
            return None
        return ProduceResponse(
            tuple(
                ProduceTopicResult(
                    t.name, tuple(results[(t.name, int(p.partition))] for p in t.partitions)
                )
                for t in req.topics
            )
        )

    async def _produce_partition(
        self, topic: str, partition: int, batches: tuple[Any, ...], acks: Acks, timeout_s: float
    ) -> ProducePartitionResult:
        pid = PartitionId(partition)
        replica, code, why = self._lead(topic, partition)
        if replica is None:
            return ProducePartitionResult(
                pid, code, leader_hint=self._leader_hint(topic, partition), message=why
            )
        prepared = []
        for raw in batches:
            buf = bytearray(raw)
            try:
                h = validate_batch(buf, max_bytes=replica.log_config.max_message_bytes)
                if h.size != len(buf):
                    raise CorruptRecordError("a batch region holds more than one batch")
                if h.record_count == 0:
                    raise CorruptRecordError("an empty batch (no records)")
            except (CorruptRecordError, RecordTooLargeError) as e:
                return ProducePartitionResult(pid, e.code, message=e.message)
            stamp(buf, 0, 0, 0)  # Raft assigns offset and epoch; never trust the client's
            # the offsets a batch takes are last_offset_delta + 1, whatever it claims to hold
            prepared.append((bytes(buf), h.last_offset_delta + 1))
        base = -1
        try:
            with trio.fail_after(timeout_s):
                for data, count in prepared:
                    entry = await replica.driver.propose(data, count, acks, timeout_s=timeout_s)
                    if base < 0:
                        base = int(entry.offset)
        except ProduceError as e:
            return ProducePartitionResult(pid, e.code, leader_hint=e.leader_hint, message=e.message)
        except trio.TooSlowError:
            return ProducePartitionResult(
                pid,
                ErrorCode.UNKNOWN_OUTCOME,
                message=f"not acknowledged within {timeout_s:g} s; may or may not be written",
            )
        return ProducePartitionResult(
            pid, base_offset=Offset(base), log_start_offset=Offset(replica.log.log_start_offset())
        )

    # ------------------------------------------------------------------ groups

    async def find_coordinator(
        self, req: FindCoordinatorRequest
    ) -> FindCoordinatorResponse | ErrorResponse:
        """The group coordinator is the metadata leader's broker."""
        leader = self.metadata_leader()
        b = None if leader is None else self.bridge.image().brokers.get(leader)
        if b is None:
            return ErrorResponse(
                ErrorCode.COORDINATOR_NOT_AVAILABLE,
                "the cluster is electing a metadata leader (the group coordinator); retry",
            )
        host, _, port = b.client_address.rpartition(":")
        return FindCoordinatorResponse(NodeId(b.broker_id), host, int(port))

    @staticmethod
    def group_api(fn: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        """A coordinator method as a handler: a refusal is an ``ErrorResponse``."""

        async def call(req: Any) -> Any:
            try:
                return await fn(req)
            except RaftlogError as e:
                return ErrorResponse(e.code, e.message)

        return call

    # ------------------------------------------------------------------ INIT_PRODUCER_ID

    async def init_producer_id(
        self, req: InitProducerIdRequest
    ) -> InitProducerIdResponse | ErrorResponse:
        """A fresh producer id (epoch 0), from this broker's block; a new block of
        ``PRODUCER_ID_BLOCK`` ids comes from the metadata group when the block runs out."""
        async with self._producer_ids_lock:
            if not self._producer_ids:
                try:
                    result = await self.bridge.submit(
                        {"op": "allocate_producer_ids", "broker_id": self.broker_id,
                         "count": PRODUCER_ID_BLOCK},
                        timeout_s=max(req.timeout_ms / 1000, 1.0),
                    )  # fmt: skip
                except RaftlogError as e:
                    return ErrorResponse(e.code, e.message)
                if not result.get("ok"):
                    code = ErrorCode(int(result.get("code", ErrorCode.UNKNOWN)))
                    return ErrorResponse(code, str(result.get("message")))
                first, count = int(result["first"]), int(result["count"])
                self._producer_ids = list(range(first + count - 1, first - 1, -1))
            producer_id = self._producer_ids.pop()
        return InitProducerIdResponse(producer_id=producer_id, producer_epoch=0)

    # ------------------------------------------------------------------ FETCH

    async def fetch(self, req: FetchRequest) -> FetchResponse:
        results = self._fetch_once(req)
        total = sum(len(r.records) for _, r in results)
        errors = any(r.error != ErrorCode.NONE for _, r in results)
        if total < max(req.min_bytes, 1) and req.max_wait_ms > 0 and not errors:
            await self._wait_for_data(req, req.max_wait_ms / 1000)
            results = self._fetch_once(req)
        by_topic: dict[str, list[FetchPartitionResult]] = {}
        for name, r in results:
            by_topic.setdefault(name, []).append(r)
        return FetchResponse(tuple(FetchTopicResult(n, tuple(rs)) for n, rs in by_topic.items()))

    def _fetch_once(self, req: FetchRequest) -> list[tuple[str, FetchPartitionResult]]:
        out = []
        budget = req.max_bytes
        for t in req.topics:
            for p in t.partitions:
                out.append((t.name, self._fetch_partition(t.name, p, budget)))
                budget = max(1, budget - len(out[-1][1].records))
        return out

    def _fetch_partition(self, topic: str, p: Any, budget: int) -> FetchPartitionResult:
        pid = PartitionId(p.partition)
        replica, code, why = self._lead(topic, int(p.partition))
        if replica is None:
            return FetchPartitionResult(
                pid, code, leader_hint=self._leader_hint(topic, int(p.partition)), message=why
            )
        hw = int(replica.driver.commit_offset)
        start = replica.log.log_start_offset()
        common = {"high_watermark": Offset(hw), "log_start_offset": Offset(start),
                  "last_stable_offset": Offset(hw)}  # fmt: skip
        # Out of range is judged against the log end, not the high watermark: a leader
        # elected a moment ago knows its commit point only once it commits an entry of its
        # term, and a consumer's position (at most the old leader's high watermark) may lie
        # above it for that moment. Such a fetch gets no records yet, never a reset.
        end = int(replica.log.log_end_offset())
        if p.fetch_offset < start or p.fetch_offset > max(hw, end):
            return FetchPartitionResult(
                pid,
                ErrorCode.OFFSET_OUT_OF_RANGE,
                message=f"offset {p.fetch_offset} is outside [{start}, {max(hw, end)}]",
                **common,  # type: ignore[arg-type]
            )
        if p.fetch_offset >= hw:
            return FetchPartitionResult(pid, **common)  # type: ignore[arg-type]
        try:
            data = replica.log.read(p.fetch_offset, min(p.partition_max_bytes, budget), hw)
        except RaftlogError as e:
            return FetchPartitionResult(pid, e.code, message=e.message, **common)  # type: ignore[arg-type]
        return FetchPartitionResult(pid, records=data, **common)  # type: ignore[arg-type]

    async def _wait_for_data(self, req: FetchRequest, wait_s: float) -> None:
        async with trio.open_nursery() as nursery:

            async def watch(replica: LocalReplica, offset: int) -> None:
                await replica.driver.wait_commit_beyond(offset, wait_s)
                nursery.cancel_scope.cancel()

            for t in req.topics:
                for p in t.partitions:
                    replica = self.replicas.get(t.name, int(p.partition))
                    if replica is not None:
                        nursery.start_soon(watch, replica, int(p.fetch_offset))
            nursery.start_soon(self._sleep_then_cancel, nursery, wait_s)

    @staticmethod
    async def _sleep_then_cancel(nursery: trio.Nursery, wait_s: float) -> None:
        await trio.sleep(wait_s)
        nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ LIST_OFFSETS

    async def list_offsets(self, req: ListOffsetsRequest) -> ListOffsetsResponse:
        topics = []
        for t in req.topics:
            parts = []
            for p in t.partitions:
                pid = PartitionId(p.partition)
                replica, code, why = self._lead(t.name, int(p.partition))
                if replica is None:
                    hint = self._leader_hint(t.name, int(p.partition))
                    parts.append(ListOffsetsPartitionResult(pid, code, leader_hint=hint,
                                                            message=why))  # fmt: skip
                    continue
                hw = int(replica.driver.commit_offset)
                if p.timestamp == EARLIEST_TIMESTAMP:
                    offset = replica.log.log_start_offset()
                elif p.timestamp == LATEST_TIMESTAMP:
                    offset = hw
                else:
                    found = replica.log.offset_for_timestamp(p.timestamp)
                    offset = hw if found is None or found >= hw else found
                parts.append(ListOffsetsPartitionResult(pid, offset=Offset(offset)))
            topics.append(ListOffsetsTopicResult(t.name, tuple(parts)))
        return ListOffsetsResponse(tuple(topics))

    # ------------------------------------------------------------------ admin

    async def _submit(
        self, command: dict[str, Any], timeout_s: float
    ) -> tuple[ErrorCode, str | None]:
        try:
            result = await self.bridge.submit(command, timeout_s=timeout_s)
        except RaftlogError as e:
            return e.code, e.message
        if result.get("ok"):
            return ErrorCode.NONE, None
        return ErrorCode(int(result.get("code", ErrorCode.UNKNOWN))), str(result.get("message"))

    async def create_topics(self, req: CreateTopicsRequest) -> CreateTopicsResponse:
        out = []
        for t in req.topics:
            try:
                configs = validate_topic_configs(dict(t.configs))
            except InvalidConfigError as e:
                out.append(TopicResult(t.name, e.code, e.message))
                continue
            if req.validate_only:
                out.append(TopicResult(t.name))
                continue
            code, msg = await self._submit(
                {"op": "create_topic", "topic": t.name, "partitions": t.partitions,
                 "replication_factor": t.replication_factor, "configs": configs},
                req.timeout_ms / 1000,
            )  # fmt: skip
            out.append(TopicResult(t.name, code, msg))
        return CreateTopicsResponse(tuple(out))

    async def delete_topics(self, req: DeleteTopicsRequest) -> DeleteTopicsResponse:
        out = []
        for name in req.topics:
            code, msg = await self._submit({"op": "delete_topic", "topic": name},
                                           req.timeout_ms / 1000)  # fmt: skip
            out.append(TopicResult(name, code, msg))
        return DeleteTopicsResponse(tuple(out))

    async def describe_configs(self, req: DescribeConfigsRequest) -> DescribeConfigsResponse:
        image = self.bridge.image()
        names = sorted(image.topics) if req.topics is None else list(req.topics)
        out = []
        for name in names:
            t = image.topics.get(name)
            if t is None:
                out.append(TopicConfigs(name, (), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                        f"topic {name!r} does not exist"))  # fmt: skip
                continue
            entries = [
                ConfigEntry(key, t.configs[key], False) if key in t.configs
                else ConfigEntry(key, _default_config(key), True)
                for key in TOPIC_CONFIG_KEYS
            ]  # fmt: skip
            out.append(TopicConfigs(name, tuple(entries)))
        return DescribeConfigsResponse(tuple(out))

    async def alter_configs(self, req: AlterConfigsRequest) -> AlterConfigsResponse:
        out = []
        for t in req.topics:
            if req.validate_only:
                try:
                    validate_topic_configs(dict(t.set_configs))
                    out.append(TopicResult(t.name))
                except InvalidConfigError as e:
                    out.append(TopicResult(t.name, e.code, e.message))
                continue
            code, msg = await self._submit(
                {"op": "alter_configs", "topic": t.name, "set": dict(t.set_configs),
                 "delete": list(t.delete_configs)},
                30.0,
            )  # fmt: skip
            out.append(TopicResult(t.name, code, msg))
        return AlterConfigsResponse(tuple(out))

    async def create_partitions(self, req: CreatePartitionsRequest) -> CreatePartitionsResponse:
        """Grow each topic through the metadata op ``add_partitions``, which refuses a count
        that is not larger than the current one (INVALID_PARTITIONS: partitions are never
        removed) and places the new partitions unless ``assignments`` are given.
        ``validate_only`` checks against this broker's image and submits nothing."""
        out = []
        for t in req.topics:
            assignments = (
                None if t.assignments is None else [[int(b) for b in r] for r in t.assignments]
            )
            if req.validate_only:
                code, msg = self._check_new_partitions(t.name, t.count, assignments)
                out.append(TopicResult(t.name, code, msg))
                continue
            command: dict[str, Any] = {
                "op": "add_partitions",
                "topic": t.name,
                "partitions": t.count,
            }
            if assignments is not None:
                command["assignments"] = assignments
            code, msg = await self._submit(command, req.timeout_ms / 1000)
            out.append(TopicResult(t.name, code, msg))
        return CreatePartitionsResponse(tuple(out))

    def _check_new_partitions(
        self, name: str, count: int, assignments: list[list[int]] | None
    ) -> tuple[ErrorCode, str | None]:
        """What ``add_partitions`` would say, as far as this broker's image tells."""
        image = self.bridge.image()
        t = image.topics.get(name)
        if t is None:
            return self._missing(f"topic {name!r}")
        old = len(t.partitions)
        if count <= old:
            return ErrorCode.INVALID_PARTITIONS, (
                f"topic {name!r} has {old} partitions; the new count must be larger "
                f"(partitions cannot be removed), got {count}"
            )
        if assignments is None:
            return ErrorCode.NONE, None
        if len(assignments) != count - old:
            return ErrorCode.INVALID_PARTITIONS, (
                f"assignments lists {len(assignments)} partitions but {count - old} are new"
            )
        if any(len(r) != t.replication_factor for r in assignments):
            return ErrorCode.INVALID_REPLICATION_FACTOR, (
                f"every partition in assignments must have {t.replication_factor} replicas"
            )
        unknown = sorted({b for r in assignments for b in r if b not in image.brokers})
        if unknown:
            return ErrorCode.UNKNOWN_BROKER, (
                f"assignments name broker(s) {unknown} that are not registered; "
                f"registered: {sorted(image.brokers)}"
            )
        return ErrorCode.NONE, None


def _default_config(key: str) -> str:
    from raftlog.config import LogConfig

    d = LogConfig()
    defaults = {
        "cleanup.policy": "delete",
        "fsync": "true" if d.fsync else "false",
        "max.message.bytes": str(d.max_message_bytes),
        "min.insync.replicas": "1",
        "retention.bytes": str(d.retention_bytes),
        "retention.ms": str(d.retention_ms),
        "segment.bytes": str(d.segment_bytes),
        "segment.ms": str(d.segment_ms),
    }
    return defaults[key]
