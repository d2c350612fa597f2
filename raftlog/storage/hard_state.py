"""The Raft hard state of one partition replica: its current term and its vote.

Raft's safety needs both on stable storage before the node answers a vote or an append
(Raft paper, Figure 2, "Persistent state on all servers"). The file is replaced atomically
(write temp, fsync, rename, fsync the folder), so after a crash it holds the old or the new
state, never a mix; a CRC catches a corrupted file, which is reported, never guessed.

Format (big-endian, 25 bytes)::

    4  magic  b"RLHS"
    1  version (1)
    8  term   (int64)
    8  vote   (int64; -1 = no vote)
    4  crc32c of the 21 bytes above
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from raftlog.errors import CorruptRecordError
from raftlog.storage.files import FileSystem, read_whole, write_atomically
from raftlog.storage.record_batch import crc32c

FILE_NAME = "raft-hard-state"
_MAGIC = b"RLHS"
_VERSION = 1
_BODY = struct.Struct(">4sBqq")
_CRC = struct.Struct(">I")
FILE_BYTES = _BODY.size + _CRC.size


@dataclass(frozen=True, slots=True)
class StoredHardState:
    """Term and vote as stored; ``vote`` is a node id or None."""

    term: int
    vote: int | None


def encode(state: StoredHardState) -> bytes:
    if state.term < 0:
        raise ValueError(f"term must be >= 0, got {state.term}")
    body = _BODY.pack(_MAGIC, _VERSION, state.term, -1 if state.vote is None else state.vote)
    return body + _CRC.pack(crc32c(body))


def decode(data: bytes, path: str = "hard state") -> StoredHardState:
    if len(data) != FILE_BYTES:
        raise CorruptRecordError(f"{path}: {len(data)} bytes, expected {FILE_BYTES}")
    body = data[: _BODY.size]
    (crc,) = _CRC.unpack_from(data, _BODY.size)
    if crc != crc32c(body):
        raise CorruptRecordError(f"{path}: CRC mismatch; the file is corrupt")
    magic, version, term, vote = _BODY.unpack(body)
    if magic != _MAGIC or version != _VERSION:
        raise CorruptRecordError(f"{path}: not a raftlog hard-state file (v{version})")
    return StoredHardState(term, None if vote < 0 else vote)


def load(fs: FileSystem, folder: str) -> StoredHardState:
    """The stored state, or term 0 and no vote when the file does not exist yet."""
    path = f"{folder}/{FILE_NAME}"
    if not fs.exists(path):
        return StoredHardState(0, None)
    return decode(read_whole(fs, path, max_bytes=FILE_BYTES), path)


def save(fs: FileSystem, folder: str, state: StoredHardState) -> None:
    """Durably replace the stored state; returns only once it is on stable storage."""
    write_atomically(fs, f"{folder}/{FILE_NAME}", encode(state))
