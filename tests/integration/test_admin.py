"""The Admin client against a real one-node broker process (the ``node`` fixture of
``test_broker_single``): adding partitions and using a new one, refusing to lower the count,
config changes and their defaults, and the cluster's description."""

from __future__ import annotations

import time

import pytest

from raftlog.client import (
    Admin,
    BrokerError,
    ClusterDescription,
    ConfigValue,
    Consumer,
    ConsumerRecord,
    Producer,
)
from raftlog.errors import ErrorCode
from raftlog.testing.procs import wait_until
from tests.integration import test_broker_single as single

pytestmark = pytest.mark.integration

node = single.node  # the fixture: a broker process on free ports, stopped by PID
Node = single.Node


def _bootstrap(n: Node) -> str:
    return f"127.0.0.1:{n.port}"


def _poll_until(consumer: Consumer, count: int, timeout_s: float) -> list[ConsumerRecord]:
    got: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got.extend(consumer.poll(timeout_ms=500))
    return got


def test_add_partitions_then_produce_and_consume_on_a_new_one(node: Node) -> None:
    with Admin(_bootstrap(node), request_timeout_ms=20_000) as admin:
        admin.create_topic("t", partitions=2)
        admin.create_partitions("t", 5, validate_only=True)
        assert len(admin.describe_topic("t").partitions) == 2  # validated, not added
        admin.create_partitions("t", 5)
        parts = admin.describe_topic("t").partitions
        assert [p.partition for p in parts] == [0, 1, 2, 3, 4]
        assert all(p.leader == 1 and p.replicas == (1,) for p in parts)
    with Producer(_bootstrap(node), acks="all") as producer:
        sent = [producer.send("t", b"v%d" % i, key=b"k", partition=4) for i in range(3)]
        offsets = [f.result(20).offset for f in sent]
        assert {f.result(0).partition for f in sent} == {4}
    # a new partition's log starts with its leader's no-op entry: offsets are consecutive
    assert offsets == list(range(offsets[0], offsets[0] + 3))
    with Consumer(_bootstrap(node), auto_offset_reset="earliest") as consumer:
        consumer.assign([("t", 4)])
        got = _poll_until(consumer, 3, timeout_s=20)
    assert [(r.topic, r.partition, r.offset, r.value) for r in got] == [
        ("t", 4, offsets[i], b"v%d" % i) for i in range(3)
    ]


def test_lowering_or_keeping_the_partition_count_is_refused(node: Node) -> None:
    with Admin(_bootstrap(node), request_timeout_ms=20_000) as admin:
        admin.create_topic("t", partitions=3)
        for count in (2, 3):
            with pytest.raises(BrokerError) as info:
                admin.create_partitions("t", count)
            assert info.value.code == ErrorCode.INVALID_PARTITIONS
            message = str(info.value)
            assert "add partitions to topic 't'" in message
            assert "has 3 partitions; the new count must be larger" in message
            assert "partitions cannot be removed" in message
            with pytest.raises(BrokerError) as info:
                admin.create_partitions("t", count, validate_only=True)
            assert info.value.code == ErrorCode.INVALID_PARTITIONS
        parts = admin.describe_topic("t").partitions
        assert [p.partition for p in parts] == [0, 1, 2]  # nothing changed
        with pytest.raises(BrokerError) as info:
            admin.create_partitions("missing", 4)
        assert info.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_alter_and_describe_configs(node: Node) -> None:
    with Admin(_bootstrap(node), request_timeout_ms=20_000) as admin:
        admin.create_topic("t", configs={"segment.ms": "600000"})
        before = admin.describe_configs("t")
        assert before["segment.ms"] == ConfigValue("600000", False)
        assert before["retention.ms"].is_default
        default = before["retention.ms"].value

        admin.alter_configs("t", set={"retention.ms": "3600000"})
        after = admin.describe_configs("t")
        assert after["retention.ms"] == ConfigValue("3600000", False)
        assert after["segment.ms"] == ConfigValue("600000", False)  # incremental

        admin.alter_configs("t", delete=["retention.ms"])
        assert admin.describe_configs("t")["retention.ms"] == ConfigValue(default, True)

        for bad, why in (
            ({"retention.ms": "forever"}, "retention.ms must be a whole number, got 'forever'"),
            ({"no.such.config": "1"}, "unknown topic config 'no.such.config'"),
        ):
            with pytest.raises(BrokerError) as info:
                admin.alter_configs("t", set=bad)
            assert info.value.code == ErrorCode.INVALID_CONFIG
            assert f"alter configs of topic 't': INVALID_CONFIG: {why}" in str(info.value)
        # refused changes changed nothing
        assert admin.describe_configs("t") == {**after, "retention.ms": ConfigValue(default, True)}

        with pytest.raises(BrokerError) as info:
            admin.describe_configs("missing")
        assert info.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_describe_cluster_lists_the_broker_and_the_metadata_leader(node: Node) -> None:
    with Admin(_bootstrap(node), request_timeout_ms=20_000) as admin:

        def registered() -> ClusterDescription | None:
            described = admin.describe_cluster()
            return described if described.brokers else None

        # the broker serves clients a moment before its registration is in the metadata
        described = wait_until(registered, timeout_s=30, what="the broker to be registered")
    assert described is not None
    assert [(b.id, b.host, b.port) for b in described.brokers] == [(1, "127.0.0.1", node.port)]
    assert described.metadata_leader == 1
    assert described.cluster_id
