"""Kafka's RecordBatch v2 header: layout, validation, CRC-32C, and in-place stamping.

The broker validates batches at this level and never decodes individual records on the hot
path (``raftlog.storage.records`` encodes and decodes records for clients).

On-disk and on-the-wire layout (big-endian), 61 bytes of header then the records::

    offset  size  field
         0     8  base_offset              first record's offset (stamped by the leader)
         8     4  batch_length             bytes after this field (= total size - 12)
        12     4  partition_leader_epoch   the Raft term of the entry (stamped by the leader)
        16     1  magic                    always 2
        17     4  crc                      CRC-32C (Castagnoli) of bytes 21..end
        21     2  attributes               bits 0-2 compression, 3 timestamp type
                                           (1 = log append time), 4 transactional,
                                           5 control, 6 has delete horizon
        23     4  last_offset_delta        last record's offset - base_offset
        27     8  base_timestamp           first timestamp (ms)
        35     8  max_timestamp            largest timestamp (ms), or the append time
        43     8  producer_id              -1 when not idempotent
        51     2  producer_epoch
        53     4  base_sequence            -1 when not idempotent
        57     4  record_count
        61        records

``base_offset`` and ``partition_leader_epoch`` lie outside the CRC, so a leader stamps them
without recomputing it (as Kafka does); setting log-append time changes covered bytes and
recomputes the CRC.

Rules kept here: every length is checked against a cap and against the bytes that remain
before anything is sliced; a header that fails any check raises ``CorruptRecordError``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c as _crc32c

from raftlog.errors import CorruptRecordError, RecordTooLargeError

HEADER_BYTES = 61
LOG_OVERHEAD_BYTES = 12
"""base_offset + batch_length: the bytes not counted by batch_length."""
MAGIC = 2
CRC_START = 21
BATCH_BYTES_MAX = 2**31 - 1

ATTR_COMPRESSION_MASK = 0x07
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20

_HEADER = struct.Struct(">qiibIhiqqqhii")
_OFFSET_LENGTH_EPOCH = struct.Struct(">qii")
_BASE_OFFSET = struct.Struct(">q")
_EPOCH = struct.Struct(">i")
_CRC = struct.Struct(">I")
_ATTRIBUTES = struct.Struct(">h")
_TIMESTAMP = struct.Struct(">q")


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli), the checksum of RecordBatch v2."""
    return int(_crc32c.crc32c(data))


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The decoded 61-byte header of one record batch."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Bytes of the whole batch, header included."""
        return self.batch_length + LOG_OVERHEAD_BYTES

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def compression(self) -> int:
        return self.attributes & ATTR_COMPRESSION_MASK

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & ATTR_CONTROL)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & ATTR_LOG_APPEND_TIME)


def peek_size(buf: bytes | bytearray | memoryview, pos: int = 0) -> int | None:
    """The total size of the batch at ``pos`` from its first 12 bytes, or None when fewer
    than 12 bytes remain. Raises ``CorruptRecordError`` for an impossible length."""
    if len(buf) - pos < LOG_OVERHEAD_BYTES:
        return None
    _, length = struct.unpack_from(">qi", buf, pos)
    if length < HEADER_BYTES - LOG_OVERHEAD_BYTES:
        raise CorruptRecordError(f"batch length {length} is below the 49-byte minimum")
    return int(length) + LOG_OVERHEAD_BYTES


def read_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Decode the header at ``pos`` and check what the header alone can show: enough bytes,
    magic 2, a length that covers the header, sane offset delta and record count.
    Does not check the CRC (``validate_batch`` does)."""
    if len(buf) - pos < HEADER_BYTES:
        raise CorruptRecordError(
            f"truncated batch header: {len(buf) - pos} bytes, need {HEADER_BYTES}"
        )
    h = BatchHeader(*_HEADER.unpack_from(buf, pos))
    if h.magic != MAGIC:
        raise CorruptRecordError(f"unsupported batch magic {h.magic} (only 2 is supported)")
    if h.batch_length < HEADER_BYTES - LOG_OVERHEAD_BYTES:
        raise CorruptRecordError(f"batch length {h.batch_length} is below the 49-byte minimum")
    if h.last_offset_delta < 0 or h.record_count < 0:
        raise CorruptRecordError(
            f"negative last offset delta {h.last_offset_delta} or record count {h.record_count}"
        )
    if h.record_count > 0 and h.last_offset_delta < h.record_count - 1:
        raise CorruptRecordError(
            f"last offset delta {h.last_offset_delta} below record count {h.record_count} - 1"
        )
    # an uncompressed record takes at least 7 bytes: a cheap bound that rejects absurd
    # counts (compressed records can be smaller; their decoder bounds them instead)
    if h.attributes & ATTR_COMPRESSION_MASK == 0 and h.record_count * 7 > h.batch_length - (
        HEADER_BYTES - LOG_OVERHEAD_BYTES
    ):
        raise CorruptRecordError(
            f"record count {h.record_count} cannot fit in {h.batch_length} bytes"
        )
    if h.base_offset < 0:
        raise CorruptRecordError(f"negative base offset {h.base_offset}")
    return h


def validate_batch(
    buf: bytes | bytearray | memoryview, pos: int = 0, *, max_bytes: int = BATCH_BYTES_MAX
) -> BatchHeader:
    """Validate the whole batch at ``pos``: header, size cap, bytes present, and CRC-32C.

    Raises ``RecordTooLargeError`` when the batch is larger than ``max_bytes`` (checked
    before anything is sliced) and ``CorruptRecordError`` for anything else wrong.
    """
    h = read_header(buf, pos)
    if h.size > max_bytes:
        raise RecordTooLargeError(f"batch of {h.size} bytes exceeds the {max_bytes}-byte limit")
    if len(buf) - pos < h.size:
        raise CorruptRecordError(f"batch of {h.size} bytes but only {len(buf) - pos} remain")
    actual = crc32c(memoryview(buf)[pos + CRC_START : pos + h.size])
    if actual != h.crc:
        raise CorruptRecordError(
            f"CRC mismatch at offset {h.base_offset}: stored {h.crc:#010x}, computed {actual:#010x}"
        )
    return h


def iter_batches(
    buf: bytes | bytearray | memoryview, *, max_bytes: int = BATCH_BYTES_MAX
) -> list[BatchHeader]:
    """Validate a buffer of batches back to back; every byte must belong to a whole batch."""
    headers = []
    pos = 0
    while pos < len(buf):
        h = validate_batch(buf, pos, max_bytes=max_bytes)
        headers.append(h)
        pos += h.size
    return headers


def stamp(buf: bytearray | memoryview, pos: int, base_offset: int, epoch: int) -> None:
    """Write the base offset and leader epoch of the batch at ``pos`` (outside the CRC)."""
    if len(buf) - pos < HEADER_BYTES:
        raise CorruptRecordError(f"cannot stamp a batch of {len(buf) - pos} bytes")
    _BASE_OFFSET.pack_into(buf, pos, base_offset)
    _EPOCH.pack_into(buf, pos + 12, epoch)


def set_log_append_time(buf: bytearray | memoryview, pos: int, timestamp_ms: int) -> None:
    """Mark the batch at ``pos`` as log-append-time stamped at ``timestamp_ms`` (Kafka's
    ``message.timestamp.type=LogAppendTime``): set the attribute bit and max_timestamp,
    then recompute the CRC. The batch is validated first, so that a corrupt batch never
    comes out with a fresh, valid CRC."""
    h = validate_batch(buf, pos)
    _ATTRIBUTES.pack_into(buf, pos + 21, h.attributes | ATTR_LOG_APPEND_TIME)
    _TIMESTAMP.pack_into(buf, pos + 35, timestamp_ms)
    _CRC.pack_into(buf, pos + 17, crc32c(memoryview(buf)[pos + CRC_START : pos + h.size]))


def encode_header(
    *,
    base_offset: int,
    epoch: int,
    attributes: int,
    last_offset_delta: int,
    base_timestamp: int,
    max_timestamp: int,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    record_count: int,
    records: bytes | bytearray | memoryview,
) -> bytearray:
    """Build a whole batch from header fields and the already-encoded ``records`` bytes,
    computing batch_length and the CRC."""
    size = HEADER_BYTES + len(records)
    if size > BATCH_BYTES_MAX:
        raise RecordTooLargeError(f"batch of {size} bytes exceeds the 2 GiB format limit")
    out = bytearray(size)
    _HEADER.pack_into(
        out,
        0,
        base_offset,
        size - LOG_OVERHEAD_BYTES,
        epoch,
        MAGIC,
        0,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        record_count,
    )
    memoryview(out)[HEADER_BYTES:] = records  # no temporary copy of a bytes argument
    _CRC.pack_into(out, 17, crc32c(memoryview(out)[CRC_START:]))
    return out
