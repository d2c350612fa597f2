"""What the Raft core needs from a partition log: entries, terms of offsets, hard state.

The core never writes to the store: it hands the work out in ``Ready`` (truncate, append,
persist hard state) and the driver (``raftlog/runtime`` in production, the simulator in
tests) performs it, then calls ``advance``. Until then the core keeps its not-yet-persisted
entries in memory. The store is therefore a *read-only view of what is durable or at least
written*, in the style of etcd-io/raft's ``Storage``.

One log (the KRaft model): an entry is one record batch. An entry covers the record offsets
``offset .. last_offset`` (inclusive); Raft log positions are record offsets; the batch's
leader-epoch field holds the entry's term. Log matching compares ``(offset, term)`` of the
last record of the preceding entry.

``raftlog.storage.log.PartitionLog`` implements this protocol structurally (storage does not
import raft), and ``raftlog.testing`` has an in-memory implementation with the same behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from raftlog.types import NodeId, Offset, Term


@dataclass(frozen=True, slots=True)
class Entry:
    """One Raft log entry: one record batch covering ``offset .. last_offset``.

    ``data`` is the encoded batch and is opaque to the core. ``offset`` and ``term`` are
    authoritative: the storage stamps them into the batch header when it appends (both
    fields lie outside the batch CRC, as in Kafka), so a leader may hand out entries whose
    bytes were built before their offset was known.
    """

    offset: Offset
    last_offset: Offset
    term: Term
    data: bytes

    def __post_init__(self) -> None:
        assert 0 <= self.offset <= self.last_offset, (self.offset, self.last_offset)
        assert self.term >= 0, self.term

    @property
    def record_count(self) -> int:
        return self.last_offset - self.offset + 1


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before a node answers a vote or an append: term and vote."""

    term: Term
    vote: NodeId | None


class LogStore(Protocol):
    """A read-only view of a partition log for the Raft core.

    Offsets below ``log_start_offset()`` are gone (retention moved the start), offsets at or
    past ``log_end_offset()`` do not exist yet.
    """

    def log_start_offset(self) -> Offset:
        """The first offset the log still holds (0 until prefix truncation)."""
        ...

    def log_end_offset(self) -> Offset:
        """One past the last offset held; equals ``log_start_offset()`` when empty."""
        ...

    def last_term(self) -> Term:
        """The term of the last entry, or of the entry before the log start when empty
        after prefix truncation; ``NO_TERM`` (-1) for a log that never held anything."""
        ...

    def term_at(self, offset: Offset) -> Term | None:
        """The term of the entry holding ``offset``.

        Also answers for ``offset == log_start_offset() - 1`` (the last offset removed by
        prefix truncation: log matching needs it). ``None`` below that or past the end;
        for ``offset == -1`` it returns ``NO_TERM``.
        """
        ...

    def end_offset_for_term(self, term: Term) -> tuple[Term, Offset]:
        """Kafka's OffsetsForLeaderEpoch: the largest term ``t <= term`` that the log holds,
        and the end offset of ``t`` (the first offset of the next larger term, or the log
        end offset when ``t`` is the last). ``(NO_TERM, -1)`` when no term ``<= term``."""
        ...

    def entries(self, offset: Offset, max_bytes: int) -> list[Entry]:
        """Whole entries from the one that starts at ``offset`` (an entry boundary), in
        order: at least one when any exists, then more while the total ``len(data)`` stays
        within ``max_bytes``. Empty when ``offset >= log_end_offset()``."""
        ...

    def hard_state(self) -> HardState:
        """The persisted term and vote (``HardState(0, None)`` for a new log)."""
        ...
