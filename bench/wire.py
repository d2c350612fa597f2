"""Native protocol throughput: encoding and decoding frames, in one process.

Run with ``python -m bench.wire``. For each shape it times, separately:

- encode: ``encode_request`` (schema checks, CBOR envelope, payload pieces; the pieces are
  not joined, as a vectored write would not join them);
- decode: ``FrameDecoder.feed`` of 256 KiB chunks of a stream of frames (one copy into each
  frame's buffer, strict CBOR) and ``decode`` of each frame (schema checks, batches sliced out
  of the payload), dropping each frame once decoded as a server does.

Shapes: PRODUCE with one 64 KiB batch, PRODUCE with 16 x 1 KiB batches (one partition), and
a small METADATA request (three topics). Prints frames/s and MB/s (frame bytes, 10^6), the
median of 5 runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from raftlog.storage.records import Record, build_batch
from raftlog.types import PartitionId
from raftlog.wire import (
    Buffer,
    FrameDecoder,
    MetadataRequest,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
    decode,
    encode_request,
)
from raftlog.wire.codec import Request

NOW_MS = 1_700_000_000_000
READ_BYTES = 256 * 1024


def _batch(value_bytes: int) -> bytes:
    return build_batch([Record(b"key", b"v" * value_bytes)], now_ms=NOW_MS)


def shapes() -> list[tuple[str, Request]]:
    one_big = _batch(64 * 1024 - 80)
    small = [_batch(1024 - 80) for _ in range(16)]
    return [
        (
            "PRODUCE 1 x 64 KiB",
            ProduceRequest(
                -1,
                30_000,
                (ProduceTopic("orders", (ProducePartition(PartitionId(0), (one_big,)),)),),
            ),
        ),
        (
            "PRODUCE 16 x 1 KiB",
            ProduceRequest(
                -1,
                30_000,
                (ProduceTopic("orders", (ProducePartition(PartitionId(0), tuple(small)),)),),
            ),
        ),
        ("METADATA 3 topics", MetadataRequest(("orders", "payments", "audit-log"))),
    ]


def _size(pieces: list[Buffer]) -> int:
    return sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in pieces)


def _median_rate(fn: Callable[[], int], runs: int) -> float:
    """Median over ``runs`` of items/s, where ``fn`` returns the items it handled."""
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def bench(msg: Request, frames: int, runs: int) -> tuple[int, float, float]:
    """(frame bytes, encode frames/s, decode frames/s)."""
    pieces = encode_request(msg, 1)
    size = _size(pieces)
    stream = b"".join(bytes(p) for p in pieces) * frames

    def encode_all() -> int:
        for i in range(frames):
            encode_request(msg, i)
        return frames

    def decode_all() -> int:
        # socket-sized reads; each frame is dropped once decoded, as a server would
        decoder = FrameDecoder()
        view = memoryview(stream)
        count = 0
        for start in range(0, len(stream), READ_BYTES):
            for frame in decoder.feed(view[start : start + READ_BYTES]):
                decode(frame)
                count += 1
        assert count == frames
        return frames

    return size, _median_rate(encode_all, runs), _median_rate(decode_all, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=2000, help="frames per run")
    args = parser.parse_args()
    header = (
        f"{'shape':<20} {'frame B':>8} {'enc frames/s':>13} {'enc MB/s':>9}"
        f" {'dec frames/s':>13} {'dec MB/s':>9}"
    )
    print(f"median of {args.runs} runs, {args.frames} frames per run")
    print(header)
    print("-" * len(header))
    for name, msg in shapes():
        size, enc, dec = bench(msg, args.frames, args.runs)
        print(
            f"{name:<20} {size:>8} {enc:>13,.0f} {enc * size / 1e6:>9,.1f}"
            f" {dec:>13,.0f} {dec * size / 1e6:>9,.1f}"
        )


if __name__ == "__main__":
    main()
