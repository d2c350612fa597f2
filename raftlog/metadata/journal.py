"""A durable Raft journal for the metadata group (pysyncobj's journal interface).

pysyncobj's own ``FileJournal`` writes its log through an mmap that is never synced and
its term/vote file without fsync: a power loss of a majority can lose committed metadata
and votes (NOTES-dependencies.md). This journal keeps the same duck-typed interface
(``add``, ``clear``, ``deleteEntriesFrom``, ``deleteEntriesTo``, indexing, ``len``,
``setCurrentTerm``...) and adds the durability Raft needs:

- ``setCurrentTerm`` (term and vote) is written atomically and fsynced before it returns,
  so a node never answers a vote before its vote is on disk (Raft paper, Figure 2);
- appended entries are written at once and fsynced by ``sync()``, which the quorum calls
  before any message leaves the node and once per tick (so a leader's own entries are
  durable before they count towards a majority);
- a truncation of the suffix (a follower's conflict) is applied lazily: if the same
  entries are appended again at once (pysyncobj re-sends committed entries on stale
  append-entries), nothing is rewritten, so committed entries are never briefly missing
  from the disk;
- removing the prefix after a snapshot first fsyncs the snapshot's folder (pysyncobj
  renamed the snapshot into place without fsyncing it), then rewrites the journal
  atomically.

Journal file ``metadata.journal``: 8 bytes ``b"RLMJ\\x00\\x00\\x00\\x01"``, then records
``u32 payload length, u32 crc32c(payload), payload = u64 index, u64 term, command``.
Opening stops at the first torn or corrupt record and truncates the file there.
State file ``metadata.state``: ``u64 term, u64 commit index, u16 vote length, vote
(utf-8 node address, empty = none), u32 crc32c`` replaced atomically.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import Any

from crc32c import crc32c

from raftlog.storage.files import FileSystem, read_whole, write_atomically

JOURNAL_NAME = "metadata.journal"
STATE_NAME = "metadata.state"
_MAGIC = b"RLMJ\x00\x00\x00\x01"
_REC = struct.Struct("<II")
_ENTRY = struct.Struct("<QQ")
_STATE = struct.Struct("<QQH")
_CRC = struct.Struct("<I")
COMMAND_BYTES_MAX = 16 * 1024 * 1024

Entry = tuple[bytes, int, int]
"""(command, index, term) as pysyncobj holds them."""


class JournalCorrupt(Exception):
    """The state file is unreadable: the node must not guess its term and vote."""


class DurableJournal:
    """pysyncobj's journal interface, durable. All calls come from pysyncobj's tick thread
    except ``sync`` (also from the quorum's hooks on the same thread); a lock keeps it safe
    anyway."""

    def __init__(self, fs: FileSystem, folder: str, *, snapshot_path: str | None = None) -> None:
        self.fs = fs
        self.folder = folder
        self.snapshot_path = snapshot_path
        self.path = f"{folder}/{JOURNAL_NAME}"
        self.state_path = f"{folder}/{STATE_NAME}"
        self._lock = threading.RLock()
        self._entries: list[Entry] = []
        self._ends: list[int] = []  # file position after each entry
        self._pending_cut: int | None = None  # entries from here are deleted in memory only
        self._dirty = False
        self._state_dirty = False
        self.fsyncs = 0
        self.on_write_failure: Callable[[str, BaseException], None] | None = None
        """Called with (where, error) before a failed journal write raises (the broker
        halts there): pysyncobj would log the error and go on as if the entry were kept."""
        fs.makedirs(folder)
        self._term, self._vote, self._commit = self._load_state()
        self._file = fs.open(self.path)
        self._load_entries()
        fs.fsync_dir(folder)

    # ------------------------------------------------------------------ loading

    def _load_state(self) -> tuple[int, str | None, int]:
        if not self.fs.exists(self.state_path):
            return 0, None, 1
        data = read_whole(self.fs, self.state_path, max_bytes=1024)
        if len(data) < _STATE.size + _CRC.size:
            raise JournalCorrupt(f"{self.state_path} is {len(data)} bytes: too short")
        (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
        if crc != crc32c(data[: -_CRC.size]):
            raise JournalCorrupt(f"{self.state_path}: CRC mismatch")
        term, commit, vote_len = _STATE.unpack_from(data, 0)
        if _STATE.size + vote_len + _CRC.size != len(data):
            raise JournalCorrupt(f"{self.state_path}: bad vote length {vote_len}")
        vote = data[_STATE.size : _STATE.size + vote_len].decode() or None
        return term, vote, commit

    def _load_entries(self) -> None:
        size = self._file.size()
        if size < len(_MAGIC):
            self._file.truncate(0)
            self._file.pwrite(_MAGIC, 0)
            self._file.fsync()
            return
        data = self._file.pread(size, 0)
        if data[: len(_MAGIC)] != _MAGIC:
            raise JournalCorrupt(f"{self.path} is not a raftlog metadata journal")
        pos = len(_MAGIC)
        while pos + _REC.size <= size:
            length, crc = _REC.unpack_from(data, pos)
            start = pos + _REC.size
            if length < _ENTRY.size or length > COMMAND_BYTES_MAX or start + length > size:
                break
            payload = data[start : start + length]
            if crc32c(payload) != crc:
                break
            idx, term = _ENTRY.unpack_from(payload, 0)
            if self._entries and (idx != self._entries[-1][1] + 1 or term < self._entries[-1][2]):
                break
            self._entries.append((bytes(payload[_ENTRY.size :]), idx, term))
            pos = start + length
            self._ends.append(pos)
        if pos < size:
            self._file.truncate(pos)  # a torn or corrupt tail: never acknowledged
            self._file.fsync()

    # ------------------------------------------------------------------ entries

    def _live_len(self) -> int:
        return len(self._entries) if self._pending_cut is None else self._pending_cut

    def __len__(self) -> int:
        with self._lock:
            return self._live_len()

    def __getitem__(self, item: Any) -> Any:
        with self._lock:
            if self._pending_cut is None:
                return self._entries[item]
            return self._entries[: self._pending_cut][item]

    def add(self, command: bytes, idx: int, term: int) -> None:
        try:
            self._add(command, idx, term)
        except OSError as e:
            if self.on_write_failure is not None:
                self.on_write_failure("metadata journal write", e)
            raise

    def _add(self, command: bytes, idx: int, term: int) -> None:
        command = bytes(command)
        with self._lock:
            if self._pending_cut is not None:
                i = self._pending_cut
                if i < len(self._entries) and self._entries[i] == (command, idx, term):
                    self._pending_cut = i + 1 if i + 1 < len(self._entries) else None
                    return  # the same entry again: already on disk
                self._cut(i)
            payload = _ENTRY.pack(idx, term) + command
            record = _REC.pack(len(payload), crc32c(payload)) + payload
            pos = self._ends[-1] if self._ends else len(_MAGIC)
            self._file.pwrite(record, pos)
            self._entries.append((command, idx, term))
            self._ends.append(pos + len(record))
            self._dirty = True

    def _cut(self, i: int) -> None:
        del self._entries[i:]
        del self._ends[i:]
        self._file.truncate(self._ends[-1] if self._ends else len(_MAGIC))
        self._pending_cut = None
        self._dirty = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        with self._lock:
            live = self._live_len()
            if entryFrom < live:
                self._pending_cut = entryFrom

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop the first ``entryTo`` entries (they are in the snapshot now)."""
        with self._lock:
            self.sync()
            self._snapshot_durable()
            keep = self._entries[entryTo:]
            self._rewrite(keep)

    def clear(self) -> None:
        """Drop every entry (pysyncobj is about to add the snapshot's last two)."""
        with self._lock:
            self._snapshot_durable()
            self._rewrite([])

    def _snapshot_durable(self) -> None:
        # pysyncobj renamed the new snapshot into place without fsyncing the file's name;
        # the journal must not lose entries the snapshot does not durably hold yet
        if self.snapshot_path is None or not self.fs.exists(self.snapshot_path):
            return
        f = self.fs.open(self.snapshot_path, create=False)
        try:
            f.fsync()
        finally:
            f.close()
        self.fs.fsync_dir(self.snapshot_path.rsplit("/", 1)[0])

    def _rewrite(self, entries: list[Entry]) -> None:
        out = bytearray(_MAGIC)
        ends = []
        for command, idx, term in entries:
            payload = _ENTRY.pack(idx, term) + command
            out += _REC.pack(len(payload), crc32c(payload)) + payload
            ends.append(len(out))
        self._file.close()
        write_atomically(self.fs, self.path, bytes(out))
        self._file = self.fs.open(self.path)
        self._entries = list(entries)
        self._ends = ends
        self._pending_cut = None
        self._dirty = False

    def sync(self) -> None:
        """Make every appended entry and the term/vote durable (see ``_sync``); a failure
        goes to ``on_write_failure`` first (every caller: the tick, the send hook)."""
        try:
            self._sync()
        except OSError as e:
            if self.on_write_failure is not None:
                self.on_write_failure("metadata journal sync", e)
            raise

    def _sync(self) -> None:
        """Make every entry added so far durable (and a pending cut, if still pending)."""
        with self._lock:
            if self._pending_cut is not None:
                self._cut(self._pending_cut)
            if self._dirty:
                self._file.fsync()
                self.fsyncs += 1
                self._dirty = False

    # ------------------------------------------------------------------ term, vote, commit

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        with self._lock:
            self._term = int(term)
            self._vote = None if votedForNodeId is None else str(votedForNodeId)
            self._write_state()

    def getCurrentTerm(self) -> int:
        return self._term

    def getVotedForNodeId(self) -> str | None:
        return self._vote

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        # a hint for a faster restart; pysyncobj clamps it to the journal end
        if raftCommitIndex != self._commit:
            self._commit = int(raftCommitIndex)
            self._state_dirty = True

    def getRaftCommitIndex(self) -> int:
        return self._commit

    def onOneSecondTimer(self) -> None:
        if self._state_dirty:
            with self._lock:
                self.sync()  # the commit hint never runs ahead of the durable entries
                self._write_state()

    def _write_state(self) -> None:
        try:
            self._write_state_file()
        except OSError as e:
            if self.on_write_failure is not None:
                self.on_write_failure("metadata journal state", e)
            raise

    def _write_state_file(self) -> None:
        vote = (self._vote or "").encode()
        body = _STATE.pack(self._term, self._commit, len(vote)) + vote
        write_atomically(self.fs, self.state_path, body + _CRC.pack(crc32c(body)))
        self._state_dirty = False

    def flush(self) -> None:
        self.sync()

    def _destroy(self) -> None:
        with self._lock:
            self.sync()
            self._file.close()
