"""The metadata state machine: every op's success and rejections, fencing, idempotence,
malformed input, snapshots and images. Property tests are in
tests/property/test_metadata_placement.py."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import cbor2
import pytest

from raftlog.config import (
    TOPIC_CONFIG_KEYS,
    topic_log_config,
    validate_topic_configs,
    validate_topic_name,
)
from raftlog.errors import ErrorCode, InvalidConfigError, InvalidTopicError
from raftlog.metadata import model as model_module
from raftlog.metadata import topics as topics_module
from raftlog.metadata.model import OPS, MetadataModel
from tests.metadata_helpers import Cluster, cluster, commit, group_fields

E = ErrorCode


# ------------------------------------------------------------------ config helpers


def test_topic_name_rule_is_shared_with_storage() -> None:
    from raftlog.storage.paths import validate_topic

    assert validate_topic_name("a.b-c_D9") == "a.b-c_D9"
    for bad in ["", ".", "..", "a/b", "x" * 250, "é", 5]:
        with pytest.raises(InvalidTopicError):
            validate_topic_name(bad)
        with pytest.raises(InvalidTopicError):
            validate_topic(bad)  # type: ignore[arg-type]


def test_topic_configs_are_validated_with_the_log_ranges() -> None:
    assert validate_topic_configs({"retention.ms": "007", "fsync": "TRUE"}) == {
        "fsync": "true",
        "retention.ms": "7",
    }
    cfg = topic_log_config({"segment.bytes": "1000", "fsync": "false", "cleanup.policy": "compact"})
    assert cfg.segment_bytes == 1000 and cfg.fsync is False
    bad_configs: list[dict[str, Any]] = [
        {"segment.bytes": "10"},  # LogConfig's own lower bound
        {"segment.bytes": str(2**31)},
        {"retention.ms": "-2"},
        {"retention.bytes": "1.5"},
        {"segment.ms": "0"},
        {"max.message.bytes": "0"},
        {"cleanup.policy": "forever"},
        {"fsync": "yes"},
        {"min.insync.replicas": "0"},
        {"retention.ms": "9" * 30},
        {"nope": "1"},
        {"retention.ms": 5},
    ]
    for bad in bad_configs:
        with pytest.raises(InvalidConfigError):
            validate_topic_configs(bad)
    with pytest.raises(InvalidConfigError, match=r"known keys: cleanup\.policy, fsync"):
        validate_topic_configs({"retention.hours": "1"})


# ------------------------------------------------------------------ apply, rids, versions


def test_barrier_needs_no_rid_and_changes_nothing() -> None:
    c = cluster(1)
    assert c.model.apply({"op": "barrier"}) == {"ok": True, "version": 1, "changed": False}
    assert c.apply("barrier", rid="b1")["version"] == 1
    assert c.model.version == 1


def test_a_change_needs_a_rid() -> None:
    c = Cluster()
    msg = c.err(E.INVALID_REQUEST, "register_broker", rid=None, broker_id=0)
    assert "rid" in msg
    for rid in [5, "", "x" * 129, ["a"], "a\nb"]:
        c.err(E.INVALID_REQUEST, "barrier", rid=rid)


def test_malformed_envelopes() -> None:
    m = MetadataModel()
    for command in [None, 3, "op", b"x", [1], {"no": "op"}, {"op": 5}, {"op": "nope"}]:
        result = m.apply(command)
        assert result["ok"] is False and result["code"] == E.INVALID_REQUEST
    assert "known ops: add_partitions" in m.apply({"op": "nope"})["message"]
    assert m.version == 0
    c = Cluster()
    msg = c.err(E.INVALID_REQUEST, "barrier", bogus=1)
    assert "'bogus'" in msg


def test_same_rid_twice_returns_the_first_result_and_bumps_once() -> None:
    c = cluster(3)
    first = c.apply("create_topic", rid="t1", topic="orders", partitions=3, replication_factor=2)
    assert first["ok"] and first["version"] == 4
    again = c.apply("create_topic", rid="t1", topic="orders", partitions=3, replication_factor=2)
    assert again == first
    # even a different command under a known rid gets the stored result (the rid decides)
    assert c.apply("delete_topic", rid="t1", topic="orders") == first
    assert c.model.version == 4
    assert "orders" in c.model.image().topics
    # a fresh rid is a new command
    c.err(
        E.TOPIC_ALREADY_EXISTS, "create_topic", topic="orders", partitions=3, replication_factor=2
    )


def test_a_rejected_rid_is_not_remembered_and_may_succeed_later() -> None:
    c = cluster(1)
    cmd = {"topic": "t", "partitions": 1, "replication_factor": 2}
    assert c.apply("create_topic", rid="r", **cmd)["code"] == E.INVALID_REPLICATION_FACTOR
    c.broker(1)
    result = c.apply("create_topic", rid="r", **cmd)
    assert result["ok"], result
    assert c.apply("create_topic", rid="r", **cmd) == result


def test_no_op_success_does_not_bump_the_version() -> None:
    c = cluster(1)
    res = c.ok("drain_broker", broker_id=0, draining=False)
    assert res["changed"] is False and res["version"] == 1
    assert [r for r, _ in c.model.to_snapshot()["rids"]] == ["rid-0"]


def test_rids_are_evicted_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "RIDS_MAX", 3)
    c = cluster(1)
    for name in "abcd":
        c.apply("create_topic", rid=f"t-{name}", topic=name, partitions=1, replication_factor=1)
    assert [r for r, _ in c.model.to_snapshot()["rids"]] == ["t-b", "t-c", "t-d"]
    # t-a was forgotten: applying it again evaluates it again
    again = c.apply("create_topic", rid="t-a", topic="a", partitions=1, replication_factor=1)
    assert again["code"] == E.TOPIC_ALREADY_EXISTS
    assert c.apply("create_topic", rid="t-d", topic="d", partitions=1, replication_factor=1)["ok"]


def test_an_internal_error_is_a_result_and_undoes_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = cluster(2)
    c.topic("orders", 2, 2)
    c.ok(
        "offset_commit", group_id="g", generation=-1, member_id="", offsets=[commit("orders", 0, 5)]
    )
    image = c.model.image()
    before = c.model.to_snapshot()

    def half_then_boom(ctx: Any, cmd: Any) -> dict[str, Any]:
        ctx.txn.set(ctx.state["brokers"][0], "draining", True)
        ctx.txn.delete(ctx.state["topics"], "orders")
        ctx.txn.set(ctx.state["topics"], "new", {"topic_id": 99})
        ctx.txn.delete(ctx.state["offsets"]["g"], "orders")
        ctx.touch("topics", "orders")
        raise RuntimeError("boom")

    monkeypatch.setitem(
        model_module._OPS,
        "drain_broker",
        model_module._Op(half_then_boom, frozenset({"broker_id"})),
    )
    result = c.apply("drain_broker", broker_id=0)
    assert result["ok"] is False and result["code"] == E.UNKNOWN
    assert "RuntimeError: boom" in result["message"]
    assert c.model.to_snapshot() == before
    assert c.model.image() == image


def test_apply_never_raises_even_if_its_core_does(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: MetadataModel, command: Any) -> Any:
        raise KeyError("core")

    monkeypatch.setattr(MetadataModel, "_apply", broken)
    result = MetadataModel().apply({"op": "barrier"})
    assert result["ok"] is False and result["code"] == E.UNKNOWN and "core" in result["message"]


# ------------------------------------------------------------------ brokers


def test_register_and_re_register_a_broker() -> None:
    c = Cluster()
    res = c.ok(
        "register_broker",
        broker_id=7,
        client_address="kafka-7.example.com:9092",
        internal_address="[fd00::7]:9093",
        rack="eu-1a",
        now_ms=100,
    )
    assert res == {"ok": True, "version": 1, "changed": True, "broker_id": 7, "new": True}
    b = c.model.image().brokers[7]
    assert (b.client_address, b.internal_address, b.rack, b.alive, b.draining) == (
        "kafka-7.example.com:9092",
        "[fd00::7]:9093",
        "eu-1a",
        True,
        False,
    )
    c.ok("drain_broker", broker_id=7)
    c.ok("expire_brokers", now_ms=10_000, timeout_ms=1_000)
    assert not c.model.image().brokers[7].alive
    res = c.ok(
        "register_broker",
        broker_id=7,
        client_address="kafka-7b:9092",
        internal_address="10.0.0.7:9093",
        now_ms=20_000,
    )
    assert res["new"] is False
    b = c.model.image().brokers[7]
    assert (b.client_address, b.rack, b.alive, b.draining) == ("kafka-7b:9092", None, True, True)
    same = c.ok(
        "register_broker",
        broker_id=7,
        client_address="kafka-7b:9092",
        internal_address="10.0.0.7:9093",
        now_ms=20_000,
    )
    assert same["changed"] is False


@pytest.mark.parametrize(
    "address", ["nohost", "h:0", "h:70000", "h:abc", ":9092", "a b:1", "h:", "[zz]:1", "h:123456"]
)
def test_register_rejects_bad_addresses(address: str) -> None:
    c = Cluster()
    for field in ["client_address", "internal_address"]:
        fields = {"client_address": "h:1", "internal_address": "h:2", field: address}
        c.err(E.INVALID_REQUEST, "register_broker", broker_id=1, now_ms=0, **fields)


def test_heartbeats_and_expiry() -> None:
    c = Cluster()
    c.broker(1, now_ms=1_000)
    c.broker(2, now_ms=1_000)
    c.err(E.UNKNOWN_BROKER, "broker_heartbeat", broker_id=3, now_ms=1)
    c.ok("broker_heartbeat", broker_id=2, now_ms=5_000)
    res = c.ok("expire_brokers", now_ms=6_500, timeout_ms=5_000)
    assert res["expired"] == [1] and res["changed"]
    image = c.model.image()
    assert [b.broker_id for b in image.live_brokers()] == [2]
    assert c.ok("expire_brokers", now_ms=6_500, timeout_ms=5_000)["changed"] is False
    # a late heartbeat with an older time neither rewinds the clock nor changes anything
    assert c.ok("broker_heartbeat", broker_id=2, now_ms=4_000)["changed"] is False
    assert c.model.image().brokers[2].last_heartbeat_ms == 5_000
    # a heartbeat revives an expired broker
    c.ok("broker_heartbeat", broker_id=1, now_ms=7_000)
    assert c.model.image().brokers[1].alive
    c.err(E.INVALID_REQUEST, "expire_brokers", now_ms=1, timeout_ms=0)


def test_drain_keeps_new_replicas_away() -> None:
    c = cluster(3)
    c.ok("drain_broker", broker_id=1)
    c.topic("t", 6, 2)
    assert all(1 not in r for r in c.replicas("t"))
    c.err(E.BROKER_NOT_AVAILABLE, "create_topic", topic="u", partitions=1, replication_factor=3)
    c.err(E.UNKNOWN_BROKER, "drain_broker", broker_id=9)
    c.ok("drain_broker", broker_id=1, draining=False)
    c.topic("u", 1, 3)


def test_remove_broker_only_when_it_holds_nothing() -> None:
    c = cluster(3)
    c.topic("orders", 12, 3)
    msg = c.err(E.BROKER_HAS_REPLICAS, "remove_broker", broker_id=2)
    assert "12 partition(s): orders-0, orders-1" in msg and "and 2 more" in msg
    c.ok("delete_topic", topic="orders")
    c.ok("remove_broker", broker_id=2)
    assert 2 not in c.model.image().brokers
    c.err(E.UNKNOWN_BROKER, "remove_broker", broker_id=2)


# ------------------------------------------------------------------ topics


def test_create_topic() -> None:
    c = cluster(3)
    res = c.ok(
        "create_topic",
        topic="orders",
        partitions=6,
        replication_factor=2,
        configs={"retention.ms": "0600000", "cleanup.policy": "compact", "fsync": "False"},
    )
    assert res == {
        "ok": True,
        "version": 4,
        "changed": True,
        "topic": "orders",
        "topic_id": 4,
        "partitions": 6,
        "replication_factor": 2,
    }
    t = c.model.image().topics["orders"]
    assert t.partition_count == 6 and t.replication_factor == 2 and t.topic_id == 4
    assert dict(t.configs) == {
        "cleanup.policy": "compact",
        "fsync": "false",
        "retention.ms": "600000",
    }
    for p in t.partitions:
        assert len(set(p.replicas)) == 2 and p.leader is None and p.leader_term == -1
    # 6 partitions x 2 replicas over 3 brokers: 4 each, 2 preferred leaderships each
    image = c.model.image()
    assert [len(image.partitions_of(b)) for b in range(3)] == [4, 4, 4]
    assert sorted(p.preferred_leader for p in t.partitions) == [0, 0, 1, 1, 2, 2]


def test_create_topic_rejections(monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster(3)
    c.topic("orders")
    c.err(
        E.TOPIC_ALREADY_EXISTS, "create_topic", topic="orders", partitions=1, replication_factor=1
    )
    for bad in ["", "..", "a/b", "x" * 250, "spa ce"]:
        c.err(E.INVALID_TOPIC, "create_topic", topic=bad, partitions=1, replication_factor=1)
    for n in [0, -1, 10_001]:
        c.err(E.INVALID_PARTITIONS, "create_topic", topic="t", partitions=n, replication_factor=1)
    for rf in [0, 17]:
        c.err(
            E.INVALID_REPLICATION_FACTOR,
            "create_topic",
            topic="t",
            partitions=1,
            replication_factor=rf,
        )
    msg = c.err(
        E.INVALID_REPLICATION_FACTOR, "create_topic", topic="t", partitions=1, replication_factor=4
    )
    assert "3 are registered" in msg
    c.err(E.INVALID_REQUEST, "create_topic", topic="t", partitions=1)
    c.err(E.INVALID_REQUEST, "create_topic", topic="t", replication_factor=1)
    msg = c.err(
        E.INVALID_CONFIG,
        "create_topic",
        topic="t",
        partitions=1,
        replication_factor=1,
        configs={"retention": "1"},
    )
    assert ", ".join(TOPIC_CONFIG_KEYS) in msg
    for configs in [
        {"retention.ms": "-2"},
        {"segment.bytes": "10"},
        {"cleanup.policy": "x"},
        {"fsync": "yes"},
        {"min.insync.replicas": "2"},  # above the replication factor of 1
    ]:
        c.err(
            E.INVALID_CONFIG,
            "create_topic",
            topic="t",
            partitions=1,
            replication_factor=1,
            configs=configs,
        )
    too_many = {f"k{i}": "1" for i in range(101)}
    c.err(
        E.INVALID_REQUEST,
        "create_topic",
        topic="t",
        partitions=1,
        replication_factor=1,
        configs=too_many,
    )
    # live brokers: one expired leaves two
    c.ok("broker_heartbeat", broker_id=0, now_ms=10_000)
    c.ok("broker_heartbeat", broker_id=1, now_ms=10_000)
    c.ok("expire_brokers", now_ms=10_000, timeout_ms=1_000)
    msg = c.err(
        E.BROKER_NOT_AVAILABLE, "create_topic", topic="t", partitions=1, replication_factor=3
    )
    assert "only 2 are ([0, 1])" in msg
    # the cluster-wide partition cap
    monkeypatch.setattr(topics_module, "PARTITIONS_TOTAL_MAX", 5)
    c.err(E.INVALID_PARTITIONS, "create_topic", topic="t", partitions=3, replication_factor=1)
    c.topic("t", 2, 1)


def test_create_topic_with_explicit_assignments() -> None:
    c = cluster(3)
    c.ok("drain_broker", broker_id=2)
    c.ok(
        "create_topic", topic="t", assignments=[[2, 0], [1, 2]]
    )  # the operator may pick a drained one
    assert c.replicas("t") == [(2, 0), (1, 2)]
    assert c.model.image().topics["t"].replication_factor == 2
    c.ok("create_topic", topic="u", partitions=1, replication_factor=1, assignments=[[1]])
    c.err(E.UNKNOWN_BROKER, "create_topic", topic="v", assignments=[[0, 9]])
    c.err(E.INVALID_REQUEST, "create_topic", topic="v", assignments=[[0, 0]])
    c.err(E.INVALID_REQUEST, "create_topic", topic="v", assignments=[[]])
    c.err(E.INVALID_REQUEST, "create_topic", topic="v", assignments=[])
    c.err(E.INVALID_REPLICATION_FACTOR, "create_topic", topic="v", assignments=[[0, 1], [2]])
    c.err(
        E.INVALID_REPLICATION_FACTOR,
        "create_topic",
        topic="v",
        replication_factor=1,
        assignments=[[0, 1]],
    )
    c.err(E.INVALID_PARTITIONS, "create_topic", topic="v", partitions=2, assignments=[[0]])


def test_delete_topic_drops_its_offsets_and_a_new_one_gets_a_new_id() -> None:
    c = cluster(1)
    c.topic("a", 2)
    c.topic("b", 1)
    c.ok(
        "offset_commit",
        group_id="g1",
        generation=-1,
        member_id="",
        offsets=[commit("a", 0, 1), commit("b", 0, 2)],
    )
    c.ok("offset_commit", group_id="g2", generation=-1, member_id="", offsets=[commit("a", 1, 3)])
    old_id = c.model.image().topics["a"].topic_id
    assert c.ok("delete_topic", topic="a")["topic_id"] == old_id
    image = c.model.image()
    assert "a" not in image.topics
    assert dict(image.offsets["g1"]).keys() == {("b", 0)}
    assert "g2" not in image.offsets and "g2" not in c.model.to_snapshot()["offsets"]
    c.err(E.UNKNOWN_TOPIC_OR_PARTITION, "delete_topic", topic="a")
    c.topic("a", 1)
    assert c.model.image().topics["a"].topic_id > old_id
    assert c.model.image().committed("g1", "a", 0) is None


def test_alter_configs() -> None:
    c = cluster(2)
    c.topic("t", 1, 2, configs={"retention.ms": "1000"})
    res = c.ok(
        "alter_configs", topic="t", set={"segment.bytes": "0100000", "min.insync.replicas": "2"}
    )
    assert res["configs"] == {
        "min.insync.replicas": "2",
        "retention.ms": "1000",
        "segment.bytes": "100000",
    }
    c.ok("alter_configs", topic="t", delete=["retention.ms"])
    assert dict(c.model.image().topics["t"].configs) == {
        "min.insync.replicas": "2",
        "segment.bytes": "100000",
    }
    assert c.ok("alter_configs", topic="t", set={"segment.bytes": "100000"})["changed"] is False
    assert c.ok("alter_configs", topic="t", delete=["fsync"])["changed"] is False
    c.err(E.INVALID_CONFIG, "alter_configs", topic="t", set={"nope": "1"})
    c.err(E.INVALID_CONFIG, "alter_configs", topic="t", delete=["nope"])
    c.err(E.INVALID_CONFIG, "alter_configs", topic="t", set={"segment.bytes": "1"})
    c.err(E.INVALID_CONFIG, "alter_configs", topic="t", set={"min.insync.replicas": "3"})
    c.err(E.INVALID_REQUEST, "alter_configs", topic="t", set={"fsync": "true"}, delete=["fsync"])
    c.err(E.UNKNOWN_TOPIC_OR_PARTITION, "alter_configs", topic="nope", set={"fsync": "true"})


def test_add_partitions() -> None:
    c = cluster(3)
    c.topic("t", 2, 2)
    c.ok("add_partitions", topic="t", partitions=5)
    assert c.model.image().topics["t"].partition_count == 5
    image = c.model.image()
    assert sorted(len(image.partitions_of(b)) for b in range(3)) == [3, 3, 4]
    c.err(E.INVALID_PARTITIONS, "add_partitions", topic="t", partitions=5)
    c.err(E.INVALID_PARTITIONS, "add_partitions", topic="t", partitions=4)
    c.err(E.INVALID_PARTITIONS, "add_partitions", topic="t", partitions=10_001)
    c.err(E.UNKNOWN_TOPIC_OR_PARTITION, "add_partitions", topic="nope", partitions=9)
    c.ok("add_partitions", topic="t", partitions=6, assignments=[[2, 1]])
    assert c.replicas("t")[5] == (2, 1)
    c.err(
        E.INVALID_REPLICATION_FACTOR, "add_partitions", topic="t", partitions=7, assignments=[[2]]
    )
    c.err(E.INVALID_PARTITIONS, "add_partitions", topic="t", partitions=8, assignments=[[2, 1]])
    c.err(E.UNKNOWN_BROKER, "add_partitions", topic="t", partitions=7, assignments=[[2, 5]])


# ------------------------------------------------------------------ leaders


def test_report_leader_is_term_fenced() -> None:
    c = cluster(3)
    c.ok("create_topic", topic="t", assignments=[[0, 1, 2]])

    def leader() -> tuple[int | None, int]:
        p = c.model.image().topics["t"].partitions[0]
        return p.leader, p.leader_term

    assert c.ok("report_leader", topic="t", partition=0, leader=1, term=5)["changed"]
    assert leader() == (1, 5)
    # an older term is stale and changes nothing
    msg = c.err(E.STALE_TERM, "report_leader", topic="t", partition=0, leader=2, term=4)
    assert "term 4" in msg and "term 5" in msg
    c.err(E.STALE_TERM, "report_leader", topic="t", partition=0, leader=None, term=0)
    # the same report again: a no-op success
    res = c.ok("report_leader", topic="t", partition=0, leader=1, term=5)
    assert res["changed"] is False and res["leader"] == 1
    # "no leader" in the same term never clears the known leader of that term
    assert c.ok("report_leader", topic="t", partition=0, leader=None, term=5)["changed"] is False
    assert leader() == (1, 5)
    # two leaders in one term cannot happen in Raft
    c.err(E.INVALID_REQUEST, "report_leader", topic="t", partition=0, leader=2, term=5)
    # a newer term wins, also with no leader known yet, which a leader then fills in
    c.ok("report_leader", topic="t", partition=0, leader=None, term=6)
    assert leader() == (None, 6)
    c.ok("report_leader", topic="t", partition=0, leader=2, term=6)
    assert leader() == (2, 6)
    assert c.model.image().leaders_on(2) == (("t", 0),)
    c.err(E.INVALID_REQUEST, "report_leader", topic="t", partition=0, leader=7, term=9)
    c.err(E.UNKNOWN_TOPIC_OR_PARTITION, "report_leader", topic="t", partition=1, leader=0, term=9)
    c.err(E.UNKNOWN_TOPIC_OR_PARTITION, "report_leader", topic="x", partition=0, leader=0, term=9)


# ------------------------------------------------------------------ malformed commands, every op


def _valid_commands() -> dict[str, dict[str, Any]]:
    """One valid command per op, for the model ``_malformed_base`` builds."""
    return {
        "register_broker": {
            "broker_id": 5,
            "client_address": "h:1",
            "internal_address": "h:2",
            "rack": "r",
            "now_ms": 1,
        },
        "broker_heartbeat": {"broker_id": 0, "now_ms": 5},
        "expire_brokers": {"now_ms": 5, "timeout_ms": 1},
        "drain_broker": {"broker_id": 0, "draining": True},
        "remove_broker": {"broker_id": 2},
        "allocate_producer_ids": {"broker_id": 0, "count": 1000},
        "create_topic": {
            "topic": "new",
            "partitions": 2,
            "replication_factor": 1,
            "configs": {"fsync": "true"},
        },
        "delete_topic": {"topic": "t"},
        "alter_configs": {"topic": "t", "set": {"fsync": "false"}, "delete": ["retention.ms"]},
        "add_partitions": {"topic": "t", "partitions": 3},
        "report_leader": {"topic": "t", "partition": 0, "leader": 0, "term": 1},
        "group_put": group_fields(2, {"m1": {"t": [0, 1]}}),
        "group_delete": {"group_id": "g", "force": True},
        "offset_commit": {
            "group_id": "g",
            "generation": 1,
            "member_id": "m1",
            "offsets": [commit("t", 0, 1)],
        },
        "offset_commit_many": {
            "commits": [
                {
                    "group_id": "g",
                    "generation": 1,
                    "member_id": "m1",
                    "offsets": [commit("t", 0, 1)],
                }
            ]
        },
        "offset_reset": {"group_id": "simple", "offsets": [commit("t", 0, 1)]},
        "offset_delete": {"group_id": "simple", "partitions": [{"topic": "t", "partition": 0}]},
    }


OPTIONAL = {
    ("register_broker", "rack"),
    ("drain_broker", "draining"),
    ("group_delete", "force"),
    ("alter_configs", "set"),
    ("alter_configs", "delete"),
    ("create_topic", "configs"),
}
BAD_VALUES: list[Any] = [1.5, b"bytes", 10**30, "x" * 100_000, [[]], {"nested": 1}, True]


def _malformed_base() -> Cluster:
    c = cluster(3)
    c.ok("create_topic", topic="t", assignments=[[0], [1]])
    c.ok("group_put", **group_fields(1, {"m1": {"t": [0, 1]}}))
    c.ok(
        "offset_commit", group_id="simple", generation=-1, member_id="", offsets=[commit("t", 1, 1)]
    )
    return c


def test_every_valid_command_of_the_table_applies() -> None:
    table = _valid_commands()
    assert set(table) | {"barrier"} == set(OPS)
    for op, fields in table.items():
        _malformed_base().ok(op, **fields)


@pytest.mark.parametrize("op", sorted(_valid_commands()))
def test_malformed_commands_are_rejected_and_change_nothing(op: str) -> None:
    c = _malformed_base()
    fields = _valid_commands()[op]
    for name in fields:
        if (op, name) not in OPTIONAL:
            c.err(E.INVALID_REQUEST, op, **{k: v for k, v in fields.items() if k != name})
        for bad in BAD_VALUES:
            if name in ("draining", "force") and isinstance(bad, bool):
                continue
            if op == "offset_commit_many" and isinstance(bad, list):
                # a well-formed envelope: each bad commit gets its own rejection
                res = c.ok(op, **{**fields, name: bad})
                assert not res["changed"]
                assert {r["code"] for r in res["results"]} == {E.INVALID_REQUEST}
                continue
            expected = E.INVALID_REQUEST
            if name == "topic" and isinstance(bad, str):
                expected = E.INVALID_TOPIC
            elif (
                name == "partitions" and op in ("create_topic", "add_partitions") and bad == 10**30
            ):
                expected = E.INVALID_PARTITIONS
            elif name == "replication_factor" and bad == 10**30:
                expected = E.INVALID_REPLICATION_FACTOR
            c.err(expected, op, **{**fields, name: bad})
    c.err(E.INVALID_REQUEST, op, **{**fields, "unexpected": 1})


@pytest.mark.parametrize(
    ("op", "change"),
    [
        ("offset_commit", {"offsets": [{**commit("t", 0, 1), "offset": -1}]}),
        ("offset_commit", {"offsets": [{**commit("t", 0, 1), "commit_ms": "now"}]}),
        ("offset_commit", {"offsets": [{**commit("t", 0, 1), "partition": True}]}),
        ("offset_commit", {"offsets": [commit("t", 0, 1)] * 2}),
        ("offset_commit", {"offsets": [commit("t", 0, 1), {}]}),
        ("offset_commit", {"offsets": [commit("t", i, 1) for i in range(10_001)]}),
        ("offset_commit", {"generation": -2}),
        ("offset_reset", {"offsets": [{**commit("t", 0, 1), "metadata": 7}]}),
        ("offset_reset", {"offsets": [{**commit("t", 0, 1), "metadata": "\ud800"}]}),
        ("group_put", {"members": {f"m{i}": {} for i in range(1_001)}}),
        ("group_put", {"generation": -1}),
        ("create_topic", {"assignments": [[0, "1"]]}),
        ("create_topic", {"configs": {"fsync": 1}}),
        ("create_topic", {"configs": {3: "1"}}),
        ("register_broker", {"broker_id": -1}),
        ("register_broker", {"broker_id": 2**31}),
        ("register_broker", {"now_ms": -5}),
        ("register_broker", {"rack": ""}),
        ("report_leader", {"term": -1}),
        ("report_leader", {"leader": -1}),
        ("alter_configs", {"delete": [5]}),
    ],
)
def test_malformed_nested_fields(op: str, change: dict[str, Any]) -> None:
    c = _malformed_base()
    c.err(E.INVALID_REQUEST, op, **{**_valid_commands()[op], **change})


# ------------------------------------------------------------------ snapshots and images


def _busy_cluster() -> Cluster:
    c = cluster(4, racks=["a", "a", "b", "b"])
    c.topic("orders", 8, 3, configs={"retention.ms": "1000"})
    c.topic("audit", 2, 2)
    c.ok("report_leader", topic="orders", partition=3, leader=c.replicas("orders")[3][1], term=2)
    c.ok("group_put", **group_fields(1, {"m1": {"orders": [0, 1]}, "m2": {"audit": [0]}}))
    c.ok(
        "offset_commit",
        group_id="g",
        generation=1,
        member_id="m1",
        offsets=[commit("orders", 1, 77, "x")],
    )
    c.ok(
        "offset_commit", group_id="s", generation=-1, member_id="", offsets=[commit("audit", 1, 5)]
    )
    c.ok("drain_broker", broker_id=3)
    c.ok("expire_brokers", now_ms=10**6, timeout_ms=10)
    return c


def _same_behaviour(a: MetadataModel, b: MetadataModel) -> None:
    ca, cb = Cluster(a), Cluster(b)
    for broker_id in range(4):
        for c in (ca, cb):
            c.apply("broker_heartbeat", rid=f"hb{broker_id}", broker_id=broker_id, now_ms=10**6 + 1)
    cmds: list[tuple[str, dict[str, Any]]] = [
        (
            "create_topic",
            {"rid": "late", "topic": "late", "partitions": 5, "replication_factor": 2},
        ),
        (
            "offset_commit",
            {
                "rid": "oc",
                "group_id": "g",
                "generation": 1,
                "member_id": "m1",
                "offsets": [commit("orders", 0, 1)],
            },
        ),
        ("delete_topic", {"rid": "del", "topic": "audit"}),
    ]
    for op, fields in cmds:
        assert ca.apply(op, **fields) == cb.apply(op, **fields)
    # a rid remembered before the snapshot is still remembered after it
    first = a.to_snapshot()["rids"][0]
    assert ca.apply("barrier", rid=first[0]) == cb.apply("barrier", rid=first[0]) == first[1]
    assert a.to_snapshot() == b.to_snapshot()
    assert a.image() == b.image()


def test_snapshot_round_trips_exactly() -> None:
    c = _busy_cluster()
    snap = c.model.to_snapshot()
    restored = MetadataModel.from_snapshot(snap)
    assert restored.to_snapshot() == snap
    assert restored.image() == c.model.image()
    _same_behaviour(c.model, restored)


def test_snapshot_survives_pickle_and_cbor() -> None:
    c = _busy_cluster()
    snap = c.model.to_snapshot()
    assert pickle.loads(pickle.dumps(snap)) == snap
    decoded = cbor2.loads(cbor2.dumps(snap))
    assert decoded == snap
    _same_behaviour(c.model, MetadataModel.from_snapshot(decoded))
    # the model itself pickles through its snapshot (no image objects inside)
    c2 = _busy_cluster()
    _same_behaviour(c2.model, pickle.loads(pickle.dumps(c2.model)))


def test_snapshot_of_another_format_is_refused() -> None:
    snap = MetadataModel().to_snapshot()
    with pytest.raises(ValueError, match="format"):
        MetadataModel.from_snapshot({**snap, "format": 99})


def test_state_holds_only_plain_data() -> None:
    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                assert type(k) in (str, int), k
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        else:
            assert x is None or type(x) in (str, int, bool, bytes), type(x)

    walk(_busy_cluster().model.to_snapshot())


def test_image_is_immutable_cached_and_shares_untouched_parts() -> None:
    c = _busy_cluster()
    image = c.model.image()
    assert c.model.image() is image  # nothing changed: the same object
    with pytest.raises(dataclasses.FrozenInstanceError):
        image.version = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        image.topics["x"] = image.topics["orders"]  # type: ignore[index]
    with pytest.raises(TypeError):
        image.topics["orders"].configs["retention.ms"] = "1"  # type: ignore[index]
    c.ok("alter_configs", topic="audit", set={"fsync": "false"})
    after = c.model.image()
    assert after.version == image.version + 1
    assert after.topics["orders"] is image.topics["orders"]
    assert after.topics["audit"] is not image.topics["audit"]
    assert image.topics["audit"].configs == {}  # the old image did not move
    assert after == MetadataModel.from_snapshot(c.model.to_snapshot()).image()


def test_producer_id_blocks_never_overlap_and_survive_a_snapshot() -> None:
    c = cluster(2)
    a = c.apply("allocate_producer_ids", broker_id=0, count=1000)
    b = c.apply("allocate_producer_ids", broker_id=1, count=10)
    assert (a["first"], a["count"], b["first"]) == (0, 1000, 1000)
    c.err(E.UNKNOWN_BROKER, "allocate_producer_ids", broker_id=9, count=5)
    c.err(E.INVALID_REQUEST, "allocate_producer_ids", broker_id=0, count=0)
    restored = MetadataModel.from_snapshot(c.model.to_snapshot())
    r = restored.apply({"op": "allocate_producer_ids", "rid": "x", "broker_id": 0, "count": 1})
    assert r["first"] == 1010
