"""The Consumer API against one real broker process (the ``node`` fixture of
test_broker_single, as ``broker``: a free port, a start deadline, stopped by PID also on failure):
offsets by time (the broker answers "none at or after" with the high watermark, the client
says None), subscribe without a group over three partitions (and one added later),
pause/resume, lag."""

from __future__ import annotations

import time

import pytest

from raftlog.client import (
    Admin,
    Consumer,
    ConsumerRecord,
    OffsetAndTimestamp,
    Producer,
    TopicPartition,
)
from tests.integration import test_broker_single
from tests.integration.test_broker_single import Node

pytestmark = pytest.mark.integration

broker = test_broker_single.node  # its one-broker fixture, here named ``broker``

BASE_MS = 1_700_000_000_000
DEADLINE_S = 30.0


def bootstrap(n: Node) -> str:
    return f"127.0.0.1:{n.port}"


def create(n: Node, topic: str, partitions: int) -> None:
    with Admin(bootstrap(n)) as admin:
        admin.create_topic(topic, partitions=partitions, replication_factor=1)


def poll_until(consumer: Consumer, done: object, what: str) -> list[ConsumerRecord]:
    """Poll until ``done(records so far)`` is true, with a deadline."""
    assert callable(done)
    out: list[ConsumerRecord] = []
    end = time.monotonic() + DEADLINE_S
    while not done(out):
        assert time.monotonic() < end, f"timed out waiting for {what}; got {len(out)} records"
        out.extend(consumer.poll(timeout_ms=500, max_records=20))
    return out


def test_offsets_for_times_against_the_broker(broker: Node) -> None:
    create(broker, "timed", 1)
    tp = TopicPartition("timed", 0)
    times = [BASE_MS + 1000 * i for i in range(6)] + [BASE_MS + 10_000 + 10 * i for i in range(4)]
    with Producer(bootstrap(broker)) as producer:
        # six batches 1 s apart, then four records 10 ms apart (batched or not)
        offsets = [
            producer.send("timed", b"v%d" % i, partition=0, timestamp=ts).result(20).offset
            for i, ts in enumerate(times[:6])
        ]
        futures = [
            producer.send("timed", b"w%d" % i, partition=0, timestamp=ts)
            for i, ts in enumerate(times[6:])
        ]
        producer.flush(20)
        offsets += [f.result(0).offset for f in futures]
    # the log may start with a control batch (the leader's first entry): offsets from acks
    assert offsets == list(range(offsets[0], offsets[0] + 10))
    with Consumer(bootstrap(broker)) as consumer:

        def at(ts: int) -> OffsetAndTimestamp | None:
            return consumer.offsets_for_times({tp: ts})[tp]

        assert at(0) == (offsets[0], times[0])
        assert at(times[0]) == (offsets[0], times[0])
        assert at(times[2] + 500) == (offsets[3], times[3])
        assert at(times[7] + 5) == (offsets[8], times[8])
        assert at(times[9]) == (offsets[9], times[9])
        assert at(times[9] + 1) is None  # past the last record
        both = consumer.offsets_for_times({tp: times[4], ("timed", 0): times[4]})
        assert both == {tp: (offsets[4], times[4])}
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: offsets[-1] + 1}

        found = at(times[4])
        assert found is not None
        consumer.assign([tp])
        consumer.seek(tp, found.offset)
        got = poll_until(consumer, lambda rs: len(rs) >= 6, "records from the 5th")
        assert [r.value for r in got] == [b"v4", b"v5", b"w0", b"w1", b"w2", b"w3"]
        assert [r.timestamp for r in got] == times[4:]
        assert [r.offset for r in got] == offsets[4:]


def test_subscribe_reads_every_record_of_three_partitions_exactly_once(broker: Node) -> None:
    create(broker, "three", 3)
    with Producer(bootstrap(broker)) as producer:
        futures = [producer.send("three", b"%d" % n, partition=n % 3) for n in range(600)]
        metas = [f.result(30) for f in futures]
    with Consumer(
        bootstrap(broker), auto_offset_reset="earliest", metadata_max_age_ms=200
    ) as consumer:
        consumer.subscribe(["three"])
        assert consumer.subscription() == {"three"}
        assert sorted(consumer.assignment()) == [("three", p) for p in range(3)]
        seen = poll_until(consumer, lambda rs: len(rs) >= 600, "600 records")
        assert consumer.poll(timeout_ms=300) == []  # nothing more, nothing twice

        # a partition added later is picked up by the subscription
        with Admin(bootstrap(broker)) as admin:
            admin.create_partitions("three", 4)
        with Producer(bootstrap(broker)) as producer:
            added = producer.send("three", b"added", partition=3).result(20)
        late = poll_until(consumer, lambda rs: len(rs) >= 1, "the added partition's record")
        assert [(r.partition, r.offset, r.value) for r in late] == [(3, added.offset, b"added")]
        assert ("three", 3) in consumer.assignment()
    assert len(seen) == 600
    assert sorted(int(r.value or b"") for r in seen) == list(range(600))
    assert {(r.partition, r.offset) for r in seen} == {(m.partition, m.offset) for m in metas}
    for p in range(3):
        offsets = [r.offset for r in seen if r.partition == p]
        assert offsets == sorted(offsets) and len(offsets) == 200


def test_pause_resume_and_lag_against_the_broker(broker: Node) -> None:
    create(broker, "lagging", 2)
    p0, p1 = TopicPartition("lagging", 0), TopicPartition("lagging", 1)
    acked: dict[int, list[int]] = {0: [], 1: []}
    with Producer(bootstrap(broker)) as producer:
        for batch in range(10):  # ten flushes of ten records per partition
            futures = [
                producer.send("lagging", b"%d-%d" % (p, 10 * batch + i), partition=p)
                for p in (0, 1)
                for i in range(10)
            ]
            producer.flush(20)
            for f in futures:
                meta = f.result(0)
                acked[meta.partition].append(meta.offset)
    # one batch per partition per fetch: the lag goes down step by step
    with Consumer(
        bootstrap(broker), auto_offset_reset="earliest", max_partition_fetch_bytes=1
    ) as consumer:
        consumer.assign([p0, p1])
        assert consumer.lags() == {p0: None, p1: None}
        end = consumer.end_offsets([p0, p1])
        lags: dict[TopicPartition, list[int]] = {p0: [], p1: []}

        def note_lags() -> None:
            for tp, lag in consumer.lags().items():
                if lag is not None:
                    lags[tp].append(lag)

        got = poll_until(consumer, lambda rs: any(r.partition == 0 for r in rs), "partition 0")
        note_lags()
        consumer.pause(p0)
        assert consumer.paused() == {p0}
        paused_at = consumer.position(p0)
        assert 0 < paused_at < end[p0]
        assert consumer.metrics()[p0]["buffered_records"] == 0
        assert consumer.lag(p0) == end[p0] - paused_at

        def p1_done(rs: list[ConsumerRecord]) -> bool:
            note_lags()
            return sum(r.partition == 1 for r in got + rs) >= 100

        while_paused = poll_until(consumer, p1_done, "all of partition 1")
        assert all(r.partition == 1 for r in while_paused), "a paused partition's records"
        assert consumer.position(p0) == paused_at
        assert consumer.lag(p0) == end[p0] - paused_at

        consumer.resume(p0)
        got += while_paused

        def p0_done(rs: list[ConsumerRecord]) -> bool:
            note_lags()
            return sum(r.partition == 0 for r in got + rs) >= 100

        got += poll_until(consumer, p0_done, "the rest of partition 0")
        assert consumer.lags() == {p0: 0, p1: 0}
    for p, tp in ((0, p0), (1, p1)):
        assert [r.offset for r in got if r.partition == p] == acked[p]
        assert lags[tp] == sorted(lags[tp], reverse=True), f"lag of {tp} went up: {lags[tp]}"
        assert lags[tp][-1] == 0 and len(set(lags[tp])) >= 3, lags[tp]
