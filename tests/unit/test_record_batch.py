"""The RecordBatch v2 header: read_header checks, validate_batch's order of checks, stamping."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from raftlog.errors import CorruptRecordError, RecordTooLargeError
from raftlog.storage.record_batch import (
    ATTR_LOG_APPEND_TIME,
    HEADER_BYTES,
    crc32c,
    encode_header,
    iter_batches,
    peek_size,
    read_header,
    set_log_append_time,
    stamp,
    validate_batch,
)

RECORDS = bytes(range(40))  # opaque to the header code; 40 bytes allow up to 5 records


def batch(**fields: int) -> bytearray:
    args = {
        "base_offset": 10,
        "epoch": 2,
        "attributes": 0,
        "last_offset_delta": 2,
        "base_timestamp": 1_000,
        "max_timestamp": 1_002,
        "producer_id": -1,
        "producer_epoch": -1,
        "base_sequence": -1,
        "record_count": 3,
    }
    args.update(fields)
    return encode_header(records=RECORDS, **args)


def poke(buf: bytearray, offset: int, fmt: str, value: int) -> bytearray:
    struct.pack_into(fmt, buf, offset, value)
    return buf


def test_encode_then_read_header() -> None:
    buf = batch()
    h = read_header(buf)
    assert (h.base_offset, h.partition_leader_epoch, h.magic) == (10, 2, 2)
    assert (h.batch_length, h.size, len(buf)) == (len(buf) - 12, len(buf), HEADER_BYTES + 40)
    assert (h.last_offset, h.record_count, h.max_timestamp) == (12, 3, 1_002)
    assert h.crc == crc32c(bytes(buf[21:]))
    assert validate_batch(buf) == h
    assert DefaultRecordBatch(bytes(buf)).validate_crc()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:60], "truncated batch header: 60 bytes, need 61"),
        (lambda b: poke(b, 16, ">b", 1), "unsupported batch magic 1"),
        (lambda b: poke(b, 8, ">i", 48), "batch length 48 is below"),
        (lambda b: poke(b, 8, ">i", -5), "batch length -5 is below"),
        (lambda b: poke(b, 57, ">i", -1), "negative last offset delta 2 or record count -1"),
        (lambda b: poke(b, 23, ">i", -1), "negative last offset delta -1"),
        (lambda b: poke(b, 23, ">i", 1), "last offset delta 1 below record count 3 - 1"),
        (lambda b: poke(poke(b, 57, ">i", 6), 23, ">i", 9), "record count 6 cannot fit"),
        (lambda b: poke(b, 0, ">q", -1), "negative base offset -1"),
    ],
)
def test_read_header_rejects(mutate: Callable[[bytearray], bytearray], message: str) -> None:
    buf = mutate(batch())
    with pytest.raises(CorruptRecordError, match=message):
        read_header(buf)
    with pytest.raises(CorruptRecordError):
        validate_batch(buf)


def test_read_header_at_a_position() -> None:
    buf = bytes(batch()) + bytes(batch(base_offset=13))
    assert read_header(buf, len(buf) // 2).base_offset == 13
    with pytest.raises(CorruptRecordError, match="truncated"):
        read_header(buf, len(buf) - 60)


def test_peek_size() -> None:
    buf = batch()
    assert peek_size(buf[:11]) is None
    assert peek_size(buf[:12]) == len(buf)
    assert peek_size(b"\x00" * 3 + buf[:12], 3) == len(buf)
    with pytest.raises(CorruptRecordError, match="below the 49-byte minimum"):
        peek_size(poke(buf, 8, ">i", 10))


def test_validate_batch_checks_the_size_cap_before_the_bytes() -> None:
    """A header announcing 1 GiB with 61 bytes present is too large, not merely short:
    the cap is checked first, so nothing is sliced or awaited for a huge claimed size."""
    header_only = batch()[:HEADER_BYTES]
    poke(header_only, 8, ">i", 2**30)
    with pytest.raises(RecordTooLargeError, match="exceeds the 4096-byte limit"):
        validate_batch(header_only, max_bytes=4096)
    with pytest.raises(CorruptRecordError, match="only 61 remain"):
        validate_batch(header_only)  # under the default cap it is short


def test_validate_batch_size_cap_is_inclusive() -> None:
    buf = batch()
    assert validate_batch(buf, max_bytes=len(buf)).size == len(buf)
    with pytest.raises(RecordTooLargeError):
        validate_batch(buf, max_bytes=len(buf) - 1)


@pytest.mark.parametrize("position", [17, 21, 22, 30, 60, 61, 100])
def test_validate_batch_detects_any_flipped_covered_byte(position: int) -> None:
    buf = batch()
    buf[position] ^= 0x40
    with pytest.raises(CorruptRecordError):
        validate_batch(buf)


def test_stamp_keeps_the_crc_valid() -> None:
    buf = batch()
    crc = read_header(buf).crc
    stamp(buf, 0, 123_456_789, 77)
    h = validate_batch(buf)
    assert (h.base_offset, h.partition_leader_epoch, h.crc) == (123_456_789, 77, crc)


def test_stamp_at_a_position_leaves_the_neighbours_alone() -> None:
    first, second = batch(), batch()
    buf = first + second
    stamp(buf, len(first), 500, 9)
    a, b = iter_batches(buf)
    assert (a.base_offset, a.partition_leader_epoch) == (10, 2)
    assert (b.base_offset, b.partition_leader_epoch) == (500, 9)


def test_set_log_append_time_recomputes_the_crc() -> None:
    buf = batch()
    before = read_header(buf)
    set_log_append_time(buf, 0, 9_999)
    after = validate_batch(buf)
    assert after.log_append_time and after.attributes == before.attributes | ATTR_LOG_APPEND_TIME
    assert (after.max_timestamp, after.base_timestamp) == (9_999, before.base_timestamp)
    assert after.crc != before.crc
    assert DefaultRecordBatch(bytes(buf)).validate_crc()


def test_iter_batches_requires_whole_batches() -> None:
    buf = batch() + batch(base_offset=13)
    assert [h.base_offset for h in iter_batches(buf)] == [10, 13]
    assert iter_batches(b"") == []
    with pytest.raises(CorruptRecordError):
        iter_batches(buf + b"\x00")
    with pytest.raises(CorruptRecordError):
        iter_batches(buf[:-1])


def test_a_well_compressed_kafka_batch_is_valid() -> None:
    builder = DefaultRecordBatchBuilder(2, 1, False, -1, -1, -1, 1 << 20)  # gzip
    for i in range(1000):
        builder.append(i, 1_000, None, b"", [])
    buf = bytes(builder.build())
    assert DefaultRecordBatch(buf).validate_crc()
    assert validate_batch(buf).record_count == 1000
