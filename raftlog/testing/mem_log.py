"""An in-memory partition log that knows what was fsynced: the simulator's disk.

``MemLog`` implements ``raftlog.raft.log_store.LogStore`` (the read side the core uses) and
the write side a driver performs from a ``Ready``: reset the log start, truncate a suffix,
append, write the hard state, fsync. It keeps two copies: the *written* state, which reads
see (the page cache), and the *durable* state as of the last ``fsync``.

``power_loss`` models a machine losing power: the written state falls back to the durable
one. When everything written since the last fsync was appends, a random prefix of them may
have reached the platter anyway and survives, the next one possibly torn (a partial batch,
which recovery drops by its CRC: here it is simply not kept). A hard state written but not
fsynced survives or not at random (the rename may or may not have reached the disk). A plain
process crash loses nothing that was written.

``truncate_prefix`` is retention (whole segments deleted, durably at once).
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from raftlog.raft.log_store import Entry, HardState
from raftlog.types import NO_TERM, Offset, Term

AppendHook = Callable[[Entry, tuple[Offset, Term]], None]
"""Called for every appended entry with the (last offset, term) of the entry before it."""


@dataclass(slots=True)
class _State:
    entries: list[Entry]
    start: Offset
    prev_term: Term  # term of offset start - 1
    hard_state: HardState

    def copy(self) -> _State:
        return _State(list(self.entries), self.start, self.prev_term, self.hard_state)


class MemLog:
    def __init__(self) -> None:
        self._w = _State([], Offset(0), NO_TERM, HardState(Term(0), None))
        self._d = self._w.copy()
        # Since the last fsync: only appends happened (so a prefix of them may survive).
        self._appends_only = True
        self.on_append: AppendHook | None = None

    # -- LogStore (reads of the written state) ---------------------------------------------

    def log_start_offset(self) -> Offset:
        return self._w.start

    def log_end_offset(self) -> Offset:
        return _end(self._w)

    def last_term(self) -> Term:
        return self._w.entries[-1].term if self._w.entries else self._w.prev_term

    def term_at(self, offset: Offset) -> Term | None:
        return _term_at(self._w, offset)

    def end_offset_for_term(self, term: Term) -> tuple[Term, Offset]:
        found: Entry | None = None
        for e in reversed(self._w.entries):
            if e.term <= term:
                found = e
                break
        if found is None:
            if self._w.prev_term != NO_TERM and self._w.prev_term <= term:
                return self._w.prev_term, self._w.start
            return NO_TERM, Offset(-1)
        return found.term, Offset(found.last_offset + 1)

    def entries(self, offset: Offset, max_bytes: int) -> list[Entry]:
        i = _index(self._w, offset)
        if i is None:
            return []
        assert self._w.entries[i].offset == offset, ("not an entry boundary", offset)
        out: list[Entry] = []
        size = 0
        for e in self._w.entries[i:]:
            if out and size + len(e.data) > max_bytes:
                break
            out.append(e)
            size += len(e.data)
        return out

    def hard_state(self) -> HardState:
        return self._w.hard_state

    # -- writes (what the driver does with a Ready) ----------------------------------------

    def reset_log_start(self, offset: Offset, prev_term: Term) -> None:
        self._w = _State([], offset, prev_term, self._w.hard_state)
        self._appends_only = False

    def truncate_suffix(self, offset: Offset) -> None:
        i = _index(self._w, offset)
        assert i is not None and self._w.entries[i].offset == offset, offset
        del self._w.entries[i:]
        self._appends_only = False

    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        for e in entries:
            assert e.offset == _end(self._w), (e, _end(self._w))
            prev = (Offset(e.offset - 1), self.last_term())
            self._w.entries.append(e)
            if self.on_append is not None:
                self.on_append(e, prev)

    def set_hard_state(self, hard_state: HardState) -> None:
        self._w.hard_state = hard_state

    def fsync(self) -> None:
        self._d = self._w.copy()
        self._appends_only = True

    def truncate_prefix(self, offset: Offset) -> None:
        """Retention: drop whole entries below ``offset`` (an entry boundary), durably."""
        for state in (self._w, self._d):
            if offset <= state.start:
                continue
            term = _term_at(state, Offset(offset - 1))
            assert term is not None, offset
            i = _index(state, offset)
            keep = state.entries[i:] if i is not None else []
            assert not keep or keep[0].offset == offset, offset
            state.entries, state.start, state.prev_term = keep, offset, term

    # -- faults ----------------------------------------------------------------------------

    def power_loss(self, rng: random.Random) -> str:
        """Lose what was not fsynced; says what happened, for the trace."""
        written, durable = self._w, self._d
        lost = len(written.entries) - len(durable.entries)
        self._w = durable.copy()
        what = "reverted to last fsync"
        if self._appends_only and lost > 0:
            kept = rng.randrange(lost + 1)
            self._w.entries.extend(
                written.entries[len(durable.entries) : len(durable.entries) + kept]
            )
            what = f"kept {kept} of {lost} unsynced entries"
            if kept < lost and rng.random() < 0.5:
                what += ", torn tail dropped"
        if written.hard_state != durable.hard_state and rng.random() < 0.5:
            self._w.hard_state = written.hard_state
            what += ", unsynced hard state survived"
        self._d = self._w.copy()
        self._appends_only = True
        return what

    # -- for checkers ------------------------------------------------------------------------

    def durable_term_at(self, offset: Offset) -> Term | None:
        return _term_at(self._d, offset)

    def durable_log_start_offset(self) -> Offset:
        return self._d.start

    def durable_hard_state(self) -> HardState:
        return self._d.hard_state

    def entry_at(self, offset: Offset) -> Entry | None:
        i = _index(self._w, offset)
        return None if i is None else self._w.entries[i]


def _end(state: _State) -> Offset:
    return Offset(state.entries[-1].last_offset + 1) if state.entries else state.start


def _index(state: _State, offset: Offset) -> int | None:
    i = bisect_right(state.entries, offset, key=lambda e: e.offset) - 1
    if i < 0 or state.entries[i].last_offset < offset:
        return None
    return i


def _term_at(state: _State, offset: Offset) -> Term | None:
    if offset == state.start - 1:
        return state.prev_term
    if offset == -1:
        return NO_TERM
    i = _index(state, offset)
    return None if i is None else state.entries[i].term
