"""The record accumulator on its own (no sender, no loop): when ``append`` asks for the
sender to be woken, linger, order, and pipelining of full batches only.

These pin the hot-path rules of ``raftlog.client.accumulator``: a wake is a cross-thread call
that costs the producer's CPU, so it must happen once per burst, yet never be missing when
the sender would otherwise look too late.
"""

from __future__ import annotations

import threading
import time

import pytest

from raftlog.client.accumulator import RecordAccumulator
from raftlog.client.errors import BufferFullError
from raftlog.client.partitioner import StickyPartitions
from raftlog.storage.records import Record

VALUE = b"v" * 100


def record(value: bytes = VALUE) -> Record:
    return Record(None, value, (), 1)


def accumulator(
    *, linger_ms: int = 5, batch_bytes: int = 64 * 1024, idempotent: bool = False, **kw: int
) -> RecordAccumulator:
    acc = RecordAccumulator(
        batch_bytes=batch_bytes,
        buffer_bytes=kw.pop("buffer_bytes", 1 << 24),
        linger_ms=linger_ms,
        delivery_timeout_ms=120_000,
        max_in_flight=kw.pop("max_in_flight", 5),
    )
    acc.idempotent = idempotent
    if idempotent:
        acc.producer = (7, 0)
    acc.partition_counts["t"] = 3
    return acc


def test_the_first_record_of_an_idle_accumulator_wakes_the_sender_and_a_burst_once() -> None:
    acc = accumulator()
    wakes = [acc.append("t", p % 3, record(), 0)[1] for p in range(30)]
    assert wakes[0] is True
    assert sum(wakes) == 1, "one wake for the burst: the sender is already on its way"


def test_after_ready_a_new_batch_due_before_the_senders_next_look_wakes_it() -> None:
    acc = accumulator(linger_ms=5)
    assert acc.append("t", 0, record(), 0)[1]
    out, next_s = acc.ready(time.monotonic())
    assert out == [] and next_s is not None  # not due yet: the sender sleeps until next_s
    # a record for another partition: its batch is due after next_s, the sender sees it then
    assert acc.append("t", 1, record(), 0)[1] is False
    # nothing queued at all: the sender sleeps until woken, so a new batch must wake it
    acc2 = accumulator(linger_ms=5)
    assert acc2.ready(time.monotonic()) == ([], None)
    assert acc2.append("t", 0, record(), 0)[1] is True


def test_a_batch_filling_up_wakes_the_sender_even_while_its_timer_runs() -> None:
    acc = accumulator(linger_ms=10_000, batch_bytes=1024)
    acc.append("t", 0, record(), 0)
    acc.ready(time.monotonic())  # the sender now sleeps until the linger timer (10 s)
    # 7 records of ~124 bytes fill a 1024-byte batch: the 8th starts the next one
    wakes = [acc.append("t", 0, record(), 0)[1] for _ in range(7)]
    assert wakes == [False] * 6 + [True], "the append that filled the batch must wake it"
    out, _ = acc.ready(time.monotonic())
    assert len(out) == 1 and len(out[0].records) == 7


def test_linger_is_honoured() -> None:
    acc = accumulator(linger_ms=50)
    t0 = time.monotonic()
    acc.append("t", 0, record(), 0)
    out, next_s = acc.ready(t0)
    assert out == [] and next_s is not None
    assert next_s >= t0 + 0.049
    assert acc.ready(next_s - 0.001)[0] == []
    (batch,) = acc.ready(next_s)[0]
    assert len(batch.records) == 1


def test_a_flush_makes_every_batch_ready_without_waiting_for_linger() -> None:
    acc = accumulator(linger_ms=60_000)
    for p in range(3):
        acc.append("t", p, record(), 0)
    acc.begin_flush()
    out, _ = acc.ready(time.monotonic())
    acc.end_flush()
    assert sorted(b.partition for b in out) == [0, 1, 2]


def test_a_partial_batch_waits_for_the_answers_while_a_full_one_pipelines() -> None:
    acc = accumulator(linger_ms=0, batch_bytes=1024, idempotent=True)
    acc.append("t", 0, record(), 0)
    (first,) = acc.ready(time.monotonic())[0]
    acc.release(first, acked=True)  # the partition's first answer: it may pipeline now
    acc.append("t", 0, record(), 0)
    (second,) = acc.ready(time.monotonic())[0]
    # a partial batch behind one in flight waits (filling), linger or not
    acc.append("t", 0, record(), 0)
    assert acc.ready(time.monotonic() + 1)[0] == []
    for _ in range(7):  # 7 records fill it, the 8th starts the next batch
        acc.append("t", 0, record(), 0)
    (third,) = acc.ready(time.monotonic())[0]  # full now: it goes behind the one in flight
    assert len(third.records) == 7
    assert acc.ready(time.monotonic() + 1)[0] == []  # the 8th waits, partial
    acc.release(second, acked=True)
    acc.release(third, acked=True)
    (fourth,) = acc.ready(time.monotonic() + 1)[0]  # nothing in flight: it goes
    assert [b.base_sequence for b in (first, second, third, fourth)] == [0, 1, 2, 9]


def test_records_of_a_partition_keep_their_order_across_batches() -> None:
    acc = accumulator(linger_ms=0, batch_bytes=600, idempotent=True)
    sent: list[bytes] = []
    for i in range(200):
        acc.append("t", 0, record(f"{i:03d}".encode() * 30), 0)
        if i % 7 == 0:
            for b in acc.ready(time.monotonic())[0]:
                sent.extend(r.value or b"" for r in b.records)
                acc.release(b, acked=True)
    acc.begin_flush()
    while True:
        out = acc.ready(time.monotonic())[0]
        if not out:
            break
        for b in out:
            sent.extend(r.value or b"" for r in b.records)
            acc.release(b, acked=True)
    assert sent == [f"{i:03d}".encode() * 30 for i in range(200)]


def test_append_still_blocks_for_room_and_wakes_when_bytes_are_freed() -> None:
    acc = accumulator(linger_ms=0, batch_bytes=1024, buffer_bytes=1024)
    for _ in range(8):  # 8 x 124 estimated bytes fit in 1024
        acc.append("t", 0, record(), 0)
    with pytest.raises(BufferFullError):
        acc.append("t", 0, record(), 0)
    (batch,) = acc.ready(time.monotonic())[0]
    threading.Timer(0.05, lambda: acc.release(batch, acked=True)).start()
    t0 = time.monotonic()
    acc.append("t", 0, record(), 5_000)  # blocks until the release frees the bytes
    assert 0.03 < time.monotonic() - t0 < 4


def test_sticky_partition_is_read_without_the_lock_and_moves_when_a_batch_leaves() -> None:
    import random

    acc = RecordAccumulator(
        batch_bytes=1 << 16,
        buffer_bytes=1 << 24,
        linger_ms=0,
        delivery_timeout_ms=120_000,
        sticky=StickyPartitions(random.Random(1)),
    )
    acc.partition_counts["t"] = 4
    with acc._lock:  # a held lock must not block the per-record path
        p = acc.sticky_partition("t", 4)
    acc.append("t", p, record(), 0)
    acc.ready(time.monotonic())
    assert acc.sticky_partition("t", 4) != p
