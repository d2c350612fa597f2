"""Each safety checker fails on the history it exists to catch, and only then."""

from __future__ import annotations

import random

import pytest

from raftlog.raft.log_store import Entry, HardState
from raftlog.testing.checkers import Checker, SafetyViolation
from raftlog.testing.mem_log import MemLog
from raftlog.types import NodeId, Offset, Term

N1, N2, N3 = NodeId(1), NodeId(2), NodeId(3)


def e(offset: int, term: int, data: bytes = b"x") -> Entry:
    return Entry(Offset(offset), Offset(offset), Term(term), data)


def checker() -> Checker:
    return Checker((N1, N2, N3))


def disks_with(entries: list[Entry], holders: tuple[NodeId, ...]) -> dict[NodeId, MemLog]:
    disks = {n: MemLog() for n in (N1, N2, N3)}
    for n in holders:
        disks[n].append(entries)
        disks[n].fsync()
    return disks


def test_two_leaders_in_one_term() -> None:
    c = checker()
    c.on_leader(N1, Term(3), {})
    c.on_leader(N1, Term(3), {})
    c.on_leader(N2, Term(4), {})
    with pytest.raises(SafetyViolation, match="election safety"):
        c.on_leader(N3, Term(3), {})


def test_double_vote_and_forgotten_vote() -> None:
    c = checker()
    c.on_vote(N1, Term(2), N2)
    c.on_vote(N1, Term(2), N2)
    c.on_restart(N1, HardState(Term(2), N2))
    c.on_restart(N1, HardState(Term(3), None))
    with pytest.raises(SafetyViolation, match="forgot its vote"):
        c.on_restart(N1, HardState(Term(2), None))
    with pytest.raises(SafetyViolation, match="restarts in term 1"):
        c.on_restart(N1, HardState(Term(1), None))
    with pytest.raises(SafetyViolation, match="double vote"):
        c.on_vote(N1, Term(2), N3)


def test_log_matching() -> None:
    c = checker()
    c.on_append(N1, e(0, 1, b"a"), (Offset(-1), Term(-1)))
    c.on_append(N2, e(0, 1, b"a"), (Offset(-1), Term(-1)))
    with pytest.raises(SafetyViolation, match="log matching"):
        c.on_append(N3, e(0, 1, b"b"), (Offset(-1), Term(-1)))


def test_committed_entries_never_change_and_are_durable_on_a_majority() -> None:
    c = checker()
    good = [e(0, 1, b"a"), e(1, 1, b"b")]
    disks = disks_with(good, (N1, N2))
    c.on_commit(N1, Term(1), disks[N1], Offset(0), Offset(2), disks, (N1, N2, N3))
    assert c.committed_end == 2
    other = disks_with([e(0, 1, b"a"), e(1, 2, b"z")], (N3,))
    with pytest.raises(SafetyViolation, match="committed entry changed"):
        c.on_commit(N3, Term(1), other[N3], Offset(0), Offset(2), disks, (N1, N2, N3))
    with pytest.raises(SafetyViolation, match="backwards"):
        c.on_commit(N1, Term(1), disks[N1], Offset(2), Offset(1), disks, (N1, N2, N3))
    lonely = disks_with([*good, e(2, 1, b"c")], (N1,))
    with pytest.raises(SafetyViolation, match="durable on only 1 of 3"):
        c.on_commit(N1, Term(1), lonely[N1], Offset(2), Offset(3), lonely, (N1, N2, N3))


def test_power_loss_of_a_holder_is_noticed() -> None:
    c = checker()
    disks = disks_with([e(0, 1)], (N1, N2))
    c.on_commit(N1, Term(1), disks[N1], Offset(0), Offset(1), disks, (N1, N2, N3))
    c.check_durable(disks)
    disks[N2] = MemLog()
    disks[N2].power_loss(random.Random(0))
    with pytest.raises(SafetyViolation, match="durable on only 1"):
        c.check_durable(disks)


def test_leader_completeness() -> None:
    c = checker()
    disks = disks_with([e(0, 1)], (N1, N2))
    c.on_commit(N1, Term(1), disks[N1], Offset(0), Offset(1), disks, (N1, N2, N3))
    c.on_leader(N2, Term(2), {Offset(0): Term(1)})
    c.on_leader(N3, Term(1), {Offset(0): Term(-1)})  # not a later term than the commit
    with pytest.raises(SafetyViolation, match="leader completeness"):
        c.on_leader(N3, Term(3), {Offset(0): Term(2)})
    with pytest.raises(SafetyViolation, match="leader completeness"):
        c.on_leader(N3, Term(4), {Offset(0): Term(-1)})
    c.on_leader(N3, Term(5), {Offset(0): None})  # removed by retention: fine
