"""The partition log's behaviours, one at a time: recovery, corruption, faults, retention,
timestamps, paths, hard state and group commit."""

from __future__ import annotations

import errno
import os
import random
import threading

import pytest

from raftlog.config import DAY_MS, LogConfig
from raftlog.errors import (
    CorruptRecordError,
    InvalidConfigError,
    InvalidTopicError,
    LogFencedError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from raftlog.storage import hard_state
from raftlog.storage.files import Fault, OsFileSystem, SimFileSystem
from raftlog.storage.log import PartitionLog
from raftlog.storage.paths import partition_dir, validate_topic
from raftlog.storage.record_batch import iter_batches
from tests.storage_helpers import make_batch

D = "/data/t/0"


class Clock:
    def __init__(self, now: int = 10 * DAY_MS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def open_log(
    fs: SimFileSystem | OsFileSystem, folder: str = D, clock: Clock | None = None, **cfg: int
) -> PartitionLog:
    return PartitionLog.open(fs, folder, LogConfig(**cfg), clock_ms=clock or Clock())


def fill(
    log: PartitionLog,
    n: int,
    *,
    records: int = 2,
    epoch: int = 1,
    ts: int = 1000,
    payload: int = 50,
) -> None:
    for i in range(n):
        log.append_as_leader(make_batch(records, payload_bytes=payload, timestamp_ms=ts + i), epoch)


def offsets(data: bytes) -> list[tuple[int, int]]:
    return [(h.base_offset, h.last_offset) for h in iter_batches(data)]


# --------------------------------------------------------------------------- recovery


def test_reopen_keeps_everything_and_rebuilds_nothing_for_closed_segments() -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=500)
    fill(log, 30)
    log.close()
    log = open_log(fs, segment_bytes=500)
    assert log.log_end_offset() == 60
    assert len(log.segments) > 3
    assert log.recovery is not None and log.recovery.rebuilt_indexes == 0
    assert offsets(log.read(0, 10_000))[0] == (0, 1)


def test_torn_tail_is_cut_at_the_last_whole_batch() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 5)
    log.flush()
    fill(log, 3)  # written, never fsynced
    path = log.segments[-1].log_path
    durable = fs.durable_size(path)
    fs.power_loss(random.Random(3), torn=True)
    assert durable < len(fs.raw(path)) or len(fs.raw(path)) == durable
    log = open_log(fs)
    assert 10 <= log.log_end_offset() <= 16
    # what is left is whole batches, readable end to end
    assert offsets(log.read(0, 1 << 20))[-1][1] == log.log_end_offset() - 1


def test_garbage_after_the_last_batch_is_truncated_on_open() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 4)
    path = log.segments[-1].log_path
    size = log.segments[-1].size
    log.close()
    f = fs.open(path)
    f.pwrite(make_batch(3)[:40], size)  # half a header
    f.close()
    log = open_log(fs)
    assert log.log_end_offset() == 8
    assert log.recovery is not None and log.recovery.truncated_bytes == 40
    assert fs.open(path).size() == size


def test_a_bad_crc_in_the_middle_is_reported_and_not_served_nor_truncated() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 6)
    positions = [p for p, _ in log.segments[-1].batch_headers()]
    path = log.segments[-1].log_path
    log.close()
    fs.corrupt(path, positions[2] + 70)  # a byte inside the CRC'd records of batch 3
    log = open_log(fs)
    assert log.log_end_offset() == 12, "corruption in the middle must not truncate the log"
    assert log.recovery is not None and log.recovery.corrupt_batches == 1
    assert offsets(log.read(0, 10_000)) == [(0, 1), (2, 3)]  # stops before the bad batch
    with pytest.raises(CorruptRecordError):
        log.read(4, 10_000)
    assert offsets(log.read(6, 10_000))[0] == (6, 7)


def test_bit_flip_in_a_closed_segment_is_caught_on_read() -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=400)
    fill(log, 12)
    first = log.segments[0]
    log.close()
    fs.corrupt(first.log_path, 100)
    log = open_log(fs, segment_bytes=400)
    with pytest.raises(CorruptRecordError):
        log.read(0, 10_000)


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage"])
def test_missing_or_corrupt_index_is_rebuilt(damage: str) -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=600, index_interval_bytes=100)
    fill(log, 20)
    expect = log.read(0, 1 << 20)
    idx = log.segments[0].index_path
    log.close()
    if damage == "missing":
        fs.remove(idx)
    elif damage == "truncated":
        f = fs.open(idx)
        f.truncate(f.size() - 3)
    else:
        f = fs.open(idx)
        f.pwrite(b"\xff" * 16, 0)
    log = open_log(fs, segment_bytes=600, index_interval_bytes=100)
    assert log.recovery is not None and log.recovery.rebuilt_indexes == 1
    assert log.read(0, 1 << 20) == expect
    for o in range(0, 40, 3):
        assert offsets(log.read(o, 1))[0][0] <= o


def test_segments_after_a_gap_are_dropped_on_open() -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=400)
    fill(log, 10)
    log.close()
    middle = log.segments[1]
    fs.remove(middle.log_path)
    log = open_log(fs, segment_bytes=400)
    assert log.log_end_offset() == middle.base_offset
    assert len(log.segments) == 1


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC])
def test_an_fsync_error_fences_the_log(err: int) -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 2)
    log.flush()
    fill(log, 2)
    fs.inject(Fault("fsync", err, path_contains=".log"))
    with pytest.raises(LogFencedError):
        log.flush()
    assert log.durable_offset == 4, "a failed fsync acknowledged nothing new"
    with pytest.raises(LogFencedError):
        log.append_as_leader(make_batch(), 1)
    with pytest.raises(LogFencedError):
        log.sync_to(8)
    # reopening recovers: what was flushed is there
    fs.power_loss()
    log = open_log(fs)
    assert log.log_end_offset() == 4


def test_enospc_on_write_fences_and_changes_nothing_durable() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 3)
    log.flush()
    fs.inject(Fault("pwrite", errno.ENOSPC, path_contains=".log"))
    with pytest.raises(LogFencedError):
        log.append_as_leader(make_batch(), 1)
    assert log.log_end_offset() == 6
    assert log.fenced
    log = open_log(fs)
    assert log.log_end_offset() == 6
    log.append_as_leader(make_batch(), 1)
    assert log.log_end_offset() == 7


def test_hard_state_failure_raises_and_keeps_the_old_state() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    log.save_hard_state(3, 2)
    fs.inject(Fault("fsync", errno.EIO, path_contains="hard-state"))
    with pytest.raises(LogFencedError):
        log.save_hard_state(4, 1)
    fs.power_loss()
    assert hard_state.load(fs, D) == hard_state.StoredHardState(3, 2)


# --------------------------------------------------------------------------- appends and reads


def test_read_respects_bytes_bound_and_returns_at_least_one_batch() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 10, payload=100)
    one = len(make_batch(2, payload_bytes=100))
    assert offsets(log.read(0, 1)) == [(0, 1)]  # larger than max_bytes, still returned
    assert offsets(log.read(0, 3 * one)) == [(0, 1), (2, 3), (4, 5)]
    assert offsets(log.read(3, 2 * one)) == [(2, 3), (4, 5)]  # from the batch holding 3
    assert offsets(log.read(0, 10 * one, upper_offset=5)) == [(0, 1), (2, 3)]
    assert log.read(4, 10 * one, upper_offset=5) == b""
    assert log.read(20, 100) == b""
    with pytest.raises(OffsetOutOfRangeError):
        log.read(21, 100)


def test_leader_append_stamps_offsets_epoch_and_append_time() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    h = log.append_as_leader(make_batch(3, base_offset=99, epoch=0), 7, append_time_ms=123456)
    assert (h.base_offset, h.last_offset, h.partition_leader_epoch) == (0, 2, 7)
    assert h.log_append_time and h.max_timestamp == 123456
    (stored,) = iter_batches(log.read(0, 1000))  # CRC still valid after stamping
    assert stored.max_timestamp == 123456


def test_leader_append_rejects_too_large_and_corrupt_batches() -> None:
    fs = SimFileSystem()
    log = open_log(fs, max_message_bytes=200)
    with pytest.raises(RecordTooLargeError):
        log.append_as_leader(make_batch(1, payload_bytes=300), 1)
    bad = bytearray(make_batch(2))
    bad[-1] ^= 1
    with pytest.raises(CorruptRecordError):
        log.append_as_leader(bytes(bad), 1)
    with pytest.raises(CorruptRecordError):
        log.append_as_leader(make_batch() + make_batch(), 1)
    assert log.log_end_offset() == 0


def test_follower_append_truncates_a_conflicting_suffix() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 4, epoch=1)  # offsets 0..7 in epoch 1
    new = make_batch(3, base_offset=4, epoch=2) + make_batch(1, base_offset=7, epoch=2)
    assert log.append_as_follower(make_batch(2, base_offset=2, epoch=1)) == 0  # held already
    assert log.append_as_follower(new) == 2
    assert log.log_end_offset() == 8
    assert [log.term_at(o) for o in range(8)] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert log.end_offset_for_term(1) == (1, 4)
    with pytest.raises(OffsetOutOfRangeError):
        log.append_as_follower(make_batch(1, base_offset=20, epoch=2))


def test_epoch_lookups() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 2, epoch=1)
    fill(log, 2, epoch=3)
    fill(log, 1, epoch=4)
    assert log.term_at(-1) == -1
    assert [log.term_at(o) for o in range(10)] == [1, 1, 1, 1, 3, 3, 3, 3, 4, 4]
    assert log.term_at(10) is None
    assert log.end_offset_for_term(0) == (-1, -1)
    assert log.end_offset_for_term(2) == (1, 4)
    assert log.end_offset_for_term(3) == (3, 8)
    assert log.end_offset_for_term(9) == (4, 10)
    log.truncate_prefix(6)
    assert log.term_at(5) == 3 and log.term_at(4) is None


def test_reset_to_a_new_start_is_durable() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    fill(log, 3, epoch=1)
    log.reset_to(100, 5)
    fs.power_loss()
    log = open_log(fs)
    assert (log.log_start_offset(), log.log_end_offset()) == (100, 100)
    assert log.term_at(99) == 5 and log.last_term() == 5
    log.append_batch(make_batch(2), 100, 6)
    assert log.log_end_offset() == 102


def test_truncate_suffix_is_durable_at_once() -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=400)
    fill(log, 12)
    log.flush()
    log.truncate_suffix(4)
    fill(log, 1, epoch=2)
    fs.power_loss()  # the re-append was not flushed; the truncation was
    log = open_log(fs, segment_bytes=400)
    assert log.log_end_offset() == 4
    assert log.end_offset_for_term(1) == (1, 4)


# --------------------------------------------------------------------------- roll, retention, time


def test_segments_roll_by_size_and_by_age() -> None:
    fs = SimFileSystem()
    clock = Clock(now=1_000_000)
    log = open_log(fs, clock=clock, segment_bytes=1000, segment_ms=60_000)
    size = len(make_batch(2, payload_bytes=50))
    fill(log, 1000 // size + 1, ts=clock.now)
    assert len(log.segments) == 2
    assert all(s.size <= 1000 for s in log.segments)
    clock.now += 60_000
    fill(log, 1, ts=clock.now)
    assert len(log.segments) == 3


def test_retention_by_time_deletes_only_old_closed_segments_below_the_bound() -> None:
    fs = SimFileSystem()
    clock = Clock(now=100 * DAY_MS)
    log = open_log(fs, clock=clock, segment_bytes=400)
    old = clock.now - 8 * DAY_MS
    fill(log, 8, ts=old)
    fill(log, 8, ts=clock.now)
    segs_before = len(log.segments)
    assert log.apply_retention(max_offset=0) == 0, "nothing below the high watermark 0"
    deleted = log.apply_retention(max_offset=log.log_end_offset())
    assert deleted >= 1 and len(log.segments) == segs_before - deleted
    assert all(s.max_timestamp >= clock.now - 7 * DAY_MS for s in log.segments[:-1])
    assert log.log_start_offset() == log.segments[0].base_offset
    with pytest.raises(OffsetOutOfRangeError):
        log.read(0, 100)
    fs.power_loss()
    log = open_log(fs, clock=clock, segment_bytes=400)
    assert log.log_start_offset() == log.segments[0].base_offset > 0


def test_default_retention_is_seven_days() -> None:
    assert LogConfig().retention_ms == 7 * DAY_MS == 168 * 3600 * 1000
    assert LogConfig().retention_bytes == -1
    assert LogConfig().segment_bytes == 1 << 30


def test_retention_by_size_keeps_the_newest_bytes() -> None:
    fs = SimFileSystem()
    clock = Clock()
    log = open_log(fs, clock=clock, segment_bytes=400, retention_bytes=1000, retention_ms=-1)
    fill(log, 40, ts=clock.now)
    log.apply_retention(max_offset=log.log_end_offset())
    total = log.size_bytes()
    assert total - log.segments[0].size < 1000 <= total or len(log.segments) == 1


def test_active_segment_is_never_deleted() -> None:
    fs = SimFileSystem()
    log = open_log(fs, retention_ms=0)
    fill(log, 5, ts=1)
    assert log.apply_retention(max_offset=10, now_ms=10**12) == 0
    assert log.log_end_offset() == 10


def test_offset_for_timestamp() -> None:
    fs = SimFileSystem()
    log = open_log(fs, segment_bytes=500, index_interval_bytes=100)
    for i in range(30):
        log.append_as_leader(make_batch(2, timestamp_ms=1000 + 10 * i), 1)
    assert log.offset_for_timestamp(0) == 0
    assert log.offset_for_timestamp(1000) == 0
    assert log.offset_for_timestamp(1001) == 2
    assert log.offset_for_timestamp(1150) == 30
    assert log.offset_for_timestamp(1151) == 32
    assert log.offset_for_timestamp(1290) == 58
    assert log.offset_for_timestamp(1291) is None
    log.close()
    log = open_log(fs, segment_bytes=500, index_interval_bytes=100)  # from index files
    assert log.offset_for_timestamp(1151) == 32


# --------------------------------------------------------------------------- group commit


def test_group_commit_one_fsync_serves_many_appenders() -> None:
    fs = SimFileSystem(fsync_delay_s=0.002)
    log = open_log(fs)
    lock = threading.Lock()
    n_threads, per_thread = 8, 50

    def worker() -> None:
        for _ in range(per_thread):
            with lock:  # one writer at a time, as the Raft driver does
                h = log.append_as_leader(make_batch(), 1)
            assert log.sync_to(h.last_offset + 1) >= h.last_offset + 1

    before = log.fsyncs
    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert log.durable_offset == n_threads * per_thread
    assert log.fsyncs - before < n_threads * per_thread


def test_fsync_off_topics_acknowledge_without_fsync() -> None:
    fs = SimFileSystem()
    log = PartitionLog.open(fs, D, LogConfig(fsync=False), clock_ms=Clock())
    fill(log, 3)
    assert log.sync_to(6) == 6
    assert log.fsyncs == 0


# ------------------------------------------------------------ paths, config, hard state


@pytest.mark.parametrize("name", ["orders", "a.b-c_d", "A" * 249, "x"])
def test_valid_topic_names(name: str) -> None:
    assert validate_topic(name) == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "../etc", "a" * 250, "sp ace", "é", "a\x00b"]
)
def test_invalid_topic_names(name: str) -> None:
    with pytest.raises(InvalidTopicError):
        validate_topic(name)


def test_partition_dir_never_leaves_the_data_dir(tmp_path: object) -> None:
    root = str(tmp_path)
    assert partition_dir(root, "orders", 3) == os.path.join(root, "orders", "3")
    for topic, part in [("..", 0), ("a/../../x", 0), ("ok", -1), ("ok", True)]:
        with pytest.raises(InvalidTopicError):
            partition_dir(root, topic, part)  # type: ignore[arg-type]


def test_config_validation() -> None:
    with pytest.raises(InvalidConfigError):
        LogConfig(segment_bytes=10)
    with pytest.raises(InvalidConfigError):
        LogConfig(retention_ms=-2)


def test_hard_state_round_trip_and_corruption() -> None:
    fs = SimFileSystem()
    fs.makedirs(D)
    assert hard_state.load(fs, D) == hard_state.StoredHardState(0, None)
    hard_state.save(fs, D, hard_state.StoredHardState(7, None))
    hard_state.save(fs, D, hard_state.StoredHardState(8, 3))
    fs.power_loss()
    assert hard_state.load(fs, D) == hard_state.StoredHardState(8, 3)
    fs.corrupt(f"{D}/{hard_state.FILE_NAME}", 10)
    with pytest.raises(CorruptRecordError):
        hard_state.load(fs, D)


def test_power_loss_before_the_folder_fsync_loses_the_new_file() -> None:
    fs = SimFileSystem()
    fs.makedirs("/x")
    f = fs.open("/x/a")
    f.pwrite(b"hello", 0)
    f.fsync()
    fs.power_loss()
    assert not fs.exists("/x/a")


# --------------------------------------------------------------------------- the real disk


def test_on_the_real_file_system(tmp_path: object) -> None:
    folder = partition_dir(str(tmp_path), "orders", 0)
    fs = OsFileSystem()
    log = PartitionLog.open(fs, folder, LogConfig(segment_bytes=2000), clock_ms=Clock())
    fill(log, 50)
    log.save_hard_state(2, 1)
    assert log.sync_to(100) == 100
    log.close()
    names = sorted(os.listdir(folder))
    assert "00000000000000000000.log" in names and "raft-hard-state" in names
    assert any(n.endswith(".index") for n in names)
    log = PartitionLog.open(fs, folder, LogConfig(segment_bytes=2000), clock_ms=Clock())
    assert log.log_end_offset() == 100
    assert log.hard_state() == hard_state.StoredHardState(2, 1)
    assert len(offsets(log.read(0, 1 << 20))) >= 1


def test_offset_for_timestamp_is_record_precise() -> None:
    fs = SimFileSystem()
    log = open_log(fs)
    log.append_as_leader(make_batch(3, timestamps=[100, 200, 300]), 1)
    log.append_as_leader(make_batch(2, timestamps=[400, 500]), 1)
    assert [log.offset_for_timestamp(t) for t in (50, 100, 150, 201, 300, 301, 500, 501)] == [
        0,
        0,
        1,
        2,
        2,
        3,
        4,
        None,
    ]
