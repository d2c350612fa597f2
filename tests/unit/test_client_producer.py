"""The blocking producer against the fake cluster: batching, partitioning, retries, timeouts
and backpressure."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from raftlog.client import (
    BrokerError,
    BufferFullError,
    ClientClosedError,
    DeliveryTimeoutError,
    Producer,
    RecordMetadata,
    RequestTimedOutError,
    UnknownOutcomeError,
)
from raftlog.client.partitioner import partition_for_key
from raftlog.errors import ErrorCode
from raftlog.testing.fake_broker import FakeCluster, running_fake_cluster
from raftlog.wire import ApiKey

WAIT_S = 10


def produce_requests(fake: FakeCluster) -> list[int]:
    """The broker ids that received each PRODUCE, in order."""
    return [b for b, api in fake.requests if api == ApiKey.PRODUCE]


def test_records_are_written_where_the_futures_say() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        with Producer(fake.bootstrap, linger_ms=1) as producer:
            futures = [producer.send("t", f"v{i}".encode(), timestamp=1000 + i) for i in range(300)]
            metas = [f.result(WAIT_S) for f in futures]
        assert [m.offset for m in metas] == list(range(300))
        assert metas[5] == RecordMetadata("t", 0, 5, 1005)
        assert fake.call(fake.values, "t", 0) == [(i, f"v{i}".encode()) for i in range(300)]
        # batching: far fewer requests than records
        assert len(produce_requests(fake)) < 100


def test_keys_go_to_kafkas_partition_and_keep_their_order() -> None:
    with running_fake_cluster(brokers=2) as fake:
        fake.call(fake.create_topic, "t", 4)
        with Producer(fake.bootstrap, linger_ms=2, batch_bytes=512) as producer:
            sent: dict[bytes, list[bytes]] = defaultdict(list)
            futures = []
            for i in range(400):
                key = f"key-{i % 7}".encode()
                value = f"{i}".encode()
                sent[key].append(value)
                futures.append((key, producer.send("t", value, key=key)))
            for key, future in futures:
                assert future.result(WAIT_S).partition == partition_for_key(key, 4)
        for key, values in sent.items():
            partition = partition_for_key(key, 4)
            written = [v for _, v in fake.call(fake.values, "t", partition)]
            assert [v for v in written if v in set(values)] == values, key


def test_explicit_partition_wins_and_must_exist() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 3)
        with Producer(fake.bootstrap) as producer:
            assert (
                producer.send("t", b"x", key=b"foobar", partition=2).result(WAIT_S).partition == 2
            )
            with pytest.raises(BrokerError) as info:
                producer.send("t", b"x", partition=3)
            assert info.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            with pytest.raises(BrokerError) as info:
                producer.send("missing", b"x")
            assert info.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            assert "create it first" in str(info.value)


def test_records_without_key_stick_to_a_partition_until_its_batch_is_sent() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 4)
        with Producer(fake.bootstrap, linger_ms=10_000) as producer:
            first = [producer.send("t", b"a") for _ in range(20)]
            producer.flush(WAIT_S)
            second = [producer.send("t", b"b") for _ in range(20)]
            producer.flush(WAIT_S)
        p1 = {f.result(WAIT_S).partition for f in first}
        p2 = {f.result(WAIT_S).partition for f in second}
        assert len(p1) == 1 and len(p2) == 1
        assert p1 != p2, "the sticky partition did not move after its batch was sent"


def test_not_leader_with_hint_is_retried_on_the_leader() -> None:
    with running_fake_cluster(brokers=2) as fake:
        fake.call(fake.create_topic, "t", 1)  # leader: broker 1
        fake.metadata_leaders[("t", 0)] = 2  # stale metadata points at broker 2
        with Producer(fake.bootstrap, retry_backoff_ms=10) as producer:
            meta = producer.send("t", b"x").result(WAIT_S)
        assert meta.offset == 0
        assert produce_requests(fake) == [2, 1]
        assert fake.call(fake.values, "t", 0) == [(0, b"x")]


def test_leader_change_without_hint_refreshes_metadata() -> None:
    with running_fake_cluster(brokers=2) as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.hint_leader = False
        with Producer(fake.bootstrap, retry_backoff_ms=10, linger_ms=0) as producer:
            assert producer.send("t", b"a").result(WAIT_S).offset == 0
            metadata_before = sum(1 for _, api in fake.requests if api == ApiKey.METADATA)
            fake.call(fake.set_leader, "t", 0, 2)
            assert producer.send("t", b"b").result(WAIT_S).offset == 1
            metadata_after = sum(1 for _, api in fake.requests if api == ApiKey.METADATA)
        assert produce_requests(fake) == [1, 1, 2]
        assert metadata_after > metadata_before
        assert fake.call(fake.values, "t", 0) == [(0, b"a"), (1, b"b")]


def test_without_idempotence_a_timeout_is_an_unknown_outcome_and_is_not_resent() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.swallow[ApiKey.PRODUCE] = 1  # appended, never answered
        with Producer(
            fake.bootstrap, request_timeout_ms=200, delivery_timeout_ms=5000, idempotent=False
        ) as p:
            future = p.send("t", b"x")
            with pytest.raises(UnknownOutcomeError) as info:
                future.result(WAIT_S)
            assert p.send("t", b"y").result(WAIT_S).offset == 1
        assert info.value.code == ErrorCode.UNKNOWN_OUTCOME
        assert "may or may not have been written" in str(info.value)
        assert fake.call(fake.values, "t", 0) == [(0, b"x"), (1, b"y")]  # x once: not resent


def test_without_idempotence_a_lost_connection_is_an_unknown_outcome() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.drop[ApiKey.PRODUCE] = 1
        with Producer(fake.bootstrap, request_timeout_ms=2000, idempotent=False) as producer:
            with pytest.raises(UnknownOutcomeError):
                producer.send("t", b"x").result(WAIT_S)
            assert producer.send("t", b"y").result(WAIT_S).offset == 0  # reconnects


def test_without_idempotence_a_broker_timeout_code_is_an_unknown_outcome() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.produce_errors.append(ErrorCode.REQUEST_TIMED_OUT)
        with (
            Producer(fake.bootstrap, idempotent=False) as producer,
            pytest.raises(UnknownOutcomeError),
        ):
            producer.send("t", b"x").result(WAIT_S)


def test_idempotent_resend_after_a_timeout_is_written_once() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.swallow[ApiKey.PRODUCE] = 2  # x is appended, then its resend is a duplicate
        with Producer(fake.bootstrap, request_timeout_ms=200, retry_backoff_ms=10) as p:
            assert p.send("t", b"x").result(WAIT_S).offset == 0
            assert p.send("t", b"y").result(WAIT_S).offset == 1
        assert fake.call(fake.values, "t", 0) == [(0, b"x"), (1, b"y")]
        assert len(produce_requests(fake)) == 4  # x three times, y once


def test_idempotent_resend_after_a_lost_connection_or_timeout_code() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.drop[ApiKey.PRODUCE] = 1
        fake.produce_errors.append(ErrorCode.REQUEST_TIMED_OUT)
        with Producer(fake.bootstrap, request_timeout_ms=2000, retry_backoff_ms=10) as p:
            assert p.send("t", b"x").result(WAIT_S).offset == 0
        assert fake.call(fake.values, "t", 0) == [(0, b"x")]


def test_idempotent_never_answered_fails_as_unknown_outcome_at_the_delivery_timeout() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.swallow[ApiKey.PRODUCE] = 1000
        with Producer(
            fake.bootstrap, request_timeout_ms=100, delivery_timeout_ms=600, retry_backoff_ms=10
        ) as p:
            with pytest.raises(UnknownOutcomeError) as info:
                p.send("t", b"x").result(WAIT_S)
            assert "may or may not have been written" in str(info.value)
            fake.swallow[ApiKey.PRODUCE] = 0
            # a new producer id: the next record is not stuck behind the unknown one
            assert p.send("t", b"y").result(WAIT_S).offset == 1
        assert fake.call(fake.values, "t", 0) == [(0, b"x"), (1, b"y")]


def test_idempotence_needs_acks_all() -> None:
    with pytest.raises(ValueError, match="acks='all'"):
        Producer("127.0.0.1:1", acks=1, idempotent=True)


def test_no_leader_until_the_delivery_timeout_fails_as_not_written() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.produce_errors.extend([ErrorCode.LEADER_NOT_AVAILABLE] * 1000)
        with Producer(
            fake.bootstrap, request_timeout_ms=200, delivery_timeout_ms=600, retry_backoff_ms=20
        ) as producer:
            start = time.monotonic()
            with pytest.raises(DeliveryTimeoutError) as info:
                producer.send("t", b"x").result(WAIT_S)
            elapsed = time.monotonic() - start
        assert 0.4 < elapsed < 3
        assert "were not written" in str(info.value)
        assert "LEADER_NOT_AVAILABLE" in str(info.value)
        assert len(produce_requests(fake)) >= 3, "it was not retried"
        assert fake.call(fake.values, "t", 0) == []


def test_final_errors_fail_at_once() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.produce_errors.append(ErrorCode.RECORD_TOO_LARGE)
        with Producer(fake.bootstrap) as producer, pytest.raises(BrokerError) as info:
            producer.send("t", b"x").result(WAIT_S)
        assert info.value.code == ErrorCode.RECORD_TOO_LARGE
        assert len(produce_requests(fake)) == 1


def test_a_full_buffer_blocks_then_raises() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.delay_ms[ApiKey.PRODUCE] = 3000
        with Producer(
            fake.bootstrap,
            buffer_bytes=4096,
            batch_bytes=1024,
            max_block_ms=300,
            linger_ms=0,
        ) as producer:
            sent = 0
            start = time.monotonic()
            with pytest.raises(BufferFullError) as info:
                for _ in range(100):
                    producer.send("t", b"x" * 200)
                    sent += 1
            blocked = time.monotonic() - start
            assert 0.25 < blocked < 2.5
            assert 10 <= sent < 25  # about 4096 bytes of records, no more
            assert "stayed full for 300 ms" in str(info.value)
            fake.delay_ms[ApiKey.PRODUCE] = 0
            producer.flush(WAIT_S)
        assert len(fake.call(fake.values, "t", 0)) == sent


def test_a_full_buffer_unblocks_when_records_are_acknowledged() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.delay_ms[ApiKey.PRODUCE] = 200
        with Producer(
            fake.bootstrap, buffer_bytes=2048, batch_bytes=1024, max_block_ms=5000, linger_ms=0
        ) as producer:
            futures = [producer.send("t", b"x" * 200) for _ in range(40)]
            assert [f.result(WAIT_S).offset for f in futures] == list(range(40))


def test_acks_zero_gets_no_offsets_and_no_answer() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        with Producer(fake.bootstrap, acks=0) as producer:
            metas = [producer.send("t", b"x").result(WAIT_S) for _ in range(3)]
        assert all(m.offset == -1 for m in metas)
        assert len(fake.call(fake.values, "t", 0)) == 3


def test_close_sends_what_is_queued() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        producer = Producer(fake.bootstrap, linger_ms=60_000)
        futures = [producer.send("t", b"x", headers={"h": b"1"}) for _ in range(5)]
        producer.close(timeout=WAIT_S)
        assert [f.result(0).offset for f in futures] == list(range(5))
        with pytest.raises(Exception, match="closed"):
            producer.send("t", b"late")


def test_result_timeout_is_a_raftlog_error_and_a_timeout_error() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.delay_ms[ApiKey.PRODUCE] = 500
        with Producer(fake.bootstrap) as producer:
            future = producer.send("t", b"x")
            with pytest.raises(TimeoutError) as info:
                future.result(0.05)
            assert info.value.code == ErrorCode.REQUEST_TIMED_OUT  # type: ignore[attr-defined]
            assert future.result(WAIT_S).offset == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="acks"):
        Producer("127.0.0.1:9092", acks="some")
    with pytest.raises(ValueError, match="delivery_timeout_ms"):
        Producer("127.0.0.1:9092", request_timeout_ms=1000, delivery_timeout_ms=500)
    with pytest.raises(ValueError, match="HOST:PORT"):
        Producer("localhost")


def test_idempotent_pipelining_keeps_order_and_writes_once_through_errors() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.delay_ms[ApiKey.PRODUCE] = 5
        errors = [ErrorCode.NOT_LEADER, ErrorCode.REQUEST_TIMED_OUT, ErrorCode.UNKNOWN_OUTCOME]
        with Producer(
            fake.bootstrap, batch_bytes=300, linger_ms=0, retry_backoff_ms=5, max_in_flight=5
        ) as p:
            futures = []
            for i in range(1500):
                if i % 150 == 75:
                    fake.produce_errors.append(errors[(i // 150) % 3])
                futures.append(p.send("t", f"{i}".encode()))
            offsets = [f.result(WAIT_S).offset for f in futures]
        assert offsets == list(range(1500))
        assert fake.call(fake.values, "t", 0) == [(i, f"{i}".encode()) for i in range(1500)]
        assert fake.max_pipelined > 1, "batches of one partition were never pipelined"


def test_flush_timeout_counts_the_pending_records_and_close_fails_them() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 2)
        fake.delay_ms[ApiKey.PRODUCE] = 2_000
        producer = Producer(fake.bootstrap, linger_ms=1)
        futures = [producer.send("t", b"x", partition=i % 2) for i in range(6)]
        called: list[tuple[object, bool]] = []
        futures[0].add_done_callback(lambda f: called.append((f, f.done())))
        with pytest.raises(RequestTimedOutError, match="flush: 6 record"):
            producer.flush(0.1)
        assert called == []
        producer.close(timeout=0.1)
        for future in futures:
            with pytest.raises(ClientClosedError):
                future.result(0)
            assert isinstance(future.exception(0), ClientClosedError)
        assert called == [(futures[0], True)]
