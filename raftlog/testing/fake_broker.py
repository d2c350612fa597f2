"""A fake raftlog cluster for client tests: real TCP, the real wire protocol, in-memory logs.

``FakeCluster`` runs N brokers on 127.0.0.1 (port 0 each) in one trio loop; they share one
in-memory state: topics, partitions (leader, replicas) and a log per partition (whole
batches, offsets stamped by the fake as the real broker does). Every partition's log is
"committed" as soon as it is appended. It answers HELLO, METADATA, PRODUCE (acks 0/1/-1),
FETCH (whole batches from the one holding the fetch offset, long-poll), LIST_OFFSETS,
CREATE_TOPICS, DELETE_TOPICS, DESCRIBE_CONFIGS, ALTER_CONFIGS and CREATE_PARTITIONS with the
broker's semantics (see the client's docstrings), requests of one connection answered in
order. Configs given at creation are kept as given; ALTER_CONFIGS validates like the broker.

Faults, set by tests (plain attributes, read on every request):

- ``metadata_leaders``: what METADATA says the leader of a partition is (stale metadata),
  while PRODUCE/FETCH to a non-leader answer NOT_LEADER with the true leader as hint
  (``hint_leader=False`` to leave the hint out);
- ``produce_errors``: codes the next produced partitions answer with (then the real path);
- ``delay_ms[api]``: sleep before answering; ``swallow[api]``: requests not to answer at all
  (the client times out; a swallowed PRODUCE is still appended when ``swallow_appends``);
  ``drop[api]``: close the connection on the next such requests;
- ``new_topic_leaderless_ms``: new topics (and new partitions) have no leader for that long.

``requests`` logs (broker id, api key) of every request; ``max_pipelined`` is the most
requests a connection had received and not yet answered.

In a trio test: ``async with FakeCluster(brokers=3).serving() as fake``. For tests of the
blocking client (which runs its own loop), ``with running_fake_cluster(3) as fake`` runs the
fake in a thread; its control methods are then called through ``fake.call``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from raftlog.config import TOPIC_CONFIG_KEYS, LogConfig, validate_topic_configs
from raftlog.errors import ErrorCode, InvalidConfigError, RaftlogError
from raftlog.runtime.producer_state import ProducerStates
from raftlog.storage.record_batch import read_header, stamp, validate_batch
from raftlog.storage.records import ControlType, Record, build_batch, control_batch, decode_batch
from raftlog.types import NodeId, Offset, PartitionId, Term
from raftlog.wire import (
    AlterConfigsRequest,
    AlterConfigsResponse,
    AlterTopicConfigs,
    ApiKey,
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
    FetchPartitionResult,
    FetchRequest,
    FetchResponse,
    FetchTopicResult,
    Frame,
    FrameDecoder,
    HelloRequest,
    HelloResponse,
    InitProducerIdRequest,
    InitProducerIdResponse,
    ListOffsetsPartitionResult,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopicResult,
    MetadataRequest,
    MetadataResponse,
    NewPartitions,
    PartitionMetadata,
    ProducePartitionResult,
    ProduceRequest,
    ProduceResponse,
    ProduceTopicResult,
    Response,
    TopicConfigs,
    TopicMetadata,
    TopicResult,
    WireError,
    decode,
    encode_response,
    error_frame,
)

T = TypeVar("T")
START_TIMEOUT_S = 10.0


@dataclass(slots=True)
class FakePartition:
    leader: int
    replicas: tuple[int, ...]
    batches: list[tuple[int, bytes]] = field(default_factory=list)
    """(base offset, stamped batch) in offset order."""
    log_start: int = 0
    end: int = 0
    """The log end offset = the high watermark (everything is committed at once)."""
    leaderless_until: float = 0.0
    producers: ProducerStates = field(default_factory=ProducerStates)

    def append(self, batch: bytes) -> int:
        header = read_header(batch)
        base = self.end
        self.producers.apply(
            (header.producer_id, header.producer_epoch, header.base_sequence, base,
             base + header.last_offset_delta, 0)
        )  # fmt: skip
        stamped = bytearray(batch)
        stamp(stamped, 0, base, 0)
        self.batches.append((base, bytes(stamped)))
        self.end = base + header.last_offset_delta + 1
        return base


class FakeCluster:
    """See the module docstring."""

    def __init__(self, brokers: int = 1, cluster_id: str = "fake-cluster") -> None:
        self.broker_ids = list(range(1, brokers + 1))
        self.cluster_id = cluster_id
        self.ports: dict[int, int] = {}
        self.topics: dict[str, list[FakePartition]] = {}
        self.configs: dict[str, dict[str, str]] = {}
        # faults
        self.metadata_leaders: dict[tuple[str, int], int | None] = {}
        self.hint_leader = True
        self.produce_errors: deque[ErrorCode] = deque()
        self.delay_ms: dict[ApiKey, int] = {}
        self.swallow: dict[ApiKey, int] = defaultdict(int)
        self.swallow_appends = True
        self.drop: dict[ApiKey, int] = defaultdict(int)
        self.new_topic_leaderless_ms = 0
        # observations
        self.requests: list[tuple[int, ApiKey]] = []
        self.next_producer_id = 1000
        self.max_pipelined = 0
        self.connections = 0
        self._appended = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ running

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeCluster]:
        """Serve every broker until the block ends (then every listener is closed)."""
        self._token = trio.lowlevel.current_trio_token()
        self._appended = trio.Event()
        async with trio.open_nursery() as nursery:
            for broker_id in self.broker_ids:
                listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, host="127.0.0.1"), self._handler(broker_id), 0
                )
                self.ports[broker_id] = listeners[0].socket.getsockname()[1]
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.ports[b]}" for b in self.broker_ids)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the fake's loop (from a test's thread when it runs in one)."""
        if self._thread is None or threading.current_thread() is self._thread:
            return fn(*args)
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    # ------------------------------------------------------------------ control

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 1) -> None:
        n = len(self.broker_ids)
        until = time.monotonic() + self.new_topic_leaderless_ms / 1000
        self.topics[name] = [
            FakePartition(
                leader=self.broker_ids[p % n],
                replicas=tuple(self.broker_ids[(p + i) % n] for i in range(replication_factor)),
                leaderless_until=until,
            )
            for p in range(partitions)
        ]
        self.configs.setdefault(name, {})

    def add_partitions(
        self, name: str, count: int, assignments: tuple[tuple[int, ...], ...] | None = None
    ) -> None:
        """Grow ``name`` to ``count`` partitions (placed round robin unless ``assignments``)."""
        parts = self.topics[name]
        old, n, rf = len(parts), len(self.broker_ids), len(parts[0].replicas)
        until = time.monotonic() + self.new_topic_leaderless_ms / 1000
        for p in range(old, count):
            replicas = (
                tuple(self.broker_ids[(p + i) % n] for i in range(rf))
                if assignments is None
                else assignments[p - old]
            )
            parts.append(FakePartition(replicas[0], replicas, leaderless_until=until))

    def set_leader(self, topic: str, partition: int, broker_id: int) -> None:
        self.topics[topic][partition].leader = broker_id

    def append(self, topic: str, partition: int, records: list[Record]) -> int:
        """Append a batch of ``records``; returns its base offset."""
        batch = build_batch(records, now_ms=int(time.time() * 1000))
        return self._append(topic, partition, batch)

    def append_control(self, topic: str, partition: int) -> int:
        """Append a control batch (a COMMIT marker): offsets, no user record."""
        batch = control_batch(ControlType.COMMIT, int(time.time() * 1000))
        return self._append(topic, partition, batch)

    def _append(self, topic: str, partition: int, batch: bytes) -> int:
        base = self.topics[topic][partition].append(batch)
        self._appended.set()
        self._appended = trio.Event()
        return base

    def truncate_before(self, topic: str, partition: int, offset: int) -> None:
        """Move the log start to ``offset`` (retention), dropping whole batches below it."""
        p = self.topics[topic][partition]
        p.batches = [
            (base, b) for base, b in p.batches if base + read_header(b).last_offset_delta >= offset
        ]
        p.log_start = offset

    def values(self, topic: str, partition: int) -> list[tuple[int, bytes | None]]:
        """(offset, value) of every user record of a partition, from the fake's log."""
        out: list[tuple[int, bytes | None]] = []
        for _, batch in self.topics[topic][partition].batches:
            header, records = decode_batch(batch, max_bytes=len(batch))
            if not header.is_control:
                out.extend((r.offset, r.value) for r in records)
        return out

    # ------------------------------------------------------------------ connections

    def _handler(self, broker_id: int) -> Callable[[trio.SocketStream], Any]:
        async def handle(stream: trio.SocketStream) -> None:
            self.connections += 1
            await self._serve_connection(broker_id, stream)

        return handle

    async def _serve_connection(self, broker_id: int, stream: trio.SocketStream) -> None:
        decoder = FrameDecoder()
        send, receive = trio.open_memory_channel[Frame](math.inf)
        unanswered = [0]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._answer_loop, broker_id, stream, receive, unanswered, nursery)
            try:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    try:
                        frames = decoder.feed(data)
                    except WireError:
                        break
                    for frame in frames:
                        unanswered[0] += 1
                        self.max_pipelined = max(self.max_pipelined, unanswered[0])
                        send.send_nowait(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                send.close()

    async def _answer_loop(
        self,
        broker_id: int,
        stream: trio.SocketStream,
        frames: trio.MemoryReceiveChannel[Frame],
        unanswered: list[int],
        nursery: trio.Nursery,
    ) -> None:
        try:
            async for frame in frames:
                pieces = await self._answer(broker_id, frame, nursery)
                unanswered[0] -= 1
                if pieces is not None:
                    await stream.send_all(b"".join(pieces))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                stream.socket.close()
            nursery.cancel_scope.cancel()

    async def _answer(self, broker_id: int, frame: Frame, nursery: trio.Nursery) -> Any:
        try:
            msg = decode(frame)
        except WireError as exc:
            return error_frame(exc)
        api = ApiKey(frame.api_key)
        self.requests.append((broker_id, api))
        if self.drop[api] > 0:
            self.drop[api] -= 1
            nursery.cancel_scope.cancel()
            await trio.sleep_forever()
        delay = self.delay_ms.get(api, 0)
        if delay:
            await trio.sleep(delay / 1000)
        swallowed = self.swallow[api] > 0
        if swallowed:
            self.swallow[api] -= 1
            if api == ApiKey.PRODUCE and self.swallow_appends:
                assert isinstance(msg, ProduceRequest)
                self._produce(broker_id, msg)
            return None
        try:
            answer = await self._dispatch(broker_id, msg)
        except RaftlogError as exc:
            return error_frame(exc, frame.correlation_id, frame.api_key)
        if answer is None:
            return None
        return encode_response(answer, frame.correlation_id)

    async def _dispatch(self, broker_id: int, msg: Any) -> Response | None:
        if isinstance(msg, HelloRequest):
            return HelloResponse(NodeId(broker_id), self.cluster_id, 1)
        if isinstance(msg, MetadataRequest):
            return self._metadata(msg)
        if isinstance(msg, InitProducerIdRequest):
            self.next_producer_id += 1
            return InitProducerIdResponse(producer_id=self.next_producer_id - 1, producer_epoch=0)
        if isinstance(msg, ProduceRequest):
            answer = self._produce(broker_id, msg)
            return None if msg.acks == 0 else answer
        if isinstance(msg, FetchRequest):
            return await self._fetch(broker_id, msg)
        if isinstance(msg, ListOffsetsRequest):
            return self._list_offsets(broker_id, msg)
        if isinstance(msg, CreateTopicsRequest):
            return self._create_topics(msg)
        if isinstance(msg, DeleteTopicsRequest):
            results = []
            for name in msg.topics:
                gone = self.topics.pop(name, None)
                code = ErrorCode.NONE if gone else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                results.append(TopicResult(name, code))
            return DeleteTopicsResponse(tuple(results))
        if isinstance(msg, DescribeConfigsRequest):
            names = msg.topics if msg.topics is not None else tuple(self.topics)
            return DescribeConfigsResponse(tuple(self._describe_configs(n) for n in names))
        if isinstance(msg, AlterConfigsRequest):
            return AlterConfigsResponse(tuple(self._alter_configs(t, msg) for t in msg.topics))
        if isinstance(msg, CreatePartitionsRequest):
            return CreatePartitionsResponse(
                tuple(self._create_partitions(t, msg) for t in msg.topics)
            )
        raise RaftlogError(f"the fake broker does not serve {type(msg).__name__}")

    # ------------------------------------------------------------------ handlers

    def _leader(self, p: FakePartition) -> int | None:
        return None if time.monotonic() < p.leaderless_until else p.leader

    def _metadata(self, msg: MetadataRequest) -> MetadataResponse:
        brokers = tuple(BrokerInfo(NodeId(b), "127.0.0.1", self.ports[b]) for b in self.broker_ids)
        names = msg.topics if msg.topics is not None else tuple(self.topics)
        topics = []
        for name in names:
            parts = self.topics.get(name)
            if parts is None:
                topics.append(TopicMetadata(name, (), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            metas = []
            for i, p in enumerate(parts):
                leader = self.metadata_leaders.get((name, i), self._leader(p))
                metas.append(
                    PartitionMetadata(
                        PartitionId(i),
                        None if leader is None else NodeId(leader),
                        Term(1),
                        tuple(NodeId(r) for r in p.replicas),
                        Offset(p.end),
                    )
                )
            topics.append(TopicMetadata(name, tuple(metas)))
        return MetadataResponse(brokers, NodeId(self.broker_ids[0]), tuple(topics))

    def _hint(self, p: FakePartition) -> NodeId | None:
        leader = self._leader(p)
        return NodeId(leader) if self.hint_leader and leader is not None else None

    def _produce(self, broker_id: int, msg: ProduceRequest) -> ProduceResponse:
        topics = []
        for t in msg.topics:
            results = []
            for pp in t.partitions:
                parts = self.topics.get(t.name)
                if parts is None or pp.partition >= len(parts):
                    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    results.append(ProducePartitionResult(pp.partition, code))
                    continue
                p = parts[pp.partition]
                if self.produce_errors:
                    code = self.produce_errors.popleft()
                    hint = self._hint(p) if code == ErrorCode.NOT_LEADER else None
                    results.append(ProducePartitionResult(pp.partition, code, leader_hint=hint))
                    continue
                if self._leader(p) != broker_id:
                    results.append(
                        ProducePartitionResult(
                            pp.partition, ErrorCode.NOT_LEADER, leader_hint=self._hint(p)
                        )
                    )
                    continue
                try:
                    for batch in pp.batches:
                        validate_batch(batch)
                except RaftlogError as exc:
                    results.append(ProducePartitionResult(pp.partition, exc.code))
                    continue
                base = -1
                refused: ProducePartitionResult | None = None
                for batch in pp.batches:
                    h = read_header(batch)
                    verdict = p.producers.check(
                        h.producer_id, h.producer_epoch, h.base_sequence, h.last_offset_delta + 1
                    )
                    if verdict.duplicate is not None:
                        offset = verdict.duplicate.base_offset
                    elif verdict.error != ErrorCode.NONE:
                        refused = ProducePartitionResult(
                            pp.partition, verdict.error, message=verdict.message
                        )
                        break
                    else:
                        offset = self._append(t.name, pp.partition, bytes(batch))
                    base = offset if base < 0 else base
                if refused is not None:
                    results.append(refused)
                    continue
                results.append(ProducePartitionResult(pp.partition, base_offset=Offset(base)))
            topics.append(ProduceTopicResult(t.name, tuple(results)))
        return ProduceResponse(tuple(topics))

    def _has_data(self, msg: FetchRequest) -> bool:
        for t in msg.topics:
            parts = self.topics.get(t.name)
            for fp in t.partitions:
                if parts is None or fp.partition >= len(parts):
                    return True  # an error to answer at once
                if fp.fetch_offset != parts[fp.partition].end:
                    return True
        return False

    async def _fetch(self, broker_id: int, msg: FetchRequest) -> FetchResponse:
        with trio.move_on_after(msg.max_wait_ms / 1000):
            while not self._has_data(msg):
                await self._appended.wait()
        topics = []
        for t in msg.topics:
            parts = self.topics.get(t.name)
            results = []
            for fp in t.partitions:
                if parts is None or fp.partition >= len(parts):
                    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    results.append(FetchPartitionResult(fp.partition, code))
                    continue
                p = parts[fp.partition]
                hw, start = Offset(p.end), Offset(p.log_start)
                if self._leader(p) != broker_id:
                    code = ErrorCode.NOT_LEADER
                    results.append(
                        FetchPartitionResult(fp.partition, code, hw, start, hw, b"", self._hint(p))
                    )
                    continue
                if not p.log_start <= fp.fetch_offset <= p.end:
                    code = ErrorCode.OFFSET_OUT_OF_RANGE
                    results.append(FetchPartitionResult(fp.partition, code, hw, start, hw))
                    continue
                chunks: list[bytes] = []
                size = 0
                for base, batch in p.batches:
                    last = base + read_header(batch).last_offset_delta
                    if last < fp.fetch_offset:
                        continue
                    if chunks and size + len(batch) > fp.partition_max_bytes:
                        break
                    chunks.append(batch)
                    size += len(batch)
                records = b"".join(chunks)
                results.append(
                    FetchPartitionResult(fp.partition, ErrorCode.NONE, hw, start, hw, records)
                )
            topics.append(FetchTopicResult(t.name, tuple(results)))
        return FetchResponse(tuple(topics))

    def _list_offsets(self, broker_id: int, msg: ListOffsetsRequest) -> ListOffsetsResponse:
        topics = []
        for t in msg.topics:
            parts = self.topics.get(t.name)
            results = []
            for lp in t.partitions:
                if parts is None or lp.partition >= len(parts):
                    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    results.append(ListOffsetsPartitionResult(lp.partition, code))
                    continue
                p = parts[lp.partition]
                if self._leader(p) != broker_id:
                    code = ErrorCode.NOT_LEADER
                    results.append(
                        ListOffsetsPartitionResult(lp.partition, code, leader_hint=self._hint(p))
                    )
                    continue
                if lp.timestamp == -2:
                    offset = p.log_start
                elif lp.timestamp == -1:
                    offset = p.end
                else:
                    offset = next(
                        (
                            b
                            for b, batch in p.batches
                            if read_header(batch).max_timestamp >= lp.timestamp
                        ),
                        -1,
                    )
                results.append(ListOffsetsPartitionResult(lp.partition, offset=Offset(offset)))
            topics.append(ListOffsetsTopicResult(t.name, tuple(results)))
        return ListOffsetsResponse(tuple(topics))

    def _create_topics(self, msg: CreateTopicsRequest) -> CreateTopicsResponse:
        results = []
        for t in msg.topics:
            if t.name in self.topics:
                results.append(TopicResult(t.name, ErrorCode.TOPIC_ALREADY_EXISTS))
                continue
            if t.replication_factor > len(self.broker_ids):
                code = ErrorCode.INVALID_REPLICATION_FACTOR
                message = f"{len(self.broker_ids)} brokers"
                results.append(TopicResult(t.name, code, message))
                continue
            if not msg.validate_only:
                self.create_topic(t.name, t.partitions, t.replication_factor)
                self.configs[t.name] = dict(t.configs)
            results.append(TopicResult(t.name))
        return CreateTopicsResponse(tuple(results))

    def _describe_configs(self, name: str) -> TopicConfigs:
        if name not in self.topics:
            return TopicConfigs(name, (), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "no such topic")
        overrides = self.configs.get(name, {})
        keys = sorted({*TOPIC_CONFIG_KEYS, *overrides})
        entries = tuple(
            ConfigEntry(k, overrides[k], False)
            if k in overrides
            else ConfigEntry(k, FAKE_CONFIG_DEFAULTS.get(k, ""), True)
            for k in keys
        )
        return TopicConfigs(name, entries)

    def _alter_configs(self, t: AlterTopicConfigs, msg: AlterConfigsRequest) -> TopicResult:
        if t.name not in self.topics:
            return TopicResult(t.name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "no such topic")
        merged = dict(self.configs.get(t.name, {}))
        unknown = [k for k in t.delete_configs if k not in TOPIC_CONFIG_KEYS]
        for k in t.delete_configs:
            merged.pop(k, None)
        merged.update(t.set_configs)
        try:
            if unknown:
                raise InvalidConfigError(f"unknown topic config(s) {unknown}")
            configs = validate_topic_configs(merged)
        except InvalidConfigError as exc:
            return TopicResult(t.name, ErrorCode.INVALID_CONFIG, exc.message)
        if not msg.validate_only:
            self.configs[t.name] = configs
        return TopicResult(t.name)

    def _create_partitions(self, t: NewPartitions, msg: CreatePartitionsRequest) -> TopicResult:
        parts = self.topics.get(t.name)
        if parts is None:
            return TopicResult(t.name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "no such topic")
        if t.count <= len(parts):
            why = f"topic {t.name!r} has {len(parts)} partitions; the new count must be larger"
            return TopicResult(t.name, ErrorCode.INVALID_PARTITIONS, why)
        if t.assignments is not None and len(t.assignments) != t.count - len(parts):
            why = f"assignments lists {len(t.assignments)} partitions"
            return TopicResult(t.name, ErrorCode.INVALID_PARTITIONS, why)
        if not msg.validate_only:
            self.add_partitions(t.name, t.count, t.assignments)
        return TopicResult(t.name)


_DEFAULT_LOG = LogConfig()
FAKE_CONFIG_DEFAULTS: dict[str, str] = {
    "cleanup.policy": "delete",
    "fsync": "true" if _DEFAULT_LOG.fsync else "false",
    "max.message.bytes": str(_DEFAULT_LOG.max_message_bytes),
    "min.insync.replicas": "1",
    "retention.bytes": str(_DEFAULT_LOG.retention_bytes),
    "retention.ms": str(_DEFAULT_LOG.retention_ms),
    "segment.bytes": str(_DEFAULT_LOG.segment_bytes),
    "segment.ms": str(_DEFAULT_LOG.segment_ms),
}
"""What DESCRIBE_CONFIGS of the fake says a config is when a topic does not override it."""


@contextlib.contextmanager
def running_fake_cluster(brokers: int = 1) -> Iterator[FakeCluster]:
    """Run a ``FakeCluster`` in a thread of its own for the duration of the block."""
    fake = FakeCluster(brokers)
    started = threading.Event()
    stop: list[trio.Event] = []
    errors: list[BaseException] = []

    async def main() -> None:
        async with fake.serving():
            stop.append(trio.Event())
            started.set()
            await stop[0].wait()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:
            errors.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, name="fake-cluster", daemon=True)
    fake._thread = thread
    thread.start()
    if not started.wait(START_TIMEOUT_S) or errors:
        raise RuntimeError(f"the fake cluster did not start: {errors}")
    try:
        yield fake
    finally:
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(stop[0].set, trio_token=fake._token)
        thread.join(START_TIMEOUT_S)
        assert not thread.is_alive(), "the fake cluster did not stop"
