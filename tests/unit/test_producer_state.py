"""Idempotent producers on the broker: the table's verdicts, and a partition's leaders
refusing duplicates across a leader change and a restart of every replica."""

from __future__ import annotations

from typing import Any

import trio

from raftlog.errors import ErrorCode
from raftlog.runtime.flusher import Flusher
from raftlog.runtime.partition import Acks, ProduceError
from raftlog.runtime.producer_state import BATCHES_KEPT, ProducerStates, last_sequence
from raftlog.storage.records import Record, build_batch
from tests.unit.test_partition_driver import IDS, Net, make_driver, read_values, ticker, wait_leader


def test_verdicts_new_duplicate_out_of_order_and_fenced() -> None:
    t = ProducerStates()
    assert t.check(7, 0, 42, 3).error == ErrorCode.NONE  # unknown producer: any start
    t.apply((7, 0, 0, 0, 2, 1))  # seqs 0..2 at offsets 0..2
    t.apply((-1, -1, -1, 3, 3, 1))  # a control batch
    t.apply((7, 0, 3, 4, 5, 1))  # seqs 3..4 at offsets 4..5
    assert t.end == 6
    dup = t.check(7, 0, 0, 3).duplicate
    assert dup is not None and (dup.base_offset, dup.last_offset) == (0, 2)
    assert t.check(7, 0, 3, 2).duplicate is not None
    assert t.check(7, 0, 5, 1).error == ErrorCode.NONE  # the next one
    assert t.check(7, 0, 6, 1).error == ErrorCode.OUT_OF_ORDER_SEQUENCE  # a gap
    assert t.check(7, 0, 1, 1).error == ErrorCode.OUT_OF_ORDER_SEQUENCE  # not a whole batch
    assert t.check(7, 1, 0, 1).error == ErrorCode.NONE  # a new epoch starts at 0
    assert t.check(7, 1, 5, 1).error == ErrorCode.OUT_OF_ORDER_SEQUENCE
    t.apply((7, 1, 0, 6, 6, 2))
    assert t.check(7, 0, 5, 1).error == ErrorCode.INVALID_PRODUCER_EPOCH
    # pending (not yet durable) batches count
    assert t.check(7, 1, 1, 1, [(7, 1, 1, 7, 7, 2)]).duplicate is not None
    assert t.check(7, 1, 2, 1, [(7, 1, 1, 7, 7, 2)]).error == ErrorCode.NONE


def test_only_the_last_batches_are_remembered_and_sequences_wrap() -> None:
    t = ProducerStates()
    seq = 2**31 - 4
    for i in range(BATCHES_KEPT + 2):
        t.apply((9, 0, seq, i * 2, i * 2 + 1, 1))
        seq = (last_sequence(seq, 2) + 1) % 2**31
    assert seq == 2**31 - 4 + 2 * (BATCHES_KEPT + 2) - 2**31
    assert t.check(9, 0, seq, 1).error == ErrorCode.NONE
    # the oldest two batches are forgotten: a resend of them is out of order, not a duplicate
    assert t.check(9, 0, 2**31 - 4, 2).error == ErrorCode.OUT_OF_ORDER_SEQUENCE
    assert t.check(9, 0, (2**31 - 4 + 4) % 2**31, 2).duplicate is not None


def idem(value: bytes, seq: int, producer: int = 77) -> bytes:
    return build_batch(
        [Record(None, value)], now_ms=5, producer_id=producer, producer_epoch=0, base_sequence=seq
    )


async def test_leaders_refuse_duplicates_across_a_leader_change_and_restarts(
    tmp_path: Any,
) -> None:
    root = str(tmp_path)
    group = "idem-0"
    for round_ in range(2):  # round 1 reopens every replica from disk
        net = Net()
        flusher = Flusher()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flusher.run)
            drivers = [make_driver(root, net, flusher, n, group) for n in IDS]
            for d in drivers:
                nursery.start_soon(d.run)
            nursery.start_soon(ticker, drivers)
            leader = await wait_leader(drivers)
            if round_ == 0:
                first = [await leader.propose(idem(b"v%d" % i, i), 1, Acks.ALL) for i in range(5)]
                # a resend of seq 3 answers with the first copy's offset, writes nothing
                again = await leader.propose(idem(b"v3", 3), 1, Acks.ALL)
                assert again.offset == first[3].offset
                with trio.fail_after(5):
                    with_gap = leader.propose(idem(b"v9", 9), 1, Acks.ALL)
                    try:
                        await with_gap
                        raise AssertionError("a gap was accepted")
                    except ProduceError as e:
                        assert e.code == ErrorCode.OUT_OF_ORDER_SEQUENCE
                # a new leader (the old one cut off) knows the producer from its log
                net.cut.add(leader.core.id)
                new = await wait_leader(drivers, exclude={leader.core.id})
                dup = await new.propose(idem(b"v4", 4), 1, Acks.ALL)
                assert dup.offset == first[4].offset
                nxt = await new.propose(idem(b"v5", 5), 1, Acks.ALL)
                assert nxt.offset > first[4].offset
                net.cut.clear()
            else:
                # after a restart of all three: the table is rebuilt from the log
                for seq in (1, 4, 5):  # the last five batches (0 is forgotten)
                    e = await leader.propose(idem(b"v%d" % seq, seq), 1, Acks.ALL)
                    assert e.data == b"", f"seq {seq} was written again"
                e = await leader.propose(idem(b"v6", 6), 1, Acks.ALL)
                assert e.data != b""
                values = read_values(leader)
                assert sorted(v for v in values.values()) == [b"v%d" % i for i in range(7)]
            for d in drivers:
                d.fail_pending("test over")
            nursery.cancel_scope.cancel()
        for d in drivers:
            d.store.log.close()
