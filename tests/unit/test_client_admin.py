"""Admin against the fake cluster, the lazy top-level exports, and errors a person can act on."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

import raftlog
from raftlog.client import Admin, BrokerError, BrokerUnreachableError, Producer
from raftlog.client.errors import RequestTimedOutError
from raftlog.errors import ErrorCode
from raftlog.testing.fake_broker import running_fake_cluster


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
