"""The metadata journal reports every failed write or sync to its ``on_write_failure`` hook
before raising (the broker halts there, raftlog/storage/failure.py). Found by S12: a sync
from the send hook (before a message leaves) was not reported, and pysyncobj logged the
error and went on."""

from __future__ import annotations

import errno

import pytest

from raftlog.metadata.journal import DurableJournal
from raftlog.storage.files import Fault, SimFileSystem


@pytest.mark.parametrize(
    ("op", "action"),
    [
        ("fsync", lambda j: (j.add(b"x", 1, 1), j.sync())),
        ("pwrite", lambda j: j.add(b"x", 1, 1)),
        ("fsync", lambda j: j.setCurrentTerm(5, "127.0.0.2:9093")),
    ],
)
def test_every_failed_write_or_sync_is_reported_before_it_raises(op: str, action: object) -> None:
    fs = SimFileSystem()
    journal = DurableJournal(fs, "/m")
    reported: list[tuple[str, BaseException]] = []
    journal.on_write_failure = lambda where, e: reported.append((where, e))
    fs.inject(Fault(op, errno.EIO, count=-1))
    with pytest.raises(OSError):
        action(journal)  # type: ignore[operator]
    assert reported, "the failure was not reported"
    assert reported[0][1].errno == errno.EIO  # type: ignore[attr-defined]
    assert reported[0][0].startswith("metadata journal")
