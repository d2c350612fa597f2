"""The blocking consumer against the fake cluster: positions, long-poll, control batches,
out-of-range resets and leader redirects."""

from __future__ import annotations

import threading
import time

import pytest

from raftlog.client import Consumer, ConsumerRecord, Producer
from raftlog.errors import OffsetOutOfRangeError
from raftlog.storage.records import Record
from raftlog.testing.fake_broker import running_fake_cluster
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
