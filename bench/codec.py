"""Record codec throughput: raftlog.storage.records against kafka-python, in the same run.

Run with ``python -m bench.codec``. For each shape (value size, records per batch; 16-byte
keys, no headers, uncompressed) it times encoding and decoding whole batches and prints
records/s, the median of 5 runs, and the ratio ours/theirs. Each side decodes the batch it
encoded itself (the bytes are the same up to the base offset). Decoding includes the CRC check
on both sides and materialises every record's key and value.

Then the same rows for 1 KiB values compressed with gzip, lz4 and zstd, one section each. Those
values are text-like (words and numbers from a small vocabulary, 2-3x compressible) rather
than the repeated byte of the uncompressed rows, which every codec would shrink ~100x. Both
sides call the same lz4 and zstandard functions, so those batches are byte for byte the same;
kafka-python writes gzip at level 9 where raftlog (like Java's client) uses 6, so its gzip
encode does more work and the two gzip batches differ (they decode to the same records).

The 500 x 1 KiB row (512 KiB batches) is noisy on glibc: freeing buffers that large trims the
heap, so the next call page-faults fresh memory. Run with MALLOC_TRIM_THRESHOLD_=268435456
and MALLOC_MMAP_THRESHOLD_=268435456 in the environment to see the codec without that effect.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from functools import partial

from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from raftlog.storage.record_batch import HEADER_BYTES, read_header
from raftlog.storage.records import (
    COMPRESSION_NONE,
    Record,
    build_batch,
    compression_codec,
    decode_batch,
)

NOW_MS = 1_700_000_000_000
SHAPES = [(100, 16), (100, 500), (1024, 16), (1024, 500)]
"""(value bytes, records per batch)."""
COMPRESSED_SHAPES = [(1024, 16), (1024, 500)]
CODECS = ["gzip", "lz4", "zstd"]


def _records(value_bytes: int, count: int) -> list[Record]:
    return [Record(b"key-%012d" % i, bytes([i % 251]) * value_bytes) for i in range(count)]


def _text_records(value_bytes: int, count: int) -> list[Record]:
    """Values of words and numbers, the way log lines or JSON events compress."""
    rng = random.Random(7)
    words = [
        bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
        for _ in range(300)
    ]
    records = []
    for i in range(count):
        parts: list[bytes] = []
        size = 0
        while size < value_bytes:
            part = rng.choice(words) if rng.random() < 0.7 else b"%d" % rng.randrange(10**6)
            parts.append(part)
            size += len(part) + 1
        records.append(Record(b"key-%012d" % i, b" ".join(parts)[:value_bytes]))
    return records


def ours_encode(records: list[Record], compression: int = COMPRESSION_NONE) -> bytes:
    return build_batch(records, now_ms=NOW_MS, compression=compression)


def theirs_encode(records: list[Record], compression: int = COMPRESSION_NONE) -> bytes:
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
        builder.append(i, NOW_MS, r.key, r.value, [])
    return bytes(builder.build())


def ours_decode(batch: bytes) -> int:
    _, records = decode_batch(batch, max_bytes=1 << 30)
    return len(records)


def theirs_decode(batch: bytes) -> int:
    b = DefaultRecordBatch(batch)
    if not b.validate_crc():
        raise AssertionError("kafka-python computed a bad CRC")
    n = 0
    for r in b:
        r.key, r.value  # noqa: B018 - touch the fields as a consumer would
        n += 1
    return n


def _records_per_s(fn: Callable[[], object], records: int, min_s: float, runs: int) -> float:
    """Median over ``runs`` of records/s, each run repeating ``fn`` for at least ``min_s``."""
    rates = []
    for _ in range(runs):
        loops = 0
        start = time.perf_counter()
        while True:
            fn()
            loops += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_s:
                break
        rates.append(loops * records / elapsed)
    return statistics.median(rates)


def _check_same_batches(ours_batch: bytes, theirs_batch: bytes, codec: int) -> None:
    """Both sides must have encoded the same records with the same codec, or the comparison
    would be unfair; the bytes must match too except for gzip (see the module docstring)."""
    if read_header(ours_batch).compression != codec:
        raise AssertionError(f"codec {codec} did not make the batch smaller; pick other values")
    if read_header(theirs_batch).compression != codec:
        raise AssertionError(f"kafka-python did not compress with codec {codec}")
    if codec != compression_codec("gzip") and ours_batch[12:] != theirs_batch[12:]:
        raise AssertionError("the two encoders disagree; the comparison would be unfair")
    ours = decode_batch(ours_batch, max_bytes=1 << 30)[1]
    if ours != decode_batch(theirs_batch, max_bytes=1 << 30)[1]:
        raise AssertionError("the two batches hold different records")


def _rows(
    shapes: list[tuple[int, int]],
    make_records: Callable[[int, int], list[Record]],
    codec: int,
    args: argparse.Namespace,
) -> None:
    for value_bytes, count in shapes:
        records = make_records(value_bytes, count)
        ours_batch = ours_encode(records, codec)
        theirs_batch = theirs_encode(records, codec)
        _check_same_batches(ours_batch, theirs_batch, codec)
        cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            (
                "encode",
                partial(ours_encode, records, codec),
                partial(theirs_encode, records, codec),
            ),
            ("decode", partial(ours_decode, ours_batch), partial(theirs_decode, theirs_batch)),
        ]
        for op, ours, theirs in cases:
            a = _records_per_s(ours, count, args.min_s, args.runs)
            b = _records_per_s(theirs, count, args.min_s, args.runs)
            print(f"{op:<7}{value_bytes:>8}{count:>6}{a:>13,.0f}{b:>14,.0f}{a / b:>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--min-s", type=float, default=0.2, help="seconds per run at least")
    args = parser.parse_args()
    print(f"{'op':<7}{'value B':>8}{'recs':>6}{'ours rec/s':>13}{'kafka-python':>14}{'ratio':>7}")
    _rows(SHAPES, _records, COMPRESSION_NONE, args)
    for name in CODECS:
        codec = compression_codec(name)
        value_bytes, count = COMPRESSED_SHAPES[-1]
        records = _text_records(value_bytes, count)
        plain = len(ours_encode(records)) - HEADER_BYTES
        packed = len(ours_encode(records, codec)) - HEADER_BYTES
        print(f"-- {name} (codec {codec}), text values, {plain / packed:.1f}x smaller")
        _rows(COMPRESSED_SHAPES, _text_records, codec, args)


if __name__ == "__main__":
    main()
