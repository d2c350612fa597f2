"""A replica's log with a corrupt batch inside (found by scenario S11: a bit flip in the
middle of the active segment stopped the broker at start-up, when the Raft core read its
log): the replica cuts its log at the first batch that fails its CRC and lets the leader
replicate the rest again."""

from __future__ import annotations

from raftlog.runtime.replica_log import drop_corrupt_suffix
from raftlog.storage.files import SimFileSystem
from raftlog.storage.log import PartitionLog
from tests.storage_helpers import make_batch


def _log(fs: SimFileSystem, **config: int) -> PartitionLog:
    from raftlog.config import LogConfig

    return PartitionLog.open(fs, "/d/t/0", LogConfig(**config) if config else None)


def _fill(log: PartitionLog, batches: int) -> None:
    for _ in range(batches):
        log.append_as_leader(make_batch(2), epoch=1)
    log.flush()


def _six_batches_with_batch_3_flipped(fs: SimFileSystem) -> PartitionLog:
    """Six batches of two records; a byte inside batch 3 (offsets 4-5) flipped; reopened."""
    log = _log(fs)
    _fill(log, 6)
    positions = [p for p, _ in log.segments[-1].batch_headers()]
    path = log.segments[-1].log_path
    log.close()
    fs.corrupt(path, positions[2] + 70)
    return _log(fs)


def test_intact_log_is_kept_whole() -> None:
    fs = SimFileSystem()
    log = _log(fs)
    _fill(log, 5)
    assert drop_corrupt_suffix(log) is None
    assert log.log_end_offset() == 10


def test_a_flipped_bit_in_the_middle_cuts_the_log_at_that_batch() -> None:
    fs = SimFileSystem()
    log = _six_batches_with_batch_3_flipped(fs)
    assert log.recovery is not None and log.recovery.corrupt_batches == 1
    assert drop_corrupt_suffix(log) == 4
    assert log.log_end_offset() == 4
    assert len(log.read_batches(0, 1 << 20)) == 2  # what is left reads back
    assert drop_corrupt_suffix(log) is None


def test_a_flip_in_a_closed_segment_is_found_by_the_scan() -> None:
    fs = SimFileSystem()
    log = _log(fs, segment_bytes=400)
    _fill(log, 12)
    assert len(log.segments) > 2
    first = log.segments[0]
    positions = [p for p, _ in first.batch_headers()]
    log.close()
    fs.corrupt(first.log_path, positions[-1] + 70)
    log = _log(fs, segment_bytes=400)
    cut = drop_corrupt_suffix(log)
    assert cut is not None and cut < 12 * 2
    assert log.log_end_offset() == cut


def test_a_cut_leaves_a_vote_barrier_at_the_old_log_end() -> None:
    from raftlog.runtime.replica_log import read_vote_barrier

    fs = SimFileSystem()
    log = _six_batches_with_batch_3_flipped(fs)
    assert read_vote_barrier(fs, log.folder) is None
    assert drop_corrupt_suffix(log) == 4
    # the replica had entries up to 12: it must not vote until its log is back there
    assert read_vote_barrier(fs, log.folder) == 12
