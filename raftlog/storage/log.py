"""The partition log: an ordered list of segments, its epochs, its durability and retention.

One ``PartitionLog`` per replica of a partition, in ``<data>/<topic>/<partition>/``::

    00000000000000000000.log         record batches (RecordBatch v2) back to back
    00000000000000000000.index       sparse offset -> position (closed segments)
    00000000000000000000.timeindex   sparse timestamp -> offset (closed segments)
    00000000000000052011.log ...     the next segment, named by its base offset
    leader-epoch-checkpoint          log start offset and (epoch, start offset) changes
    raft-hard-state                  the replica's Raft term and vote

How it works
- Appends go to the newest (active) segment through the page cache; a new segment is rolled
  when the active one would pass ``segment.bytes``, is older than ``segment.ms``, or its
  relative offsets would overflow 32 bits. Closed segments get their index files then.
- Durability is explicit: ``flush()`` fsyncs every segment written since the last flush,
  the epoch checkpoint when it changed and the folder when names changed, then moves
  ``durable_offset`` to the log end seen when it started. ``sync_to(offset)`` is group
  commit: callers on several threads wait for one flush that covers them all, so one fsync
  serves every append that arrived while the previous one ran.
- Any write or fsync error *fences* the log: nothing written since the last good fsync can
  be trusted (Linux may drop dirty pages after a failed fsync), so every later append or
  flush raises ``LogFencedError`` until the log is reopened (which recovers the tail).
- Suffix truncation (a Raft conflict) is made durable before it returns, so that a power
  loss cannot bring back removed segments under newer data. Prefix truncation (retention,
  or a follower told to restart from the leader's log start) moves ``log_start_offset``
  and deletes whole segments below it only.
- Reads return whole batches, CRC-checked, below an upper bound (the high watermark).

Threads: one writer at a time (the partition's Raft driver) plus any number of readers and
flushers. ``_lock`` guards the in-memory state; ``_flush_lock`` serialises flushes with
operations that close or delete segments.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from raftlog.config import LogConfig
from raftlog.errors import (
    CorruptRecordError,
    LogFencedError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
)
from raftlog.storage import hard_state
from raftlog.storage.epoch_cache import (
    CHECKPOINT_NAME,
    NO_EPOCH,
    EpochCache,
    decode_checkpoint,
    encode_checkpoint,
)
from raftlog.storage.files import FileSystem, read_whole, write_atomically
from raftlog.storage.record_batch import (
    HEADER_BYTES,
    BatchHeader,
    iter_batches,
    read_header,
    set_log_append_time,
    stamp,
    validate_batch,
)
from raftlog.storage.records import decode_batch
from raftlog.storage.segment import LogSegment


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """One batch as the log holds it (the Raft core's ``Entry`` has the same fields)."""

    offset: int
    last_offset: int
    term: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening the log found and repaired."""

    segments: int
    truncated_bytes: int
    corrupt_batches: int
    rebuilt_indexes: int


class PartitionLog:
    """A segmented partition log. Open it with ``PartitionLog.open``."""

    def __init__(
        self,
        fs: FileSystem,
        folder: str,
        config: LogConfig,
        clock_ms: Callable[[], int],
    ) -> None:
        self.fs = fs
        self.folder = folder
        self.config = config
        self.clock_ms = clock_ms
        self.segments: list[LogSegment] = []
        self._bases: list[int] = []
        self.epochs = EpochCache()
        self._log_start = 0
        self._durable = 0
        self._fenced: BaseException | None = None
        self._dirty: dict[int, LogSegment] = {}
        self._checkpoint_dirty = False
        self._folder_dirty = False
        self._lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._sync = threading.Condition(threading.Lock())
        self._flushing = False
        self._active_since_ms: int | None = None
        self.recovery: RecoveryReport | None = None
        self.fsyncs = 0
        self.closed = False
        self._hard_state = hard_state.HardStateFile(fs, folder)

    # ================================================================== opening

    @classmethod
    def open(
        cls,
        fs: FileSystem,
        folder: str,
        config: LogConfig | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> PartitionLog:
        """Open (creating when missing) the log in ``folder`` and recover it: load the
        closed segments from their indexes, scan the active one by CRC, cut a torn tail,
        and reconcile the epoch checkpoint with what is really there."""
        log = cls(fs, folder, config or LogConfig(), clock_ms or (lambda: int(time.time() * 1000)))
        log._open()
        return log

    def _open(self) -> None:
        fs, cfg = self.fs, self.config
        fs.makedirs(self.folder)
        names = fs.listdir(self.folder)
        for name in names:
            if name.endswith(".tmp"):
                fs.remove(f"{self.folder}/{name}")
        bases = sorted(int(n[:-4]) for n in names if n.endswith(".log") and n[:-4].isdigit())
        covered_end: int | None = None
        ckpt_path = f"{self.folder}/{CHECKPOINT_NAME}"
        if fs.exists(ckpt_path):
            try:
                self._log_start, covered_end, self.epochs = decode_checkpoint(
                    read_whole(fs, ckpt_path, max_bytes=1 << 24)
                )
            except (OSError, CorruptRecordError):
                self._log_start, covered_end, self.epochs = 0, None, EpochCache()
        truncated = corrupt = rebuilt = 0
        max_batch = cfg.max_message_bytes
        for i, base in enumerate(bases):
            if self.segments and base != self.segments[-1].next_offset:
                # an earlier segment ends short of this one: the rest was never
                # acknowledged (a flush fsyncs segments in order), so it goes
                self._drop_files(bases[i:])
                break
            seg = LogSegment(fs, self.folder, base, cfg.index_interval_bytes)
            last = i == len(bases) - 1
            self.segments.append(seg)
            self._bases.append(base)
            if last or not seg.open_closed(max_batch):
                scan = seg.recover(max_batch)
                truncated += scan.truncated_bytes
                rebuilt += 0 if last else 1
            elif seg.index_rebuilt:
                rebuilt += 1
            corrupt += len(seg.corrupt_positions)
        if not self.segments:
            self._new_segment(self._log_start)
        if self._log_start > self.log_end_offset():
            # nothing at or after the log start survived: start empty there
            self._drop_files([s.base_offset for s in self.segments])
            self.segments.clear()
            self._bases.clear()
            self._new_segment(self._log_start)
        self._log_start = max(self._log_start, self.segments[0].base_offset)
        end = self.log_end_offset()
        # Epochs that began after the checkpoint was written are learnt from the batch
        # headers; the checkpoint is rewritten on every roll, so that is at most the
        # active segment and the one before it.
        self.epochs.truncate_from_end(max(end, self._log_start))
        rescan_from = 0 if covered_end is None else min(covered_end, end)
        first = max(0, bisect.bisect_right(self._bases, rescan_from) - 1)
        if covered_end is None:
            self.epochs = EpochCache()
        for seg in self.segments[first:]:
            for _, h in seg.batch_headers():
                if h.partition_leader_epoch > self.epochs.last_epoch:
                    self.epochs.assign(h.partition_leader_epoch, h.base_offset)
        try:
            for seg in self.segments:
                seg.fsync()  # what a crashed process left in the page cache becomes durable
        except OSError as e:
            raise self._fence(e) from e
        self._checkpoint_dirty = True
        self._folder_dirty = True
        self._flush_metadata()
        self._durable = end
        self.recovery = RecoveryReport(len(self.segments), truncated, corrupt, rebuilt)

    def _drop_files(self, bases: list[int]) -> None:
        for base in bases:
            stem = f"{self.folder}/{base:020d}"
            for ext in (".log", ".index", ".timeindex"):
                if self.fs.exists(stem + ext):
                    self.fs.remove(stem + ext)
        self._folder_dirty = True

    def _new_segment(self, base: int) -> LogSegment:
        seg = LogSegment(self.fs, self.folder, base, self.config.index_interval_bytes)
        seg.file.truncate(0)
        self._active_since_ms = None
        self.segments.append(seg)
        self._bases.append(base)
        self._folder_dirty = True
        self._dirty[base] = seg
        return seg

    # ================================================================== the LogStore view

    def log_start_offset(self) -> int:
        return self._log_start

    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset

    def last_term(self) -> int:
        return self.epochs.last_epoch

    def term_at(self, offset: int) -> int | None:
        """The epoch (Raft term) of ``offset``; also for ``log_start - 1``; -1 for -1."""
        if offset == -1:
            return NO_EPOCH
        if offset < self._log_start - 1 or offset >= self.log_end_offset():
            return None
        return self.epochs.epoch_at(offset)

    def end_offset_for_term(self, term: int) -> tuple[int, int]:
        return self.epochs.end_offset_for(term, self.log_end_offset())

    def read_batches(self, offset: int, max_bytes: int) -> list[StoredBatch]:
        """Whole batches from the one that starts at ``offset``: at least one when any
        exists, then more while the total stays within ``max_bytes`` (Raft replication)."""
        data = self.read(offset, max_bytes, self.log_end_offset())
        out = []
        pos = 0
        view = memoryview(data)
        while pos < len(data):
            h = read_header(data, pos)
            out.append(
                StoredBatch(
                    h.base_offset,
                    h.last_offset,
                    h.partition_leader_epoch,
                    bytes(view[pos : pos + h.size]),
                )
            )
            pos += h.size
        return out

    def hard_state(self) -> hard_state.StoredHardState:
        return self._hard_state.load()

    def save_hard_state(self, term: int, vote: int | None) -> None:
        """Durably store term and vote; returns once they are on stable storage (one
        in-place write and one fsync of the file once it exists: ``storage.hard_state``).
        Safe on a worker thread while the writer appends; an error fences the log."""
        self._check_fence()
        try:
            self._hard_state.save(hard_state.StoredHardState(term, vote))
        except OSError as e:
            raise self._fence(e) from e

    # ================================================================== appending

    def append_as_leader(
        self, batch: bytes | bytearray, epoch: int, *, append_time_ms: int | None = None
    ) -> BatchHeader:
        """Append one batch as leader: offsets assigned from the log end, the epoch and
        (when given) the log-append time stamped in. Returns the header as stored."""
        data = bytearray(batch)
        h = validate_batch(data, max_bytes=self.config.max_message_bytes)
        if h.size != len(data):
            raise CorruptRecordError(f"expected one batch of {h.size} bytes, got {len(data)}")
        with self._lock:
            base = self.log_end_offset()
            stamp(data, 0, base, epoch)
            if append_time_ms is not None:
                set_log_append_time(data, 0, append_time_ms)
                h = read_header(data)
            else:
                h = replace(h, base_offset=base, partition_leader_epoch=epoch)
            self._append(data, h)
            return h

    def append_batch(self, data: bytes | bytearray, base_offset: int, epoch: int) -> BatchHeader:
        """Append one batch whose offset and epoch were decided by Raft (the driver's path
        for both leader and follower entries): stamp them in and append at the log end."""
        buf = bytearray(data)
        h = read_header(buf)
        if h.size != len(buf) or h.size > self.config.max_message_bytes:
            if h.size > self.config.max_message_bytes:
                raise RecordTooLargeError(f"batch of {h.size} bytes exceeds max.message.bytes")
            raise CorruptRecordError(f"expected one batch of {h.size} bytes, got {len(buf)}")
        stamp(buf, 0, base_offset, epoch)
        with self._lock:
            if base_offset != self.log_end_offset():
                raise OffsetOutOfRangeError(
                    f"append at {base_offset} but the log ends at {self.log_end_offset()}"
                )
            h = read_header(buf)
            self._append(buf, h)
            return h

    def append_as_follower(self, data: bytes | bytearray) -> int:
        """Append batches that carry their offsets and epochs (from the leader). Batches
        already held with the same offset and epoch are skipped; the first that conflicts
        truncates our suffix from its offset first (Raft's follower rule). Every batch is
        validated (CRC included) before anything is written. Returns how many batches
        were appended."""
        headers = iter_batches(data, max_bytes=self.config.max_message_bytes)
        appended = 0
        pos = 0
        view = memoryview(data)
        for h in headers:
            chunk = view[pos : pos + h.size]
            pos += h.size
            if h.last_offset < self._log_start:
                continue
            if h.base_offset < self.log_end_offset():
                if self._holds(h):
                    continue
                # outside _lock: truncation takes _flush_lock first (lock order)
                self.truncate_suffix(h.base_offset)
            with self._lock:
                end = self.log_end_offset()
                if h.base_offset != end:
                    raise OffsetOutOfRangeError(
                        f"batch at {h.base_offset} leaves a gap after log end {end}"
                    )
                self._append(chunk, h)
            appended += 1
        return appended

    def _holds(self, h: BatchHeader) -> bool:
        """Whether the log has this very batch (same offsets and epoch) already."""
        seg = self._segment_for(h.base_offset)
        if seg is None:
            return False
        pos = seg.position_of(h.base_offset)
        if pos is None:
            return False
        mine = read_header(seg.file.pread(HEADER_BYTES, pos))
        return (
            mine.base_offset == h.base_offset
            and mine.last_offset == h.last_offset
            and mine.partition_leader_epoch == h.partition_leader_epoch
        )

    def _append(self, data: bytes | bytearray | memoryview, h: BatchHeader) -> None:
        self._check_fence()
        assert h.base_offset == self.log_end_offset(), (h.base_offset, self.log_end_offset())
        assert h.partition_leader_epoch >= self.epochs.last_epoch, (
            h.partition_leader_epoch,
            self.epochs.last_epoch,
        )
        try:
            seg = self.segments[-1]
            if not seg.can_hold(h, self.config.segment_bytes) or self._too_old(seg):
                seg = self._roll(h.base_offset)
            if seg.size == 0:
                self._active_since_ms = self.clock_ms()
            seg.append(data, h)
        except OSError as e:
            raise self._fence(e) from e
        self._dirty[seg.base_offset] = seg
        if self.epochs.assign(h.partition_leader_epoch, h.base_offset):
            self._checkpoint_dirty = True
        if not self.config.fsync:
            self._durable = self.log_end_offset()

    def _too_old(self, seg: LogSegment) -> bool:
        # The age of a segment is measured on this broker's clock from its first append
        # (after a restart: from its first batch's timestamp, or from now when that is in
        # the future), not from client timestamps alone: old create-times would otherwise
        # roll a segment per batch.
        if seg.size == 0:
            return False
        now = self.clock_ms()
        if self._active_since_ms is None:
            first = seg.first_timestamp
            self._active_since_ms = first if first is not None and first <= now else now
        return now - self._active_since_ms >= self.config.segment_ms

    def _roll(self, base: int) -> LogSegment:
        old = self.segments[-1]
        assert old.size > 0 and old.next_offset == base, (old.size, old.next_offset, base)
        old.seal()
        self._checkpoint_dirty = True  # keeps the epoch rescan on open to two segments
        return self._new_segment(base)

    # ================================================================== durability

    @property
    def durable_offset(self) -> int:
        """Every offset below this is on stable storage (or fsync is off for the topic)."""
        return self._durable

    @property
    def fenced(self) -> bool:
        return self._fenced is not None

    def _check_fence(self) -> None:
        if self._fenced is not None:
            raise LogFencedError(
                f"log {self.folder} is fenced after an I/O error ({self._fenced}); "
                "reopen it to recover"
            )

    def _fence(self, err: BaseException) -> LogFencedError:
        if self._fenced is None:
            self._fenced = err
        return LogFencedError(f"log {self.folder} fenced by an I/O error: {err}")

    def flush(self) -> int:
        """Make everything appended so far durable; returns the new durable offset."""
        with self._flush_lock:
            with self._lock:
                self._check_fence()
                target = self.log_end_offset()
                dirty = list(self._dirty.values())
                self._dirty.clear()
            try:
                if self.config.fsync:
                    for seg in dirty:
                        seg.fsync()
                        self.fsyncs += 1
                self._flush_metadata()
            except OSError as e:
                raise self._fence(e) from e
            with self._lock:
                self._durable = max(self._durable, target)
                return self._durable

    def _flush_metadata(self) -> None:
        with self._lock:
            ckpt = None
            if self._checkpoint_dirty:
                ckpt = encode_checkpoint(self._log_start, self.log_end_offset(), self.epochs)
            self._checkpoint_dirty = False
            folder = self._folder_dirty
            self._folder_dirty = False
        if ckpt is not None:
            write_atomically(self.fs, f"{self.folder}/{CHECKPOINT_NAME}", ckpt)
        elif folder:
            self.fs.fsync_dir(self.folder)

    def sync_to(self, offset: int) -> int:
        """Group commit: block until ``durable_offset >= offset`` (or raise when fenced).
        While one caller flushes, the others wait; the next flush covers every append that
        arrived meanwhile."""
        with self._sync:
            while self._durable < offset:
                self._check_fence()
                if self._flushing:
                    self._sync.wait()
                    continue
                self._flushing = True
                self._sync.release()
                try:
                    self.flush()
                finally:
                    self._sync.acquire()
                    self._flushing = False
                    self._sync.notify_all()
            return self._durable

    # ================================================================== reading

    def _segment_for(self, offset: int) -> LogSegment | None:
        i = bisect.bisect_right(self._bases, offset) - 1
        return self.segments[i] if i >= 0 else None

    def read(self, offset: int, max_bytes: int, upper_offset: int | None = None) -> bytes:
        """Whole batches from the one holding ``offset``, ending below ``upper_offset``
        (the high watermark; default the log end): at least one batch when one exists,
        more while they fit in ``max_bytes``. A read may stop at a segment's end.
        Raises ``OffsetOutOfRangeError`` outside [log start, log end]."""
        with self._lock:
            end = self.log_end_offset()
            bound = end if upper_offset is None else min(upper_offset, end)
            if offset < self._log_start or offset > end:
                raise OffsetOutOfRangeError(
                    f"offset {offset} is outside the log [{self._log_start}, {end}]"
                )
            if offset >= bound:
                return b""
            seg = self._segment_for(offset)
            assert seg is not None
            pos = seg.position_of(offset)
            if pos is None:  # offset is past this segment's end (it was just rolled)
                return b""
            data, _ = seg.read(pos, max_bytes, bound)
            return data

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """Kafka's ListOffsets by time: the earliest offset whose record timestamp is >=
        ``timestamp_ms``, or None when there is none. The sparse time index finds the
        batch; that one batch is decoded to find the record."""
        with self._lock:
            for seg in self.segments:
                if seg.max_timestamp < timestamp_ms:
                    continue
                pos = seg.position_of_timestamp(timestamp_ms)
                if pos is None:
                    continue
                h = read_header(seg.file.pread(HEADER_BYTES, pos))
                offset = h.base_offset
                if not h.log_append_time:
                    _, records = decode_batch(seg.file.pread(h.size, pos), max_bytes=h.size)
                    offset = next(
                        (r.offset for r in records if r.timestamp_ms >= timestamp_ms), offset
                    )
                return max(offset, self._log_start)
            return None

    # ================================================================== truncation

    def truncate_suffix(self, offset: int) -> None:
        """Remove every batch at or after ``offset`` (a batch boundary, >= log start),
        durably, before returning."""
        with self._flush_lock, self._lock:
            self._check_fence()
            if offset >= self.log_end_offset():
                return
            if offset < self._log_start:
                raise OffsetOutOfRangeError(
                    f"cannot truncate to {offset}, below the log start {self._log_start}"
                )
            try:
                while len(self.segments) > 1 and self.segments[-1].base_offset >= offset:
                    seg = self.segments.pop()
                    self._bases.pop()
                    self._dirty.pop(seg.base_offset, None)
                    seg.delete()
                active = self.segments[-1]
                active.truncate_to(offset, self.config.max_message_bytes)
                active.fsync()
                self._dirty.pop(active.base_offset, None)
                self.epochs.truncate_from_end(offset)
                self._checkpoint_dirty = True
                self._folder_dirty = True
                self._flush_metadata()
            except OSError as e:
                raise self._fence(e) from e
            self._durable = min(self._durable, offset)
            assert self.log_end_offset() == offset, (self.log_end_offset(), offset)

    def truncate_prefix(self, offset: int) -> int:
        """Move the log start forward to ``offset`` (never past the log end) and delete
        the whole segments below it. Returns the number of segments deleted."""
        with self._flush_lock, self._lock:
            self._check_fence()
            if offset <= self._log_start:
                return 0
            if offset > self.log_end_offset():
                raise OffsetOutOfRangeError(
                    f"cannot start the log at {offset}, past its end {self.log_end_offset()}"
                )
            self._log_start = offset
            self.epochs.truncate_from_start(offset)
            self._checkpoint_dirty = True
            deleted = 0
            try:
                self._flush_metadata()  # the new start first: then deletions are safe
                while len(self.segments) > 1 and self.segments[1].base_offset <= offset:
                    self._delete_first()
                    deleted += 1
                if deleted:
                    self.fs.fsync_dir(self.folder)
            except OSError as e:
                raise self._fence(e) from e
            return deleted

    def _delete_first(self) -> None:
        seg = self.segments.pop(0)
        self._bases.pop(0)
        self._dirty.pop(seg.base_offset, None)
        seg.delete()

    def reset_to(self, offset: int, prev_term: int) -> None:
        """Throw the whole log away and start it empty at ``offset``, where the entry
        before it has term ``prev_term`` (a follower told to restart from the leader's log
        start). Durable before it returns."""
        with self._flush_lock, self._lock:
            self._check_fence()
            try:
                for seg in self.segments:
                    seg.delete()
                self.segments.clear()
                self._bases.clear()
                self._dirty.clear()
                self._new_segment(offset)
                self._log_start = offset
                self.epochs.reset(prev_term, offset - 1)
                self._checkpoint_dirty = True
                self._flush_metadata()
                self.fs.fsync_dir(self.folder)
            except OSError as e:
                raise self._fence(e) from e
            self._durable = offset

    # ================================================================== retention

    def apply_retention(self, max_offset: int, now_ms: int | None = None) -> int:
        """Delete the oldest closed segments that retention allows: older than
        ``retention.ms`` (by their newest timestamp) or beyond ``retention.bytes`` (by
        total size). Only segments wholly below ``max_offset`` (the high watermark) go;
        the active segment never does. Returns the number deleted."""
        now = self.clock_ms() if now_ms is None else now_ms
        cfg = self.config
        with self._flush_lock, self._lock:
            self._check_fence()
            total = sum(s.size for s in self.segments)
            deleted = 0
            try:
                while len(self.segments) > 1:
                    seg = self.segments[0]
                    if seg.next_offset > max_offset:
                        break
                    expired = cfg.retention_ms >= 0 and seg.max_timestamp < now - cfg.retention_ms
                    oversize = cfg.retention_bytes >= 0 and total - seg.size >= cfg.retention_bytes
                    if not (expired or oversize):
                        break
                    self._log_start = max(self._log_start, self.segments[1].base_offset)
                    self.epochs.truncate_from_start(self._log_start)
                    self._checkpoint_dirty = True
                    self._flush_metadata()
                    total -= seg.size
                    self._delete_first()
                    deleted += 1
                if deleted:
                    self.fs.fsync_dir(self.folder)
            except OSError as e:
                raise self._fence(e) from e
            return deleted

    # ================================================================== misc

    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def close(self) -> None:
        """Flush (unless fenced) and close every file. The active segment's indexes are
        not written: opening always rebuilds them by scanning it."""
        if self.closed:
            return
        if self._fenced is None:
            with contextlib.suppress(LogFencedError):
                self.flush()
        with self._flush_lock, self._lock:
            for seg in self.segments:
                seg.close()
            self._hard_state.close()
            self.closed = True
