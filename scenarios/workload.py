"""The scenario workload: producer, group-member and reader processes that record a history.

Each process writes its own history file (JSON lines, :mod:`raftlog.scenarios.history`); the
harness merges them after the run. Run as
``python -m raftlog.scenarios.workload producer|member|reader --bootstrap H:P[,..] ...``.

- ``producer``: sends unique values ``"<name>-<seq>"`` with a key, to a seeded random
  partition, acks=all, idempotent, at ``--rate`` records/s for ``--duration`` seconds.
  Each send is recorded as ``invoke`` and then ``ok`` (with its offset), ``fail`` (the
  client says it was never sent) or ``info`` (unknown outcome). A value is never sent twice.
- ``member``: one member of the consumer group; after each poll it records what it read
  per partition (with its generation), then commits the positions of the partitions it
  read synchronously and records the commit and the broker's answer. A rebalance records
  an ``assign`` with the new generation.
- ``reader``: reads every partition from offset 0, outside any group, and records its
  polls (generation -1).

Every process stops by itself after ``--duration`` seconds (members and readers may be
told to stop earlier with SIGTERM); every wait is bounded.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from raftlog.client import Consumer, Producer
from raftlog.client.errors import BufferFullError, CommitFailedError, DeliveryTimeoutError
from raftlog.errors import RaftlogError
from raftlog.scenarios.history import (
    NO_GENERATION,
    Assign,
    Commit,
    HistoryWriter,
    Phase,
    Poll,
    Seek,
    Send,
)

DEFINITELY_NOT_WRITTEN = (BufferFullError, DeliveryTimeoutError)
"""Client errors that mean the record never reached a broker: a ``fail``; anything else
that goes wrong is an unknown outcome (``info``)."""

_stop = threading.Event()


def _on_term(signum: int, frame: Any) -> None:
    _stop.set()


def run_producer(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    producer = Producer(
        args.bootstrap.split(","),
        acks="all",
        linger_ms=2,
        request_timeout_ms=args.request_timeout_ms,
        delivery_timeout_ms=args.delivery_timeout_ms,
        max_block_ms=5_000,
        client_id=args.name,
    )
    pending = 0
    lock = threading.Lock()
    with HistoryWriter(args.history) as history:

        def send_one(seq: int) -> None:
            nonlocal pending
            value = f"{args.name}-{seq}"
            key = f"k{rng.randrange(1000)}"
            partition = rng.randrange(args.partitions)
            t_start = time.monotonic()
            history.append(Send(args.name, key, value, partition, "invoke", None, t_start, None))

            def done(outcome: Any) -> None:
                nonlocal pending
                t_end = time.monotonic()
                try:
                    meta = outcome.result(0)
                except DEFINITELY_NOT_WRITTEN:
                    event = Send(args.name, key, value, partition, "fail", None, t_start, t_end)
                except BaseException:
                    event = Send(args.name, key, value, partition, "info", None, t_start, t_end)
                else:
                    event = Send(
                        args.name, key, value, partition, "ok", int(meta.offset), t_start, t_end
                    )
                history.append(event)
                with lock:
                    pending -= 1

            with lock:
                pending += 1
            try:
                future = producer.send(args.topic, value, key=key, partition=partition)
            except RaftlogError as e:
                phase: Phase = "fail" if isinstance(e, DEFINITELY_NOT_WRITTEN) else "info"
                t_end = time.monotonic()
                history.append(Send(args.name, key, value, partition, phase, None, t_start, t_end))
                with lock:
                    pending -= 1
                return
            future.add_done_callback(done)

        start = time.monotonic()
        interval = 1.0 / args.rate
        seq = 0
        while not _stop.is_set():
            now = time.monotonic()
            if now - start >= args.duration:
                break
            due = start + seq * interval
            if now < due:
                _stop.wait(min(due - now, 0.05))
                continue
            with lock:
                busy = pending >= args.max_pending
            if busy:
                _stop.wait(0.01)
                continue
            send_one(seq)
            seq += 1
        try:
            producer.flush(timeout=args.drain_s)
        except Exception as e:  # an unknown outcome stays recorded as an invoke
            print(f"producer {args.name}: flush: {e}", file=sys.stderr)
        producer.close(timeout=5.0)
    print(f"producer {args.name}: sent {seq}", file=sys.stderr)
    return 0


def _generation(consumer: Consumer) -> int:
    """The member's generation as the client knows it (-1 outside a generation)."""

    def read() -> int:
        member = getattr(consumer._core, "_member", None)
        return int(getattr(member, "generation", -1)) if member is not None else -1

    return consumer._call(read)


def run_member(args: argparse.Namespace) -> int:
    with HistoryWriter(args.history) as history:
        holder: list[Consumer] = []

        class Listener:
            def on_partitions_revoked(self, partitions: Any) -> None:
                pass

            def on_partitions_assigned(self, partitions: Any) -> None:
                # called in the consumer's loop thread: read the generation there directly
                core = holder[0]._core if holder else None
                member = getattr(core, "_member", None)
                generation = int(getattr(member, "generation", -1)) if member else -1
                history.append(
                    Assign(
                        args.name,
                        generation,
                        sorted(p for _, p in partitions),
                        time.monotonic(),
                    )
                )

        consumer = Consumer(
            args.bootstrap.split(","),
            group_id=args.group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=args.session_ms,
            heartbeat_interval_ms=max(100, args.session_ms // 4),
            client_id=args.name,
        )
        holder.append(consumer)
        deadline = time.monotonic() + args.duration
        try:
            consumer.subscribe([args.topic], listener=Listener())
            while not _stop.is_set() and time.monotonic() < deadline:
                before = _generation(consumer)
                try:
                    records = consumer.poll(timeout_ms=300, max_records=200)
                except RaftlogError as e:
                    print(f"member {args.name}: poll: {e}", file=sys.stderr)
                    _stop.wait(0.2)
                    continue
                after = _generation(consumer)
                generation = after if after != before else before
                t = time.monotonic()
                by_partition: dict[int, list[tuple[int, str]]] = defaultdict(list)
                for r in records:
                    value = r.value.decode() if isinstance(r.value, bytes) else str(r.value)
                    by_partition[r.partition].append((int(r.offset), value))
                for partition, got in sorted(by_partition.items()):
                    history.append(Poll(args.name, generation, partition, got, t))
                if not by_partition:
                    continue
                offsets = {(args.topic, p): got[-1][0] + 1 for p, got in by_partition.items()}
                t_commit = time.monotonic()
                # the intent first: a member killed while its commit is in flight leaves an
                # unanswered commit in the history, which the broker may well have taken
                for (_, p), offset in sorted(offsets.items()):
                    history.append(Commit(args.name, generation, p, offset, None, t_commit))
                accepted: bool | None
                try:
                    consumer.commit(offsets)
                    accepted = True
                except CommitFailedError:
                    accepted = False
                except RaftlogError as e:
                    print(f"member {args.name}: commit: {e}", file=sys.stderr)
                    accepted = None
                if accepted is not None:
                    for (_, p), offset in sorted(offsets.items()):
                        history.append(Commit(args.name, generation, p, offset, accepted, t_commit))
        finally:
            try:
                consumer.close(timeout_ms=5_000)
            except Exception as e:
                print(f"member {args.name}: close: {e}", file=sys.stderr)
    return 0


def run_reader(args: argparse.Namespace) -> int:
    with HistoryWriter(args.history) as history:
        consumer = Consumer(args.bootstrap.split(","), client_id=args.name)
        deadline = time.monotonic() + args.duration
        try:
            parts = [(args.topic, p) for p in range(args.partitions)]
            consumer.assign(parts)
            for tp in parts:
                consumer.seek(tp, 0)
                history.append(Seek(args.name, tp[1], 0, time.monotonic()))
            while not _stop.is_set() and time.monotonic() < deadline:
                try:
                    records = consumer.poll(timeout_ms=300, max_records=500)
                except RaftlogError as e:
                    print(f"reader {args.name}: poll: {e}", file=sys.stderr)
                    _stop.wait(0.2)
                    continue
                t = time.monotonic()
                by_partition: dict[int, list[tuple[int, str]]] = defaultdict(list)
                for r in records:
                    value = r.value.decode() if isinstance(r.value, bytes) else str(r.value)
                    by_partition[r.partition].append((int(r.offset), value))
                for partition, got in sorted(by_partition.items()):
                    history.append(Poll(args.name, NO_GENERATION, partition, got, t))
        finally:
            consumer.close(timeout_ms=5_000)
    return 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("role", choices=("producer", "member", "reader"))
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--history", required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--max-pending", type=int, default=2000)
    ap.add_argument("--drain-s", type=float, default=60.0)
    ap.add_argument("--request-timeout-ms", type=int, default=5_000)
    ap.add_argument("--delivery-timeout-ms", type=int, default=60_000)
    ap.add_argument("--group", default="scenario")
    ap.add_argument("--session-ms", type=int, default=6_000)
    args = ap.parse_args(argv)
    if not 0 < args.rate <= 100_000 or not 0 < args.duration <= 3600:
        ap.error("--rate must be in (0, 100000] and --duration in (0, 3600]")
    if not 1 <= args.partitions <= 10_000:
        ap.error("--partitions must be in 1..10000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _on_term)
    runner = {"producer": run_producer, "member": run_member, "reader": run_reader}[args.role]
    return runner(args)


if __name__ == "__main__":
    sys.exit(main())
