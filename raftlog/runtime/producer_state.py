"""Idempotent producers: the per-partition table that turns retries into no-ops.

An idempotent producer stamps every batch with its producer id, its epoch and the sequence
number of the batch's first record (per partition, counting records from 0, wrapping at
2**31). The partition leader checks each produced batch against ``ProducerStates`` before it
goes into Raft:

- a batch equal (same first and last sequence) to one of the producer's last
  ``BATCHES_KEPT`` batches is a **duplicate**: it is not appended again; the producer is told
  where the first copy went (once that copy is committed);
- a batch whose first sequence is not the last one + 1 is **out of order**
  (``OUT_OF_ORDER_SEQUENCE``): an earlier batch is missing, typically one the producer is
  about to resend; nothing is written and the producer resends in order;
- an older epoch than the one seen is **fenced** (``INVALID_PRODUCER_EPOCH``); a newer
  epoch must start at sequence 0;
- a producer id the table does not know (new, or its batches went with retention) may
  start at any sequence, as in Kafka.

The table is a pure function of the durable log: ``apply`` records each batch once it is
written, in log order, and ``rebuild`` replays the log's batch headers when the replica
opens and whenever a follower's log is truncated or reset (the removed batches' sequence
numbers are free again). So after a leader change or a restart the new leader knows every
batch in its log, including those it did not write itself, and still rejects their
duplicates. The leader's check also looks at the entries the Raft core holds that are not
durable yet (``pending``): its own recent proposals and a previous leader's tail.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from raftlog.errors import ErrorCode

BATCHES_KEPT = 5
"""Batches remembered per producer: as many as a producer may have in flight (Kafka: 5)."""
PRODUCERS_MAX = 100_000
"""Producers remembered per partition; the least recently seen is forgotten first."""
SEQUENCE_MODULUS = 2**31
NO_PRODUCER_ID = -1


@dataclass(frozen=True, slots=True)
class BatchMeta:
    """Where one producer batch went."""

    first_seq: int
    last_seq: int
    base_offset: int
    last_offset: int
    term: int


class _Producer:
    __slots__ = ("batches", "epoch")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches: deque[BatchMeta] = deque(maxlen=BATCHES_KEPT)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a produced batch: append it (``error`` NONE, ``duplicate`` None),
    answer with where its first copy went (``duplicate``), or refuse it (``error``)."""

    error: ErrorCode = ErrorCode.NONE
    message: str = ""
    duplicate: BatchMeta | None = None


APPEND = Verdict()


ProducerBatch = tuple[int, int, int, int, int, int]
"""(producer_id, epoch, first_seq, base_offset, last_offset, term) of one batch in the log."""


def last_sequence(first_seq: int, record_count: int) -> int:
    return (first_seq + record_count - 1) % SEQUENCE_MODULUS


def _meta(b: ProducerBatch) -> BatchMeta:
    _, _, first_seq, base, last, term = b
    return BatchMeta(first_seq, last_sequence(first_seq, last - base + 1), base, last, term)


class ProducerStates:
    """Producer id → epoch and last batches, as of log offset ``end``."""

    def __init__(self) -> None:
        self._producers: dict[int, _Producer] = {}
        self.end = 0

    def __len__(self) -> int:
        return len(self._producers)

    def check(
        self,
        producer_id: int,
        epoch: int,
        first_seq: int,
        record_count: int,
        pending: Iterable[ProducerBatch] = (),
    ) -> Verdict:
        """The verdict on a batch the leader is about to append, given the batches after
        ``end`` that are in the log but not yet applied (``pending``). Changes nothing."""
        if producer_id == NO_PRODUCER_ID:
            return APPEND
        p = self._producers.get(producer_id)
        for pb in pending:
            if pb[0] == producer_id:
                if p is None or pb[1] != p.epoch:
                    p = _Producer(pb[1])
                else:
                    q = _Producer(p.epoch)
                    q.batches.extend(p.batches)
                    p = q
                p.batches.append(_meta(pb))
        if p is None:
            return APPEND
        if epoch < p.epoch:
            return Verdict(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"producer {producer_id} epoch {epoch} is older than epoch {p.epoch}: "
                "a newer instance of this producer took over",
            )
        if epoch > p.epoch:
            if first_seq != 0:
                return Verdict(
                    ErrorCode.OUT_OF_ORDER_SEQUENCE,
                    f"producer {producer_id} epoch {epoch} must start at sequence 0, "
                    f"not {first_seq}",
                )
            return APPEND
        last_seq = last_sequence(first_seq, record_count)
        for b in p.batches:
            if b.first_seq == first_seq and b.last_seq == last_seq:
                return Verdict(duplicate=b)
        if not p.batches:
            return APPEND
        expected = (p.batches[-1].last_seq + 1) % SEQUENCE_MODULUS
        if first_seq != expected:
            return Verdict(
                ErrorCode.OUT_OF_ORDER_SEQUENCE,
                f"producer {producer_id} sent sequence {first_seq} but the partition "
                f"expects {expected}; resend the missing batches first",
            )
        return APPEND

    def apply(self, batch: ProducerBatch) -> None:
        """Record a batch that is now in the log (offsets at or after ``end``)."""
        producer_id, epoch, _, base_offset, last_offset, _ = batch
        assert base_offset >= self.end, (base_offset, self.end)
        self.end = last_offset + 1
        if producer_id == NO_PRODUCER_ID:
            return
        p = self._producers.pop(producer_id, None)  # re-insert: most recent last
        if p is None or epoch != p.epoch:
            p = _Producer(epoch)
        p.batches.append(_meta(batch))
        self._producers[producer_id] = p
        while len(self._producers) > PRODUCERS_MAX:
            del self._producers[next(iter(self._producers))]

    def rebuild(self, start: int, batches: Iterable[ProducerBatch]) -> None:
        """Forget everything and replay every batch of the log from offset ``start`` on."""
        self._producers.clear()
        self.end = start
        for b in batches:
            self.apply(b)
