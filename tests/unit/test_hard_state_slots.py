"""The two-slot hard-state file (``raftlog.storage.hard_state``): in-place saves, torn
writes caught by the CRC and answered by the other slot, power loss at every step, version 1
files, and faults that fence the log."""

from __future__ import annotations

import errno
import random

import pytest

from raftlog.errors import CorruptRecordError, LogFencedError
from raftlog.storage import hard_state
from raftlog.storage.files import Fault, File, OsFileSystem, SimFileSystem, write_atomically
from raftlog.storage.hard_state import (
    FILE_BYTES,
    FILE_NAME,
    SLOT_BYTES,
    SLOT_SPACING,
    HardStateFile,
    StoredHardState,
)
from raftlog.storage.log import PartitionLog

D = "/data/t/0"
PATH = f"{D}/{FILE_NAME}"


def new_fs() -> SimFileSystem:
    fs = SimFileSystem()
    fs.makedirs(D)
    return fs


def states(n: int) -> list[StoredHardState]:
    return [StoredHardState(t, None if t % 3 == 0 else t % 3) for t in range(1, n + 1)]


def write_raw(fs: SimFileSystem, data: bytes, pos: int) -> None:
    """Bytes that reached the disk (fsynced), as a power loss may leave them."""
    f = fs.open(PATH, create=False)
    f.pwrite(data, pos)
    f.fsync()
    f.close()


def newest_slot(fs: SimFileSystem) -> int:
    raw = fs.raw(PATH)
    got = [
        hard_state.decode_slot(raw[s * SLOT_SPACING : s * SLOT_SPACING + SLOT_BYTES])
        for s in (0, 1)
    ]
    seqs = [g[0] if g else -1 for g in got]
    return 0 if seqs[0] > seqs[1] else 1


# --------------------------------------------------------------------------- saving


def test_first_save_creates_the_file_then_saves_overwrite_a_slot_in_place() -> None:
    fs = new_fs()
    hs = HardStateFile(fs, D)
    assert hs.load() == StoredHardState(0, None)
    for i, s in enumerate(states(20)):
        dir_fsyncs = fs.stats["fsync_dir"]
        hs.save(s)
        # only the first save needs a new name (temp + rename + folder fsync)
        assert fs.stats["fsync_dir"] == dir_fsyncs + (1 if i == 0 else 0)
        assert len(fs.raw(PATH)) == FILE_BYTES
        assert not fs.exists(PATH + ".tmp")
        assert HardStateFile(fs, D).load() == s
        assert hard_state.load(fs, D) == s
    assert hs.saves == 20 and hs.in_place_saves == 19


def test_saves_alternate_slots_and_never_touch_the_newest() -> None:
    fs = new_fs()
    hs = HardStateFile(fs, D)
    hs.save(StoredHardState(1, 1))
    for t in range(2, 12):
        before = fs.raw(PATH)
        keep = newest_slot(fs)
        hs.save(StoredHardState(t, 2))
        after = fs.raw(PATH)
        lo = keep * SLOT_SPACING
        assert after[lo : lo + SLOT_BYTES] == before[lo : lo + SLOT_BYTES]
        assert newest_slot(fs) == 1 - keep


def test_slots_are_in_different_pages() -> None:
    assert SLOT_SPACING >= 4096 and SLOT_SPACING % 4096 == 0
    assert SLOT_BYTES < 4096 and FILE_BYTES == SLOT_SPACING + SLOT_BYTES


def test_a_fresh_handle_continues_where_the_file_is() -> None:
    fs = new_fs()
    a = HardStateFile(fs, D)
    for s in states(5):
        a.save(s)
    b = HardStateFile(fs, D)  # a restart: learns the newest slot and its sequence
    assert b.load() == states(5)[-1]
    b.save(StoredHardState(40, 2))
    fs.power_loss()
    assert hard_state.load(fs, D) == StoredHardState(40, 2)
    # without a load first, save reads the file itself
    c = HardStateFile(fs, D)
    c.save(StoredHardState(41, None))
    assert HardStateFile(fs, D).load() == StoredHardState(41, None)


# --------------------------------------------------------------------------- power loss


def test_power_loss_after_each_completed_save_keeps_it() -> None:
    fs = new_fs()
    for s in states(12):
        HardStateFile(fs, D).save(s)
        fs.power_loss()
        assert hard_state.load(fs, D) == s


def test_power_loss_before_the_fsync_keeps_the_previous_state() -> None:
    fs = new_fs()
    hs = HardStateFile(fs, D)
    hs.save(StoredHardState(3, 1))
    hs.save(StoredHardState(4, 2))
    # the next save's write reached the page cache only
    slot = 1 - newest_slot(fs)
    f = fs.open(PATH, create=False)
    f.pwrite(hard_state.encode_slot(StoredHardState(5, 3), 3), slot * SLOT_SPACING)
    f.close()
    assert hard_state.load(fs, D) == StoredHardState(5, 3)  # the page cache says so
    fs.power_loss()
    assert hard_state.load(fs, D) == StoredHardState(4, 2)


def test_power_loss_while_creating_keeps_no_file_or_the_whole_file() -> None:
    for seed in range(30):
        fs = new_fs()
        rng = random.Random(seed)
        tmp = fs.open(PATH + ".tmp")
        tmp.pwrite(hard_state.encode_file(StoredHardState(1, 1)), 0)
        if rng.random() < 0.5:
            tmp.fsync()
        fs.power_loss(rng, torn=True)
        # the temporary file never becomes the state: no name points at it
        assert hard_state.load(fs, D) == StoredHardState(0, None)


@pytest.mark.parametrize("cut", [0, 1, 4, 5, 13, 21, 28, 29, 32, SLOT_BYTES])
def test_a_torn_slot_falls_back_to_the_other(cut: int) -> None:
    """The disk took the first ``cut`` bytes of the new slot, the rest is what was there
    (or garbage); only a complete write may be read as the new state."""
    for garbage in (False, True):
        fs = new_fs()
        hs = HardStateFile(fs, D)
        for s in states(4):
            hs.save(s)
        old = states(4)[-1]
        new = StoredHardState(9, 2)
        slot = 1 - newest_slot(fs)
        pos = slot * SLOT_SPACING
        image = hard_state.encode_slot(new, 5)
        rest = fs.raw(PATH)[pos + cut : pos + SLOT_BYTES]
        if garbage:
            rest = bytes(random.Random(cut).randrange(256) for _ in rest)
        write_raw(fs, image[:cut] + rest, pos)
        fs.power_loss()
        got = hard_state.load(fs, D)
        assert got == (new if cut == SLOT_BYTES else old), (cut, garbage, got)
        # and saving goes on from the state it found, never over the good slot
        hs = HardStateFile(fs, D)
        hs.load()
        hs.save(StoredHardState(10, 1))
        fs.power_loss()
        assert hard_state.load(fs, D) == StoredHardState(10, 1)


def test_a_torn_slot_from_any_byte_flip_is_never_read_as_a_state() -> None:
    fs = new_fs()
    hs = HardStateFile(fs, D)
    for s in states(3):
        hs.save(s)
    old = states(3)[-1]
    slot = 1 - newest_slot(fs)
    image = hard_state.encode_slot(StoredHardState(7, 1), 4)
    for i in range(SLOT_BYTES):
        for xor in (0x01, 0x80, 0xFF):
            bad = bytearray(image)
            bad[i] ^= xor
            assert hard_state.decode_slot(bytes(bad)) is None
            f2 = new_fs()
            write_raw_into(f2, fs.raw(PATH))
            write_raw(f2, bytes(bad), slot * SLOT_SPACING)
            assert hard_state.load(f2, D) == old


def write_raw_into(fs: SimFileSystem, data: bytes) -> None:
    write_atomically(fs, PATH, data)


class _PowerCut(Exception):
    pass


class _TearingFile:
    def __init__(self, fs: TearingFileSystem, inner: File, path: str) -> None:
        self.fs = fs
        self.inner = inner
        self.path = path

    def pwrite(self, data: bytes | bytearray | memoryview, pos: int) -> None:
        tear = self.fs.tear if FILE_NAME in self.path else None
        if tear is None:
            self.inner.pwrite(data, pos)
            return
        self.fs.tear = None
        cut, garbage = tear
        data = bytes(data)
        tail = bytes(0xA5 for _ in data[cut:]) if garbage else b""
        self.inner.pwrite(data[:cut] + tail, pos)
        self.inner.fsync()  # that much reached the platter
        raise _PowerCut

    def pread(self, size: int, pos: int) -> bytes:
        return self.inner.pread(size, pos)

    def size(self) -> int:
        return self.inner.size()

    def truncate(self, size: int) -> None:
        self.inner.truncate(size)

    def fsync(self) -> None:
        self.inner.fsync()

    def close(self) -> None:
        self.inner.close()


class TearingFileSystem:
    """A ``SimFileSystem`` whose next write to the hard-state file (or its temporary
    file) is cut by a power loss after ``cut`` bytes (the rest garbage or not written)."""

    def __init__(self, sim: SimFileSystem) -> None:
        self.sim = sim
        self.tear: tuple[int, bool] | None = None

    def open(self, path: str, *, create: bool = True) -> File:
        return _TearingFile(self, self.sim.open(path, create=create), path)

    def exists(self, path: str) -> bool:
        return self.sim.exists(path)

    def listdir(self, path: str) -> list[str]:
        return self.sim.listdir(path)

    def makedirs(self, path: str) -> None:
        self.sim.makedirs(path)

    def remove(self, path: str) -> None:
        self.sim.remove(path)

    def rename(self, src: str, dst: str) -> None:
        self.sim.rename(src, dst)

    def fsync_dir(self, path: str) -> None:
        self.sim.fsync_dir(path)

    def rmdir(self, path: str) -> None:
        self.sim.rmdir(path)


def test_random_histories_of_saves_and_torn_power_cuts() -> None:
    """Saves, each maybe cut by a power loss partway (the create too): after every cut the
    state read is the last save that returned, or the one that was cut when all its bytes
    reached the disk; never anything older, never a mix."""
    for seed in range(40):
        rng = random.Random(seed)
        sim = new_fs()
        fs = TearingFileSystem(sim)
        hs = HardStateFile(fs, D)
        done = StoredHardState(0, None)
        term = 0
        for _ in range(30):
            term += rng.randint(0, 2)
            s = StoredHardState(term, rng.choice([None, 1, 2, 3]))
            if rng.random() < 0.3:
                fs.tear = (rng.randint(0, SLOT_BYTES), rng.random() < 0.5)
                with pytest.raises(_PowerCut):
                    hs.save(s)
                sim.power_loss(rng, torn=True)
                got = hard_state.load(sim, D)
                assert got in (done, s), (seed, got, done, s)
                done = got
                hs = HardStateFile(fs, D)
                assert hs.load() == done
            else:
                hs.save(s)
                done = s
            if rng.random() < 0.2:
                sim.power_loss(rng, torn=True)
                assert hard_state.load(sim, D) == done
                hs = HardStateFile(fs, D)
                assert hs.load() == done


# --------------------------------------------------------------------------- corruption


def test_both_slots_bad_is_reported_never_guessed() -> None:
    fs = new_fs()
    hs = HardStateFile(fs, D)
    hs.save(StoredHardState(1, 1))
    hs.save(StoredHardState(2, 1))
    fs.corrupt(PATH, 3)
    fs.corrupt(PATH, SLOT_SPACING + 3)
    with pytest.raises(CorruptRecordError):
        hard_state.load(fs, D)
    with pytest.raises(CorruptRecordError):
        HardStateFile(fs, D).load()


def test_a_file_of_the_wrong_size_is_corrupt() -> None:
    fs = new_fs()
    write_atomically(fs, PATH, b"\x00" * 100)
    with pytest.raises(CorruptRecordError):
        hard_state.load(fs, D)


def test_whole_file_save_leaves_one_good_slot() -> None:
    fs = new_fs()
    hard_state.save(fs, D, StoredHardState(7, None))
    fs.power_loss()
    assert hard_state.load(fs, D) == StoredHardState(7, None)
    fs.corrupt(PATH, 10)
    with pytest.raises(CorruptRecordError):
        hard_state.load(fs, D)


# --------------------------------------------------------------------------- version 1


def test_a_version_1_file_is_read_and_replaced_whole_at_the_next_save() -> None:
    fs = new_fs()
    write_atomically(fs, PATH, hard_state.encode_v1(StoredHardState(6, 2)))
    hs = HardStateFile(fs, D)
    assert hs.load() == StoredHardState(6, 2)
    dir_fsyncs = fs.stats["fsync_dir"]
    hs.save(StoredHardState(7, 1))
    assert fs.stats["fsync_dir"] == dir_fsyncs + 1  # replaced by a new file
    assert len(fs.raw(PATH)) == FILE_BYTES
    fs.power_loss()
    assert hard_state.load(fs, D) == StoredHardState(7, 1)
    hs = HardStateFile(fs, D)
    hs.load()
    hs.save(StoredHardState(8, 3))
    assert hs.in_place_saves == 1


def test_a_corrupt_version_1_file_is_reported() -> None:
    fs = new_fs()
    write_atomically(fs, PATH, hard_state.encode_v1(StoredHardState(6, 2)))
    fs.corrupt(PATH, 8)
    with pytest.raises(CorruptRecordError):
        hard_state.load(fs, D)


def test_power_loss_during_the_upgrade_keeps_the_version_1_state() -> None:
    fs = new_fs()
    write_atomically(fs, PATH, hard_state.encode_v1(StoredHardState(6, 2)))
    fs.inject(Fault("fsync_dir", errno.EIO))
    with pytest.raises(OSError):
        HardStateFile(fs, D).save(StoredHardState(7, 1))
    fs.power_loss()
    assert hard_state.load(fs, D) == StoredHardState(6, 2)


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("op", ["pwrite", "fsync", "open"])
def test_a_failed_in_place_save_fences_the_log_and_power_loss_keeps_the_old_state(
    op: str,
) -> None:
    fs = SimFileSystem()
    log = PartitionLog.open(fs, D)
    log.save_hard_state(3, 2)
    if op == "open":  # the file is opened once, at the first in-place save
        fs.inject(Fault(op, errno.EIO, path_contains=FILE_NAME))
        with pytest.raises(LogFencedError):
            log.save_hard_state(4, 1)
        fs.power_loss()
        log = PartitionLog.open(fs, D)
        assert log.hard_state() == StoredHardState(3, 2)
    log.save_hard_state(4, 1)
    fs.inject(Fault("fsync" if op == "open" else op, errno.EIO, path_contains=FILE_NAME))
    with pytest.raises(LogFencedError):
        log.save_hard_state(5, 3)
    assert log.fenced
    with pytest.raises(LogFencedError):
        log.save_hard_state(6, 3)
    fs.power_loss()
    log = PartitionLog.open(fs, D)
    assert log.hard_state() == StoredHardState(4, 1)
    log.save_hard_state(6, 3)
    fs.power_loss()
    assert PartitionLog.open(fs, D).hard_state() == StoredHardState(6, 3)


def test_partition_log_saves_in_place_on_the_real_disk(tmp_path: object) -> None:
    folder = f"{tmp_path}/t/0"
    fs = OsFileSystem()
    log = PartitionLog.open(fs, folder)
    for s in states(10):
        log.save_hard_state(s.term, s.vote)
    log.close()
    log = PartitionLog.open(fs, folder)
    assert log.hard_state() == states(10)[-1]
    with open(f"{folder}/{FILE_NAME}", "rb") as f:
        assert len(f.read()) == FILE_BYTES


def test_the_file_stays_open_between_saves_and_closes_with_the_log() -> None:
    fs = SimFileSystem()
    opens = 0
    real_open = fs.open

    def counting_open(path: str, *, create: bool = True) -> File:
        nonlocal opens
        opens += FILE_NAME in path and not path.endswith(".tmp")
        return real_open(path, create=create)

    fs.open = counting_open  # type: ignore[method-assign]
    log = PartitionLog.open(fs, D)
    for s in states(10):
        log.save_hard_state(s.term, s.vote)
    assert opens == 1  # the first save creates the file; the next nine share one open
    log.close()
    fs.power_loss()
    assert PartitionLog.open(fs, D).hard_state() == states(10)[-1]
