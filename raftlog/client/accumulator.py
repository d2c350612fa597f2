"""The producer's record accumulator: per-partition batches in bounded memory.

The user's thread appends records (``append``, under one ``threading.Condition``); the
sender in the trio loop takes ready batches (``ready``) and hands them back when they are
done (``complete``) or must be retried (``requeue``). The lock is never held across I/O.

Rules it keeps:

- Memory: the estimated bytes of every record not yet completed never exceed
  ``buffer_bytes``. ``append`` waits up to ``max_block_ms`` for room, then raises
  ``BufferFullError`` (the record was not queued). A single record larger than the buffer is
  refused at once with ``RecordTooLargeError``.
- Order: a retried batch goes back to the head of its partition's queue, in sequence order,
  so records of one partition (hence of one key) are written in the order they were sent,
  retries included. A batch that left is sealed: records appended meanwhile go into a new
  batch behind it. Without idempotence at most one batch per partition is in flight.
- Idempotence (``producer`` set by the sender): a batch gets its producer id, epoch and base
  sequence when it first leaves (``_Sequence`` of its partition, under the current producer
  id; a new producer id starts every partition at 0 again). Up to ``max_in_flight`` batches
  of a partition travel at once, but only after the partition's first acknowledgement under
  its producer id and while no retry is pending: a retry goes alone, once everything in
  flight before it has answered, so the broker sees sequences in order (it refuses a gap with
  OUT_OF_ORDER_SEQUENCE and answers a duplicate with the first copy's offset).
- A batch is ready when it is full (``batch_bytes``), when another batch waits behind it, when
  it has waited ``linger_ms``, or while a flush or close is in progress.
- Sticky partitioning moves a topic's sticky partition when a batch of it is taken.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from raftlog.client.errors import BufferFullError, ClientClosedError, RequestTimedOutError
from raftlog.client.partitioner import StickyPartitions
from raftlog.errors import RaftlogError, RecordTooLargeError
from raftlog.storage.records import Record

RECORD_OVERHEAD_BYTES = 24
"""Per-record framing in a batch, an upper bound for small records (varints, attributes)."""
BATCH_OVERHEAD_BYTES = 61


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where a record was written: ``offset`` is -1 with ``acks=0`` (no answer)."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class ResultTimeoutError(RequestTimedOutError, TimeoutError):
    """``SendFuture.result(timeout)`` returned before the send finished (it goes on)."""


class SendFuture(Future[RecordMetadata]):
    """A ``concurrent.futures.Future`` of a ``RecordMetadata``; ``result(timeout)`` raises
    ``ResultTimeoutError`` (a ``RaftlogError`` and a ``TimeoutError``) when it is not done."""

    def result(self, timeout: float | None = None) -> RecordMetadata:
        try:
            return super().result(timeout)
        except TimeoutError as exc:
            if isinstance(exc, RaftlogError):
                raise
            raise ResultTimeoutError(
                f"the send is not acknowledged yet after {timeout} s; it goes on in the "
                "background (call result() again, or flush())"
            ) from None


def record_bytes(record: Record) -> int:
    """The estimated bytes a record takes in a batch (and in the buffer)."""
    n = RECORD_OVERHEAD_BYTES
    if record.key is not None:
        n += len(record.key)
    if record.value is not None:
        n += len(record.value)
    for hkey, hvalue in record.headers:
        n += len(hkey) + (len(hvalue) if hvalue is not None else 0) + 4
    return n


@dataclass(eq=False, slots=True)
class ProducerBatch:
    """Records of one partition that travel together."""

    topic: str
    partition: int
    created_s: float
    deadline_s: float
    records: list[Record] = field(default_factory=list)
    futures: list[Future[RecordMetadata]] = field(default_factory=list)
    size_bytes: int = BATCH_OVERHEAD_BYTES
    sealed: bool = False
    attempts: int = 0
    retry_at_s: float = 0.0
    last_error: RaftlogError | None = None
    encoded: bytes | None = None
    """The batch as built on its first attempt; retries resend the same bytes."""
    producer_id: int = -1
    producer_epoch: int = -1
    base_sequence: int = -1
    order: int = -1
    """Position among the batches of its partition and producer id (sequences wrap; this
    does not)."""
    maybe_written: bool = False
    """An attempt's outcome was unknown: the records may be in the log."""


SEQUENCE_MODULUS = 2**31


@dataclass(slots=True)
class _Sequence:
    """A partition's sequence numbers under one producer id."""

    producer_id: int
    producer_epoch: int
    next_seq: int = 0
    next_order: int = 0
    acked: bool = False
    cautious: bool = False
    """A retry happened: send one batch at a time until one is acknowledged."""
    open_orders: set[int] = field(default_factory=set)
    """Batches sequenced and not finished yet."""


class RecordAccumulator:
    """See the module docstring. Thread-safe."""

    def __init__(
        self,
        *,
        batch_bytes: int,
        buffer_bytes: int,
        linger_ms: int,
        delivery_timeout_ms: int,
        sticky: StickyPartitions | None = None,
        max_in_flight: int = 1,
    ) -> None:
        self.batch_bytes = batch_bytes
        self.buffer_bytes = buffer_bytes
        self.linger_s = linger_ms / 1000
        self.delivery_timeout_s = delivery_timeout_ms / 1000
        self.sticky = sticky or StickyPartitions()
        self.partition_counts: dict[str, int] = {}
        self._cond = threading.Condition()
        self._queues: dict[tuple[str, int], deque[ProducerBatch]] = {}
        self._in_flight: dict[tuple[str, int], int] = {}
        self.max_in_flight = max_in_flight
        self.idempotent = False
        self.producer: tuple[int, int] | None = None
        """(producer id, epoch) that fresh batches are stamped with; None: not known yet."""
        self._sequences: dict[tuple[str, int], _Sequence] = {}
        self.on_release: Callable[[], None] | None = None
        """Called (in the sender's thread) when a batch frees its bytes (AsyncProducer)."""
        self._incomplete: set[Future[RecordMetadata]] = set()
        self._used_bytes = 0
        self._flushing = 0
        self._closed = False

    @property
    def used_bytes(self) -> int:
        return self._used_bytes

    def sticky_partition(self, topic: str, partitions: int) -> int:
        with self._cond:
            return self.sticky.partition(topic, partitions)

    def append(
        self, topic: str, partition: int, record: Record, max_block_ms: int
    ) -> tuple[SendFuture, bool]:
        """Queue ``record``; returns its future and whether the sender should be woken (a
        new batch started, so a linger timer runs, or a batch is full)."""
        size = record_bytes(record)
        if size + BATCH_OVERHEAD_BYTES > self.buffer_bytes:
            raise RecordTooLargeError(
                f"a record of about {size} bytes does not fit the producer's "
                f"{self.buffer_bytes}-byte buffer; raise buffer_bytes or send smaller records"
            )
        future = SendFuture()
        future.set_running_or_notify_cancel()  # a queued send cannot be cancelled
        with self._cond:
            deadline = time.monotonic() + max_block_ms / 1000
            while self._used_bytes + size > self.buffer_bytes and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BufferFullError(
                        f"the producer's buffer ({self.buffer_bytes} bytes) stayed full for "
                        f"{max_block_ms} ms, so the record was not queued: the cluster is "
                        "slow or unreachable; retry later, or raise buffer_bytes/max_block_ms"
                    )
                self._cond.wait(remaining)
            if self._closed:
                raise ClientClosedError("the producer is closed; records can no longer be sent")
            queue = self._queues.setdefault((topic, partition), deque())
            batch = queue[-1] if queue and not queue[-1].sealed else None
            wake = False
            if batch is None or (batch.records and batch.size_bytes + size > self.batch_bytes):
                now = time.monotonic()
                batch = ProducerBatch(topic, partition, now, now + self.delivery_timeout_s)
                queue.append(batch)
                wake = True
            batch.records.append(record)
            batch.futures.append(future)
            batch.size_bytes += size
            self._used_bytes += size
            self._incomplete.add(future)
            if batch.size_bytes >= self.batch_bytes:
                wake = True
            return future, wake

    def _may_send(self, tp: tuple[str, int], batch: ProducerBatch) -> bool:
        """Whether ``batch``, the head of ``tp``'s queue, may leave now (order rules)."""
        in_flight = self._in_flight.get(tp, 0)
        if in_flight == 0:
            return not (self.idempotent and not batch.sealed and self.producer is None)
        if not self.idempotent or batch.sealed or self.producer is None:
            return False  # a retry goes alone; without idempotence one at a time
        seq = self._sequences.get(tp)
        return (
            seq is not None
            and (seq.producer_id, seq.producer_epoch) == self.producer
            and seq.acked
            and not seq.cautious
            and in_flight < self.max_in_flight
        )

    def _assign_sequence(self, tp: tuple[str, int], batch: ProducerBatch) -> None:
        assert self.producer is not None
        seq = self._sequences.get(tp)
        if seq is None or (seq.producer_id, seq.producer_epoch) != self.producer:
            seq = self._sequences[tp] = _Sequence(*self.producer)
        batch.producer_id, batch.producer_epoch = self.producer
        batch.base_sequence = seq.next_seq
        batch.order = seq.next_order
        seq.next_seq = (seq.next_seq + len(batch.records)) % SEQUENCE_MODULUS
        seq.open_orders.add(batch.order)
        seq.next_order += 1

    def ready(self, now_s: float) -> tuple[list[ProducerBatch], float | None]:
        """Take the batches to send now (at most one per partition per call), and say when
        the next one will be ready (now, when a partition could send another at once)."""
        out: list[ProducerBatch] = []
        next_s: float | None = None
        with self._cond:
            force = self._flushing > 0 or self._closed
            for tp, queue in self._queues.items():
                if not queue or not self._may_send(tp, queue[0]):
                    continue
                batch = queue[0]
                due = batch.retry_at_s if batch.sealed else batch.created_s + self.linger_s
                full = batch.size_bytes >= self.batch_bytes or len(queue) > 1
                if batch.sealed and now_s < batch.retry_at_s:
                    pass
                elif full or force or now_s >= due:
                    queue.popleft()
                    self._in_flight[tp] = self._in_flight.get(tp, 0) + 1
                    if not batch.sealed:
                        batch.sealed = True
                        if self.idempotent:
                            self._assign_sequence(tp, batch)
                        count = self.partition_counts.get(batch.topic, 1)
                        self.sticky.on_batch_sent(batch.topic, batch.partition, count)
                    out.append(batch)
                    if queue and self._may_send(tp, queue[0]):
                        next_s = now_s
                    continue
                wake_at = min(due, batch.deadline_s)
                next_s = wake_at if next_s is None else min(next_s, wake_at)
        return out, next_s

    def expired(self, now_s: float) -> list[ProducerBatch]:
        """Take the queued (not in flight) batches whose delivery deadline passed."""
        out: list[ProducerBatch] = []
        with self._cond:
            for tp, queue in self._queues.items():
                if self._in_flight.get(tp, 0):
                    continue
                while queue and queue[0].deadline_s <= now_s:
                    out.append(queue.popleft())
        return out

    def requeue(self, batch: ProducerBatch, retry_at_s: float) -> None:
        """Put an in-flight batch back at the head of its queue (among the other retries, in
        sequence order), to be sent at ``retry_at_s``."""
        with self._cond:
            batch.retry_at_s = retry_at_s
            tp = (batch.topic, batch.partition)
            queue = self._queues.setdefault(tp, deque())
            i = 0
            while (
                i < len(queue)
                and queue[i].sealed
                and (queue[i].producer_id, queue[i].order) < (batch.producer_id, batch.order)
            ):
                i += 1
            queue.insert(i, batch)
            self._done_in_flight(tp)
            seq = self._sequences.get(tp)
            if seq is not None and seq.producer_id == batch.producer_id:
                seq.cautious = True

    def _done_in_flight(self, tp: tuple[str, int]) -> None:
        left = self._in_flight.get(tp, 0) - 1
        assert left >= 0, tp
        if left:
            self._in_flight[tp] = left
        else:
            self._in_flight.pop(tp, None)

    def earlier_pending(self, batch: ProducerBatch) -> bool:
        """Whether a batch before ``batch`` (same partition and producer id) is still queued
        or in flight: then an OUT_OF_ORDER_SEQUENCE for ``batch`` only means "not yet"."""
        with self._cond:
            tp = (batch.topic, batch.partition)
            seq = self._sequences.get(tp)
            if seq is None or seq.producer_id != batch.producer_id:
                return False
            return any(o < batch.order for o in seq.open_orders)

    def release(self, batch: ProducerBatch, *, in_flight: bool = True, acked: bool = False) -> None:
        """Forget a finished batch (its futures are being completed): frees its bytes.
        ``acked``: the cluster wrote it (its partition may pipeline again)."""
        with self._cond:
            tp = (batch.topic, batch.partition)
            if in_flight:
                self._done_in_flight(tp)
            seq = self._sequences.get(tp)
            if seq is not None and seq.producer_id == batch.producer_id:
                seq.open_orders.discard(batch.order)
                if acked:
                    seq.acked = True
                    seq.cautious = False
            self._used_bytes -= batch.size_bytes - BATCH_OVERHEAD_BYTES
            self._incomplete.difference_update(batch.futures)
            self._cond.notify_all()
        if self.on_release is not None:
            self.on_release()

    def incomplete(self) -> list[Future[RecordMetadata]]:
        with self._cond:
            return list(self._incomplete)

    def begin_flush(self) -> None:
        with self._cond:
            self._flushing += 1

    def end_flush(self) -> None:
        with self._cond:
            self._flushing -= 1

    def close(self) -> None:
        """Refuse new records; what is queued is sent at once (no linger)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def abandon(self) -> list[ProducerBatch]:
        """Take every queued batch (the producer is closing without waiting for them)."""
        with self._cond:
            out = [b for q in self._queues.values() for b in q]
            self._queues.clear()
            return out
