"""Sparse indexes of a segment: offset -> file position, and timestamp -> offset.

Like Kafka's ``OffsetIndex`` and ``TimeIndex``, one entry is added per
``index.interval.bytes`` of log, so a lookup is a binary search followed by a short scan of
batch headers. Entries are held in memory (``array`` of machine ints, 16 bytes an entry) and
written to the segment's ``.index``/``.timeindex`` files when the segment is closed.

File formats (big-endian, entries back to back, no header)::

    .index      relative_offset uint32, position uint32          (8 bytes an entry)
    .timeindex  timestamp_ms int64, relative_offset uint32        (12 bytes an entry)

``relative_offset`` is ``offset - segment base offset``. A file that is not a whole number
of entries, whose keys are not strictly increasing, or whose values go backwards is corrupt
and the segment rebuilds its index from the log.
"""

from __future__ import annotations

import bisect
import struct
from array import array

from raftlog.errors import CorruptRecordError

INDEX_ENTRIES_MAX = 1 << 26
"""A cap on entries read from a file (a 2 GiB segment at 32-byte intervals)."""


class SparseIndex:
    """Keys strictly increasing, values non-decreasing; ``floor(key)`` finds the entry with
    the largest key not above ``key``."""

    _entry = struct.Struct(">II")

    def __init__(self) -> None:
        self.keys: array[int] = array("q")
        self.values: array[int] = array("q")

    def __len__(self) -> int:
        return len(self.keys)

    def append(self, key: int, value: int) -> None:
        assert not self.keys or key > self.keys[-1], (key, self.keys[-1])
        assert not self.values or value >= self.values[-1], (value, self.values[-1])
        self.keys.append(key)
        self.values.append(value)

    def floor(self, key: int) -> tuple[int, int] | None:
        """The entry with the largest key <= ``key``, or None."""
        i = bisect.bisect_right(self.keys, key) - 1
        if i < 0:
            return None
        return self.keys[i], self.values[i]

    def last(self) -> tuple[int, int] | None:
        if not self.keys:
            return None
        return self.keys[-1], self.values[-1]

    def truncate_where(
        self, *, key_at_least: int | None = None, value_at_least: int | None = None
    ) -> None:
        """Drop the tail of entries whose key (or value) is >= the bound."""
        if key_at_least is not None:
            n = bisect.bisect_left(self.keys, key_at_least)
        else:
            assert value_at_least is not None
            n = bisect.bisect_left(self.values, value_at_least)
        del self.keys[n:]
        del self.values[n:]

    def clear(self) -> None:
        del self.keys[:]
        del self.values[:]

    def to_bytes(self) -> bytes:
        out = bytearray(len(self.keys) * self._entry.size)
        for i, (k, v) in enumerate(zip(self.keys, self.values, strict=True)):
            self._entry.pack_into(out, i * self._entry.size, k, v)
        return bytes(out)

    def load(self, data: bytes) -> None:
        """Replace the entries with those of ``data``; raises ``CorruptRecordError`` (and
        keeps nothing) when the file is malformed."""
        size = self._entry.size
        if len(data) % size:
            raise CorruptRecordError(f"index of {len(data)} bytes is not a whole number of entries")
        if len(data) // size > INDEX_ENTRIES_MAX:
            raise CorruptRecordError(f"index of {len(data) // size} entries is over the cap")
        keys: array[int] = array("q")
        values: array[int] = array("q")
        for k, v in self._entry.iter_unpack(data):
            if (keys and k <= keys[-1]) or (values and v < values[-1]):
                raise CorruptRecordError("index entries out of order")
            keys.append(k)
            values.append(v)
        self.keys, self.values = keys, values


class OffsetIndex(SparseIndex):
    """key = offset relative to the segment base, value = byte position in the ``.log``."""

    _entry = struct.Struct(">II")


class TimeIndex(SparseIndex):
    """key = timestamp (ms), value = relative offset of the first batch whose max timestamp
    reached it. Entries are added only when the timestamp grows."""

    _entry = struct.Struct(">qI")
