"""The record codec: round trips, compatibility with kafka-python both ways, and malformed input.

Malformed records sit behind the CRC, so most corruption tests build the records area by hand
and wrap it in a batch with a valid CRC (``encode_header``); that way they reach the record
decoder instead of stopping at the checksum.
"""

from __future__ import annotations

import contextlib
import random
import struct
import tracemalloc
import zlib

import lz4.frame
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from raftlog.errors import CorruptRecordError, RecordTooLargeError
from raftlog.storage.record_batch import (
    ATTR_LOG_APPEND_TIME,
    encode_header,
    read_header,
    set_log_append_time,
    stamp,
)
from raftlog.storage.records import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_ZSTD,
    ControlType,
    DecodedRecord,
    Record,
    build_batch,
    compression_codec,
    control_batch,
    control_type,
    decode_batch,
    decode_batches,
)

NOW = 1_700_000_000_000
MAX = 1 << 24
CODECS = [COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_LZ4, COMPRESSION_ZSTD]
COMPRESSED = [COMPRESSION_GZIP, COMPRESSION_LZ4, COMPRESSION_ZSTD]


def zz(n: int) -> bytes:
    """A zigzag varint, written independently of the module under test."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        if z < 0x80:
            out.append(z)
            return bytes(out)
        out.append((z & 0x7F) | 0x80)
        z >>= 7


def raw_record(
    *,
    offset_delta: int = 0,
    ts_delta: int = 0,
    key: bytes | None = b"k",
    value: bytes | None = b"v",
    body: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """One encoded record; ``body`` replaces the fields and ``length`` the length prefix."""
    if body is None:
        body = b"\x00" + zz(ts_delta) + zz(offset_delta)
        body += zz(-1) if key is None else zz(len(key)) + key
        body += zz(-1) if value is None else zz(len(value)) + value
        body += zz(0)
    return zz(len(body) if length is None else length) + body


def wrap(
    records: bytes, count: int, *, last_offset_delta: int | None = None, attributes: int = 0
) -> bytes:
    """A batch around hand-made records area, with a valid CRC."""
    return bytes(
        encode_header(
            base_offset=100,
            epoch=3,
            attributes=attributes,
            last_offset_delta=count - 1 if last_offset_delta is None else last_offset_delta,
            base_timestamp=NOW,
            max_timestamp=NOW,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            record_count=count,
            records=records,
        )
    )


def decode(buf: bytes) -> list[DecodedRecord]:
    return decode_batch(buf, max_bytes=MAX)[1]


# -- round trips --------------------------------------------------------------------------------

ROUND_TRIPS: dict[str, list[Record]] = {
    "null key and value": [Record(None, None)],
    "empty key and value": [Record(b"", b"")],
    "null key, value": [Record(None, b"hello")],
    "headers": [Record(b"k", b"v", (("a", b"1"), ("b", None), ("", b"")))],
    "unicode header keys": [Record(b"k", b"v", (("clé", b"\xff"), ("键🔑", b"x" * 300)))],
    "values past the varint table": [Record(b"k" * 20_000, b"v" * 70_000)],
    "many records": [Record(b"%d" % i, b"v" * (i % 300)) for i in range(3000)],
    "explicit timestamps": [Record(None, b"", timestamp_ms=t) for t in (5, 3, 2**40, -1, 7)],
    "mixed timestamps": [Record(None, b"a", timestamp_ms=NOW - 10), Record(None, b"b")],
    # 8 MiB: many lz4 (64 KiB) and zstd (128 KiB) blocks, several decompression steps
    "big compressible": [Record(b"key-%06d" % i, b"%d" % i * 300) for i in range(4000)],
    "incompressible": [Record(None, random.Random(2).randbytes(300_000))],
    "mostly incompressible": [
        Record(b"k", random.Random(i).randbytes(1000) + b"\x00" * 200) for i in range(300)
    ],
}


@pytest.mark.parametrize("compression", CODECS)
@pytest.mark.parametrize("name", list(ROUND_TRIPS))
def test_round_trip(name: str, compression: int) -> None:
    records = ROUND_TRIPS[name]
    buf = build_batch(records, base_offset=40, epoch=9, now_ms=NOW, compression=compression)
    h, out = decode_batch(buf, max_bytes=MAX)
    stamps = [NOW if r.timestamp_ms is None else r.timestamp_ms for r in records]
    assert out == [
        DecodedRecord(40 + i, t, r.key, r.value, r.headers)
        for i, (r, t) in enumerate(zip(records, stamps, strict=True))
    ]
    assert (h.base_offset, h.partition_leader_epoch) == (40, 9)
    assert (h.record_count, h.last_offset_delta) == (len(records), len(records) - 1)
    assert (h.base_timestamp, h.max_timestamp) == (stamps[0], max(stamps))
    assert not h.is_control and not h.is_transactional and not h.log_append_time


@pytest.mark.parametrize("compression", COMPRESSED)
def test_compresses_when_it_helps_and_not_otherwise(compression: int) -> None:
    compressible = [Record(b"key", b"a" * 1000) for _ in range(20)]
    buf = build_batch(compressible, now_ms=NOW, compression=compression)
    assert read_header(buf).compression == compression
    assert len(buf) < 1000
    random_like = random.Random(1).randbytes(2000)  # incompressible
    buf = build_batch([Record(None, random_like)], now_ms=NOW, compression=compression)
    assert read_header(buf).compression == COMPRESSION_NONE
    assert buf == build_batch([Record(None, random_like)], now_ms=NOW)
    assert decode(buf)[0].value == random_like


@pytest.mark.parametrize("compression", COMPRESSED)
def test_the_cap_is_exact(compression: int) -> None:
    records = ROUND_TRIPS["big compressible"]
    area = len(build_batch(records, now_ms=NOW)) - 61  # the records area, uncompressed
    buf = build_batch(records, now_ms=NOW, compression=compression)
    assert len(buf) < area // 10
    assert len(decode_batch(buf, max_bytes=MAX, max_uncompressed_bytes=area)[1]) == 4000
    with pytest.raises(CorruptRecordError, match=f"decompress past {area - 1} bytes"):
        decode_batch(buf, max_bytes=MAX, max_uncompressed_bytes=area - 1)


def test_producer_fields_and_flags_are_written() -> None:
    buf = build_batch(
        [Record(b"k", b"v")] * 3,
        producer_id=77,
        producer_epoch=4,
        base_sequence=1000,
        now_ms=NOW,
        transactional=True,
    )
    h = read_header(buf)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (77, 4, 1000)
    assert h.is_transactional and not h.is_control


def test_log_append_time_replaces_every_record_timestamp() -> None:
    records = [Record(None, b"x", timestamp_ms=NOW - i) for i in range(4)]
    buf = bytearray(build_batch(records, now_ms=NOW))
    set_log_append_time(buf, 0, NOW + 555)
    h, out = decode_batch(bytes(buf), max_bytes=MAX)
    assert h.attributes & ATTR_LOG_APPEND_TIME
    assert [r.timestamp_ms for r in out] == [NOW + 555] * 4


def test_stamped_offsets_and_epoch_are_decoded() -> None:
    buf = bytearray(build_batch([Record(None, b"a"), Record(None, b"b")], now_ms=NOW))
    stamp(buf, 0, 9_000, 12)
    h, out = decode_batch(buf, max_bytes=MAX)  # a bytearray decodes as well as bytes
    assert h.partition_leader_epoch == 12
    assert [(r.offset, r.value) for r in out] == [(9_000, b"a"), (9_001, b"b")]


def test_decode_batch_at_a_position_and_from_memoryview() -> None:
    first = build_batch([Record(None, b"one")], now_ms=NOW)
    second = build_batch([Record(None, b"two")], base_offset=1, now_ms=NOW)
    both = first + second
    assert decode_batch(both, len(first), max_bytes=MAX)[1][0].value == b"two"
    assert decode_batch(memoryview(both), len(first), max_bytes=MAX)[1][0].offset == 1
    assert [[r.value for r in recs] for _, recs in decode_batches(both)] == [[b"one"], [b"two"]]
    assert decode_batches(b"") == []


def test_decoded_records_are_frozen_values() -> None:
    r = decode(build_batch([Record(b"k", b"v")], now_ms=NOW))[0]
    assert type(r) is DecodedRecord
    assert r == DecodedRecord(0, NOW, b"k", b"v", ())
    assert hash(r) == hash(DecodedRecord(0, NOW, b"k", b"v", ()))
    with pytest.raises(AttributeError):
        r.value = b"w"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"records": []}, ValueError),
        ({"compression": 2}, ValueError),
        ({"compression": 9}, ValueError),
        ({"producer_epoch": 2**15}, ValueError),
        ({"records": [Record(None, "text")]}, TypeError),  # type: ignore[arg-type]
        ({"records": [Record(b"k", b"v", (("h", "text"),))]}, TypeError),  # type: ignore[arg-type]
        (
            {"records": [Record(None, b""), Record(None, b"", timestamp_ms=2**63 - 1)]}
            | {"now_ms": -(2**63)},
            ValueError,
        ),
    ],
)
def test_build_batch_rejects_bad_input(kwargs: dict[str, object], error: type[Exception]) -> None:
    args: dict[str, object] = {"records": [Record(None, None), Record(None, None)], "now_ms": NOW}
    args.update(kwargs)
    with pytest.raises(error):
        build_batch(**args)  # type: ignore[arg-type]


record_strategy = st.builds(
    Record,
    key=st.none() | st.binary(max_size=40),
    value=st.none() | st.binary(max_size=300),
    headers=st.lists(
        st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=3
    ).map(tuple),
    timestamp_ms=st.none() | st.integers(min_value=-1, max_value=2**50),
)


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(record_strategy, min_size=1, max_size=40),
    base_offset=st.integers(min_value=0, max_value=2**62),
    compression=st.sampled_from(CODECS),
)
def test_round_trip_property(records: list[Record], base_offset: int, compression: int) -> None:
    buf = build_batch(records, base_offset=base_offset, now_ms=NOW, compression=compression)
    h, out = decode_batch(buf, max_bytes=MAX)
    assert h.record_count == len(out) == len(records)
    for i, (r, d) in enumerate(zip(records, out, strict=True)):
        assert d.offset == base_offset + i
        assert d.timestamp_ms == (NOW if r.timestamp_ms is None else r.timestamp_ms)
        assert (d.key, d.value, d.headers) == (r.key, r.value, r.headers)
    assert h.max_timestamp == max(d.timestamp_ms for d in out)


# -- compatibility with kafka-python ------------------------------------------------------------

COMPAT_RECORDS = [
    Record(None, None),
    Record(b"", b""),
    Record(b"key", b"value" * 100, (("trace", b"abc"), ("null", None), ("ünï", b""))),
    *[Record(b"k%d" % i, b"x" * i, timestamp_ms=NOW + (i % 7) - 3) for i in range(200)],
]


def kafka_python_batch(records: list[Record], compression: int) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    for i, r in enumerate(records):
        ts = NOW if r.timestamp_ms is None else r.timestamp_ms
        assert builder.append(i, ts, r.key, r.value, list(r.headers)) is not None
    return bytes(builder.build())


@pytest.mark.parametrize("compression", CODECS)
def test_kafka_python_reads_our_batches(compression: int) -> None:
    buf = build_batch(COMPAT_RECORDS, now_ms=NOW, compression=compression)
    theirs = DefaultRecordBatch(buf)
    assert theirs.validate_crc()
    assert theirs.compression_type == compression
    assert (theirs.records_count, theirs.last_offset_delta) == (len(COMPAT_RECORDS), 202)
    ours = decode(buf)
    decoded = list(theirs)
    assert len(decoded) == len(ours)
    for a, b in zip(ours, decoded, strict=True):
        assert (a.offset, a.timestamp_ms, a.key, a.value) == (b.offset, b.timestamp, b.key, b.value)
        assert list(a.headers) == b.headers


@pytest.mark.parametrize("compression", CODECS)
def test_we_read_kafka_python_batches(compression: int) -> None:
    buf = kafka_python_batch(COMPAT_RECORDS, compression)
    h, ours = decode_batch(buf, max_bytes=MAX)
    theirs = DefaultRecordBatch(buf)
    assert (h.compression, h.record_count) == (compression, theirs.records_count)
    assert (h.base_timestamp, h.max_timestamp) == (theirs.first_timestamp, theirs.max_timestamp)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.offset, a.timestamp_ms, a.key, a.value) == (b.offset, b.timestamp, b.key, b.value)
        assert list(a.headers) == b.headers


@pytest.mark.parametrize("compression", [COMPRESSION_NONE, COMPRESSION_LZ4, COMPRESSION_ZSTD])
def test_bytes_are_identical_to_kafka_python(compression: int) -> None:
    """Same library calls as kafka-python for lz4 and zstd (its gzip sets a header mtime)."""
    ours = build_batch(COMPAT_RECORDS, now_ms=NOW, compression=compression)
    assert ours == kafka_python_batch(COMPAT_RECORDS, compression)


def test_lz4_blocks_are_independent_as_kafka_requires() -> None:
    """Kafka's Java reader (KafkaLZ4BlockInputStream) rejects frames with linked blocks."""
    buf = build_batch(COMPAT_RECORDS, now_ms=NOW, compression=COMPRESSION_LZ4)
    frame = buf[61:]
    assert frame[:4] == b"\x04\x22\x4d\x18"  # the LZ4 frame magic
    flg = frame[4]
    assert flg >> 6 == 1 and flg & 0x20  # version 01, block independence
    assert not flg & 0x01  # no dictionary id (Kafka's FLG calls that bit reserved)


@pytest.mark.parametrize(
    ("kind", "transactional"),
    [(ControlType.ABORT, True), (ControlType.COMMIT, True), (ControlType.LEADER_CHANGE, False)],
)
def test_control_batch(kind: ControlType, transactional: bool) -> None:
    buf = control_batch(kind, NOW, base_offset=5, epoch=2, producer_id=8, producer_epoch=1)
    h, (record,) = decode_batch(buf, max_bytes=MAX)
    assert h.is_control and h.is_transactional == transactional
    assert (h.base_offset, h.partition_leader_epoch, h.producer_id) == (5, 2, 8)
    assert control_type(record) == kind
    assert record.key == struct.pack(">hh", 0, kind)
    if transactional:
        assert record.value == struct.pack(">hi", 0, 0)  # Kafka's EndTransactionMarker v0
    (theirs,) = list(DefaultRecordBatch(buf))
    assert (theirs.version, theirs.type) == (0, kind)


def test_control_type_rejects_a_short_key() -> None:
    with pytest.raises(CorruptRecordError, match="short key"):
        control_type(DecodedRecord(0, 0, b"\x00", None, ()))


# -- frames as other producers write them -------------------------------------------------------


def records_area(count: int) -> bytes:
    """The uncompressed records area of ``count`` records with offset deltas 0..count-1."""
    return b"".join(raw_record(offset_delta=i, value=b"value %d " % i * 20) for i in range(count))


def zstd_streamed(data: bytes, level: int = 3) -> bytes:
    """A zstd frame without the content size, as Java's ZstdOutputStream writes it."""
    c = zstandard.ZstdCompressor(level=level, write_content_size=False, write_checksum=True)
    co = c.compressobj()
    return co.compress(data) + co.flush()


def lz4_java_like(data: bytes) -> bytes:
    """As KafkaLZ4BlockOutputStream writes: no content size, independent 64 KiB blocks."""
    return lz4.frame.compress(
        data, block_linked=False, store_size=False, compression_level=9, block_checksum=True
    )


FOREIGN_FRAMES = {
    "zstd without content size": (COMPRESSION_ZSTD, zstd_streamed),
    "zstd level 19, checksum": (COMPRESSION_ZSTD, lambda d: zstd_streamed(d, 19)),
    "zstd two frames": (
        COMPRESSION_ZSTD,
        lambda d: zstandard.ZstdCompressor().compress(d[:1000]) + zstd_streamed(d[1000:]),
    ),
    "zstd skippable frame first": (
        COMPRESSION_ZSTD,
        lambda d: struct.pack("<II", 0x184D2A53, 3) + b"abc" + zstd_streamed(d),
    ),
    "lz4 as Kafka's Java client": (COMPRESSION_LZ4, lz4_java_like),
    "lz4 with content checksum": (
        COMPRESSION_LZ4,
        lambda d: lz4.frame.compress(d, block_linked=False, content_checksum=True),
    ),
    "lz4 two frames": (
        COMPRESSION_LZ4,
        lambda d: lz4.frame.compress(d[:1000]) + lz4_java_like(d[1000:]),
    ),
    "lz4 1 MiB blocks": (
        COMPRESSION_LZ4,
        lambda d: lz4.frame.compress(d, block_size=lz4.frame.BLOCKSIZE_MAX1MB),
    ),
}


@pytest.mark.parametrize("name", list(FOREIGN_FRAMES))
def test_frames_as_other_producers_write_them_decode(name: str) -> None:
    codec, compress = FOREIGN_FRAMES[name]
    area = records_area(3000)
    out = decode(wrap(compress(area), 3000, attributes=codec))
    assert [r.offset for r in out] == list(range(100, 3100))
    assert out[2999].value == b"value 2999 " * 20


# -- malformed input ----------------------------------------------------------------------------

SMALL = build_batch(
    [Record(b"k", b"value", (("h", b"v"),)), Record(None, None, timestamp_ms=NOW + 1)],
    now_ms=NOW,
)


@pytest.mark.parametrize("cut", range(len(SMALL)))
def test_every_truncation_is_corrupt(cut: int) -> None:
    with pytest.raises(CorruptRecordError):
        decode_batch(SMALL[:cut], max_bytes=MAX)
    if cut:
        with pytest.raises(CorruptRecordError):
            decode_batches(SMALL + SMALL[:cut])


def test_bad_crc_is_corrupt() -> None:
    buf = bytearray(SMALL)
    buf[-1] ^= 0x01
    with pytest.raises(CorruptRecordError, match="CRC mismatch"):
        decode_batch(buf, max_bytes=MAX)


def test_batch_over_max_bytes_is_too_large() -> None:
    with pytest.raises(RecordTooLargeError):
        decode_batch(SMALL, max_bytes=len(SMALL) - 1)
    assert len(decode_batch(SMALL, max_bytes=len(SMALL))[1]) == 2


GOOD = raw_record()
MALFORMED: dict[str, tuple[bytes, int, str]] = {
    # name: (records area, header record count, expected message fragment)
    "count above records": (
        raw_record(value=b"v" * 20) + raw_record(offset_delta=1, value=b"v" * 20),
        3,
        "counts 3 records, found 2",
    ),
    "count below records": (GOOD + raw_record(offset_delta=1), 1, "bytes after the last record"),
    "zero count, one record": (GOOD, 0, "bytes after the last record"),
    "trailing byte": (GOOD + b"\x00", 1, "1 bytes after"),
    "record length 6 bytes long": (b"\x80" * 6 + b"\x00", 1, "varint longer than 5"),
    "record length past int32": (b"\xff\xff\xff\xff\x7f" + b"\x00" * 8, 1, "out of range"),
    "negative record length": (zz(-3) + GOOD, 1, "length -3"),
    "record length past the end": (raw_record(length=200), 1, "length 200 does not fit"),
    "record length too short": (raw_record(length=5), 1, "length 5"),
    "record length above its fields": (raw_record(body=GOOD[1:] + b"\x00"), 1, "fields use 8"),
    "timestamp varlong 11 bytes": (
        raw_record(body=b"\x00" + b"\x81" * 11 + b"\x00" * 6),
        1,
        "longer than 10",
    ),
    "offset delta above last": (raw_record(offset_delta=1), 1, "offset delta 1"),
    "offset delta repeated": (GOOD + GOOD, 2, "offset delta 0"),
    "negative offset delta": (raw_record(offset_delta=-1), 1, "offset delta -1"),
    "key length -2": (raw_record(body=b"\x00\x00\x00" + zz(-2) + b"\x00\x00\x00"), 1, "key length"),
    "key length past the record": (
        raw_record(body=b"\x00\x00\x00" + zz(50) + b"k" * 10 + b"\x00\x00"),
        1,
        "key length 50",
    ),
    "value length -7": (raw_record(body=b"\x00\x00\x00\x01" + zz(-7) + b"\x00"), 1, "value length"),
    "value length past int32": (
        raw_record(body=b"\x00\x00\x00\x01" + b"\xfe\xff\xff\xff\x7f" + b"\x00"),
        1,
        "out of range",
    ),
    "value length past the record": (
        raw_record(body=b"\x00\x00\x00\x01" + zz(3) + b"ab"),
        1,
        "value length 3",
    ),
    "negative header count": (raw_record(body=b"\x00\x00\x00\x01\x01" + zz(-1)), 1, "headers"),
    "header count past the record": (
        raw_record(body=b"\x00\x00\x00\x01\x01" + zz(1000) + b"\x00\x00"),
        1,
        "headers count 1000",
    ),
    "header key length -1": (
        raw_record(body=b"\x00\x00\x00\x01\x01" + zz(1) + zz(-1) + b"\x00"),
        1,
        "header key length",
    ),
    "header value length -2": (
        raw_record(body=b"\x00\x00\x00\x01\x01" + zz(1) + zz(1) + b"h" + zz(-2)),
        1,
        "header value length",
    ),
    "header value past the record": (
        raw_record(body=b"\x00\x00\x00\x01\x01" + zz(1) + zz(1) + b"h" + zz(9) + b"x"),
        1,
        "header value length",
    ),
    "header key not utf-8": (
        raw_record(body=b"\x00\x00\x00\x01\x01" + zz(1) + zz(1) + b"\xff" + zz(-1)),
        1,
        "utf-8",
    ),
    "header runs into the next record": (
        raw_record(body=b"\x00\x00\x00\x01\x01" + zz(1) + zz(1) + b"h", length=6)
        + raw_record(offset_delta=1),
        2,
        "headers count 1",
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_records_are_corrupt(name: str) -> None:
    records, count, message = MALFORMED[name]
    buf = wrap(records, count, last_offset_delta=max(count - 1, 0))
    with pytest.raises(CorruptRecordError, match=message):
        decode(buf)


def test_unsupported_codec_is_reported_as_such() -> None:
    buf = wrap(GOOD, 1, attributes=2)
    with pytest.raises(CorruptRecordError, match=r"unsupported compression snappy \(2\)"):
        decode(buf)


def gzip_bytes(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not gzip at all", "bad gzip"),
        (gzip_bytes(GOOD)[:-6], "truncated gzip"),
        (gzip_bytes(GOOD) + b"garbage", "bad gzip"),
        (gzip_bytes(GOOD + b"\x00"), "bytes after the last record"),
        (gzip_bytes(b"\x00" * 100_000), "decompress past 50000 bytes"),
    ],
)
def test_malformed_gzip_is_corrupt(payload: bytes, message: str) -> None:
    buf = wrap(payload, 1, attributes=COMPRESSION_GZIP)
    with pytest.raises(CorruptRecordError, match=message):
        decode_batch(buf, max_bytes=MAX, max_uncompressed_bytes=50_000)


def lz4_bytes(data: bytes, **kwargs: object) -> bytes:
    out: bytes = lz4.frame.compress(data, block_linked=False, **kwargs)
    return out


def zstd_bytes(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


ZEROS = b"\x00" * 3_000_000  # the bombs: lz4 ~12 KiB, zstd ~100 bytes

MALFORMED_COMPRESSED: dict[str, tuple[int, bytes, str]] = {
    # name: (codec, records area, expected message fragment)
    "lz4 garbage": (COMPRESSION_LZ4, b"not lz4 at all", "bad lz4"),
    "lz4 empty": (COMPRESSION_LZ4, b"", "truncated lz4"),
    "lz4 end mark cut": (COMPRESSION_LZ4, lz4_bytes(GOOD)[:-1], "truncated lz4"),
    "lz4 header cut": (COMPRESSION_LZ4, lz4_bytes(GOOD)[:9], "truncated lz4"),
    "lz4 block cut": (COMPRESSION_LZ4, lz4_bytes(records_area(150))[:-300], "truncated lz4"),
    "lz4 trailing garbage": (COMPRESSION_LZ4, lz4_bytes(GOOD) + b"garbage", "bad lz4"),
    "lz4 linked blocks cut": (
        COMPRESSION_LZ4,
        lz4.frame.compress(records_area(150), block_linked=True)[:-100],
        "truncated lz4",
    ),
    "lz4 content checksum wrong": (
        COMPRESSION_LZ4,
        lz4_bytes(GOOD, content_checksum=True)[:-1] + b"\x00",
        "bad lz4",
    ),
    "lz4 content size wrong": (
        COMPRESSION_LZ4,
        (lambda f: f[:6] + struct.pack("<Q", len(GOOD) + 1) + f[14:])(lz4_bytes(GOOD)),
        "bad lz4",  # the header checksum no longer matches
    ),
    "lz4 bytes after the last record": (COMPRESSION_LZ4, lz4_bytes(GOOD + b"\x00"), "after the"),
    "lz4 bomb": (COMPRESSION_LZ4, lz4_bytes(ZEROS), "lz4 records decompress past 50000 bytes"),
    "lz4 bomb, no size": (
        COMPRESSION_LZ4,
        lz4_bytes(ZEROS, store_size=False),
        "lz4 records decompress past 50000 bytes",
    ),
    "lz4 bomb in a second frame": (
        COMPRESSION_LZ4,
        lz4_bytes(GOOD) + lz4_bytes(b"\x00" * 50_000, store_size=False),
        "lz4 records decompress past 50000 bytes",
    ),
    "zstd garbage": (COMPRESSION_ZSTD, b"not zstd at all", "bad zstd"),
    "zstd empty": (COMPRESSION_ZSTD, b"", "truncated zstd"),
    "zstd last byte cut": (COMPRESSION_ZSTD, zstd_bytes(GOOD)[:-1], "truncated zstd"),
    "zstd header cut": (COMPRESSION_ZSTD, zstd_bytes(GOOD)[:5], "truncated zstd"),
    "zstd streamed, checksum cut": (
        COMPRESSION_ZSTD,
        zstd_streamed(records_area(150))[:-2],
        "truncated zstd",
    ),
    "zstd block cut": (COMPRESSION_ZSTD, zstd_bytes(records_area(150))[:-40], "truncated zstd"),
    "zstd trailing garbage": (COMPRESSION_ZSTD, zstd_bytes(GOOD) + b"garbage", "bad zstd"),
    "zstd trailing zeros": (COMPRESSION_ZSTD, zstd_bytes(GOOD) + bytes(8), "bad zstd"),
    "zstd checksum wrong": (
        COMPRESSION_ZSTD,
        zstd_streamed(records_area(50))[:-1] + b"\x00",
        "bad zstd",
    ),
    "zstd reserved block type": (
        COMPRESSION_ZSTD,
        (lambda f: f[:6] + bytes([f[6] | 0x06]) + f[7:])(zstd_bytes(GOOD)),
        "bad zstd records: reserved block type",
    ),
    "zstd bytes after the last record": (COMPRESSION_ZSTD, zstd_bytes(GOOD + b"\x00"), "after"),
    "zstd bomb": (COMPRESSION_ZSTD, zstd_bytes(ZEROS), "zstd records decompress past 50000 bytes"),
    "zstd bomb, no size": (
        COMPRESSION_ZSTD,
        zstd_streamed(ZEROS),
        "zstd records decompress past 50000 bytes",
    ),
    "zstd bomb in a second frame": (
        COMPRESSION_ZSTD,
        zstd_bytes(GOOD) + zstd_streamed(b"\x00" * 50_000),
        "zstd records decompress past 50000 bytes",
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED_COMPRESSED))
def test_malformed_lz4_and_zstd_are_corrupt(name: str) -> None:
    codec, payload, message = MALFORMED_COMPRESSED[name]
    buf = wrap(payload, 1, attributes=codec)
    with pytest.raises(CorruptRecordError, match=message):
        decode_batch(buf, max_bytes=MAX, max_uncompressed_bytes=50_000)


@pytest.mark.parametrize(
    "payload",
    [
        wrap(gzip_bytes(ZEROS * 10), 1, attributes=COMPRESSION_GZIP),
        wrap(lz4_bytes(ZEROS * 10, store_size=False), 1, attributes=COMPRESSION_LZ4),
        wrap(zstd_streamed(ZEROS * 10), 1, attributes=COMPRESSION_ZSTD),
    ],
    ids=["gzip", "lz4", "zstd"],
)
def test_a_bomb_allocates_about_the_cap_not_its_size(payload: bytes) -> None:
    """30 MB of zeros with no size in the header, against a 1 MB cap: the Python-visible
    allocations (tracemalloc sees PyMem and bytes, not zstd's window) stay near the cap."""
    cap = 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(CorruptRecordError, match="decompress past"):
            decode_batch(payload, max_bytes=MAX, max_uncompressed_bytes=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * cap


def test_concatenated_gzip_members_decode() -> None:
    second = raw_record(offset_delta=1, value=b"second")
    buf = wrap(gzip_bytes(GOOD) + gzip_bytes(second), 2, attributes=COMPRESSION_GZIP)
    assert [r.value for r in decode(buf)] == [b"v", b"second"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_corruption_fails_the_crc_or_changes_only_uncovered_fields(
    data: st.DataObject,
) -> None:
    buf = bytearray(SMALL)
    positions = data.draw(st.lists(st.integers(0, len(buf) - 1), min_size=1, max_size=4))
    for p in positions:
        buf[p] ^= data.draw(st.integers(1, 255))
    try:
        # no cap: a flipped length must read as corrupt, not as too large
        h, out = decode_batch(bytes(buf), max_bytes=2**40)
    except CorruptRecordError:
        return
    # only base offset (0-7) and leader epoch (12-15) lie outside the CRC
    changed = [p for p in range(len(buf)) if buf[p] != SMALL[p]]
    assert all(p < 8 or 12 <= p < 16 for p in changed)
    original = decode(SMALL)
    assert [(r.key, r.value, r.headers, r.timestamp_ms) for r in out] == [
        (r.key, r.value, r.headers, r.timestamp_ms) for r in original
    ]
    assert [r.offset for r in out] == [h.base_offset, h.base_offset + 1]


COMPRESS = {
    COMPRESSION_NONE: bytes,
    COMPRESSION_GZIP: gzip_bytes,
    COMPRESSION_LZ4: lz4_bytes,
    COMPRESSION_ZSTD: zstd_bytes,
}


@settings(max_examples=500, deadline=None)
@given(
    records=st.binary(max_size=120)
    | st.lists(st.sampled_from([GOOD, b"\x00", b"\x01", b"\x7f", b"\x80", b"\xff", zz(-1)])).map(
        b"".join
    ),
    count=st.integers(0, 20),
    last_offset_delta=st.integers(0, 40),
    codec=st.sampled_from(CODECS),
)
def test_records_behind_a_valid_crc_decode_or_are_corrupt(
    records: bytes, count: int, last_offset_delta: int, codec: int
) -> None:
    """The record decoder's own bounds, with the CRC out of the way: any records area either
    decodes consistently or raises CorruptRecordError, never another exception."""
    buf = wrap(
        COMPRESS[codec](records),
        count,
        last_offset_delta=max(last_offset_delta, count - 1),
        attributes=codec,
    )
    try:
        h, out = decode_batch(buf, max_bytes=MAX)
    except CorruptRecordError:
        return
    assert len(out) == h.record_count == count
    assert all(100 <= r.offset <= h.last_offset for r in out)
    assert [r.offset for r in out] == sorted({r.offset for r in out})


def test_mutated_valid_records_behind_a_valid_crc_decode_or_are_corrupt() -> None:
    """Every single-byte change of a real records area, re-wrapped with a valid CRC."""
    records = SMALL[61:]
    for p in range(len(records)):
        for value in (0x00, 0x01, 0x7F, 0x80, 0xFF, records[p] ^ 0x02):
            mutated = records[:p] + bytes([value]) + records[p + 1 :]
            with contextlib.suppress(CorruptRecordError):
                decode(wrap(mutated, 2))


FRAMES = {
    COMPRESSION_GZIP: gzip_bytes(records_area(40)),
    COMPRESSION_LZ4: lz4_bytes(records_area(40), content_checksum=True),
    COMPRESSION_LZ4 | 8: lz4_java_like(records_area(40)),  # bit 3 only tells the frames apart
    COMPRESSION_ZSTD: zstd_bytes(records_area(40)),
    COMPRESSION_ZSTD | 8: zstd_streamed(records_area(40)),
}


@settings(max_examples=1000, deadline=None)
@given(
    kind=st.sampled_from(list(FRAMES)),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=3),
    cut=st.none() | st.integers(0, 10**6),
    tail=st.binary(max_size=12),
)
def test_damaged_compressed_records_decode_or_are_corrupt(
    kind: int, flips: list[tuple[int, int]], cut: int | None, tail: bytes
) -> None:
    """Real frames with flipped bytes, cut short or with bytes appended, behind a valid CRC:
    decoding succeeds or raises CorruptRecordError, never the libraries' own errors."""
    frame = bytearray(FRAMES[kind])
    for p, x in flips:
        frame[p % len(frame)] ^= x
    if cut is not None:
        del frame[cut % (len(frame) + 1) :]
    buf = wrap(bytes(frame) + tail, 40, attributes=kind & 7)
    try:
        h, out = decode_batch(buf, max_bytes=MAX, max_uncompressed_bytes=100_000)
    except CorruptRecordError:
        return
    assert len(out) == h.record_count == 40


# -- compression names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("none", COMPRESSION_NONE),
        ("gzip", COMPRESSION_GZIP),
        ("lz4", COMPRESSION_LZ4),
        ("zstd", COMPRESSION_ZSTD),
        ("GZIP", COMPRESSION_GZIP),
        ("Lz4", COMPRESSION_LZ4),
        ("ZStd", COMPRESSION_ZSTD),
        ("None", COMPRESSION_NONE),
    ],
)
def test_compression_codec_by_name(name: str, codec: int) -> None:
    assert compression_codec(name) == codec
    assert (COMPRESSION_LZ4, COMPRESSION_ZSTD) == (3, 4)  # Kafka's numbers


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("snappy", "compression 'snappy' is not supported: use one of none, gzip, lz4, zstd"),
        ("Snappy", "'Snappy' is not supported"),
        ("brotli", "unknown compression 'brotli': use one of none, gzip, lz4, zstd"),
        ("", "unknown compression ''"),
        (" gzip", "unknown compression ' gzip'"),
        ("lz4hc", "unknown compression"),
        ("unknown", "unknown compression"),
    ],
)
def test_compression_codec_rejects_other_names(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compression_codec(name)


@pytest.mark.parametrize("codec", [5, 6, 7])
def test_unknown_codec_numbers_are_corrupt(codec: int) -> None:
    with pytest.raises(CorruptRecordError, match=rf"unsupported compression unknown \({codec}\)"):
        decode(wrap(GOOD, 1, attributes=codec))
