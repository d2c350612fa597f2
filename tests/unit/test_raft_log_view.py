"""The in-memory store (``raftlog.testing.mem_log``) and the core's log view (``RaftLog``)."""

from __future__ import annotations

import random

import pytest

from raftlog.raft.log_store import Entry, HardState, LogStore
from raftlog.raft.raft_log import RaftLog
from raftlog.testing.mem_log import MemLog
from raftlog.types import NO_TERM, NodeId, Offset, Term


def e(offset: int, last: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(Offset(offset), Offset(last), Term(term), data)


def filled() -> MemLog:
    disk = MemLog()
    disk.append([e(0, 0, 1), e(1, 3, 1), e(4, 4, 2), e(5, 6, 4)])
    disk.fsync()
    return disk


def test_mem_log_is_a_log_store() -> None:
    store: LogStore = MemLog()
    assert store.log_start_offset() == store.log_end_offset() == 0
    assert store.last_term() == NO_TERM
    assert store.term_at(Offset(-1)) == NO_TERM
    assert store.end_offset_for_term(Term(3)) == (NO_TERM, -1)
    assert store.hard_state() == HardState(Term(0), None)


@pytest.mark.parametrize(
    ("term", "expected"),
    [(0, (NO_TERM, -1)), (1, (1, 4)), (2, (2, 5)), (3, (2, 5)), (4, (4, 7)), (9, (4, 7))],
)
def test_end_offset_for_term(term: int, expected: tuple[int, int]) -> None:
    assert filled().end_offset_for_term(Term(term)) == expected


def test_term_at_covers_every_offset_of_an_entry() -> None:
    disk = filled()
    assert [disk.term_at(Offset(o)) for o in range(-1, 8)] == [-1, 1, 1, 1, 1, 2, 4, 4, None]


def test_entries_respects_max_bytes_but_returns_at_least_one() -> None:
    disk = MemLog()
    disk.append([e(0, 0, 1, b"aaaa"), e(1, 1, 1, b"bbbb"), e(2, 2, 1, b"cccc")])
    assert [x.offset for x in disk.entries(Offset(0), 1)] == [0]
    assert [x.offset for x in disk.entries(Offset(0), 8)] == [0, 1]
    assert disk.entries(Offset(3), 100) == []


def test_prefix_truncation_keeps_the_term_before_the_start() -> None:
    disk = filled()
    disk.truncate_prefix(Offset(4))
    assert disk.log_start_offset() == 4
    assert disk.term_at(Offset(3)) == 1
    assert disk.term_at(Offset(2)) is None
    assert disk.end_offset_for_term(Term(1)) == (1, 4)
    assert disk.durable_log_start_offset() == 4


def test_power_loss_drops_what_was_not_fsynced() -> None:
    disk = filled()
    disk.truncate_suffix(Offset(4))
    disk.append([e(4, 4, 5)])
    disk.set_hard_state(HardState(Term(5), NodeId(2)))
    disk.power_loss(random.Random(1))
    assert disk.log_end_offset() == 7 and disk.term_at(Offset(4)) == 2


def test_power_loss_after_appends_keeps_a_prefix_of_them() -> None:
    kept = set()
    for seed in range(30):
        disk = filled()
        disk.append([e(7, 7, 4), e(8, 8, 4), e(9, 9, 4)])
        disk.power_loss(random.Random(seed))
        assert 7 <= disk.log_end_offset() <= 10
        kept.add(disk.log_end_offset())
        assert disk.durable_term_at(Offset(disk.log_end_offset() - 1)) == 4
    assert len(kept) > 1


def test_view_reads_through_to_the_store_and_pending_entries() -> None:
    disk = filled()
    log = RaftLog(disk)
    log.append([e(7, 8, 5)])
    assert log.log_end_offset() == 9 and log.last_term() == 5
    assert log.term_at(Offset(8)) == 5 and log.term_at(Offset(6)) == 4
    assert [x.offset for x in log.entries(Offset(4), 1 << 20)] == [4, 5, 7]
    assert log.end_offset_for_term(Term(4)) == (4, 7)
    assert log.end_offset_for_term(Term(5)) == (5, 9)


def test_view_hides_a_suffix_pending_truncation() -> None:
    disk = filled()
    log = RaftLog(disk)
    log.truncate_from(Offset(4))
    assert log.pending_truncate() == 4
    assert log.log_end_offset() == 4 and log.last_term() == 1
    assert log.term_at(Offset(5)) is None
    assert log.end_offset_for_term(Term(9)) == (1, 4)
    assert [x.offset for x in log.entries(Offset(1), 1 << 20)] == [1]
    log.append([e(4, 4, 3)])
    disk.truncate_suffix(Offset(4))
    disk.append(log.unstable_entries())
    log.persisted()
    assert log.pending_truncate() is None and log.term_at(Offset(4)) == 3


def test_view_after_a_log_start_reset() -> None:
    log = RaftLog(filled())
    log.reset(Offset(20), Term(6))
    assert log.log_start_offset() == log.log_end_offset() == 20
    assert log.term_at(Offset(19)) == 6 and log.term_at(Offset(5)) is None
    assert log.last_term() == 6
    assert log.end_offset_for_term(Term(6)) == (6, 20)
    assert log.end_offset_for_term(Term(5)) == (NO_TERM, -1)


def test_view_refuses_non_contiguous_appends() -> None:
    log = RaftLog(filled())
    with pytest.raises(AssertionError):
        log.append([e(9, 9, 5)])
    with pytest.raises(AssertionError):
        log.append([e(7, 7, 3)])  # a term below the last one
