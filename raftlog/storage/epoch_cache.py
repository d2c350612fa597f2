"""The leader-epoch cache of a partition log, and the checkpoint file that keeps it.

Raft log matching asks "what is the term (epoch) of offset N?" and a follower backing off
after a conflict asks "where does epoch E end?" (Kafka's OffsetsForLeaderEpoch). Scanning
batch headers would answer both, slowly; this cache answers them from one small sorted
list: ``(epoch, start_offset)`` at every epoch change, as Kafka's ``LeaderEpochFileCache``.

It also answers for the offset just before the log start after prefix truncation (log
matching needs the term of the entry preceding the first one held), so truncating from the
start keeps the last entry at or below ``log_start - 1``.

Checkpoint file ``leader-epoch-checkpoint`` (big-endian), replaced atomically::

    4  magic b"RLEC"   1 version (1)   8 log_start_offset   8 covered_end   4 count
    count x (4 epoch, 8 start_offset)
    4  crc32c of everything above
"""

from __future__ import annotations

import bisect
import struct

from raftlog.errors import CorruptRecordError
from raftlog.storage.record_batch import crc32c

CHECKPOINT_NAME = "leader-epoch-checkpoint"
EPOCHS_MAX = 1_000_000
_HEAD = struct.Struct(">4sBqqI")
_ENTRY = struct.Struct(">iq")
_CRC = struct.Struct(">I")
_MAGIC = b"RLEC"
NO_EPOCH = -1


class EpochCache:
    """Sorted ``(epoch, start_offset)``; both strictly increasing."""

    def __init__(self, entries: list[tuple[int, int]] | None = None) -> None:
        self.epochs: list[int] = []
        self.starts: list[int] = []
        for epoch, start in entries or []:
            self.assign(epoch, start)

    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self.epochs, self.starts, strict=True))

    @property
    def last_epoch(self) -> int:
        return self.epochs[-1] if self.epochs else NO_EPOCH

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` begins at ``start_offset`` if it is newer than the last
        epoch. Returns True when the cache changed. An older epoch is an invariant breach."""
        if self.epochs and epoch <= self.epochs[-1]:
            if epoch < self.epochs[-1]:
                raise AssertionError(
                    f"epoch {epoch} at offset {start_offset} after epoch {self.epochs[-1]}"
                )
            return False
        assert not self.starts or start_offset > self.starts[-1], (start_offset, self.starts)
        self.epochs.append(epoch)
        self.starts.append(start_offset)
        return True

    def epoch_at(self, offset: int) -> int | None:
        """The epoch of ``offset``: that of the last change at or below it (None below the
        first). The caller bounds ``offset`` by the log."""
        i = bisect.bisect_right(self.starts, offset) - 1
        return self.epochs[i] if i >= 0 else None

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """The largest epoch ``<= epoch`` and where it ends (the next epoch's start, or the
        log end); ``(NO_EPOCH, -1)`` when there is none."""
        i = bisect.bisect_right(self.epochs, epoch) - 1
        if i < 0:
            return NO_EPOCH, -1
        end = self.starts[i + 1] if i + 1 < len(self.starts) else log_end_offset
        return self.epochs[i], end

    def truncate_from_end(self, offset: int) -> bool:
        """Forget epochs that start at or after ``offset`` (suffix truncation)."""
        n = bisect.bisect_left(self.starts, offset)
        changed = n < len(self.starts)
        del self.epochs[n:]
        del self.starts[n:]
        return changed

    def truncate_from_start(self, log_start_offset: int) -> bool:
        """Forget epochs wholly below ``log_start_offset - 1``, keeping the one that covers
        it (prefix truncation)."""
        n = bisect.bisect_right(self.starts, log_start_offset - 1) - 1
        if n <= 0:
            return False
        del self.epochs[:n]
        del self.starts[:n]
        return True

    def reset(self, epoch: int, start_offset: int) -> None:
        self.epochs = [epoch]
        self.starts = [start_offset]


def encode_checkpoint(log_start_offset: int, covered_end: int, cache: EpochCache) -> bytes:
    """``covered_end``: the log end when written; epochs that begin later are not in it."""
    parts = [_HEAD.pack(_MAGIC, 1, log_start_offset, covered_end, len(cache.epochs))]
    parts.extend(_ENTRY.pack(e, s) for e, s in cache.entries())
    body = b"".join(parts)
    return body + _CRC.pack(crc32c(body))


def decode_checkpoint(data: bytes) -> tuple[int, int, EpochCache]:
    """(log start offset, covered end, cache); ``CorruptRecordError`` when anything is off."""
    if len(data) < _HEAD.size + _CRC.size:
        raise CorruptRecordError(f"epoch checkpoint of {len(data)} bytes is too short")
    magic, version, log_start, covered_end, count = _HEAD.unpack_from(data, 0)
    if magic != _MAGIC or version != 1:
        raise CorruptRecordError("not a raftlog epoch checkpoint")
    if count > EPOCHS_MAX or len(data) != _HEAD.size + count * _ENTRY.size + _CRC.size:
        raise CorruptRecordError(f"epoch checkpoint claims {count} entries in {len(data)} bytes")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if crc != crc32c(data[: -_CRC.size]):
        raise CorruptRecordError("epoch checkpoint CRC mismatch")
    entries = [_ENTRY.unpack_from(data, _HEAD.size + i * _ENTRY.size) for i in range(count)]
    try:
        return log_start, covered_end, EpochCache(entries)
    except AssertionError as e:
        raise CorruptRecordError(f"epoch checkpoint out of order: {e}") from None
