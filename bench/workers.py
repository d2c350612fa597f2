"""Benchmark worker processes: ``python -m raftlog.bench.workers SPEC.json``.

A spec names its ``kind`` and files: ``ready`` (written once connected), ``go`` (waited
for: the common start signal), ``result`` (JSON written at the end). Kinds:

- ``produce``: send ``records`` values of ``value_bytes`` and flush; per-partition counts
  of acknowledged records;
- ``consume``: read ``partitions`` partitions of ``topic`` from the start to the end
  offsets taken before the go signal; per-partition counts, offsets only increasing;
- ``e2e_produce``: send at a fixed ``rate`` (records/s) for ``warmup_s + measure_s``,
  paced every ``tick_ms``, each value carrying its sequence number and its send time
  (``time.monotonic_ns``: one clock for every process of this host);
- ``e2e_consume``: read those records as they come, latency = receive time - send time,
  until every record the producer had acknowledged arrived (or the deadline); counts
  missing and duplicated sequence numbers.

Every loop is bounded in count and by ``deadline_s``.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from .cluster import write_json
from .figures import percentile

E2E_HEADER = struct.Struct(">QQ")  # sequence number, send time (monotonic ns)


def _wait_go(go_path: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(go_path):
        if time.monotonic() > deadline:
            raise TimeoutError("no go signal within 60 s")
        time.sleep(0.001)


def _failures(futures: list[Any]) -> tuple[collections.Counter[int], list[str], int]:
    """(acknowledged per partition, the first few errors, number failed)."""
    acked: collections.Counter[int] = collections.Counter()
    errors: list[str] = []
    failed = 0
    for f in futures:
        exc = f.exception(timeout=0)
        if exc is not None:
            failed += 1
            if len(errors) < 5:
                errors.append(repr(exc))
            continue
        acked[f.result().partition] += 1
    return acked, errors, failed


def produce(spec: dict[str, Any]) -> None:
    from raftlog import Producer

    value = os.urandom(spec["value_bytes"])
    n = spec["records"]
    topic = spec["topic"]
    producer = Producer(spec["bootstrap"], acks="all", **spec["producer"])
    try:
        producer.partitions_for(topic)  # metadata before the clock starts
        write_json(spec["ready"], {"pid": os.getpid()})
        _wait_go(spec["go"])
        t_start = time.time()
        futures = [producer.send(topic, value) for _ in range(n)]
        producer.flush(timeout=spec["deadline_s"])
        t_end = time.time()
        acked, errors, _ = _failures(futures)
    finally:
        producer.close(timeout=30)
    write_json(
        spec["result"],
        {"t_start": t_start, "t_end": t_end, "acked": dict(acked), "errors": errors},
    )


def consume(spec: dict[str, Any]) -> None:
    from raftlog import Consumer

    topic = spec["topic"]
    tps = [(topic, p) for p in range(spec["partitions"])]
    consumer = Consumer(spec["bootstrap"], auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        consumer.assign(tps)
        ends = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
        write_json(spec["ready"], {"pid": os.getpid()})
        _wait_go(spec["go"])
        t_start = time.time()
        deadline = time.monotonic() + spec["deadline_s"]
        count: collections.Counter[int] = collections.Counter()
        # a leader's Raft no-op is a control batch: it takes an offset but is no record,
        # so offsets may skip; they must only increase (no duplicate, no reordering)
        next_offset = dict.fromkeys(ends, 0)
        bad: list[str] = []
        done = False
        nbytes = 0
        while not done and time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=1000, max_records=10_000)
            for r in records:
                p = r.partition
                if r.offset < next_offset[p] and len(bad) < 5:
                    bad.append(f"partition {p}: offset {r.offset} after {next_offset[p] - 1}")
                next_offset[p] = r.offset + 1
                count[p] += 1
                nbytes += len(r.value or b"")
            if all(next_offset[p] >= e for p, e in ends.items()):
                done = True
            elif not records:  # maybe only control batches are left: ask the positions
                done = all(consumer.position(topic, p) >= e for p, e in ends.items())
        t_end = time.time()
    finally:
        consumer.close(timeout_ms=10_000)
    write_json(
        spec["result"],
        {
            "t_start": t_start,
            "t_end": t_end,
            "count": dict(count),
            "ends": ends,
            "bytes": nbytes,
            "bad": bad,
            "timed_out": not done,
        },
    )


def e2e_produce(spec: dict[str, Any]) -> None:
    from raftlog import Producer

    topic, partitions = spec["topic"], spec["partitions"]
    rate = spec["rate"]
    total = int(rate * (spec["warmup_s"] + spec["measure_s"]))
    pad = b"\0" * max(0, spec["value_bytes"] - E2E_HEADER.size)
    tick_s = spec["tick_ms"] / 1000
    warmup_seq = int(rate * spec["warmup_s"])
    producer = Producer(spec["bootstrap"], acks="all", linger_ms=spec["linger_ms"])
    futures = []
    # acknowledgement latency (send -> future done) after the warm-up: the producer's half
    # of the end-to-end path (the callback runs when the record's batch completes)
    ack_ms: list[float] = []

    def on_done(sent_ns: int) -> None:
        ack_ms.append((time.monotonic_ns() - sent_ns) / 1e6)

    try:
        producer.partitions_for(topic)
        write_json(spec["ready"], {"pid": os.getpid()})
        _wait_go(spec["go"])
        t_start = time.time()
        t0 = time.monotonic()
        deadline = t0 + spec["deadline_s"]
        behind_max = 0
        seq = ticks = 0
        while seq < total and time.monotonic() < deadline:
            due = min(total, int((time.monotonic() - t0) * rate) + 1)
            behind_max = max(behind_max, due - seq)
            while seq < due:
                sent_ns = time.monotonic_ns()
                value = E2E_HEADER.pack(seq, sent_ns) + pad
                future = producer.send(topic, value, partition=seq % partitions)
                if seq >= warmup_seq:
                    future.add_done_callback(functools.partial(_ignore_future, on_done, sent_ns))
                futures.append(future)
                seq += 1
            # small batches at a steady pace: sleep to the next tick (not at all if late)
            ticks += 1
            time.sleep(max(0.0, t0 + ticks * tick_s - time.monotonic()))
        send_s = time.monotonic() - t0
        producer.flush(timeout=30)
        t_end = time.time()
        acked, errors, failed = _failures(futures)
    finally:
        producer.close(timeout=30)
    write_json(
        spec["result"],
        {
            "t_start": t_start,
            "t_end": t_end,
            "sent": seq,
            "acked": sum(acked.values()),
            "failed": failed,
            "errors": errors,
            "rate_achieved": seq / send_s if send_s > 0 else 0.0,
            "behind_max": behind_max,
            "ack_p50_ms": percentile(ack_ms, 50) if ack_ms else None,
            "ack_p99_ms": percentile(ack_ms, 99) if ack_ms else None,
        },
    )


def e2e_consume(spec: dict[str, Any]) -> None:
    from raftlog import Consumer

    topic = spec["topic"]
    tps = [(topic, p) for p in range(spec["partitions"])]
    total = int(spec["rate"] * (spec["warmup_s"] + spec["measure_s"]))
    warmup_seq = int(spec["rate"] * spec["warmup_s"])
    seen = bytearray(total)
    latencies_ms: list[float] = []
    unique = dup = foreign = 0
    consumer = Consumer(
        spec["bootstrap"],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=spec["fetch_max_wait_ms"],
    )
    expected: int | None = None
    try:
        consumer.assign(tps)
        consumer.poll(timeout_ms=100)  # connected to every leader before the go
        write_json(spec["ready"], {"pid": os.getpid()})
        _wait_go(spec["go"])
        t_start = time.time()
        deadline = time.monotonic() + spec["deadline_s"]
        while time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=50, max_records=10_000)
            now_ns = time.monotonic_ns()
            for r in records:
                value = r.value or b""
                if len(value) < E2E_HEADER.size:
                    foreign += 1
                    continue
                seq, sent_ns = E2E_HEADER.unpack_from(value)
                if seq >= total:
                    foreign += 1
                    continue
                if seen[seq]:
                    dup += 1
                    continue
                seen[seq] = 1
                unique += 1
                if seq >= warmup_seq:
                    latencies_ms.append((now_ns - sent_ns) / 1e6)
            producer_result = spec["results"][1]
            if expected is None and os.path.exists(producer_result):
                with open(producer_result) as f:
                    expected = json.load(f)["acked"]
            if expected is not None and unique >= expected:
                break
        t_end = time.time()
    finally:
        consumer.close(timeout_ms=10_000)
    stats: dict[str, float] = {}
    if latencies_ms:
        stats = {
            "p50_ms": percentile(latencies_ms, 50),
            "p99_ms": percentile(latencies_ms, 99),
            "max_ms": max(latencies_ms),
        }
    write_json(
        spec["result"],
        {
            "t_start": t_start,
            "t_end": t_end,
            "unique": unique,
            "duplicates": dup,
            "foreign": foreign,
            "expected": expected,
            "measured": len(latencies_ms),
            **stats,
        },
    )


KINDS = {
    "produce": produce,
    "consume": consume,
    "e2e_produce": e2e_produce,
    "e2e_consume": e2e_consume,
}


def main() -> None:
    (path,) = sys.argv[1:]
    with open(path) as f:
        spec = json.load(f)
    KINDS[spec["kind"]](spec)


def _ignore_future(fn: Callable[[int], None], value: int, _future: object) -> None:
    """A done-callback that calls ``fn(value)`` (the future itself is not needed)."""
    fn(value)


if __name__ == "__main__":
    main()
