"""Admin against the fake cluster (topics, partitions, configs, the cluster), the lazy top-level
exports, and errors a person can act on."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import trio

import raftlog
from raftlog.client import (
    Admin,
    AsyncAdmin,
    BrokerDescription,
    BrokerError,
    BrokerUnreachableError,
    ClusterDescription,
    ConfigValue,
    Producer,
)
from raftlog.client.cluster import ClientConfig, Cluster
from raftlog.client.errors import RequestTimedOutError
from raftlog.errors import ErrorCode, RaftlogError
from raftlog.testing.fake_broker import FakeCluster, running_fake_cluster


def test_create_list_describe_delete() -> None:
    with running_fake_cluster(brokers=3) as fake, Admin(fake.bootstrap) as admin:
        admin.create_topic("orders", partitions=3, replication_factor=2, configs={"a": "b"})
        admin.create_topic("audit")
        assert admin.list_topics() == ["audit", "orders"]
        described = admin.describe_topic("orders")
        assert described.name == "orders"
        assert [p.partition for p in described.partitions] == [0, 1, 2]
        assert [p.leader for p in described.partitions] == [1, 2, 3]
        assert described.partitions[0].replicas == (1, 2)
        assert fake.configs["orders"] == {"a": "b"}
        admin.delete_topic("audit")
        assert admin.list_topics() == ["orders"]
        with pytest.raises(BrokerError) as info:
            admin.describe_topic("audit")
        assert info.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_create_errors_carry_the_brokers_code() -> None:
    with running_fake_cluster() as fake, Admin(fake.bootstrap) as admin:
        admin.create_topic("t")
        with pytest.raises(BrokerError) as info:
            admin.create_topic("t")
        assert info.value.code == ErrorCode.TOPIC_ALREADY_EXISTS
        assert "create topic 't'" in str(info.value)
        with pytest.raises(BrokerError) as info:
            admin.create_topic("u", replication_factor=3)
        assert info.value.code == ErrorCode.INVALID_REPLICATION_FACTOR


def test_create_waits_until_every_partition_has_a_leader() -> None:
    with running_fake_cluster() as fake, Admin(fake.bootstrap) as admin:
        fake.new_topic_leaderless_ms = 400
        start = time.monotonic()
        admin.create_topic("t", partitions=2)
        assert time.monotonic() - start >= 0.35
        assert all(p.leader == 1 for p in admin.describe_topic("t").partitions)
        # a producer can write at once
        with Producer(fake.bootstrap) as producer:
            assert producer.send("t", b"x", partition=1).result(5).offset == 0


def test_create_wait_has_a_deadline() -> None:
    with running_fake_cluster() as fake, Admin(fake.bootstrap) as admin:
        fake.new_topic_leaderless_ms = 10_000
        start = time.monotonic()
        with pytest.raises(RequestTimedOutError) as info:
            admin.create_topic("t", timeout_ms=300)
        assert time.monotonic() - start < 3
        assert "not ready within 300 ms" in str(info.value)
        admin.create_topic("u", wait=False)  # returns at once
        assert "u" in fake.topics


def test_unreachable_bootstrap_is_an_actionable_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        Admin(f"127.0.0.1:{port}", connect_timeout_ms=2000) as admin,
        pytest.raises(BrokerUnreachableError) as info,
    ):
        admin.list_topics()
    assert str(info.value).startswith(f"cannot reach broker 127.0.0.1:{port}: connection refused")
    assert "raftlog node start" in str(info.value)


def test_import_raftlog_stays_cheap_and_exports_the_client_lazily() -> None:
    code = (
        "import sys, raftlog\n"
        "assert 'trio' not in sys.modules and 'raftlog.client' not in sys.modules\n"
        "from raftlog import Admin, Consumer, ConsumerRecord, Producer, RecordMetadata\n"
        "assert 'raftlog.client' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert raftlog.Producer is Producer
    assert {"Producer", "Consumer", "Admin"} <= set(dir(raftlog))
    with pytest.raises(AttributeError):
        raftlog.NoSuchThing  # noqa: B018


# ------------------------------------------------------------------ partitions


def test_create_partitions_grows_the_topic_and_waits_for_leaders() -> None:
    with running_fake_cluster(brokers=3) as fake, Admin(fake.bootstrap) as admin:
        admin.create_topic("t", partitions=2, replication_factor=2)
        fake.new_topic_leaderless_ms = 400
        start = time.monotonic()
        admin.create_partitions("t", 5)
        assert time.monotonic() - start >= 0.35
        described = admin.describe_topic("t")
        assert [p.partition for p in described.partitions] == [0, 1, 2, 3, 4]
        assert all(p.leader is not None and len(p.replicas) == 2 for p in described.partitions)
        with Producer(fake.bootstrap) as producer:
            assert producer.send("t", b"x", partition=4).result(5).offset == 0
        assert fake.values("t", 4) == [(0, b"x")]


def test_create_partitions_refuses_a_count_that_does_not_grow() -> None:
    with running_fake_cluster() as fake, Admin(fake.bootstrap) as admin:
        admin.create_topic("t", partitions=3)
        for count in (3, 1):
            with pytest.raises(BrokerError) as info:
                admin.create_partitions("t", count)
            assert info.value.code == ErrorCode.INVALID_PARTITIONS
            assert "add partitions to topic 't'" in str(info.value)
            assert "has 3 partitions" in str(info.value)
        with pytest.raises(BrokerError) as info:
            admin.create_partitions("nope", 4)
        assert info.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        admin.create_partitions("t", 6, validate_only=True)
        assert len(admin.describe_topic("t").partitions) == 3
        with pytest.raises(ValueError, match="count"):
            admin.create_partitions("t", 0)  # refused before it is sent


def test_create_partitions_with_assignments_and_a_deadline() -> None:
    with running_fake_cluster(brokers=3) as fake, Admin(fake.bootstrap) as admin:
        admin.create_topic("t", partitions=1, replication_factor=2)
        admin.create_partitions("t", 3, assignments=[[3, 1], [2, 3]])
        parts = admin.describe_topic("t").partitions
        assert [(p.leader, p.replicas) for p in parts[1:]] == [(3, (3, 1)), (2, (2, 3))]
        fake.new_topic_leaderless_ms = 10_000
        start = time.monotonic()
        with pytest.raises(RequestTimedOutError) as info:
            admin.create_partitions("t", 4, timeout_ms=300)
        assert time.monotonic() - start < 3
        assert "not ready within 300 ms" in str(info.value)
        admin.create_partitions("t", 5, wait=False)  # returns at once
        assert len(fake.topics["t"]) == 5


# ------------------------------------------------------------------ configs


def test_alter_then_describe_configs() -> None:
    with running_fake_cluster() as fake, Admin(fake.bootstrap) as admin:
        admin.create_topic("t")
        configs = admin.describe_configs("t")
        assert list(configs) == sorted(configs)
        assert configs["retention.ms"].is_default
        default = configs["retention.ms"].value
        admin.alter_configs("t", set={"retention.ms": "60000", "cleanup.policy": "compact"})
        configs = admin.describe_configs("t")
        assert configs["retention.ms"] == ConfigValue("60000", False)
        assert configs["cleanup.policy"] == ConfigValue("compact", False)
        admin.alter_configs("t", delete=["retention.ms"])
        configs = admin.describe_configs("t")
        assert configs["retention.ms"] == ConfigValue(default, True)
        assert not configs["cleanup.policy"].is_default  # untouched: the change is incremental
        admin.alter_configs("t", set={"retention.ms": "1"}, validate_only=True)
        assert admin.describe_configs("t")["retention.ms"].is_default


def test_invalid_configs_are_refused_with_the_brokers_message() -> None:
    with running_fake_cluster() as fake, Admin(fake.bootstrap) as admin:
        admin.create_topic("t")
        with pytest.raises(RaftlogError) as info:
            admin.alter_configs("t", set={"retention.ms": "soon"})
        assert isinstance(info.value, BrokerError)
        assert info.value.code == ErrorCode.INVALID_CONFIG
        assert "retention.ms must be a whole number, got 'soon'" in str(info.value)
        assert "alter configs of topic 't'" in str(info.value)
        with pytest.raises(BrokerError) as info:
            admin.alter_configs("t", delete=["no.such.key"])
        assert info.value.code == ErrorCode.INVALID_CONFIG
        assert admin.describe_configs("t")["retention.ms"].is_default
        with pytest.raises(BrokerError) as info:
            admin.describe_configs("nope")
        assert info.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        with pytest.raises(ValueError, match="both set and deleted"):
            admin.alter_configs("t", set={"fsync": "true"}, delete=["fsync"])
        with pytest.raises(ValueError, match="keys to set or keys to delete"):
            admin.alter_configs("t")


# ------------------------------------------------------------------ cluster


def test_describe_cluster_lists_brokers_leader_and_cluster_id() -> None:
    with running_fake_cluster(brokers=3) as fake, Admin(fake.bootstrap) as admin:
        described = admin.describe_cluster()
        assert described == ClusterDescription(
            brokers=tuple(
                BrokerDescription(b, "127.0.0.1", fake.ports[b], None) for b in (1, 2, 3)
            ),
            metadata_leader=1,
            cluster_id="fake-cluster",
        )


async def test_async_admin_in_a_trio_program() -> None:
    async with FakeCluster(brokers=2).serving() as fake, trio.open_nursery() as nursery:
        cluster = Cluster(fake.bootstrap, nursery, ClientConfig())
        admin = AsyncAdmin(cluster)
        await admin.create_topic("t", 1, 2)
        await admin.create_partitions("t", 4)
        assert [p.partition for p in (await admin.describe_topic("t")).partitions] == [0, 1, 2, 3]
        assert cluster.topics["t"].partitions[3].leader is not None  # the wait fed the cache
        await admin.alter_configs("t", {"segment.ms": "1000"})
        assert (await admin.describe_configs("t"))["segment.ms"] == ConfigValue("1000", False)
        assert [b.id for b in (await admin.describe_cluster()).brokers] == [1, 2]
        await admin.delete_topic("t")
        assert await admin.list_topics() == []
        cluster.close()
