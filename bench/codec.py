"""Record codec throughput: raftlog.storage.records against kafka-python, in the same run.

Run with ``python -m bench.codec``. For each shape (value size, records per batch; 16-byte
keys, no headers, uncompressed) it times encoding and decoding whole batches and prints
records/s, the median of 5 runs, and the ratio ours/theirs. Each side decodes the batch it
encoded itself (the bytes are the same up to the base offset). Decoding includes the CRC check
on both sides and materialises every record's key and value.

The 500 x 1 KiB row (512 KiB batches) is noisy on glibc: freeing buffers that large trims the
heap, so the next call page-faults fresh memory. Run with MALLOC_TRIM_THRESHOLD_=268435456
and MALLOC_MMAP_THRESHOLD_=268435456 in the environment to see the codec without that effect.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from raftlog.storage.records import Record, build_batch, decode_batch

NOW_MS = 1_700_000_000_000
SHAPES = [(100, 16), (100, 500), (1024, 16), (1024, 500)]
"""(value bytes, records per batch)."""


def _records(value_bytes: int, count: int) -> list[Record]:
    return [Record(b"key-%012d" % i, bytes([i % 251]) * value_bytes) for i in range(count)]


def ours_encode(records: list[Record]) -> bytes:
    return build_batch(records, now_ms=NOW_MS)


def theirs_encode(records: list[Record]) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--min-s", type=float, default=0.2, help="seconds per run at least")
    args = parser.parse_args()
    print(f"{'op':<7}{'value B':>8}{'recs':>6}{'ours rec/s':>13}{'kafka-python':>14}{'ratio':>7}")
    for value_bytes, count in SHAPES:
        records = _records(value_bytes, count)
        ours_batch = ours_encode(records)
        theirs_batch = theirs_encode(records)
        if ours_batch[12:] != theirs_batch[12:]:
            raise AssertionError("the two encoders disagree; the comparison would be unfair")
        cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            ("encode", partial(ours_encode, records), partial(theirs_encode, records)),
            ("decode", partial(ours_decode, ours_batch), partial(theirs_decode, theirs_batch)),
        ]
        for op, ours, theirs in cases:
            a = _records_per_s(ours, count, args.min_s, args.runs)
            b = _records_per_s(theirs, count, args.min_s, args.runs)
            print(f"{op:<7}{value_bytes:>8}{count:>6}{a:>13,.0f}{b:>14,.0f}{a / b:>7.2f}")


if __name__ == "__main__":
    main()
