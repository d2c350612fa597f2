"""Storage benchmark: the partition log against the raw disk, measured in the same run.

    python -m bench.storage [--runs 5] [--mib 64] [--group 8] [--dir PATH]

For each batch shape (16 records of 1 KiB; one 64 KiB batch) it measures:

- append: ``PartitionLog.append_as_leader`` of ``--group`` batches, then ``sync_to`` (one
  group commit: one fsync covers the group), repeated until ``--mib`` MiB are written;
- its ceiling: plain ``os.write`` of the same bytes and ``os.fsync`` after every group;
- read: ``PartitionLog.read`` of the whole log in 1 MiB requests, from the page cache,
  CRC-checking every batch;
- its ceiling: ``os.pread`` of the same file in 1 MiB requests.

Every figure is the median of ``--runs`` runs; runs of raftlog and of its ceiling alternate,
and the ratio printed is the median of the per-run ratios.
Data goes to a fresh folder on the real disk (under the current folder by default), removed
at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

from raftlog.config import LogConfig
from raftlog.storage.files import OsFileSystem
from raftlog.storage.log import PartitionLog
from raftlog.storage.record_batch import encode_header

MiB = 1024 * 1024


def make_batch(records: int, value_bytes: int) -> bytes:
    # storage never decodes records: opaque bytes of the right size, valid header and CRC
    body = os.urandom(records * (value_bytes + 20))
    return bytes(
        encode_header(
            base_offset=0,
            epoch=0,
            attributes=0,
            last_offset_delta=records - 1,
            base_timestamp=int(time.time() * 1000),
            max_timestamp=int(time.time() * 1000),
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            record_count=records,
            records=body,
        )
    )


def bench_log_append(folder: str, batch: bytes, total: int, group: int) -> tuple[float, int]:
    log = PartitionLog.open(OsFileSystem(), folder, LogConfig(segment_bytes=256 * MiB))
    n = total // len(batch)
    t0 = time.perf_counter()
    for i in range(n):
        h = log.append_as_leader(batch, 1)
        if (i + 1) % group == 0 or i == n - 1:
            log.sync_to(h.last_offset + 1)
    elapsed = time.perf_counter() - t0
    log.close()
    return elapsed, n


def bench_raw_append(folder: str, batch: bytes, total: int, group: int) -> tuple[float, int]:
    os.makedirs(folder, exist_ok=True)
    fd = os.open(f"{folder}/raw.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    n = total // len(batch)
    t0 = time.perf_counter()
    for i in range(n):
        os.write(fd, batch)
        if (i + 1) % group == 0 or i == n - 1:
            os.fsync(fd)
    elapsed = time.perf_counter() - t0
    os.close(fd)
    return elapsed, n


def bench_log_read(folder: str) -> tuple[float, int]:
    log = PartitionLog.open(OsFileSystem(), folder, LogConfig(segment_bytes=256 * MiB))
    end = log.log_end_offset()
    offset = log.log_start_offset()
    got = 0
    t0 = time.perf_counter()
    while offset < end:
        data = log.read(offset, MiB)
        got += len(data)
        # next offset: from the last batch's header (base offset + last offset delta + 1)
        pos = 0
        last_base = last_delta = 0
        while pos < len(data):
            last_base = int.from_bytes(data[pos : pos + 8], "big")
            size = int.from_bytes(data[pos + 8 : pos + 12], "big") + 12
            last_delta = int.from_bytes(data[pos + 23 : pos + 27], "big")
            pos += size
        offset = last_base + last_delta + 1
    elapsed = time.perf_counter() - t0
    log.close()
    return elapsed, got


def bench_raw_read(path: str) -> tuple[float, int]:
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    got = 0
    t0 = time.perf_counter()
    while got < size:
        got += len(os.pread(fd, MiB, got))
    elapsed = time.perf_counter() - t0
    os.close(fd)
    return elapsed, got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mib", type=int, default=64, help="MiB written per append run")
    ap.add_argument("--group", type=int, default=8, help="batches per group commit (fsync)")
    ap.add_argument("--dir", default=".", help="where the temporary data folder goes")
    args = ap.parse_args()
    total = args.mib * MiB
    root = tempfile.mkdtemp(prefix="raftlog-bench-", dir=args.dir)
    rows: list[tuple[str, str, str, str, str]] = []
    try:
        for label, records, value in (("16 x 1 KiB", 16, 1024 - 20), ("64 KiB", 1, 65536 - 81)):
            batch = make_batch(records, value)

            tag = label.replace(" ", "")

            def log_append(i: int, batch: bytes = batch, tag: str = tag) -> float:
                folder = f"{root}/log-{tag}-{i}"
                shutil.rmtree(folder, ignore_errors=True)
                elapsed, n = bench_log_append(folder, batch, total, args.group)
                return n * len(batch) / elapsed

            def raw_append(i: int, batch: bytes = batch) -> float:
                folder = f"{root}/raw-{i}"
                elapsed, n = bench_raw_append(folder, batch, total, args.group)
                shutil.rmtree(folder, ignore_errors=True)
                return n * len(batch) / elapsed

            # alternate ours and the ceiling run by run, so that a disk that speeds up or
            # slows down during the benchmark affects both alike
            pairs = [(log_append(i), raw_append(i)) for i in range(args.runs)]
            ours = statistics.median(p[0] for p in pairs)
            ceiling = statistics.median(p[1] for p in pairs)
            batches_s = ours / len(batch)
            rows.append(
                (
                    f"append {label}, fsync per {args.group} batches",
                    f"{ours / 1e6:8.1f} MB/s",
                    f"{batches_s:9.0f} batches/s",
                    f"{ceiling / 1e6:8.1f} MB/s",
                    f"{statistics.median(p[0] / p[1] for p in pairs):6.0%}",
                )
            )
            folder = f"{root}/log-{tag}-0"
            files = sorted(f for f in os.listdir(folder) if f.endswith(".log"))

            def log_read(i: int, folder: str = folder) -> float:
                elapsed, got = bench_log_read(folder)
                return got / elapsed

            def raw_read(i: int, path: str = f"{folder}/{files[0]}") -> float:
                elapsed, got = bench_raw_read(path)
                return got / elapsed

            read_pairs = [(log_read(i), raw_read(i)) for i in range(args.runs)]
            rread = statistics.median(p[0] for p in read_pairs)
            cread = statistics.median(p[1] for p in read_pairs)
            rows.append(
                (
                    f"read {label}, 1 MiB requests, CRC checked",
                    f"{rread / 1e9:8.2f} GB/s",
                    f"{rread / len(batch):9.0f} batches/s",
                    f"{cread / 1e9:8.2f} GB/s",
                    f"{statistics.median(p[0] / p[1] for p in read_pairs):6.0%}",
                )
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"raftlog storage benchmark: {args.mib} MiB per run, median of {args.runs} runs")
    head = ("figure", "raftlog", "", "ceiling (raw)", "ratio")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


if __name__ == "__main__":
    main()
