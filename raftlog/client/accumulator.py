"""The producer's record accumulator: per-partition batches in bounded memory.

The user's thread appends records (``append``, under one ``threading.Lock``); the sender in
the trio loop takes ready batches (``ready``) and hands them back when they are done
(``complete``) or must be retried (``requeue``). The lock is never held across I/O, and it is
a plain ``Lock`` (a ``Condition`` on it serves only ``append`` waiting for room): ``append``
takes it once per record, so it must cost no more than the C-level acquire and release.

Waking the sender: ``append`` says "wake the sender" only when the sender would otherwise
look too late: when a batch becomes ready (full, or another batch queued behind it) or a new
batch starts a linger timer earlier than the sender's next look (``ready`` records when
that is: its next timer, or never while it only waits for answers). A wake from the user's
thread is a cross-thread call into the loop (a socket write, and the GIL handed over), so a
burst of records costs at most one wake, not one per new batch.

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
- Pipelining is for full batches: a batch that is not full (and has no batch queued behind
  it) waits, filling, until its partition has nothing in flight, unless a flush or close
  is in progress. Why: every batch is a Raft entry, replicated and fsynced on a majority,
  and the broker's cost per entry is what grows its latency under load. Sending a few
  records every linger behind entries still in flight queued them there: at 10,000
  records/s over 3 partitions (linger 1 ms, 3 brokers on one 2-core host) the answer to a
  batch took ~25 ms with up to 5 small batches of a partition in flight, ~7 ms with one,
  and a lone single-record PRODUCE ~4 ms at the same time. Waiting for the answer makes
  the next batch as big as the records that came meanwhile, so the partition sends one
  entry per round trip; once records come faster than a round trip fills a batch,
  batches are full and up to ``max_in_flight`` of them travel at once again.
- A batch is ready when it is full (``batch_bytes``), when another batch waits behind it, when
  it has waited ``linger_ms``, or while a flush or close is in progress.
- Sticky partitioning moves a topic's sticky partition when a batch of it is taken (under
  the lock); reading it (``sticky_partition``) takes no lock: see ``StickyPartitions``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftlog.client.errors import BufferFullError, ClientClosedError, RequestTimedOutError
from raftlog.client.partitioner import StickyPartitions
from raftlog.errors import RaftlogError, RecordTooLargeError
from raftlog.storage.records import Record

RECORD_OVERHEAD_BYTES = 24
"""Per-record framing in a batch, an upper bound for small records (varints, attributes)."""
BATCH_OVERHEAD_BYTES = 61

log = logging.getLogger("raftlog.client")


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where a record was written: ``offset`` is -1 with ``acks=0`` (no answer)."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class ResultTimeoutError(RequestTimedOutError, TimeoutError):
    """``SendFuture.result(timeout)`` returned before the send finished (it goes on)."""


_Callback = tuple[Callable[[Any], object], object]
"""A done callback and what it is called with (a record's ``SendFuture``)."""


def _call(fn: Callable[[Any], object], arg: object) -> None:
    """Run a done callback; what it raises is logged (as ``concurrent.futures`` does)."""
    try:
        fn(arg)
    except Exception:
        log.exception("exception calling callback for %r", arg)


class BatchCompletion:
    """The outcome of one batch, shared by the ``SendFuture`` of each of its records.

    Created with the batch; completed once, in the thread that learns the outcome (the
    sender's), by ``complete`` (offsets) or ``fail`` (an error). Waiters block on one
    ``threading.Event``; callbacks registered by the records' futures run after it is set,
    in the completing thread. Thread-safe."""

    __slots__ = (
        "_callbacks",
        "_event",
        "_lock",
        "append_time_ms",
        "base_offset",
        "done",
        "error",
        "partition",
        "records",
        "timestamps",
        "topic",
    )

    def __init__(self, topic: str, partition: int, records: list[Record]) -> None:
        self.topic = topic
        self.partition = partition
        self.records: list[Record] | None = records
        """The batch's records while it is pending (dropped once it is done)."""
        self.base_offset = -1
        self.append_time_ms = -1
        self.timestamps: list[int] | None = None
        """The records' own timestamps, kept when the broker did not stamp the batch."""
        self.error: BaseException | None = None
        self.done = False
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[_Callback] | None = []

    def pending_records(self) -> int:
        """How many records wait on the batch (0 once it is done)."""
        records = self.records
        return 0 if records is None else len(records)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the batch is done; False when ``timeout`` s passed first."""
        return self.done or self._event.wait(timeout)

    def complete(self, base_offset: int, append_time_ms: int) -> bool:
        """The batch was written at ``base_offset`` (-1: unknown, acks=0), stamped with
        ``append_time_ms`` (-1: each record keeps its own timestamp). False if already done."""
        with self._lock:
            if self.done:
                return False
            self.base_offset = base_offset
            self.append_time_ms = append_time_ms
            if append_time_ms < 0 and self.records is not None:
                self.timestamps = [r.timestamp_ms or -1 for r in self.records]
            callbacks = self._settle()
        self._notify(callbacks)
        return True

    def fail(self, error: BaseException) -> bool:
        """The batch failed with ``error``. False if it was already done."""
        with self._lock:
            if self.done:
                return False
            self.error = error
            callbacks = self._settle()
        self._notify(callbacks)
        return True

    def _settle(self) -> list[_Callback]:
        """(Under the lock) mark the batch done; returns the callbacks to run."""
        self.records = None
        self.done = True
        callbacks, self._callbacks = self._callbacks, None
        return callbacks or []

    def _notify(self, callbacks: list[_Callback]) -> None:
        self._event.set()
        for fn, arg in callbacks:
            _call(fn, arg)

    def add_done_callback(self, fn: Callable[[Any], object], arg: object = None) -> None:
        """Call ``fn(arg)`` once the batch is done: in the completing thread, after waiters
        are woken, or at once (in this thread) when it is already done."""
        with self._lock:
            if self._callbacks is not None:
                self._callbacks.append((fn, arg))
                return
        _call(fn, arg)

    def metadata(self, index: int) -> RecordMetadata:
        """Where the batch's record ``index`` was written (the batch succeeded)."""
        base = self.base_offset
        offset = base + index if base >= 0 else -1
        ts = self.append_time_ms
        if ts < 0:
            ts = self.timestamps[index] if self.timestamps is not None else -1
        return RecordMetadata(self.topic, self.partition, offset, ts or -1)


class SendFuture:
    """Where one sent record was written, once its batch is done: a light future with the
    ``concurrent.futures.Future`` API (``result``, ``exception``, ``done``,
    ``add_done_callback``...). ``result(timeout)`` raises ``ResultTimeoutError`` (a
    ``RaftlogError`` and a ``TimeoutError``) when it is not done in time. A queued send
    cannot be cancelled. Callbacks run in the thread that completes the record's batch (the
    producer's loop), or at once in the caller's thread when it is already done."""

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: BatchCompletion, index: int) -> None:
        self._batch = batch
        self._index = index

    def __repr__(self) -> str:
        b = self._batch
        state = "pending" if not b.done else "failed" if b.error is not None else "done"
        return f"<SendFuture {state} topic={b.topic!r} partition={b.partition} #{self._index}>"

    def _wait(self, timeout: float | None) -> BatchCompletion:
        batch = self._batch
        if not batch.wait(timeout):
            raise ResultTimeoutError(
                f"the send is not acknowledged yet after {timeout} s; it goes on in the "
                "background (call result() again, or flush())"
            )
        return batch

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """The record's ``RecordMetadata``, waiting up to ``timeout`` s (None: no limit);
        raises what the send failed with, or ``ResultTimeoutError``."""
        batch = self._wait(timeout)
        if batch.error is not None:
            raise batch.error
        return batch.metadata(self._index)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """What the send failed with (None: it succeeded), waiting up to ``timeout`` s;
        ``ResultTimeoutError`` when it is not done in time."""
        return self._wait(timeout).error

    def done(self) -> bool:
        return self._batch.done

    def running(self) -> bool:
        return not self._batch.done

    def cancel(self) -> bool:
        """A queued send cannot be cancelled: always False."""
        return False

    def cancelled(self) -> bool:
        return False

    def add_done_callback(self, fn: Callable[[SendFuture], object]) -> None:
        """Call ``fn(self)`` when the record's batch is done (at once if it is)."""
        self._batch.add_done_callback(fn, self)


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
    records: list[Record]
    completion: BatchCompletion
    """The outcome its records' futures wait on."""
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
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        """Signalled when bytes are freed (or on close), for ``append`` waiting for room."""
        self._room_waiters = 0
        self._sender_looks_s = math.inf
        """When the sender will next call ``ready`` by itself (its next timer; inf: only when
        woken). ``append`` wakes it only for a batch ready before that."""
        self._queues: dict[tuple[str, int], deque[ProducerBatch]] = {}
        self._in_flight: dict[tuple[str, int], int] = {}
        self.max_in_flight = max_in_flight
        self.idempotent = False
        self.producer: tuple[int, int] | None = None
        """(producer id, epoch) that fresh batches are stamped with; None: not known yet."""
        self._sequences: dict[tuple[str, int], _Sequence] = {}
        self.on_release: Callable[[], None] | None = None
        """Called (in the sender's thread) when a batch frees its bytes (AsyncProducer)."""
        self._incomplete: set[BatchCompletion] = set()
        self._used_bytes = 0
        self._flushing = 0
        self._closed = False

    @property
    def used_bytes(self) -> int:
        return self._used_bytes

    def sticky_partition(self, topic: str, partitions: int) -> int:
        """The topic's sticky partition; no lock (see ``StickyPartitions``)."""
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
        with self._lock:
            if self._used_bytes + size > self.buffer_bytes and not self._closed:
                self._wait_for_room(size, max_block_ms)
            if self._closed:
                raise ClientClosedError("the producer is closed; records can no longer be sent")
            tp = (topic, partition)
            queue = self._queues.get(tp)
            if queue is None:
                queue = self._queues[tp] = deque()
            batch = queue[-1] if queue and not queue[-1].sealed else None
            ready_at_s = math.inf  # when what this append changed makes a batch ready
            if batch is None or (batch.records and batch.size_bytes + size > self.batch_bytes):
                now = time.monotonic()
                records: list[Record] = []
                completion = BatchCompletion(topic, partition, records)
                batch = ProducerBatch(
                    topic, partition, now, now + self.delivery_timeout_s, records, completion
                )
                # the head is ready at once when this one queues behind it (``ready``)
                ready_at_s = now + self.linger_s if not queue else now
                if queue:
                    # a full batch waits for the sender: keyless records move on now, not
                    # only when the sender takes it (which may be several batches later
                    # while answers are awaited), so they spread as Kafka's sticky
                    # partitioner does (a new partition per batch.size of records)
                    count = self.partition_counts.get(topic, 1)
                    self.sticky.on_batch_sent(topic, partition, count)
                queue.append(batch)
                self._incomplete.add(completion)
            records = batch.records
            future = SendFuture(batch.completion, len(records))
            records.append(record)
            batch.size_bytes += size
            self._used_bytes += size
            if batch.size_bytes >= self.batch_bytes:
                ready_at_s = 0.0  # full: ready now
            if ready_at_s < self._sender_looks_s:
                # the sender would look too late: wake it; until it looks (``ready``), it
                # is known to be on its way, so later appends need not wake it again
                self._sender_looks_s = 0.0
                return future, True
            return future, False

    def _wait_for_room(self, size: int, max_block_ms: int) -> None:
        """(Under the lock) wait until ``size`` more bytes fit the buffer, at most
        ``max_block_ms``; ``BufferFullError`` past it."""
        deadline = time.monotonic() + max_block_ms / 1000
        while self._used_bytes + size > self.buffer_bytes and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BufferFullError(
                    f"the producer's buffer ({self.buffer_bytes} bytes) stayed full for "
                    f"{max_block_ms} ms, so the record was not queued: the cluster is "
                    "slow or unreachable; retry later, or raise buffer_bytes/max_block_ms"
                )
            self._room_waiters += 1
            try:
                self._room.wait(remaining)
            finally:
                self._room_waiters -= 1

    def _may_send(self, tp: tuple[str, int], batch: ProducerBatch, eager: bool) -> bool:
        """Whether ``batch``, the head of ``tp``'s queue, may leave now (order rules).
        ``eager``: it is full (or has a batch behind it) or a flush or close is on, so it
        may pipeline behind the partition's batches in flight (see the module docstring)."""
        in_flight = self._in_flight.get(tp, 0)
        if in_flight == 0:
            return not (self.idempotent and not batch.sealed and self.producer is None)
        if not self.idempotent or batch.sealed or self.producer is None:
            return False  # a retry goes alone; without idempotence one at a time
        if not eager:
            return False  # a batch that is not full fills until the answers come
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
        with self._lock:
            force = self._flushing > 0 or self._closed
            for tp, queue in self._queues.items():
                if not queue:
                    continue
                batch = queue[0]
                full = batch.size_bytes >= self.batch_bytes or len(queue) > 1
                if not self._may_send(tp, batch, full or force):
                    continue
                due = batch.retry_at_s if batch.sealed else batch.created_s + self.linger_s
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
                    if queue:
                        head = queue[0]
                        eager = force or head.size_bytes >= self.batch_bytes or len(queue) > 1
                        if self._may_send(tp, head, eager):
                            next_s = now_s
                    continue
                wake_at = min(due, batch.deadline_s)
                next_s = wake_at if next_s is None else min(next_s, wake_at)
            # the sender calls ``ready`` again at ``next_s`` (or when woken): an append
            # making a batch ready before then must wake it
            self._sender_looks_s = math.inf if next_s is None else next_s
        return out, next_s

    def expired(self, now_s: float) -> list[ProducerBatch]:
        """Take the queued (not in flight) batches whose delivery deadline passed."""
        out: list[ProducerBatch] = []
        with self._lock:
            for tp, queue in self._queues.items():
                if self._in_flight.get(tp, 0):
                    continue
                while queue and queue[0].deadline_s <= now_s:
                    out.append(queue.popleft())
        return out

    def requeue(self, batch: ProducerBatch, retry_at_s: float) -> None:
        """Put an in-flight batch back at the head of its queue (among the other retries, in
        sequence order), to be sent at ``retry_at_s``."""
        with self._lock:
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
        with self._lock:
            tp = (batch.topic, batch.partition)
            seq = self._sequences.get(tp)
            if seq is None or seq.producer_id != batch.producer_id:
                return False
            return any(o < batch.order for o in seq.open_orders)

    def release(self, batch: ProducerBatch, *, in_flight: bool = True, acked: bool = False) -> None:
        """Forget a finished batch (its completion is being set): frees its bytes.
        ``acked``: the cluster wrote it (its partition may pipeline again)."""
        with self._lock:
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
            self._incomplete.discard(batch.completion)
            if self._room_waiters:
                self._room.notify_all()
        if self.on_release is not None:
            self.on_release()

    def incomplete(self) -> list[BatchCompletion]:
        """The completions of the batches not released yet (queued or in flight)."""
        with self._lock:
            return list(self._incomplete)

    def begin_flush(self) -> None:
        with self._lock:
            self._flushing += 1

    def end_flush(self) -> None:
        with self._lock:
            self._flushing -= 1

    def close(self) -> None:
        """Refuse new records; what is queued is sent at once (no linger)."""
        with self._lock:
            self._closed = True
            self._room.notify_all()

    def abandon(self) -> list[ProducerBatch]:
        """Take every queued batch (the producer is closing without waiting for them)."""
        with self._lock:
            out = [b for q in self._queues.values() for b in q]
            self._queues.clear()
            return out
