"""Kafka's v2 records inside a record batch: what clients encode and decode.

The broker validates batches by header and CRC (``record_batch``) and never calls this module
on the hot path; producers build batches with ``build_batch`` and consumers read them with
``decode_batch``/``decode_batches``.

Each record inside a batch (Kafka's ``DefaultRecord``), integers as zigzag varints::

    length           varint   bytes of the record after this field
    attributes       int8     unused, written as 0
    timestamp_delta  varlong  timestamp - batch base_timestamp
    offset_delta     varint   offset - batch base_offset
    key_length       varint   -1 for a null key
    key              bytes
    value_length     varint   -1 for a null value
    value            bytes
    headers_count    varint
    headers          key_length varint + key (utf-8, never null),
                     value_length varint (-1 null) + value

With compression (attributes bits 0-2 of the batch), the records area after the 61-byte header
holds the compressed bytes of the records above. Codecs here, written as Kafka's clients write
them (``compression_codec`` maps their names to numbers):

    0 none
    1 gzip   gzip members (stdlib zlib, level 6 as Java's GZIPOutputStream)
    3 lz4    the standard LZ4 frame format with independent blocks (Kafka's Java reader rejects
             linked blocks), 64 KiB blocks, content size, no checksum: kafka-python's bytes
    4 zstd   standard zstd frames at level 3 (Kafka's default), with the content size: the
             bytes of kafka-python. Java writes frames without the content size; both decode.
    2 snappy is not supported.

The decoder accepts back-to-back gzip members and lz4 or zstd frames, as Kafka's readers do.

Rules kept by the decoder, so that no input can make it read out of bounds, allocate without
limit or raise anything but ``CorruptRecordError``: the CRC is checked before any record is read;
a varint is at most 5 bytes (10 for a varlong) and must fit its type; every length is checked to
be -1 (where null is allowed) or non-negative and to fit in the bytes that remain of its record
before anything is sliced; a record's fields must use exactly its length; offset deltas rise and
stay within last_offset_delta; the header's record count must match the records present; and
no bytes may trail the last record. Decompressed output is capped (``max_uncompressed_bytes``):
every codec decompresses in bounded steps and stops one byte past the cap, whatever size a
frame header claims (``lz4.frame.decompress`` would trust it, so it is never called), and
truncated or garbled compressed bytes read as corrupt. A zstd stream reader stops silently at
truncated input, so the frames' block headers are walked first to see that every frame is whole.

Control batches (``control_batch``) carry one record whose key is Kafka's (version 0, type):
0 abort and 1 commit are transaction markers; 2, KRaft's leader change, is what a new raftlog
Raft leader appends as its no-op entry to commit earlier terms.

Speed: this bounds what a Python producer can push, so varints of small numbers come from
precomputed tables, a batch is assembled with one ``join``, and the decoder's loop inlines
one- and two-byte varints and builds its frozen records without ``object.__setattr__``.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import lz4.frame
import zstandard

from raftlog.errors import CorruptRecordError
from raftlog.storage.record_batch import (
    ATTR_COMPRESSION_MASK,
    ATTR_CONTROL,
    ATTR_LOG_APPEND_TIME,
    ATTR_TRANSACTIONAL,
    BATCH_BYTES_MAX,
    HEADER_BYTES,
    BatchHeader,
    encode_header,
    validate_batch,
)

COMPRESSION_NONE = 0
COMPRESSION_GZIP = 1
COMPRESSION_LZ4 = 3
COMPRESSION_ZSTD = 4
_CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
_SUPPORTED_CODECS = (COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_LZ4, COMPRESSION_ZSTD)
GZIP_LEVEL = 6
"""Java's GZIPOutputStream default (Deflater.DEFAULT_COMPRESSION)."""
ZSTD_LEVEL = 3
"""Kafka's default ``compression.zstd.level`` (zstd's own default), and kafka-python's."""
UNCOMPRESSED_BYTES_MAX = 64 * 1024 * 1024
"""Default cap on the decompressed records area of one batch (a decompression-bomb guard)."""

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_RECORD_BODY_BYTES_MIN = 6
"""attributes + timestamp delta + offset delta + key length + value length + headers count."""


class ControlType(IntEnum):
    """The ``type`` of a control record's key (Kafka's ControlRecordType)."""

    ABORT = 0
    COMMIT = 1
    LEADER_CHANGE = 2
    """KRaft's leader-change marker; raftlog's new Raft leader appends it as its no-op entry."""


_CONTROL_KEY = struct.Struct(">hh")  # version, type
_END_TXN_MARKER = struct.Struct(">hi")  # version, coordinator epoch


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce. ``timestamp_ms`` None means the batch's ``now_ms``."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None


@dataclass(slots=True)
class _RecordBuilder:
    """Record's slots, not frozen (see ``_DecodedRecordBuilder`` for the trick)."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int | None


def new_record(
    key: bytes | None,
    value: bytes | None,
    headers: tuple[tuple[str, bytes | None], ...],
    timestamp_ms: int | None,
) -> Record:
    """``Record(key, value, headers, timestamp_ms)`` for the producer's hot path, without
    the frozen dataclass's ``object.__setattr__`` per field (arguments as Record takes,
    not checked)."""
    record = _RecordBuilder(key, value, headers, timestamp_ms)
    record.__class__ = Record  # type: ignore[assignment]
    return record  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    """One record read from a batch, with its absolute offset and timestamp."""

    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


@dataclass(slots=True)
class _DecodedRecordBuilder:
    """Same slots as DecodedRecord but not frozen. A frozen dataclass's ``__init__`` pays
    ``object.__setattr__`` per field (~560 ns a record, more than the rest of decoding); the
    decoder builds this and switches ``__class__`` to DecodedRecord (~210 ns), which Python
    allows because both classes have the same slots over ``object``."""

    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


# -- varints ------------------------------------------------------------------------------------


def _encode_varint(n: int) -> bytes:
    """Zigzag varint of any int64 (the slow path behind the tables)."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_VARINT_TABLE_SIZE = 1 << 14
_VARINT = [_encode_varint(n) for n in range(_VARINT_TABLE_SIZE)]
"""Encoded varints of 0..16383 (covers lengths up to 16 KiB and offset deltas)."""
_UNZIGZAG = [(z >> 1) ^ -(z & 1) for z in range(1 << 14)]
"""Zigzag-decoded value of every 14-bit z: the payload of one- and two-byte varints."""
_PREFIX_TS0 = [b"\x00\x00" + _VARINT[i] for i in range(1024)]
"""attributes 0 + timestamp delta 0 + offset delta i: the usual start of record i."""
_NULL = b"\x01"  # varint -1
_NO_HEADERS = b"\x00"


def _read_varint(data: bytes, pos: int, bytes_max: int, what: str) -> tuple[int, int]:
    """Decode the zigzag varint at ``pos`` using at most ``bytes_max`` bytes (5 for an int32,
    10 for an int64) and check it fits that type. Returns (value, next position)."""
    z = 0
    shift = 0
    end = pos + bytes_max
    while True:
        if pos >= end:
            raise CorruptRecordError(f"{what}: varint longer than {bytes_max} bytes")
        b = data[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    value = (z >> 1) ^ -(z & 1)
    low, high = (_INT32_MIN, _INT32_MAX) if bytes_max == 5 else (_INT64_MIN, _INT64_MAX)
    if not low <= value <= high:
        raise CorruptRecordError(f"{what}: varint {value} out of range")
    return value, pos


# -- encoding -----------------------------------------------------------------------------------


def _encode_records(
    records: Sequence[Record], base_timestamp: int, now_ms: int
) -> tuple[list[bytes], int]:
    """The encoded records as a list of pieces to join, and the max timestamp."""
    varint = _VARINT
    table_size = _VARINT_TABLE_SIZE
    prefix_ts0 = _PREFIX_TS0
    slow = _encode_varint
    parts: list[bytes] = []
    extend = parts.extend
    max_timestamp = base_timestamp
    for i, r in enumerate(records):
        ts = r.timestamp_ms
        if ts is None:
            ts = now_ms
        if ts == base_timestamp:
            if i < 1024:
                prefix = prefix_ts0[i]
            else:
                prefix = b"\x00\x00" + (varint[i] if i < table_size else slow(i))
        else:
            max_timestamp = max(max_timestamp, ts)
            delta = ts - base_timestamp
            if not _INT64_MIN <= delta <= _INT64_MAX:
                raise ValueError(f"timestamp {ts} is too far from the first, {base_timestamp}")
            # records of one batch are usually milliseconds apart: a table lookup
            ts_part = varint[delta] if 0 < delta < table_size else slow(delta)
            prefix = b"\x00" + ts_part + (varint[i] if i < table_size else slow(i))
        key = r.key
        value = r.value
        if key is None:
            key_part = _NULL
            key = b""
        else:
            n = len(key)
            key_part = varint[n] if n < table_size else slow(n)
        if value is None:
            value_part = _NULL
            value = b""
        else:
            n = len(value)
            value_part = varint[n] if n < table_size else slow(n)
        headers = _encode_headers(r.headers) if r.headers else _NO_HEADERS
        n = len(prefix) + len(key_part) + len(key) + len(value_part) + len(value) + len(headers)
        extend((varint[n] if n < table_size else slow(n), prefix, key_part, key))
        extend((value_part, value, headers))
    return parts, max_timestamp


def _encode_headers(headers: Iterable[tuple[str, bytes | None]]) -> bytes:
    parts = []
    count = 0
    for hkey, hvalue in headers:
        raw = hkey.encode("utf-8")
        parts.append(_encode_varint(len(raw)))
        parts.append(raw)
        if hvalue is None:
            parts.append(_NULL)
        else:
            parts.append(_encode_varint(len(hvalue)))
            parts.append(hvalue)
        count += 1
    return _encode_varint(count) + b"".join(parts)


def _gzip(data: bytes | bytearray) -> bytes:
    c = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: gzip framing, as Kafka
    return c.compress(data) + c.flush()


def _lz4(data: bytes | bytearray) -> bytes:
    # Independent blocks: Kafka's Java reader refuses linked ones. The other settings are the
    # library's defaults (level 0, 64 KiB blocks, content size stored), as kafka-python's.
    packed: bytes = lz4.frame.compress(data, block_linked=False)
    return packed


class _ZstdContexts(threading.local):
    """One zstd compressor and decompressor per thread: creating a context costs ~10 us, as
    much as decoding a small batch, and a context must not be used by two threads at once."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.decompressor = zstandard.ZstdDecompressor()


_zstd_contexts = _ZstdContexts()


def _zstd(data: bytes | bytearray) -> bytes:
    return _zstd_contexts.compressor.compress(data)


_COMPRESSORS: dict[int, Callable[[bytes | bytearray], bytes]] = {
    COMPRESSION_GZIP: _gzip,
    COMPRESSION_LZ4: _lz4,
    COMPRESSION_ZSTD: _zstd,
}
_CODEC_BY_NAME = {name: codec for codec, name in _CODEC_NAMES.items()}


def compression_codec(name: str) -> int:
    """The codec number of a compression name, as Kafka's ``compression.type`` spells it:
    "none", "gzip", "lz4" or "zstd", in any case. Raises ``ValueError`` for anything else,
    snappy included (not supported here)."""
    codec = _CODEC_BY_NAME.get(name.lower())
    allowed = ", ".join(_CODEC_NAMES[c] for c in _SUPPORTED_CODECS)
    if codec is None:
        raise ValueError(f"unknown compression {name!r}: use one of {allowed}")
    if codec not in _SUPPORTED_CODECS:
        raise ValueError(f"compression {name!r} is not supported: use one of {allowed}")
    return codec


def build_batch(
    records: Iterable[Record],
    *,
    base_offset: int = 0,
    epoch: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    now_ms: int,
    compression: int = COMPRESSION_NONE,
    control: bool = False,
    transactional: bool = False,
) -> bytes:
    """Encode ``records`` (at least one) as one v2 batch with create-time timestamps.

    Records without a timestamp get ``now_ms``. base_timestamp is the first record's
    timestamp, max_timestamp the largest, offset deltas run 0..n-1. ``compression`` is a codec
    number (``COMPRESSION_*``, or ``compression_codec(name)``); with any codec the records are
    sent uncompressed when compressing does not make them smaller (as kafka-python does).
    Raises ``ValueError`` for an empty batch, an unsupported codec or a field out of range,
    and ``TypeError`` for a key, value or header that is not bytes.
    """
    recs = records if isinstance(records, list | tuple) else list(records)
    if not recs:
        raise ValueError("a batch needs at least one record")
    if compression not in _SUPPORTED_CODECS:
        raise ValueError(f"unsupported compression codec {_codec_name(compression)}")
    if len(recs) - 1 > _INT32_MAX:
        raise ValueError(f"too many records for one batch: {len(recs)}")
    first = recs[0].timestamp_ms
    base_timestamp = now_ms if first is None else first
    try:
        parts, max_timestamp = _encode_records(recs, base_timestamp, now_ms)
        # a bytearray: encode_header copies bytes far slower than a bytearray into its buffer
        body = bytearray().join(parts)
    except TypeError as e:
        raise TypeError(f"record keys, values and header values must be bytes: {e}") from None
    attributes = 0
    if compression != COMPRESSION_NONE:
        packed = _COMPRESSORS[compression](body)
        if len(packed) < len(body):
            body = bytearray(packed)
            attributes = compression
    if control:
        attributes |= ATTR_CONTROL
    if transactional:
        attributes |= ATTR_TRANSACTIONAL
    try:
        batch = encode_header(
            base_offset=base_offset,
            epoch=epoch,
            attributes=attributes,
            last_offset_delta=len(recs) - 1,
            base_timestamp=base_timestamp,
            max_timestamp=max_timestamp,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=base_sequence,
            record_count=len(recs),
            records=body,
        )
    except struct.error as e:
        raise ValueError(f"batch header field out of range: {e}") from None
    return bytes(batch)


def control_batch(
    kind: ControlType,
    now_ms: int,
    *,
    base_offset: int = 0,
    epoch: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    coordinator_epoch: int = 0,
    value: bytes | None = None,
) -> bytes:
    """A one-record control batch. The key is Kafka's (version 0, ``kind``). ABORT and COMMIT
    are transactional markers whose value defaults to Kafka's EndTransactionMarker (version 0,
    ``coordinator_epoch``); LEADER_CHANGE is raftlog's Raft no-op entry (value defaults to
    null) and is not transactional."""
    kind = ControlType(kind)
    marker = kind in (ControlType.ABORT, ControlType.COMMIT)
    if value is None and marker:
        value = _END_TXN_MARKER.pack(0, coordinator_epoch)
    return build_batch(
        [Record(_CONTROL_KEY.pack(0, kind), value)],
        base_offset=base_offset,
        epoch=epoch,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        now_ms=now_ms,
        control=True,
        transactional=marker,
    )


def control_type(record: DecodedRecord) -> int:
    """The control type of a record from a control batch (a ``ControlType`` value, or another
    int for a type this version does not know). Raises ``CorruptRecordError`` for a bad key."""
    if record.key is None or len(record.key) < _CONTROL_KEY.size:
        raise CorruptRecordError(f"control record at offset {record.offset} has a short key")
    _version, kind = _CONTROL_KEY.unpack_from(record.key)
    return int(kind)


# -- decoding -----------------------------------------------------------------------------------


def _codec_name(codec: int) -> str:
    return f"{_CODEC_NAMES.get(codec, 'unknown')} ({codec})"


def _gunzip(data: bytes, bytes_max: int) -> bytes:
    """Decompress gzip members back to back, producing at most ``bytes_max`` bytes."""
    out = []
    produced = 0
    try:
        while True:
            d = zlib.decompressobj(31)
            chunk = d.decompress(data, bytes_max - produced + 1)
            produced += len(chunk)
            if produced > bytes_max:
                raise CorruptRecordError(f"gzip records decompress past {bytes_max} bytes")
            out.append(chunk)
            if not d.eof:
                raise CorruptRecordError("truncated gzip records")
            if not d.unused_data:
                return b"".join(out)
            data = d.unused_data
    except zlib.error as e:
        raise CorruptRecordError(f"bad gzip records: {e}") from None


_STEP_MIN = 256 * 1024
_STEP_MAX = 16 * 1024 * 1024
"""Output requested per decompression step when a frame does not declare its size: at least
4x the input, doubling up to 16 MiB (below glibc's mmap threshold ceiling, so the buffers come
from the heap again and again instead of fresh pages), and never more than the cap allows."""


def _first_step(declared: int, compressed_bytes: int) -> int:
    if declared >= 0:
        return declared + 1  # + 1: the end of the frame in the same step, or past the claim
    return min(max(_STEP_MIN, 4 * compressed_bytes), _STEP_MAX)


_LZ4_MAGIC = b"\x04\x22\x4d\x18"


def _unlz4(data: bytes, bytes_max: int) -> bytes:
    """Decompress LZ4 frames back to back, producing at most ``bytes_max`` bytes.

    ``LZ4FrameDecompressor`` allocates ``max_length`` per call, never the size a frame header
    claims; it stops short of ``max_length`` only at the end of a frame or of the input."""
    out = []
    produced = 0
    try:
        while True:
            declared = -1
            # magic, FLG (bit 3: an 8-byte content size follows FLG and BD), BD
            if data[:4] == _LZ4_MAGIC and len(data) >= 14 and data[4] & 0x08:
                declared = int.from_bytes(data[6:14], "little")
                if produced + declared > bytes_max:
                    raise CorruptRecordError(f"lz4 records decompress past {bytes_max} bytes")
            d = lz4.frame.LZ4FrameDecompressor()
            step = _first_step(declared, len(data))
            source = data
            while True:
                want = min(step, bytes_max - produced + 1)
                chunk = d.decompress(source, max_length=want)
                source = b""
                produced += len(chunk)
                if produced > bytes_max:
                    raise CorruptRecordError(f"lz4 records decompress past {bytes_max} bytes")
                out.append(chunk)
                if d.eof:
                    break
                if len(chunk) < want:
                    raise CorruptRecordError("truncated lz4 records")
                step = min(2 * step, _STEP_MAX)
            if not d.unused_data:
                return b"".join(out)
            data = d.unused_data
    except RuntimeError as e:  # every error of the lz4 library
        raise CorruptRecordError(f"bad lz4 records: {e}") from None


_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE_MASK, _ZSTD_SKIPPABLE = 0xFFFFFFF0, 0x184D2A50
_U32 = struct.Struct("<I")


def _zstd_frames(data: bytes) -> int:
    """Check that ``data`` is whole zstd frames back to back by walking their headers and block
    headers (RFC 8878), without decompressing. Returns the frames' total content size, or -1
    when a frame does not declare it. Raises ``CorruptRecordError`` for truncated or foreign
    bytes (the stream reader would just stop at truncated input)."""
    end = len(data)
    pos = 0
    total = 0
    while True:
        if end - pos < 5:
            raise CorruptRecordError("truncated zstd records")
        magic = _U32.unpack_from(data, pos)[0]
        if magic & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE:
            if end - pos < 8:
                raise CorruptRecordError("truncated zstd records")
            pos += 8 + _U32.unpack_from(data, pos + 4)[0]
        elif magic != _ZSTD_MAGIC:
            raise CorruptRecordError(f"bad zstd records: no zstd frame at byte {pos}")
        else:
            descriptor = data[pos + 4]
            size_flag = descriptor >> 6
            single_segment = descriptor & 0x20
            header_bytes = (
                5
                + (0 if single_segment else 1)  # window descriptor
                + (0, 1, 2, 4)[descriptor & 0x03]  # dictionary id
                + ((1 if single_segment else 0), 2, 4, 8)[size_flag]  # content size
            )
            if end - pos < header_bytes:
                raise CorruptRecordError("truncated zstd records")
            try:
                params = zstandard.get_frame_parameters(data[pos : pos + header_bytes])
            except zstandard.ZstdError as e:
                raise CorruptRecordError(f"bad zstd records: {e}") from None
            pos += header_bytes
            while True:  # blocks: 3-byte header, bit 0 last, bits 1-2 type, bits 3-23 size
                if end - pos < 3:
                    raise CorruptRecordError("truncated zstd records")
                block = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
                kind = (block >> 1) & 3
                if kind == 3:
                    raise CorruptRecordError(f"bad zstd records: reserved block type at {pos}")
                pos += 3 + (1 if kind == 1 else block >> 3)  # an RLE block holds one byte
                if block & 1:
                    break
            if params.has_checksum:
                pos += 4
            if params.content_size == zstandard.CONTENTSIZE_UNKNOWN:
                total = -1
            elif total >= 0:
                total += params.content_size
        if pos > end:
            raise CorruptRecordError("truncated zstd records")
        if pos == end:
            return total


def _unzstd(data: bytes, bytes_max: int) -> bytes:
    """Decompress zstd frames back to back, producing at most ``bytes_max`` bytes. Frames may
    lack the content size (Java's producer omits it), so this streams in bounded reads."""
    declared = _zstd_frames(data)
    if declared > bytes_max:
        raise CorruptRecordError(f"zstd records decompress past {bytes_max} bytes")
    out = []
    produced = 0
    step = _first_step(declared, len(data))
    try:
        reader = _zstd_contexts.decompressor.stream_reader(data, read_across_frames=True)
        while chunk := reader.read(min(step, bytes_max - produced + 1)):
            produced += len(chunk)
            if produced > bytes_max:
                raise CorruptRecordError(f"zstd records decompress past {bytes_max} bytes")
            out.append(chunk)
            step = min(2 * step, _STEP_MAX)
    except zstandard.ZstdError as e:
        raise CorruptRecordError(f"bad zstd records: {e}") from None
    return b"".join(out)


_DECOMPRESSORS: dict[int, Callable[[bytes, int], bytes]] = {
    COMPRESSION_GZIP: _gunzip,
    COMPRESSION_LZ4: _unlz4,
    COMPRESSION_ZSTD: _unzstd,
}


def decode_batch(
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    *,
    max_bytes: int,
    max_uncompressed_bytes: int = UNCOMPRESSED_BYTES_MAX,
    make: Callable[[int, int, bytes | None, bytes | None, Any], Any] | None = None,
) -> tuple[BatchHeader, list[Any]]:
    """Validate the batch at ``pos`` (header, ``max_bytes``, CRC) and decode all its records.

    Records are ``DecodedRecord``; with ``make``, whatever ``make(offset, timestamp_ms,
    key, value, headers)`` returns (a consumer builds its own record type directly,
    instead of a ``DecodedRecord`` and then a copy).

    Records of a log-append-time batch carry the batch's max_timestamp. Raises
    ``RecordTooLargeError`` past ``max_bytes`` and ``CorruptRecordError`` for anything wrong
    with the batch or any record (see the module docstring for the rules).
    """
    h = validate_batch(buf, pos, max_bytes=max_bytes)
    if type(buf) is bytes:
        data, start, limit = buf, pos + HEADER_BYTES, pos + h.size
    else:
        data = bytes(memoryview(buf)[pos + HEADER_BYTES : pos + h.size])
        start, limit = 0, len(data)
    codec = h.attributes & ATTR_COMPRESSION_MASK
    if codec != COMPRESSION_NONE:
        decompress = _DECOMPRESSORS.get(codec)
        if decompress is None:
            raise CorruptRecordError(
                f"batch at offset {h.base_offset} uses unsupported compression {_codec_name(codec)}"
            )
        data = decompress(data[start:limit], max_uncompressed_bytes)
        start, limit = 0, len(data)
    try:
        records = _decode_records(data, start, limit, h, make)
    except IndexError:
        raise CorruptRecordError(f"batch at offset {h.base_offset}: records truncated") from None
    except UnicodeDecodeError as e:
        raise CorruptRecordError(f"batch at offset {h.base_offset}: header key {e}") from None
    return h, records


def _decode_records(
    data: bytes,
    pos: int,
    limit: int,
    h: BatchHeader,
    make: Callable[[int, int, bytes | None, bytes | None, Any], Any] | None = None,
) -> list[Any]:
    """Decode ``h.record_count`` records from ``data[pos:limit]``. An out-of-bounds index
    raises IndexError, which the caller turns into CorruptRecordError.

    Varints of one and two bytes (every length below 8 KiB) are decoded inline through the
    ``_UNZIGZAG`` table; a function call per field would double the cost of this loop."""
    unzigzag = _UNZIGZAG
    read_varint = _read_varint
    builder = _DecodedRecordBuilder
    frozen = DecodedRecord
    base_offset = h.base_offset
    base_ts = h.base_timestamp
    append_time = h.max_timestamp if h.attributes & ATTR_LOG_APPEND_TIME else None
    last_delta = h.last_offset_delta
    out: list[Any] = []
    append = out.append
    prev_delta = -1
    for i in range(h.record_count):
        if pos >= limit:
            raise _corrupt(h, i, f"the header counts {h.record_count} records, found {i}")
        b = data[pos]
        if b < 0x80:
            length = unzigzag[b]
            pos += 1
        elif (c := data[pos + 1]) < 0x80:
            length = unzigzag[(c << 7) | (b & 0x7F)]
            pos += 2
        else:
            length, pos = read_varint(data, pos, 5, "record length")
        end = pos + length
        if length < _RECORD_BODY_BYTES_MIN or end > limit:
            raise _corrupt(h, i, f"length {length} does not fit in {limit - pos} bytes")
        # data[pos] is the attributes byte, unused (Kafka ignores it too)
        b = data[pos + 1]
        if b < 0x80:
            ts_delta = unzigzag[b]
            pos += 2
        else:
            ts_delta, pos = read_varint(data, pos + 1, 10, "timestamp delta")
        b = data[pos]
        if b < 0x80:
            delta = unzigzag[b]
            pos += 1
        elif (c := data[pos + 1]) < 0x80:
            delta = unzigzag[(c << 7) | (b & 0x7F)]
            pos += 2
        else:
            delta, pos = read_varint(data, pos, 5, "offset delta")
        if delta <= prev_delta or delta > last_delta:
            raise _corrupt(h, i, f"offset delta {delta} not in ({prev_delta}, {last_delta}]")
        prev_delta = delta
        b = data[pos]
        if b < 0x80:
            n = unzigzag[b]
            pos += 1
        else:
            n, pos = read_varint(data, pos, 5, "key length")
        if n >= 0 and pos + n <= end:
            key: bytes | None = data[pos : pos + n]
            pos += n
        elif n == -1:
            key = None
        else:
            raise _corrupt(h, i, f"key length {n} with {end - pos} bytes left")
        b = data[pos]
        if b < 0x80:
            n = unzigzag[b]
            pos += 1
        elif (c := data[pos + 1]) < 0x80:
            n = unzigzag[(c << 7) | (b & 0x7F)]
            pos += 2
        else:
            n, pos = read_varint(data, pos, 5, "value length")
        if n >= 0 and pos + n <= end:
            value: bytes | None = data[pos : pos + n]
            pos += n
        elif n == -1:
            value = None
        else:
            raise _corrupt(h, i, f"value length {n} with {end - pos} bytes left")
        if data[pos] == 0:
            headers: tuple[tuple[str, bytes | None], ...] = ()
            pos += 1
        else:
            headers, pos = _decode_headers(data, pos, end)
        if pos != end:
            raise _corrupt(h, i, f"fields use {length - end + pos} bytes, length says {length}")
        ts = base_ts + ts_delta if append_time is None else append_time
        if make is None:
            record = builder(base_offset + delta, ts, key, value, headers)
            record.__class__ = frozen  # type: ignore[assignment]
            append(record)
        else:
            append(make(base_offset + delta, ts, key, value, headers))
    if pos != limit:
        raise _corrupt(h, h.record_count, f"{limit - pos} bytes after the last record")
    return out


def _corrupt(h: BatchHeader, index: int, problem: str) -> CorruptRecordError:
    return CorruptRecordError(f"record {index} of batch at offset {h.base_offset}: {problem}")


def _decode_headers(
    data: bytes, pos: int, end: int
) -> tuple[tuple[tuple[str, bytes | None], ...], int]:
    count, pos = _read_varint(data, pos, 5, "headers count")
    if count < 0 or count * 2 > end - pos:
        raise CorruptRecordError(f"headers count {count} does not fit in {end - pos} bytes")
    headers = []
    for _ in range(count):
        n, pos = _read_varint(data, pos, 5, "header key length")
        if n < 0 or pos + n > end:
            raise CorruptRecordError(f"bad header key length {n}")
        hkey = data[pos : pos + n].decode("utf-8")
        pos += n
        n, pos = _read_varint(data, pos, 5, "header value length")
        if n >= 0 and pos + n <= end:
            hvalue: bytes | None = data[pos : pos + n]
            pos += n
        elif n == -1:
            hvalue = None
        else:
            raise CorruptRecordError(f"bad header value length {n}")
        headers.append((hkey, hvalue))
    return tuple(headers), pos


def decode_batches(
    buf: bytes | bytearray | memoryview,
    *,
    max_bytes: int = BATCH_BYTES_MAX,
    max_uncompressed_bytes: int = UNCOMPRESSED_BYTES_MAX,
) -> list[tuple[BatchHeader, list[DecodedRecord]]]:
    """Decode every batch of a buffer of batches back to back; every byte must belong to a
    whole valid batch (a fetch response's partial last batch must be cut off by the caller)."""
    data = buf if type(buf) is bytes else bytes(buf)
    cap = max_uncompressed_bytes
    out = []
    pos = 0
    while pos < len(data):
        out.append(decode_batch(data, pos, max_bytes=max_bytes, max_uncompressed_bytes=cap))
        pos += out[-1][0].size
    return out
