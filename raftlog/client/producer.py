"""The producer: ``send`` records, get futures of where they were written.

``Producer`` is the blocking API. Its ``send`` runs in the caller's thread: it picks the
partition (``raftlog.client.partitioner``), appends to the ``RecordAccumulator`` and returns
a ``SendFuture`` at once. The ``Sender`` runs in the producer's trio loop (a background
thread, see ``raftlog.client._loop``): it takes ready batches, groups them by partition
leader into one PRODUCE request per leader, and handles each partition's answer:

- success: every record's future gets its offset (base offset + its index);
- NOT_LEADER / LEADER_NOT_AVAILABLE / broker unreachable (nothing was written): the leader is
  updated (from the hint, else a metadata refresh) and the batch is retried after a backoff
  (``retry_backoff_ms``, doubling up to ``RETRY_BACKOFF_MAX_MS``), until
  ``delivery_timeout_ms`` after the batch was created, when it fails with
  ``DeliveryTimeoutError`` (not written);
- a timeout, a lost connection or UNKNOWN_OUTCOME after the request left: the records may or
  may not have been written. With idempotence (the default) the batch is resent with the
  same producer id and sequence numbers, so the leader writes it at most once and answers a
  resend with the first copy's offsets; if the delivery timeout passes first it fails with
  ``UnknownOutcomeError``. Without idempotence it fails with ``UnknownOutcomeError`` at once
  and is *not* resent, since a resend could write it twice;
- OUT_OF_ORDER_SEQUENCE (idempotent): an earlier batch of the partition is being retried;
  this one is retried after it. With no earlier batch pending, the one before failed for
  good, so this one is not written and fails too;
- any other error is final for the batch (unknown topic, record too large...). When a batch
  with sequence numbers fails for good, the producer takes a new producer id, so the
  partition's next batches start a fresh sequence instead of waiting on a gap.

Idempotence needs ``acks="all"``: a producer id comes from any broker (INIT_PRODUCER_ID)
before the first batch leaves; see ``raftlog.client.accumulator`` for the order rules that
let up to ``max_in_flight`` batches per partition travel at once.

Futures are completed in the loop's thread, so their callbacks run there: keep them short and
do not call the producer's blocking methods from them.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from raftlog.client._loop import ClosesOnExit, LoopThread
from raftlog.client.accumulator import (
    BatchCompletion,
    ProducerBatch,
    RecordAccumulator,
    SendFuture,
)
from raftlog.client.cluster import ClientConfig, Cluster
from raftlog.client.errors import (
    BrokerError,
    BrokerUnreachableError,
    ClientClosedError,
    DeliveryTimeoutError,
    ProtocolError,
    RequestTimedOutError,
    UnknownOutcomeError,
    broker_error,
)
from raftlog.client.partitioner import partition_for_key
from raftlog.errors import ErrorCode, RaftlogError
from raftlog.storage.records import (
    COMPRESSION_NONE,
    Record,
    build_batch,
    compression_codec,
    new_record,
)
from raftlog.types import PartitionId
from raftlog.wire import (
    InitProducerIdRequest,
    InitProducerIdResponse,
    ProducePartition,
    ProducePartitionResult,
    ProduceRequest,
    ProduceResponse,
    ProduceTopic,
)

log = logging.getLogger("raftlog.client")

RETRY_BACKOFF_MAX_MS = 1_000
MAX_IN_FLIGHT_MAX = 5
"""The broker remembers a producer's last 5 batches per partition (as Kafka)."""
ACKS = {"all": -1, "-1": -1, -1: -1, "1": 1, 1: 1, "0": 0, 0: 0}
_NOT_WRITTEN = frozenset(
    {ErrorCode.NOT_LEADER, ErrorCode.LEADER_NOT_AVAILABLE, ErrorCode.BROKER_NOT_AVAILABLE}
)
_MAYBE_WRITTEN = frozenset({ErrorCode.REQUEST_TIMED_OUT, ErrorCode.UNKNOWN_OUTCOME})

Headers = Sequence[tuple[str, bytes | None]] | Mapping[str, bytes | None]


def _as_bytes(value: object, what: str) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"{what} must be bytes, str or None, not {type(value).__name__}")


def _headers(headers: Headers | None) -> tuple[tuple[str, bytes | None], ...]:
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(k), _as_bytes(v, f"header {k!r}")) for k, v in items)


class Sender:
    """The producer's trio side: batches out, answers in. See the module docstring."""

    def __init__(
        self,
        cluster: Cluster,
        acc: RecordAccumulator,
        acks: int,
        *,
        compression: int = COMPRESSION_NONE,
    ) -> None:
        self.cluster = cluster
        self.acc = acc
        self.acks = acks
        self.compression = compression
        self._wake = trio.Event()
        self._getting_producer_id = False

    def wake(self) -> None:
        """Wake the sender (call in the loop; the user's thread uses run_sync_soon)."""
        self._wake.set()

    async def partition_count(self, topic: str) -> int:
        meta = await self.cluster.topic(topic)
        count = len(meta.partitions)
        self.acc.partition_counts[topic] = count
        return count

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                now = time.monotonic()
                if (
                    self.acc.idempotent
                    and self.acc.producer is None
                    and not self._getting_producer_id
                ):
                    self._getting_producer_id = True
                    nursery.start_soon(self._init_producer_id)
                for batch in self.acc.expired(now):
                    self._fail(batch, self._delivery_timeout(batch), in_flight=False)
                batches, next_s = self.acc.ready(now)
                by_leader: dict[int, list[ProducerBatch]] = {}
                unknown: list[ProducerBatch] = []
                for batch in batches:
                    leader = self.cluster.leader(batch.topic, batch.partition)
                    if leader is None:
                        unknown.append(batch)
                    else:
                        by_leader.setdefault(leader, []).append(batch)
                for leader, group in by_leader.items():
                    nursery.start_soon(self._send, leader, group)
                if unknown:
                    nursery.start_soon(self._find_leaders, unknown)
                timeout = max(0.0, next_s - now) if next_s is not None else 1.0
                with trio.move_on_after(timeout):
                    await self._wake.wait()
                self._wake = trio.Event()

    # ------------------------------------------------------------------ producer id

    async def _init_producer_id(self) -> None:
        """Get a producer id from any broker, retrying with backoff until one answers."""
        attempt = 0
        try:
            while True:
                try:
                    answer = await self.cluster.request_any(InitProducerIdRequest())
                    if isinstance(answer, InitProducerIdResponse):
                        self.acc.producer = (answer.producer_id, answer.producer_epoch)
                        log.info("event=producer_id id=%d", answer.producer_id)
                        return
                    else:
                        why = f"INIT_PRODUCER_ID answered with {type(answer).__name__}"
                except RaftlogError as exc:
                    why = exc.message
                attempt += 1
                log.info("event=producer_id_retry attempt=%d why=%s", attempt, why)
                backoff_ms = self.cluster.config.retry_backoff_ms * 2 ** min(attempt, 10)
                await trio.sleep(min(backoff_ms, RETRY_BACKOFF_MAX_MS) / 1000)
        finally:
            self._getting_producer_id = False
            self.wake()

    # ------------------------------------------------------------------ one request

    async def _find_leaders(self, batches: list[ProducerBatch]) -> None:
        topics = {b.topic for b in batches}
        error: RaftlogError | None = None
        try:
            await self.cluster.refresh(topics)
        except RaftlogError as exc:
            error = exc
        for batch in batches:
            if error is None and self.cluster.leader(batch.topic, batch.partition) is not None:
                self.acc.requeue(batch, 0.0)
            else:
                batch.last_error = error or broker_error(
                    ErrorCode.LEADER_NOT_AVAILABLE,
                    None,
                    f"topic {batch.topic!r} partition {batch.partition}",
                )
                self._retry(batch, count_attempt=True)
        self.wake()

    def _request(self, batches: list[ProducerBatch]) -> ProduceRequest:
        by_topic: dict[str, list[ProducePartition]] = {}
        now_ms = int(time.time() * 1000)
        for b in batches:
            if b.encoded is None:
                b.encoded = build_batch(
                    b.records,
                    now_ms=now_ms,
                    producer_id=b.producer_id,
                    producer_epoch=b.producer_epoch,
                    base_sequence=b.base_sequence,
                    compression=self.compression,
                )
            by_topic.setdefault(b.topic, []).append(
                ProducePartition(PartitionId(b.partition), (b.encoded,))
            )
        timeout_ms = self.cluster.config.request_timeout_ms
        topics = tuple(ProduceTopic(t, tuple(ps)) for t, ps in by_topic.items())
        return ProduceRequest(acks=self.acks, timeout_ms=timeout_ms, topics=topics)

    async def _send(self, leader: int, batches: list[ProducerBatch]) -> None:
        try:
            await self._send_to(leader, batches)
        finally:
            self.wake()

    async def _send_to(self, leader: int, batches: list[ProducerBatch]) -> None:
        timeout_ms = self.cluster.config.request_timeout_ms
        try:
            conn = await self.cluster.connection(leader)
        except RaftlogError as exc:
            self.cluster.drop_connection(leader)
            for b in batches:
                self.cluster.mark_stale(b.topic)
                b.last_error = exc
                self._retry(b, count_attempt=True)
            return
        request = self._request(batches)
        for b in batches:
            b.attempts += 1
        try:
            if self.acks == 0:
                await conn.send_only(request, timeout_ms=timeout_ms)
                for b in batches:
                    self._complete(b, -1, -1)
                return
            answer = await conn.request(request, timeout_ms=timeout_ms)
        except BrokerUnreachableError as exc:  # the request never left
            for b in batches:
                b.last_error = exc
                self._retry(b, count_attempt=False)
            return
        except RaftlogError as exc:
            if isinstance(exc, BrokerError) and exc.code in _NOT_WRITTEN:  # the broker's answer
                for b in batches:
                    b.last_error = exc
                    self._retry(b, count_attempt=False)
                return
            if conn.closed or (self.acc.idempotent and isinstance(exc, RequestTimedOutError)):
                # a leader that does not answer in time may be paused or partitioned away:
                # resends go through a fresh connection to whoever leads after a refresh
                self.cluster.drop_connection(leader)
            for b in batches:
                self._maybe_written(b, exc)
            return
        if not isinstance(answer, ProduceResponse):
            bad = ProtocolError(f"PRODUCE answered with {type(answer).__name__}")
            for b in batches:
                self._maybe_written(b, bad)
            return
        results: dict[tuple[str, int], ProducePartitionResult] = {
            (t.name, p.partition): p for t in answer.topics for p in t.partitions
        }
        for b in batches:
            r = results.get((b.topic, b.partition))
            what = f"topic {b.topic!r} partition {b.partition}"
            if r is None:
                self._maybe_written(b, ProtocolError(f"the PRODUCE answer says nothing of {what}"))
            elif r.error == ErrorCode.NONE:
                self._complete(b, r.base_offset, r.log_append_time_ms)
            elif r.error in _NOT_WRITTEN:
                if r.error == ErrorCode.NOT_LEADER:
                    self.cluster.on_not_leader(b.topic, b.partition, r.leader_hint)
                else:
                    self.cluster.mark_stale(b.topic)
                b.last_error = broker_error(r.error, r.message, what)
                self._retry(b, count_attempt=False)
            elif r.error in _MAYBE_WRITTEN:
                self._maybe_written(b, broker_error(r.error, r.message, what))
            elif r.error == ErrorCode.OUT_OF_ORDER_SEQUENCE and self.acc.earlier_pending(b):
                b.last_error = broker_error(r.error, r.message, what)
                self._retry(b, count_attempt=False)
            else:
                self._fail(b, broker_error(r.error, r.message, what))

    # ------------------------------------------------------------------ outcomes

    def _maybe_written(self, batch: ProducerBatch, exc: RaftlogError) -> None:
        """The attempt's outcome is unknown: resend (idempotent) or fail."""
        if batch.producer_id < 0:
            self._fail(batch, self._unknown_outcome(batch, exc))
            return
        batch.maybe_written = True
        batch.last_error = exc
        self.cluster.mark_stale(batch.topic)  # the leader may have changed
        self._retry(batch, count_attempt=False)

    def _retry(self, batch: ProducerBatch, *, count_attempt: bool) -> None:
        if count_attempt:
            batch.attempts += 1
        base_ms = self.cluster.config.retry_backoff_ms * 2 ** max(0, batch.attempts - 1)
        backoff_s = min(base_ms, RETRY_BACKOFF_MAX_MS) * random.uniform(0.8, 1.2) / 1000
        # past the deadline, the batch waits for it in the queue, where ``expired`` fails it
        self.acc.requeue(batch, min(time.monotonic() + backoff_s, batch.deadline_s))

    def _delivery_timeout(self, batch: ProducerBatch) -> RaftlogError:
        last = f"; last error: {batch.last_error.message}" if batch.last_error else ""
        if batch.maybe_written:
            return UnknownOutcomeError(
                f"unknown outcome: {len(batch.records)} record(s) for topic {batch.topic!r} "
                f"partition {batch.partition} may or may not have been written: no attempt "
                f"was acknowledged within delivery_timeout_ms "
                f"({self.acc.delivery_timeout_s * 1000:.0f} ms){last}"
            )
        return DeliveryTimeoutError(
            f"{len(batch.records)} record(s) for topic {batch.topic!r} partition "
            f"{batch.partition} were not written: no leader accepted them within "
            f"delivery_timeout_ms ({self.acc.delivery_timeout_s * 1000:.0f} ms) after "
            f"{batch.attempts} attempt(s){last}"
        )

    @staticmethod
    def _unknown_outcome(batch: ProducerBatch, exc: RaftlogError) -> RaftlogError:
        return UnknownOutcomeError(
            f"unknown outcome: {len(batch.records)} record(s) for topic {batch.topic!r} "
            f"partition {batch.partition} may or may not have been written ({exc.message}); "
            "they were not resent, since a resend could write them twice"
        )

    def _complete(self, batch: ProducerBatch, base_offset: int, append_time_ms: int) -> None:
        self.acc.release(batch, acked=True)
        # each record's metadata (base offset + its index) is computed when asked for
        batch.completion.complete(base_offset, append_time_ms)

    def _fail(self, batch: ProducerBatch, exc: RaftlogError, *, in_flight: bool = True) -> None:
        self.acc.release(batch, in_flight=in_flight)
        if batch.producer_id >= 0 and self.acc.producer == (
            batch.producer_id,
            batch.producer_epoch,
        ):
            # a gap in this partition's sequence: start every partition afresh under a new id
            self.acc.producer = None
        log.warning(
            "event=produce_failed topic=%s partition=%d records=%d code=%s",
            batch.topic,
            batch.partition,
            len(batch.records),
            exc.code.name,
        )
        batch.completion.fail(exc)


@dataclass(frozen=True)
class ProducerSettings:
    """The producer options (see ``Producer``), checked: a bad value is a ``ValueError``."""

    acks: Any = "all"
    linger_ms: int = 5
    batch_bytes: int = 64 * 1024
    buffer_bytes: int = 32 * 1024 * 1024
    max_block_ms: int = 60_000
    request_timeout_ms: int = 30_000
    delivery_timeout_ms: int = 120_000
    retry_backoff_ms: int = 100
    connect_timeout_ms: int = 10_000
    client_id: str = "raftlog-producer"
    idempotent: bool | None = None
    max_in_flight: int = 5
    compression: Any = "none"

    def __post_init__(self) -> None:
        acks = self.acks
        if acks not in ACKS:
            raise ValueError(f"acks must be 'all', 1 or 0, not {acks!r}")
        object.__setattr__(self, "acks", ACKS[acks])
        if self.idempotent is None:
            object.__setattr__(self, "idempotent", self.acks == -1)
        elif self.idempotent and self.acks != -1:
            raise ValueError(
                f"an idempotent producer needs acks='all' (got acks={acks!r}); "
                "use acks='all' or idempotent=False"
            )
        if not 1 <= self.max_in_flight <= MAX_IN_FLIGHT_MAX:
            raise ValueError(
                f"max_in_flight must be 1..{MAX_IN_FLIGHT_MAX}, not {self.max_in_flight}"
            )
        if isinstance(self.compression, str):
            object.__setattr__(self, "compression", compression_codec(self.compression))
        if self.delivery_timeout_ms < self.linger_ms + self.request_timeout_ms:
            raise ValueError(
                f"delivery_timeout_ms ({self.delivery_timeout_ms}) must be at least linger_ms + "
                f"request_timeout_ms ({self.linger_ms + self.request_timeout_ms})"
            )
        if self.batch_bytes <= 0 or self.buffer_bytes < self.batch_bytes:
            raise ValueError("batch_bytes must be positive and buffer_bytes at least batch_bytes")

    def client_config(self) -> ClientConfig:
        return ClientConfig(
            client_id=self.client_id,
            connect_timeout_ms=self.connect_timeout_ms,
            request_timeout_ms=self.request_timeout_ms,
            retry_backoff_ms=self.retry_backoff_ms,
        )

    def accumulator(self) -> RecordAccumulator:
        acc = RecordAccumulator(
            batch_bytes=self.batch_bytes,
            buffer_bytes=self.buffer_bytes,
            linger_ms=self.linger_ms,
            delivery_timeout_ms=self.delivery_timeout_ms,
            max_in_flight=self.max_in_flight if self.idempotent else 1,
        )
        acc.idempotent = bool(self.idempotent)
        return acc


def make_record(
    value: bytes | str | None,
    key: bytes | str | None,
    headers: Headers | None,
    timestamp: int | None,
) -> Record:
    """The record ``send`` queues (``TypeError``/``ValueError`` for bad input)."""
    if timestamp is None and not headers and type(value) is bytes and key is None:
        # the common case, per record on the hot path: no conversions to make
        return new_record(None, value, (), int(time.time() * 1000))
    if timestamp is not None and not 0 <= timestamp < 2**63:
        raise ValueError(f"timestamp must be milliseconds since the epoch, not {timestamp}")
    return Record(
        _as_bytes(key, "key"),
        _as_bytes(value, "value"),
        _headers(headers),
        int(time.time() * 1000) if timestamp is None else timestamp,
    )


def choose_partition(
    acc: RecordAccumulator, topic: str, count: int, partition: int | None, key: bytes | None
) -> int:
    """``partition`` when given (it must exist), else murmur2 of the key, else sticky."""
    if partition is not None:
        if not 0 <= partition < count:
            raise broker_error(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                f"the topic has partitions 0..{count - 1}",
                f"topic {topic!r} partition {partition}",
            )
        return partition
    if key is not None:
        return partition_for_key(key, count)
    return acc.sticky_partition(topic, count)


def _wait_batches(pending: Sequence[BatchCompletion], timeout: float | None) -> int:
    """Wait until every batch of ``pending`` is done, at most ``timeout`` s in all (None: no
    limit); returns how many of their records are still pending."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for completion in pending:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not completion.wait(remaining):
            break
    return sum(c.pending_records() for c in pending if not c.done)


class Producer(ClosesOnExit):
    """A blocking producer. ``send`` returns at once with a ``SendFuture``.

    - ``acks``: "all" (committed on a majority), 1 (written by the leader) or 0 (no answer;
      offsets are -1).
    - ``linger_ms`` / ``batch_bytes``: a partition's batch is sent when it is full or has
      waited ``linger_ms``.
    - ``buffer_bytes`` / ``max_block_ms``: records not yet acknowledged take at most
      ``buffer_bytes``; ``send`` blocks up to ``max_block_ms`` for room, then raises
      ``BufferFullError``.
    - ``request_timeout_ms``: one request's deadline; ``delivery_timeout_ms``: a record's
      whole life (retries included), at least ``linger_ms + request_timeout_ms``.
    - ``idempotent`` (default: on when ``acks="all"``): retries never duplicate or reorder
      records; up to ``max_in_flight`` batches per partition travel at once (1 without
      idempotence, to keep order). Asking for it with ``acks`` 0 or 1 is an error.
    - ``compression``: "none", "gzip", "lz4" or "zstd" for each batch.

    Example::

        with Producer("127.0.0.1:9092") as producer:
            meta = producer.send("orders", b"hello", key="k1").result(timeout=10)
            print(meta.partition, meta.offset)
    """

    def __init__(self, bootstrap: str | Sequence[str], **options: Any) -> None:
        settings = ProducerSettings(**options)
        self._acks = settings.acks
        self._max_block_ms = settings.max_block_ms
        self._delivery_timeout_ms = settings.delivery_timeout_ms
        self._config = settings.client_config()
        self._acc = settings.accumulator()
        self._compression = settings.compression
        self._closed = False
        self._loop = LoopThread("raftlog-producer")
        try:
            self._sender = self._loop.run(self._start, bootstrap)
        except BaseException:
            self._loop.close()
            raise

    async def _start(self, bootstrap: str | Sequence[str]) -> Sender:
        cluster = Cluster(bootstrap, self._loop.nursery, self._config)
        sender = Sender(cluster, self._acc, self._acks, compression=self._compression)
        self._loop.start_soon(sender.run, "producer sender")
        return sender

    def partitions_for(self, topic: str) -> int:
        """The partition count of ``topic`` (from the cache, else the cluster)."""
        count = self._acc.partition_counts.get(topic)
        if count is None:
            count = self._loop.run(self._sender.partition_count, topic)
        return count

    def send(
        self,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> SendFuture:
        """Queue one record and return its future (``result(timeout)`` → ``RecordMetadata``).

        The partition: ``partition`` when given, else Kafka's murmur2 of the key, else the
        topic's sticky partition. Blocks only to learn a new topic's partition count or
        while the buffer is full (``max_block_ms``). Raises ``BufferFullError``,
        ``ClientClosedError``, ``BrokerError`` (unknown topic or partition), ``TypeError``."""
        if self._closed:
            raise ClientClosedError("the producer is closed; records can no longer be sent")
        record = make_record(value, key, headers, timestamp)
        acc = self._acc
        count = acc.partition_counts.get(topic)
        if count is None:
            count = self.partitions_for(topic)
        if partition is None and record.key is None:
            partition = acc.sticky.partition(topic, count)
        else:
            partition = choose_partition(acc, topic, count, partition, record.key)
        future, wake = acc.append(topic, partition, record, self._max_block_ms)
        if wake:  # at most once per burst of records: see ``RecordAccumulator.append``
            self._loop.run_sync_soon(self._sender.wake)
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued now and wait until every record sent so far is done
        (acknowledged or failed). ``RequestTimedOutError`` when ``timeout`` s pass first."""
        self._acc.begin_flush()
        try:
            self._loop.run_sync_soon(self._sender.wake)
            pending = self._acc.incomplete()
            left = _wait_batches(pending, timeout)
        finally:
            self._acc.end_flush()
        if left:
            raise RequestTimedOutError(
                f"flush: {left} record(s) still unacknowledged after {timeout} s"
            )

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued, wait for it (at most ``timeout`` s, by default the delivery
        timeout), then stop. Records still pending fail with ``ClientClosedError``."""
        if self._closed:
            return
        self._closed = True
        if timeout is None:
            timeout = self._delivery_timeout_ms / 1000
        self._acc.close()
        try:
            self._loop.run_sync_soon(self._sender.wake)
            _wait_batches(self._acc.incomplete(), timeout)
        finally:
            error = ClientClosedError("the producer was closed before the record was sent")
            for batch in self._acc.abandon():
                self._acc.release(batch, in_flight=False)
                batch.completion.fail(error)
            self._loop.run_sync_soon(self._sender.cluster.close)
            self._loop.close()
            for completion in self._acc.incomplete():
                completion.fail(error)  # no-op when already done
