"""The consumer against the fake cluster: positions, long-poll, control batches, CRC,
out-of-range resets, leader redirects; pause/resume, offsets by time, lag, subscribe
without a group, the buffer cap, and the trio ``AsyncConsumer`` without a nursery."""

from __future__ import annotations

import threading
import time

import pytest
import trio

from raftlog.client import (
    AsyncConsumer,
    ClientClosedError,
    Consumer,
    ConsumerGroupsUnavailableError,
    ConsumerRecord,
    IllegalStateError,
    OffsetAndTimestamp,
    Producer,
    TopicPartition,
)
from raftlog.client.cluster import ClientConfig, Cluster
from raftlog.errors import CorruptRecordError, OffsetOutOfRangeError, RaftlogError
from raftlog.storage.records import Record
from raftlog.testing.fake_broker import FakeCluster, running_fake_cluster
from raftlog.wire import ApiKey

WAIT_MS = 5000


def poll_until(consumer: Consumer, count: int, deadline_s: float = 5.0) -> list[ConsumerRecord]:
    out: list[ConsumerRecord] = []
    end = time.monotonic() + deadline_s
    while len(out) < count and time.monotonic() < end:
        out.extend(consumer.poll(timeout_ms=200))
    return out


def records(*values: bytes) -> list[Record]:
    return [Record(None, v) for v in values]


def test_produce_then_consume_round_trip() -> None:
    with running_fake_cluster(brokers=2) as fake:
        fake.call(fake.create_topic, "t", 3)
        with Producer(fake.bootstrap) as producer:
            futures = [
                producer.send("t", f"v{i}".encode(), key=f"k{i}".encode(), headers=[("h", b"1")])
                for i in range(500)
            ]
            metas = [f.result(5) for f in futures]
        with Consumer(fake.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([("t", 0), ("t", 1), ("t", 2)])
            got = poll_until(consumer, 500)
        assert len(got) == 500
        by_key = {r.key: r for r in got}
        for i, meta in enumerate(metas):
            r = by_key[f"k{i}".encode()]
            assert (r.topic, r.partition, r.offset) == (meta.topic, meta.partition, meta.offset)
            assert r.value == f"v{i}".encode()
            assert r.headers == (("h", b"1"),)
            assert r.timestamp == meta.timestamp
        for p in range(3):
            offsets = [r.offset for r in got if r.partition == p]
            assert offsets == list(range(len(offsets)))


def test_control_batches_and_records_before_the_position_are_skipped() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.call(fake.append, "t", 0, records(b"a", b"b", b"c"))  # offsets 0-2
        fake.call(fake.append_control, "t", 0)  # offset 3
        fake.call(fake.append, "t", 0, records(b"d", b"e"))  # offsets 4-5
        fake.call(fake.append_control, "t", 0)  # offset 6
        with Consumer(fake.bootstrap) as consumer:
            consumer.assign([("t", 0)])
            consumer.seek("t", 0, 1)  # inside the first batch
            got = poll_until(consumer, 4)
            assert [(r.offset, r.value) for r in got] == [
                (1, b"b"),
                (2, b"c"),
                (4, b"d"),
                (5, b"e"),
            ]
            assert consumer.poll(timeout_ms=100) == []
            assert consumer.position("t", 0) == 7  # past the trailing control batch


def test_latest_starts_at_the_end_and_earliest_at_the_start() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.call(fake.append, "t", 0, records(b"old"))
        with (
            Consumer(fake.bootstrap) as latest,
            Consumer(fake.bootstrap, auto_offset_reset="earliest") as earliest,
        ):
            latest.assign([("t", 0)])
            earliest.assign([("t", 0)])
            assert latest.position("t", 0) == 1
            assert earliest.position("t", 0) == 0
            fake.call(fake.append, "t", 0, records(b"new"))
            assert [r.value for r in poll_until(latest, 1)] == [b"new"]
            assert [r.value for r in poll_until(earliest, 2)] == [b"old", b"new"]


@pytest.mark.parametrize(("reset", "expected"), [("earliest", [b"d", b"e"]), ("latest", [b"f"])])
def test_out_of_range_resets_per_policy(reset: str, expected: list[bytes]) -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.call(fake.append, "t", 0, records(b"a", b"b", b"c"))
        fake.call(fake.append, "t", 0, records(b"d", b"e"))
        fake.call(fake.truncate_before, "t", 0, 3)
        with Consumer(fake.bootstrap, auto_offset_reset=reset) as consumer:
            consumer.assign([("t", 0)])
            consumer.seek("t", 0, 1)  # below the log start now
            first = consumer.poll(timeout_ms=300)
            fake.call(fake.append, "t", 0, records(b"f"))
            got = first + poll_until(consumer, len(expected) - len(first))
        assert [r.value for r in got] == expected


def test_out_of_range_with_no_reset_policy_raises() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.call(fake.append, "t", 0, records(b"a"))
        with Consumer(fake.bootstrap, auto_offset_reset="none") as consumer:
            consumer.assign([("t", 0)])
            consumer.seek("t", 0, 5)
            with pytest.raises(OffsetOutOfRangeError) as info:
                consumer.poll(timeout_ms=1000)
        assert "out of range" in str(info.value) and "seek()" in str(info.value)


def test_poll_long_polls_and_returns_as_soon_as_data_comes() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        with Consumer(fake.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([("t", 0)])
            start = time.monotonic()
            assert consumer.poll(timeout_ms=300) == []
            idle = time.monotonic() - start
            assert 0.25 < idle < 2

            timer = threading.Timer(0.2, lambda: fake.call(fake.append, "t", 0, records(b"x")))
            timer.start()
            try:
                start = time.monotonic()
                got = consumer.poll(timeout_ms=WAIT_MS)
                waited = time.monotonic() - start
            finally:
                timer.join(5)
            assert [r.value for r in got] == [b"x"]
            assert 0.15 < waited < 2
            fetches = [api for _, api in fake.requests if api == ApiKey.FETCH]
            assert len(fetches) <= 4, "poll spun instead of long-polling"


def test_max_records_keeps_the_rest_for_the_next_poll() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.call(fake.append, "t", 0, records(*[b"%d" % i for i in range(10)]))
        with Consumer(fake.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([("t", 0)])
            first = consumer.poll(timeout_ms=WAIT_MS, max_records=4)
            assert [r.offset for r in first] == [0, 1, 2, 3]
            assert consumer.position("t", 0) == 4
            rest = consumer.poll(timeout_ms=WAIT_MS, max_records=100)
            assert [r.offset for r in rest] == list(range(4, 10))
            assert consumer.position("t", 0) == 10


def test_fetch_from_a_stale_leader_is_redirected() -> None:
    with running_fake_cluster(brokers=2) as fake:
        fake.call(fake.create_topic, "t", 1)  # leader 1
        fake.call(fake.append, "t", 0, records(b"a"))
        fake.metadata_leaders[("t", 0)] = 2
        with Consumer(fake.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([("t", 0)])
            got = poll_until(consumer, 1)
        assert [r.value for r in got] == [b"a"]
        fetchers = [b for b, api in fake.requests if api in (ApiKey.FETCH, ApiKey.LIST_OFFSETS)]
        assert 2 in fetchers and fetchers[-1] == 1


def test_iteration_stops_after_consumer_timeout() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 2)
        fake.call(fake.append, "t", 0, records(b"a", b"b"))
        fake.call(fake.append, "t", 1, records(b"c"))
        with Consumer(
            fake.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=300
        ) as consumer:
            consumer.assign([("t", 0), ("t", 1)])
            start = time.monotonic()
            values = sorted(r.value or b"" for r in consumer)
            assert time.monotonic() - start < 5
        assert values == [b"a", b"b", b"c"]


def test_seek_to_beginning_and_end() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.call(fake.append, "t", 0, records(b"a", b"b"))
        with Consumer(fake.bootstrap) as consumer:
            consumer.assign([("t", 0)])
            consumer.seek_to_beginning("t", 0)
            assert consumer.position("t", 0) == 0
            consumer.seek_to_end("t", 0)
            assert consumer.position("t", 0) == 2
            with pytest.raises(ValueError, match="not assigned"):
                consumer.seek("other", 0, 0)


# ---------------------------------------------------------------------- the Consumer API


def fetches(fake: FakeCluster) -> int:
    return sum(1 for _, api in fake.requests if api == ApiKey.FETCH)


def test_pause_keeps_the_position_and_returns_no_paused_records() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 2)
        fake.call(fake.append, "t", 0, records(*[b"a%d" % i for i in range(10)]))
        fake.call(fake.append, "t", 1, records(*[b"b%d" % i for i in range(10)]))
        p0, p1 = TopicPartition("t", 0), TopicPartition("t", 1)
        with Consumer(fake.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([p0, p1])
            first = consumer.poll(timeout_ms=WAIT_MS, max_records=3)
            assert [(r.partition, r.offset) for r in first] == [(0, 0), (0, 1), (0, 2)]
            consumer.pause(p0)
            assert consumer.paused() == {p0}
            assert consumer.position(p0) == 3
            assert consumer.metrics()[p0]["buffered_records"] == 0  # dropped, not skipped
            fake.call(fake.append, "t", 0, records(b"a10"))
            got = poll_until(consumer, 10, deadline_s=1.0)
            assert [(r.partition, r.offset) for r in got] == [(1, i) for i in range(10)]
            assert consumer.poll(timeout_ms=300) == []
            assert consumer.position(p0) == 3

            consumer.resume(p0)
            assert consumer.paused() == set()
            rest = poll_until(consumer, 8)
            assert [(r.partition, r.offset) for r in rest] == [(0, i) for i in range(3, 11)]
            with pytest.raises(ValueError, match="not assigned"):
                consumer.pause(("other", 0))


def test_offsets_for_times_finds_the_first_record_at_or_after_a_time() -> None:
    with running_fake_cluster(brokers=2) as fake:
        fake.call(fake.create_topic, "t", 2)
        stamped = [
            [Record(None, b"a", timestamp_ms=1000)],  # offset 0
            [Record(None, b"b", timestamp_ms=2000), Record(None, b"c", timestamp_ms=2500)],
            [Record(None, b"d", timestamp_ms=3000)],  # offset 3
        ]
        for batch in stamped:
            fake.call(fake.append, "t", 0, batch)
        fake.call(fake.append, "t", 1, [Record(None, b"x", timestamp_ms=5000)])
        p0, p1 = TopicPartition("t", 0), TopicPartition("t", 1)
        with Consumer(fake.bootstrap) as consumer:  # nothing assigned: not needed
            assert consumer.offsets_for_times({p0: 0, p1: 0}) == {
                p0: OffsetAndTimestamp(0, 1000),
                p1: OffsetAndTimestamp(0, 5000),
            }
            found = consumer.offsets_for_times({p0: 1500, ("t", 1): 5000})
            assert found == {p0: (1, 2000), p1: (0, 5000)}
            # inside a batch: the record, not the batch's first one
            assert consumer.offsets_for_times({p0: 2200}) == {p0: (2, 2500)}
            assert consumer.offsets_for_times({p0: 3000, p1: 5001}) == {p0: (3, 3000), p1: None}
            assert consumer.offsets_for_times({p0: 10**13}) == {p0: None}
            assert consumer.beginning_offsets([p0, p1]) == {p0: 0, p1: 0}
            assert consumer.end_offsets([p0, p1]) == {p0: 4, p1: 1}
            with pytest.raises(ValueError, match="ms since the epoch"):
                consumer.offsets_for_times({p0: -1})

            consumer.assign([p0])
            consumer.seek(p0, consumer.offsets_for_times({p0: 2200})[p0].offset)  # type: ignore[union-attr]
            assert [r.value for r in poll_until(consumer, 2)] == [b"c", b"d"]


def test_lag_follows_the_high_watermark_of_fetch_answers() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.call(fake.append, "t", 0, records(*[b"%d" % i for i in range(10)]))
        tp = TopicPartition("t", 0)
        with Consumer(fake.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([tp])
            assert consumer.lag(tp) is None  # no fetch answer yet
            assert consumer.lags() == {tp: None}
            assert len(consumer.poll(timeout_ms=WAIT_MS, max_records=4)) == 4
            assert consumer.lag(tp) == 6
            assert consumer.lag("t", 0) == 6
            metrics = consumer.metrics()[tp]
            assert metrics["high_watermark"] == 10 and metrics["position"] == 4
            assert metrics["log_start_offset"] == 0 and metrics["buffered_records"] == 6
            assert not metrics["paused"]
            assert len(poll_until(consumer, 6)) == 6
            assert consumer.lags() == {tp: 0}
            fake.call(fake.append, "t", 0, records(b"x", b"y"))
            assert len(poll_until(consumer, 2)) == 2
            assert consumer.lag(tp) == 0 and consumer.metrics()[tp]["high_watermark"] == 12


def test_subscribe_without_a_group_reads_every_partition_and_new_ones() -> None:
    with running_fake_cluster(brokers=2) as fake:
        fake.call(fake.create_topic, "t", 3)
        for p in range(3):
            fake.call(fake.append, "t", p, records(b"p%d" % p))
        with Consumer(
            fake.bootstrap, auto_offset_reset="earliest", metadata_max_age_ms=100
        ) as consumer:
            consumer.subscribe(["t"])
            assert consumer.subscription() == {"t"}
            assert consumer.assignment() == [("t", 0), ("t", 1), ("t", 2)]
            got = poll_until(consumer, 3)
            assert sorted(r.value or b"" for r in got) == [b"p0", b"p1", b"p2"]

            fake.call(fake.add_partitions, "t", 4)
            fake.call(fake.append, "t", 3, records(b"p3"))
            assert [r.value for r in poll_until(consumer, 1)] == [b"p3"]
            assert ("t", 3) in consumer.assignment()

            consumer.unsubscribe()
            assert consumer.subscription() == set() and consumer.assignment() == []
            assert consumer.poll(timeout_ms=50) == []


def test_subscribe_to_a_topic_created_later() -> None:
    with running_fake_cluster() as fake:
        with Consumer(fake.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.subscribe("later")  # one name
            assert consumer.assignment() == []
            fake.call(fake.create_topic, "later", 2)
            fake.call(fake.append, "later", 1, records(b"hello"))
            got = poll_until(consumer, 1)
        assert [(r.partition, r.value) for r in got] == [(1, b"hello")]


def test_subscribe_with_a_group_id_to_brokers_without_groups_is_a_clear_error() -> None:
    """The fake broker does not serve the group protocol: subscribe says so at once."""
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        with Consumer(fake.bootstrap, group_id="billing") as consumer:
            with pytest.raises(ConsumerGroupsUnavailableError) as info:
                consumer.subscribe(["t"])
            assert isinstance(info.value, RaftlogError)
            assert "group coordinator" in info.value.message
            assert "group_id=None" in info.value.message
            assert consumer.subscription() == set()
            consumer.assign([("t", 0)])  # still fine with a group id
            assert consumer.assignment() == [("t", 0)]


def test_assign_and_subscribe_are_mutually_exclusive() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 2)
        with Consumer(fake.bootstrap) as consumer:
            consumer.assign([("t", 0)])
            with pytest.raises(IllegalStateError, match="mutually exclusive"):
                consumer.subscribe(["t"])
            consumer.unsubscribe()
            consumer.subscribe(["t"])
            with pytest.raises(IllegalStateError, match="mutually exclusive"):
                consumer.assign([("t", 1)])
            assert consumer.assignment() == [("t", 0), ("t", 1)]
            consumer.assign([])  # Kafka: an empty assignment is an unsubscribe
            assert consumer.subscription() == set()
            consumer.assign([("t", 1)])
            assert consumer.assignment() == [("t", 1)]


def test_no_reset_policy_and_no_position_raises_from_poll() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.call(fake.append, "t", 0, records(b"a", b"b"))
        with Consumer(fake.bootstrap, auto_offset_reset="none") as consumer:
            consumer.assign([("t", 0)])
            with pytest.raises(OffsetOutOfRangeError) as info:
                consumer.poll(timeout_ms=1000)
            assert "no position" in info.value.message and "seek()" in info.value.message
            with pytest.raises(OffsetOutOfRangeError):
                consumer.position(("t", 0))
            consumer.seek(("t", 0), 1)
            assert [r.value for r in poll_until(consumer, 1)] == [b"b"]


def test_positions_by_topic_partition_and_seek_to_all() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 2)
        fake.call(fake.append, "t", 0, records(b"a", b"b"))
        fake.call(fake.append, "t", 1, records(b"c"))
        p0, p1 = TopicPartition("t", 0), TopicPartition("t", 1)
        with Consumer(fake.bootstrap) as consumer:
            consumer.assign([p0, p1])
            assert (consumer.position(p0), consumer.position(p1)) == (2, 1)  # latest
            consumer.seek_to_beginning()  # every assigned partition
            assert (consumer.position(p0), consumer.position(p1)) == (0, 0)
            consumer.seek_to_end(p1)
            assert (consumer.position(p0), consumer.position(p1)) == (0, 1)
            consumer.seek(p0, 1)
            assert consumer.position("t", 0) == 1
            with pytest.raises(TypeError):
                consumer.seek(p0)  # type: ignore[call-overload]
            with pytest.raises(ValueError, match="not assigned"):
                consumer.seek_to_end(("t", 7))


def test_a_corrupt_batch_raises_after_the_records_before_it() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.call(fake.append, "t", 0, records(b"a", b"b"))
        fake.call(fake.append, "t", 0, records(b"c"))  # offset 2: corrupted below

        def corrupt() -> None:
            part = fake.topics["t"][0]
            base, batch = part.batches[1]
            damaged = bytearray(batch)
            damaged[-1] ^= 0xFF
            part.batches[1] = (base, bytes(damaged))

        fake.call(corrupt)
        with Consumer(fake.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([("t", 0)])
            assert [r.value for r in poll_until(consumer, 2)] == [b"a", b"b"]
            with pytest.raises(CorruptRecordError):
                poll_until(consumer, 1)
            with pytest.raises(CorruptRecordError):  # again: the position stays at it
                poll_until(consumer, 1)
            assert consumer.position(("t", 0)) == 2
            consumer.seek(("t", 0), 3)
            assert consumer.poll(timeout_ms=100) == []


def test_no_fetch_while_the_buffer_holds_more_than_buffer_bytes() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 2)
        fake.call(fake.append, "t", 0, records(*[b"%0100d" % i for i in range(50)]))
        with Consumer(fake.bootstrap, auto_offset_reset="earliest", buffer_bytes=1000) as consumer:
            p0 = TopicPartition("t", 0)
            consumer.assign([p0, ("t", 1)])
            assert len(consumer.poll(timeout_ms=WAIT_MS, max_records=10)) == 10
            # counted per batch (its size on the wire) until the batch is wholly drained
            batch_bytes = consumer.metrics()[p0]["buffered_bytes"]
            assert 5000 < batch_bytes < 6000
            assert fetches(fake) == 1
            fake.call(fake.append, "t", 1, records(b"late"))
            for _ in range(3):
                assert len(consumer.poll(timeout_ms=WAIT_MS, max_records=10)) == 10
                assert consumer.metrics()[p0]["buffered_bytes"] == batch_bytes
                time.sleep(0.05)
                assert fetches(fake) == 1, "fetched while the buffer was over buffer_bytes"
            got = poll_until(consumer, 11)
            assert consumer.metrics()[p0]["buffered_bytes"] == 0
        assert sorted(r.partition for r in got) == [0] * 10 + [1]


def test_an_answer_to_a_fetch_sent_before_a_seek_is_dropped() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.call(fake.append, "t", 0, records(b"a", b"b", b"c"))
        with Consumer(fake.bootstrap, fetch_max_wait_ms=2000) as consumer:
            consumer.assign([("t", 0)])
            assert consumer.poll(timeout_ms=100) == []  # a fetch from 3 stays in flight
            consumer.seek(("t", 0), 1)
            fake.call(fake.append, "t", 0, records(b"d"))  # answers that fetch with d
            got = poll_until(consumer, 3)
        assert [(r.offset, r.value) for r in got] == [(1, b"b"), (2, b"c"), (3, b"d")]


async def test_async_consumer_without_a_nursery_fetches_only_inside_poll() -> None:
    async with FakeCluster(brokers=2).serving() as fake, trio.open_nursery() as nursery:
        fake.create_topic("t", 2)
        fake.append("t", 0, records(b"a"))
        fake.append("t", 1, records(b"b"))
        cluster = Cluster(fake.bootstrap, nursery, ClientConfig())
        consumer = AsyncConsumer(cluster, auto_offset_reset="earliest")
        await consumer.subscribe(["t"])
        got: list[ConsumerRecord] = []
        with trio.fail_after(5):
            while len(got) < 2:
                got.extend(await consumer.poll(timeout_ms=200))
        assert sorted(r.value or b"" for r in got) == [b"a", b"b"]
        assert await consumer.poll(timeout_ms=50) == []
        consumer.pause(("t", 0))
        assert consumer.paused() == {("t", 0)}
        assert await consumer.position(("t", 0)) == 1
        found = await consumer.offsets_for_times({("t", 1): 0})
        b_time = next(r.timestamp for r in got if r.partition == 1)
        assert found == {TopicPartition("t", 1): OffsetAndTimestamp(0, b_time)}
        consumer.close()
        with pytest.raises(ClientClosedError):
            await consumer.poll(timeout_ms=0)
        cluster.close()
        nursery.cancel_scope.cancel()
