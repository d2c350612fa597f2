"""The Raft hard state of one partition replica: its current term and its vote.

Raft's safety needs both on stable storage before the node answers a vote or an append
(Raft paper, Figure 2, "Persistent state on all servers"). Every election changes them on
every replica of the group, so with many partitions electing at once (a broker starting,
a topic of a thousand partitions created) the cost of one save decides how long votes wait.

How it is stored: two slots that take turns (the two meta pages of LMDB and bbolt).

- The file is created (and a file of the old format is upgraded) by replacing it whole:
  write temp, fsync, rename, fsync the folder. That happens once per replica.
- After that a save overwrites, in place, the slot that does *not* hold the newest state,
  with a sequence number one higher, and fsyncs the file: one pwrite and one fsync, no
  new name, no folder fsync. The newest good slot is never written, so a write torn by a
  power loss damages at most the slot being written, whose CRC then fails: the load falls
  back to the other slot, the state of the previous save. That is safe because a save
  that did not finish its fsync has not been acknowledged to the caller, and the driver
  sends nothing that depends on a state before it is saved (``messages_after_persist``).
- The two slots live in different 4 KiB pages, so a page (or sector) written back
  partially cannot reach the slot that is not being written.

What a load decides: both slots good, the higher sequence wins; one slot good, it is the
state (the other was torn, or never written); none good, the file is corrupt and that is
reported (``CorruptRecordError``), never guessed. The limit of the scheme, shared with every
two-slot design: a slot whose completed write later rots on disk is indistinguishable from
a torn one, so it falls back to the previous state instead of being reported.

Slot format (big-endian, 33 bytes)::

    4  magic    b"RLHS"
    1  version  (2)
    8  sequence (uint64; one higher at each save)
    8  term     (int64)
    8  vote     (int64; -1 = no vote)
    4  crc32c of the 29 bytes above

File: slot 0 at byte 0, slot 1 at byte 4096; 4129 bytes. A never-written slot is zeros.
Files of version 1 (25 bytes: magic, version 1, term, vote, crc32c), written by earlier
releases by whole-file replacement, are read, and replaced by a version 2 file at the
next save.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

from raftlog.errors import CorruptRecordError
from raftlog.storage.files import File, FileSystem, read_whole, write_atomically
from raftlog.storage.record_batch import crc32c

FILE_NAME = "raft-hard-state"
_MAGIC = b"RLHS"
_CRC = struct.Struct(">I")

_V1 = 1
_V1_BODY = struct.Struct(">4sBqq")
V1_FILE_BYTES = _V1_BODY.size + _CRC.size

_V2 = 2
_SLOT_BODY = struct.Struct(">4sBQqq")
SLOT_BYTES = _SLOT_BODY.size + _CRC.size
SLOT_SPACING = 4096
"""Bytes between the starts of the two slots: each slot in a page of its own."""
FILE_BYTES = SLOT_SPACING + SLOT_BYTES


@dataclass(frozen=True, slots=True)
class StoredHardState:
    """Term and vote as stored; ``vote`` is a node id or None."""

    term: int
    vote: int | None


def encode_slot(state: StoredHardState, sequence: int) -> bytes:
    if state.term < 0:
        raise ValueError(f"term must be >= 0, got {state.term}")
    if sequence < 1:
        raise ValueError(f"sequence must be >= 1, got {sequence}")
    vote = -1 if state.vote is None else state.vote
    body = _SLOT_BODY.pack(_MAGIC, _V2, sequence, state.term, vote)
    return body + _CRC.pack(crc32c(body))


def decode_slot(data: bytes) -> tuple[int, StoredHardState] | None:
    """(sequence, state) of a good slot; None for a torn, corrupt or never-written one."""
    if len(data) != SLOT_BYTES:
        return None
    body = data[: _SLOT_BODY.size]
    (crc,) = _CRC.unpack_from(data, _SLOT_BODY.size)
    if crc != crc32c(body):
        return None
    magic, version, sequence, term, vote = _SLOT_BODY.unpack(body)
    if magic != _MAGIC or version != _V2 or sequence < 1 or term < 0:
        return None
    return sequence, StoredHardState(term, None if vote < 0 else vote)


def encode_file(state: StoredHardState, sequence: int = 1) -> bytes:
    """A whole version 2 file: ``state`` in slot 0, slot 1 never written (zeros)."""
    return encode_slot(state, sequence) + bytes(FILE_BYTES - SLOT_BYTES)


def encode_v1(state: StoredHardState) -> bytes:
    """A version 1 file (what earlier releases wrote); kept to test reading them."""
    if state.term < 0:
        raise ValueError(f"term must be >= 0, got {state.term}")
    vote = -1 if state.vote is None else state.vote
    body = _V1_BODY.pack(_MAGIC, _V1, state.term, vote)
    return body + _CRC.pack(crc32c(body))


def _decode_v1(data: bytes, path: str) -> StoredHardState:
    body = data[: _V1_BODY.size]
    (crc,) = _CRC.unpack_from(data, _V1_BODY.size)
    if crc != crc32c(body):
        raise CorruptRecordError(f"{path}: CRC mismatch; the file is corrupt")
    magic, version, term, vote = _V1_BODY.unpack(body)
    if magic != _MAGIC or version != _V1:
        raise CorruptRecordError(f"{path}: not a raftlog hard-state file (v{version})")
    return StoredHardState(term, None if vote < 0 else vote)


@dataclass(frozen=True, slots=True)
class _Scan:
    """What a file holds: the state, and for a version 2 file which slot holds it and its
    sequence (``slot`` None: a version 1 file, to be replaced whole at the next save)."""

    state: StoredHardState
    slot: int | None
    sequence: int


def _scan(data: bytes, path: str) -> _Scan:
    if len(data) == V1_FILE_BYTES:
        return _Scan(_decode_v1(data, path), None, 0)
    if len(data) != FILE_BYTES:
        raise CorruptRecordError(
            f"{path}: {len(data)} bytes, expected {FILE_BYTES} (or {V1_FILE_BYTES}, version 1)"
        )
    best: _Scan | None = None
    for slot in (0, 1):
        pos = slot * SLOT_SPACING
        got = decode_slot(data[pos : pos + SLOT_BYTES])
        if got is not None and (best is None or got[0] > best.sequence):
            best = _Scan(got[1], slot, got[0])
    if best is None:
        raise CorruptRecordError(f"{path}: no slot has a good CRC; the file is corrupt")
    return best


def decode(data: bytes, path: str = "hard state") -> StoredHardState:
    """The state a whole file's content holds (either version); ``CorruptRecordError``."""
    return _scan(data, path).state


def load(fs: FileSystem, folder: str) -> StoredHardState:
    """The stored state, or term 0 and no vote when the file does not exist yet."""
    return HardStateFile(fs, folder).load()


def save(fs: FileSystem, folder: str, state: StoredHardState) -> None:
    """Durably replace the whole file with one holding ``state`` (in slot 0, slot 1 empty);
    returns only once it is on stable storage. This is the slow path (temp file, two
    fsyncs, rename): a replica keeps a ``HardStateFile`` (``PartitionLog`` does), whose
    saves overwrite a slot in place."""
    write_atomically(fs, f"{folder}/{FILE_NAME}", encode_file(state))


class HardStateFile:
    """The hard-state file of one folder, remembering which slot holds the newest state
    (see the module docstring), and kept open between saves (``close`` it with the log).
    One writer at a time; ``save`` is safe to call from a worker thread. After an error of
    ``save`` nothing is assumed about the file: the next ``save`` or ``load`` reads it
    again (the caller fences the replica anyway)."""

    def __init__(self, fs: FileSystem, folder: str) -> None:
        self.fs = fs
        self.folder = folder
        self.path = f"{folder}/{FILE_NAME}"
        self._lock = threading.Lock()
        self._known: _Scan | None = None  # what the file holds, once read or written
        # kept open between in-place saves: every system call of a save is a trip through
        # the GIL, which a busy event loop holds for up to its switch interval
        self._file: File | None = None
        self.saves = 0
        self.in_place_saves = 0

    def load(self) -> StoredHardState:
        """The stored state, or term 0 and no vote when the file does not exist yet;
        ``CorruptRecordError`` when it exists and no slot is good."""
        with self._lock:
            self._known = None
            self._close()  # the name may point at another file than the one kept open
            scan = self._read()
            if scan is None:
                return StoredHardState(0, None)
            self._known = scan
            return scan.state

    def _read(self) -> _Scan | None:
        if not self.fs.exists(self.path):
            return None
        return _scan(read_whole(self.fs, self.path, max_bytes=FILE_BYTES), self.path)

    def save(self, state: StoredHardState) -> None:
        """Durably store ``state``; returns only once it is on stable storage. Raises
        ``OSError`` when a write or fsync fails (nothing is known of the file then)."""
        with self._lock:
            known = self._known
            if known is None:
                known = self._read()
            self._known = None
            if known is None or known.slot is None:
                # no file yet, or a version 1 file: create the whole file by replacement
                # (a new name needs the folder fsync anyway)
                self._close()
                write_atomically(self.fs, self.path, encode_file(state))
                self._known = _Scan(state, 0, 1)
            else:
                slot, sequence = 1 - known.slot, known.sequence + 1
                try:
                    if self._file is None:
                        self._file = self.fs.open(self.path, create=False)
                    self._file.pwrite(encode_slot(state, sequence), slot * SLOT_SPACING)
                    self._file.fsync()
                except BaseException:
                    self._close()
                    raise
                self._known = _Scan(state, slot, sequence)
                self.in_place_saves += 1
            self.saves += 1

    def close(self) -> None:
        """Close the file kept open for saves (a later save opens it again)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()
