"""The core's view of its log: what the store holds, corrected by what is not yet persisted.

The core never writes to the ``LogStore``. Changes wait here until the driver has made them
durable: a pending log-start reset (the whole log replaced by an empty one starting at a
new offset), a pending suffix truncation, and unstable entries to append. ``Ready`` carries
them out; ``advance`` checks the store now agrees and forgets them.

Reads combine both: offsets below ``_stable_end`` come from the store (which may still hold
a suffix that is about to be truncated; it is ignored), offsets above from ``_unstable``.

Rules kept (asserted): entries are contiguous and their terms never decrease; nothing at or
below the commit offset is ever truncated (the caller asserts, it knows the commit); every
entry read from the store starts where it was asked and has the term ``term_at`` reports.
"""

from __future__ import annotations

from bisect import bisect_right

from raftlog.raft.log_store import Entry, LogStore
from raftlog.types import NO_TERM, Offset, Term


class RaftLog:
    def __init__(self, store: LogStore) -> None:
        self.store = store
        self._stable_end: Offset = store.log_end_offset()
        self._unstable: list[Entry] = []
        self._pending_truncate: Offset | None = None
        self._pending_reset: tuple[Offset, Term] | None = None
        assert store.log_start_offset() <= self._stable_end

    # -- reads ---------------------------------------------------------------------------

    def log_start_offset(self) -> Offset:
        if self._pending_reset is not None:
            return self._pending_reset[0]
        return self.store.log_start_offset()

    def log_end_offset(self) -> Offset:
        if self._unstable:
            return Offset(self._unstable[-1].last_offset + 1)
        return self._stable_end

    def last_term(self) -> Term:
        if self._unstable:
            return self._unstable[-1].term
        term = self.term_at(Offset(self._stable_end - 1))
        assert term is not None, self._stable_end
        return term

    def term_at(self, offset: Offset) -> Term | None:
        """The term of the entry holding ``offset`` (see ``LogStore.term_at``)."""
        if offset < -1:
            return None
        if self._unstable and offset >= self._unstable[0].offset:
            i = self._unstable_index(offset)
            return None if i is None else self._unstable[i].term
        if self._pending_reset is not None:
            start, term = self._pending_reset
            if offset == start - 1:
                return term
            return None
        if offset >= self._stable_end:
            return None
        return self.store.term_at(offset)

    def matches(self, offset: Offset, term: Term) -> bool:
        return self.term_at(offset) == term

    def end_offset_for_term(self, term: Term) -> tuple[Term, Offset]:
        """The largest term ``t <= term`` held and the end offset of ``t`` (Kafka's
        OffsetsForLeaderEpoch); the term before the log start counts as held, ending at
        the log start. ``(NO_TERM, -1)`` when nothing qualifies."""
        for e in reversed(self._unstable):
            if e.term <= term:
                return e.term, Offset(e.last_offset + 1)
        if self._pending_reset is not None:
            start, reset_term = self._pending_reset
            return (reset_term, start) if reset_term <= term else (NO_TERM, Offset(-1))
        if self._stable_end < self.store.log_end_offset():
            # The store still holds a suffix that is about to go; answer for what stays.
            last = self.store.term_at(Offset(self._stable_end - 1))
            if last is not None and last <= term:
                return last, self._stable_end
        found_term, end = self.store.end_offset_for_term(term)
        if found_term == NO_TERM:
            before = self.store.term_at(Offset(self.store.log_start_offset() - 1))
            if before is not None and before != NO_TERM and before <= term:
                return before, self.store.log_start_offset()
        return found_term, Offset(min(end, self._stable_end))

    def entries(self, offset: Offset, max_bytes: int) -> list[Entry]:
        """Whole entries from the one starting at ``offset``: at least one if any exists,
        then more while their data stays within ``max_bytes``."""
        assert offset >= self.log_start_offset(), (offset, self.log_start_offset())
        out: list[Entry] = []
        size = 0
        if offset < self._stable_end:
            for e in self.store.entries(offset, max_bytes):
                if e.offset >= self._stable_end:
                    break
                assert e.offset == (out[-1].last_offset + 1 if out else offset), (e, offset)
                assert self.store.term_at(e.last_offset) == e.term, e
                out.append(e)
                size += len(e.data)
            if out and out[-1].last_offset + 1 < self._stable_end:
                return out
            offset = Offset(out[-1].last_offset + 1) if out else offset
        i = self._unstable_index(offset) if self._unstable else None
        if i is not None:
            assert self._unstable[i].offset == offset, (offset, self._unstable[i])
            for e in self._unstable[i:]:
                if out and size + len(e.data) > max_bytes:
                    break
                out.append(e)
                size += len(e.data)
        return out

    # -- writes (in memory until the driver persists them) --------------------------------

    def append(self, entries: list[Entry]) -> None:
        """Entries that extend the log exactly at its end, terms not decreasing."""
        for e in entries:
            assert e.offset == self.log_end_offset(), (e, self.log_end_offset())
            assert e.term >= self.last_term(), (e, self.last_term())
            self._unstable.append(e)

    def truncate_from(self, offset: Offset) -> None:
        """Drop every entry from ``offset`` (an entry boundary) on."""
        assert offset >= self.log_start_offset(), (offset, self.log_start_offset())
        assert offset < self.log_end_offset(), (offset, self.log_end_offset())
        if self._unstable and offset >= self._unstable[0].offset:
            i = self._unstable_index(offset)
            assert i is not None and self._unstable[i].offset == offset, offset
            del self._unstable[i:]
            return
        self._unstable.clear()
        assert self.term_at(Offset(offset - 1)) is not None, offset
        self._stable_end = offset
        if self._pending_reset is None:
            pending = self._pending_truncate
            self._pending_truncate = offset if pending is None else min(pending, offset)

    def reset(self, log_start_offset: Offset, prev_term: Term) -> None:
        """Replace the whole log by an empty one starting at ``log_start_offset``."""
        self._unstable.clear()
        self._pending_truncate = None
        self._pending_reset = (log_start_offset, prev_term)
        self._stable_end = log_start_offset

    # -- hand-over to the driver ------------------------------------------------------------

    def pending_reset(self) -> tuple[Offset, Term] | None:
        return self._pending_reset

    def pending_truncate(self) -> Offset | None:
        return self._pending_truncate

    def unstable_entries(self) -> list[Entry]:
        return list(self._unstable)

    def has_pending_writes(self) -> bool:
        return bool(
            self._unstable or self._pending_truncate is not None or self._pending_reset is not None
        )

    def persisted(self) -> None:
        """The driver made every pending write durable: the store now is the log."""
        end = self.log_end_offset()
        start = self.log_start_offset()
        assert self.store.log_end_offset() == end, (self.store.log_end_offset(), end)
        assert self.store.log_start_offset() == start, (self.store.log_start_offset(), start)
        if self._unstable:
            last = self._unstable[-1]
            assert self.store.term_at(last.last_offset) == last.term, last
        self._unstable = []
        self._pending_truncate = None
        self._pending_reset = None
        self._stable_end = end

    def _unstable_index(self, offset: Offset) -> int | None:
        i = bisect_right(self._unstable, offset, key=lambda e: e.offset) - 1
        if i < 0 or self._unstable[i].last_offset < offset:
            return None
        return i
