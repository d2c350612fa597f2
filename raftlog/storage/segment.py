"""One segment of a partition log: ``<base>.log`` plus its sparse indexes.

A segment holds record batches back to back, exactly as they go on the wire, starting at
the batch whose base offset names the file (20 digits, zero padded, as Kafka names them).
Only the newest segment of a log (the *active* one) is appended to; the others are
*closed*: their ``.index`` and ``.timeindex`` were written when they were closed.

Opening a segment (``open_closed`` / ``recover``):

- a closed segment loads its index files and checks them against the log (a missing,
  malformed or stale index is rebuilt by walking the batch headers);
- the active segment is scanned batch by batch with CRCs: the first batch that is torn
  (runs past the end of the file, impossible length, offsets that do not follow) ends the
  log, and the file is truncated there; a batch whose CRC fails *but is followed by valid
  batches* is corruption in the middle, not a torn tail: it is remembered, reads of it raise
  ``CorruptRecordError``, and nothing after it is thrown away.

Rules kept: positions fit in 32 bits (a segment is below 2 GiB), relative offsets fit in 32
bits, offsets inside a segment are contiguous, and every length read from disk is checked
against the bytes that remain before it is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from raftlog.errors import CorruptRecordError
from raftlog.storage.files import File, FileSystem, read_whole
from raftlog.storage.offset_index import OffsetIndex, TimeIndex
from raftlog.storage.record_batch import (
    HEADER_BYTES,
    BatchHeader,
    read_header,
    validate_batch,
)

SCAN_CHUNK_BYTES = 1 << 20
RELATIVE_OFFSET_MAX = 2**31 - 1


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a full scan of a segment found."""

    valid_bytes: int
    truncated_bytes: int
    epochs: list[tuple[int, int]]
    """(epoch, first offset) at each epoch change, in order."""


class LogSegment:
    """A segment's files and in-memory state. Not thread-safe by itself: the log serialises
    writers; ``fsync`` alone may run on a flusher thread."""

    def __init__(
        self, fs: FileSystem, folder: str, base_offset: int, index_interval_bytes: int
    ) -> None:
        self.fs = fs
        self.folder = folder
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        stem = f"{folder}/{segment_name(base_offset)}"
        self.log_path = stem + ".log"
        self.index_path = stem + ".index"
        self.time_index_path = stem + ".timeindex"
        self.file: File = fs.open(self.log_path)
        self.index = OffsetIndex()
        self.time_index = TimeIndex()
        self.size = 0
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.first_timestamp: int | None = None
        self._bytes_since_index = 0
        self._rel_of_max_timestamp = 0
        self.corrupt_positions: set[int] = set()
        self.index_rebuilt = False

    # ------------------------------------------------------------------ opening

    def recover(self, max_batch_bytes: int) -> ScanResult:
        """Scan the whole file with CRCs, rebuild both indexes, cut a torn tail."""
        self._reset_indexes()
        file_size = self.file.size()
        pos = 0
        epochs: list[tuple[int, int]] = []
        buf = b""
        buf_pos = 0  # file position of buf[0]
        while pos < file_size:
            if pos + HEADER_BYTES > buf_pos + len(buf):
                buf = self.file.pread(max(SCAN_CHUNK_BYTES, HEADER_BYTES), pos)
                buf_pos = pos
            rel = pos - buf_pos
            try:
                h = read_header(buf, rel)
            except CorruptRecordError:
                break
            if h.size > max_batch_bytes or pos + h.size > file_size:
                break
            if h.base_offset != self.next_offset:
                break
            if rel + h.size > len(buf):
                buf = self.file.pread(max(SCAN_CHUNK_BYTES, h.size), pos)
                buf_pos, rel = pos, 0
            try:
                validate_batch(buf, rel, max_bytes=max_batch_bytes)
            except CorruptRecordError:
                if not self._valid_batch_follows(pos + h.size, h.last_offset + 1, max_batch_bytes):
                    break
                self.corrupt_positions.add(pos)
            if not epochs or h.partition_leader_epoch > epochs[-1][0]:
                epochs.append((h.partition_leader_epoch, h.base_offset))
            self._index_batch(h, pos)
            pos += h.size
        truncated = file_size - pos
        if truncated:
            self.file.truncate(pos)
        return ScanResult(valid_bytes=pos, truncated_bytes=truncated, epochs=epochs)

    def _valid_batch_follows(self, pos: int, offset: int, max_batch_bytes: int) -> bool:
        head = self.file.pread(HEADER_BYTES, pos)
        try:
            h = read_header(head)
            if h.base_offset != offset or h.size > max_batch_bytes:
                return False
            validate_batch(self.file.pread(h.size, pos), max_bytes=max_batch_bytes)
        except CorruptRecordError:
            return False
        return True

    def open_closed(self, max_batch_bytes: int) -> bool:
        """Open a closed segment from its index files. Returns False when the files do not
        agree with the log (the caller then recovers the segment fully)."""
        try:
            self.index.load(read_whole(self.fs, self.index_path, max_bytes=1 << 31))
            self.time_index.load(read_whole(self.fs, self.time_index_path, max_bytes=1 << 31))
        except (OSError, CorruptRecordError):
            return self._rebuild_by_headers(max_batch_bytes)
        file_size = self.file.size()
        last = self.index.last()
        start_pos = 0
        if last is not None:
            _rel, start_pos = last
            if start_pos >= file_size:
                return self._rebuild_by_headers(max_batch_bytes)
        self.size = file_size
        walked = self._walk_headers(start_pos, file_size, max_batch_bytes)
        if walked is None:
            return self._rebuild_by_headers(max_batch_bytes)
        first, end_offset, max_ts = walked
        if (
            last is not None
            and first is not None
            and first.base_offset != self.base_offset + last[0]
        ):
            return self._rebuild_by_headers(max_batch_bytes)
        self.next_offset = end_offset
        ts_last = self.time_index.last()
        self.max_timestamp = max(max_ts, ts_last[0] if ts_last else -1)
        self.first_timestamp = self._first_timestamp()
        return True

    def _first_timestamp(self) -> int | None:
        if self.size == 0:
            return None
        h = read_header(self.file.pread(HEADER_BYTES, 0))
        return h.max_timestamp

    def _walk_headers(
        self, pos: int, end: int, max_batch_bytes: int
    ) -> tuple[BatchHeader | None, int, int] | None:
        """Walk batch headers from ``pos`` to exactly ``end``. Returns (first header, next
        offset, max timestamp), or None when the batches do not tile the range."""
        first: BatchHeader | None = None
        next_offset = self.base_offset
        max_ts = -1
        while pos < end:
            try:
                h = read_header(self.file.pread(HEADER_BYTES, pos))
            except CorruptRecordError:
                return None
            if h.size > max_batch_bytes or pos + h.size > end:
                return None
            if first is None:
                first = h
            elif h.base_offset != next_offset:
                return None
            next_offset = h.last_offset + 1
            max_ts = max(max_ts, h.max_timestamp)
            pos += h.size
        if first is None:
            return None, self.base_offset, -1
        return first, next_offset, max_ts

    def _rebuild_by_headers(self, max_batch_bytes: int) -> bool:
        self.index_rebuilt = True
        self._reset_indexes()
        file_size = self.file.size()
        pos = 0
        while pos < file_size:
            try:
                h = read_header(self.file.pread(HEADER_BYTES, pos))
            except CorruptRecordError:
                return False
            if h.size > max_batch_bytes or pos + h.size > file_size:
                return False
            if h.base_offset != self.next_offset:
                return False
            self._index_batch(h, pos)
            pos += h.size
        return True

    def _reset_indexes(self) -> None:
        self.index.clear()
        self.time_index.clear()
        self.size = 0
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self.first_timestamp = None
        self._bytes_since_index = 0
        self._rel_of_max_timestamp = 0
        self.corrupt_positions.clear()

    # ------------------------------------------------------------------ writing

    def can_hold(self, header: BatchHeader, segment_bytes: int) -> bool:
        """Whether the batch may go into this segment (size and 32-bit relative offsets)."""
        if self.size == 0:
            return True
        if self.size + header.size > segment_bytes:
            return False
        return header.last_offset - self.base_offset <= RELATIVE_OFFSET_MAX

    def append(self, data: bytes | bytearray | memoryview, header: BatchHeader) -> None:
        """Write one validated batch at the end (page cache only; see ``fsync``)."""
        assert header.base_offset == self.next_offset, (header.base_offset, self.next_offset)
        pos = self.size
        self.file.pwrite(data, pos)
        self._index_batch(header, pos)

    def _index_batch(self, h: BatchHeader, pos: int) -> None:
        rel = h.base_offset - self.base_offset
        if h.max_timestamp > self.max_timestamp:
            self.max_timestamp = h.max_timestamp
            self._rel_of_max_timestamp = rel
        if pos == 0 or self._bytes_since_index >= self.index_interval_bytes:
            if not self.index or rel > self.index.keys[-1]:
                self.index.append(rel, pos)
            self._maybe_index_time()
            self._bytes_since_index = 0
        if self.first_timestamp is None:
            self.first_timestamp = h.max_timestamp
        self._bytes_since_index += h.size
        self.size = pos + h.size
        self.next_offset = h.last_offset + 1

    def _maybe_index_time(self) -> None:
        # entry (running max timestamp, relative offset of the batch that first reached
        # it): every batch before that one has a smaller timestamp, so a lookup may start
        # its scan there
        last = self.time_index.last()
        if self.max_timestamp >= 0 and (last is None or self.max_timestamp > last[0]):
            self.time_index.append(self.max_timestamp, self._rel_of_max_timestamp)

    def seal(self) -> None:
        """Close the segment for appends: a final time-index entry for its max timestamp,
        and both index files written and fsynced."""
        self._maybe_index_time()
        for path, idx in ((self.index_path, self.index), (self.time_index_path, self.time_index)):
            f = self.fs.open(path)
            try:
                f.truncate(0)
                f.pwrite(idx.to_bytes(), 0)
                f.fsync()
            finally:
                f.close()

    def truncate_to(self, offset: int, max_batch_bytes: int) -> None:
        """Drop every batch whose base offset is >= ``offset`` (a batch boundary)."""
        if offset >= self.next_offset:
            return
        pos = self.position_of(offset)
        if pos is None:
            raise AssertionError(f"offset {offset} is not in segment {self.base_offset}")
        h = read_header(self.file.pread(HEADER_BYTES, pos))
        if h.base_offset != offset:
            raise ValueError(f"truncation point {offset} is inside the batch at {h.base_offset}")
        self.file.truncate(pos)
        self.recover(max_batch_bytes)

    def fsync(self) -> None:
        self.file.fsync()

    def close(self) -> None:
        self.file.close()

    def delete(self) -> None:
        self.file.close()
        for path in (self.log_path, self.index_path, self.time_index_path):
            if self.fs.exists(path):
                self.fs.remove(path)

    # ------------------------------------------------------------------ reading

    def position_of(self, offset: int) -> int | None:
        """The file position of the batch holding ``offset``, or None when this segment
        does not hold it."""
        if not self.base_offset <= offset < self.next_offset:
            return None
        floor = self.index.floor(offset - self.base_offset)
        pos = floor[1] if floor else 0
        return self._scan_to(pos, lambda h: h.last_offset >= offset)

    def position_of_timestamp(self, timestamp_ms: int) -> int | None:
        """The position of the first batch whose max timestamp is >= ``timestamp_ms``."""
        if self.max_timestamp < timestamp_ms:
            return None
        floor = self.time_index.floor(timestamp_ms)
        start = 0
        if floor is not None:
            p = self.position_of(self.base_offset + floor[1])
            start = p if p is not None else 0
        return self._scan_to(start, lambda h: h.max_timestamp >= timestamp_ms)

    def _scan_to(self, pos: int, found: Callable[[BatchHeader], bool]) -> int | None:
        chunk = b""
        chunk_pos = 0
        while pos < self.size:
            rel = pos - chunk_pos
            if rel < 0 or rel + HEADER_BYTES > len(chunk):
                chunk = self.file.pread(min(64 * 1024, max(self.size - pos, HEADER_BYTES)), pos)
                chunk_pos, rel = pos, 0
            h = read_header(chunk, rel)
            if found(h):
                return pos
            pos += h.size
        return None

    def read(self, pos: int, max_bytes: int, upper_offset: int) -> tuple[bytes, int]:
        """Whole batches from ``pos``: at least the first (even if larger than ``max_bytes``)
        unless it reaches ``upper_offset``, then more while they fit in ``max_bytes`` and
        end below ``upper_offset``. Every batch is CRC-checked; a corrupt one raises.
        Returns the bytes and the next offset after them (-1 when nothing was read)."""
        buf = self.file.pread(min(max(max_bytes, HEADER_BYTES), self.size - pos), pos)
        end = 0
        next_offset = -1
        while end + HEADER_BYTES <= len(buf):
            h = read_header(buf, end)
            if h.last_offset >= upper_offset:
                break
            if end + h.size > len(buf):
                if end > 0:
                    break
                buf = self.file.pread(h.size, pos)  # a first batch larger than max_bytes
                if len(buf) < h.size:
                    raise CorruptRecordError(f"batch at offset {h.base_offset} is cut short")
            try:
                if pos + end in self.corrupt_positions:
                    raise CorruptRecordError(
                        f"batch at offset {h.base_offset} in {self.log_path} failed its CRC"
                    )
                validate_batch(buf, end)
            except CorruptRecordError:
                if end > 0:
                    break  # serve the good batches before it; the next read reports it
                raise
            end += h.size
            next_offset = h.last_offset + 1
        if end == len(buf):
            return buf, next_offset
        return bytes(memoryview(buf)[:end]), next_offset

    def batch_headers(self) -> list[tuple[int, BatchHeader]]:
        """(position, header) of every batch, by walking headers (for tools and tests)."""
        out = []
        pos = 0
        while pos < self.size:
            h = read_header(self.file.pread(HEADER_BYTES, pos))
            out.append((pos, h))
            pos += h.size
        return out
