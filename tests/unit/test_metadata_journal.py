"""The durable metadata journal (pysyncobj's journal interface) and the power-loss ledger."""

from __future__ import annotations

import os
import random

import pytest

from raftlog.metadata.journal import JOURNAL_NAME, STATE_NAME, DurableJournal, JournalCorrupt
from raftlog.storage.files import LedgerFileSystem, SimFileSystem, apply_power_loss

D = "/meta"


def entries(j: DurableJournal) -> list[tuple[bytes, int, int]]:
    return [j[i] for i in range(len(j))]


def test_entries_survive_reopen_and_index_like_a_list() -> None:
    fs = SimFileSystem()
    j = DurableJournal(fs, D)
    for i in range(1, 6):
        j.add(b"cmd%d" % i, i, 1 + i // 3)
    j.sync()
    assert len(j) == 5 and j[-1] == (b"cmd5", 5, 2) and j[1:3] == [(b"cmd2", 2, 1), (b"cmd3", 3, 2)]
    j._destroy()
    j = DurableJournal(fs, D)
    assert entries(j) == [(b"cmd%d" % i, i, 1 + i // 3) for i in range(1, 6)]


def test_power_loss_keeps_exactly_the_synced_entries() -> None:
    fs = SimFileSystem()
    j = DurableJournal(fs, D)
    for i in range(1, 4):
        j.add(b"a", i, 1)
    j.sync()
    for i in range(4, 9):
        j.add(b"b" * 50, i, 1)  # never synced
    fs.power_loss(random.Random(5), torn=True)
    j = DurableJournal(fs, D)
    assert 3 <= len(j) <= 8
    assert [e[1] for e in entries(j)] == list(range(1, len(j) + 1))
    fs.power_loss()
    assert len(DurableJournal(fs, D)) >= 3


def test_term_and_vote_are_durable_before_set_current_term_returns() -> None:
    fs = SimFileSystem()
    j = DurableJournal(fs, D)
    j.setCurrentTerm(7, "127.0.0.1:7001")
    fs.power_loss()
    j = DurableJournal(fs, D)
    assert (j.getCurrentTerm(), j.getVotedForNodeId()) == (7, "127.0.0.1:7001")
    j.setCurrentTerm(8, None)
    fs.power_loss()
    j = DurableJournal(fs, D)
    assert (j.getCurrentTerm(), j.getVotedForNodeId()) == (8, None)


def test_re_appending_the_same_entries_after_a_cut_rewrites_nothing() -> None:
    fs = SimFileSystem()
    j = DurableJournal(fs, D)
    for i in range(1, 6):
        j.add(b"x%d" % i, i, 1)
    j.sync()
    writes = fs.stats["pwrite"]
    j.deleteEntriesFrom(2)  # pysyncobj on a stale append-entries ...
    assert len(j) == 2
    for i in range(3, 6):
        j.add(b"x%d" % i, i, 1)  # ... then the very same entries again
    j.sync()
    assert fs.stats["pwrite"] == writes, "identical entries must not be rewritten"
    fs.power_loss()
    assert len(DurableJournal(fs, D)) == 5


def test_a_real_conflict_replaces_the_suffix() -> None:
    fs = SimFileSystem()
    j = DurableJournal(fs, D)
    for i in range(1, 6):
        j.add(b"old", i, 1)
    j.sync()
    j.deleteEntriesFrom(3)
    j.add(b"new", 4, 2)
    j.sync()
    fs.power_loss()
    j = DurableJournal(fs, D)
    assert entries(j) == [(b"old", 1, 1), (b"old", 2, 1), (b"old", 3, 1), (b"new", 4, 2)]


def test_prefix_removal_makes_the_snapshot_durable_first_and_survives_power_loss() -> None:
    fs = SimFileSystem()
    snap = f"{D}/metadata.snapshot"
    j = DurableJournal(fs, D, snapshot_path=snap)
    for i in range(1, 11):
        j.add(b"e", i, 1)
    f = fs.open(snap)  # as pysyncobj leaves it: written, renamed, nothing fsynced
    f.pwrite(b"snapshot", 0)
    j.deleteEntriesTo(6)
    fs.power_loss()
    assert fs.raw(snap) == b"snapshot", "the journal was compacted before the snapshot was durable"
    j = DurableJournal(fs, D)
    assert [e[1] for e in entries(j)] == [7, 8, 9, 10]


def test_a_corrupt_state_file_is_refused_not_guessed() -> None:
    fs = SimFileSystem()
    j = DurableJournal(fs, D)
    j.setCurrentTerm(3, "n1")
    fs.corrupt(f"{D}/{STATE_NAME}", 2)
    with pytest.raises(JournalCorrupt):
        DurableJournal(fs, D)


def test_a_corrupt_record_ends_the_journal() -> None:
    fs = SimFileSystem()
    j = DurableJournal(fs, D)
    for i in range(1, 5):
        j.add(b"payload", i, 1)
    j.sync()
    fs.corrupt(f"{D}/{JOURNAL_NAME}", len(fs.raw(f"{D}/{JOURNAL_NAME}")) - 3)
    assert len(DurableJournal(fs, D)) == 3


def test_the_ledger_cuts_real_files_back_to_what_was_fsynced(tmp_path: object) -> None:
    root = str(tmp_path)
    ledger = os.path.join(root, "ledger")
    fs = LedgerFileSystem(ledger)
    folder = os.path.join(root, "d")
    fs.makedirs(folder)
    j = DurableJournal(fs, folder)
    for i in range(1, 4):
        j.add(b"synced", i, 1)
    j.sync()
    for i in range(4, 7):
        j.add(b"lost", i, 1)
    j.setCurrentTerm(2, "me")
    with open(os.path.join(folder, "never-dir-synced"), "wb") as f:
        f.write(b"x")
    cut = apply_power_loss(ledger)
    assert cut, "something unsynced was cut"
    assert not os.path.exists(os.path.join(folder, "never-dir-synced"))
    j = DurableJournal(LedgerFileSystem(ledger), folder)
    assert [e[0] for e in entries(j)] == [b"synced"] * 3
    assert j.getCurrentTerm() == 2
