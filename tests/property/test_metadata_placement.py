"""Properties of the metadata model under Hypothesis.

- Placement: on a fresh cluster, whatever the brokers and the sequence of topics, every
  partition gets RF distinct live, non-draining replicas; without racks, replica counts and
  preferred leaderships per broker differ by at most one; with racks, no two replicas of a
  partition share a rack while there are at least RF racks.
- ``apply`` never raises on any input, a rejection changes nothing, a change bumps the version
  by exactly one, a duplicate rid returns the first result; two models fed the same commands
  end equal; the incrementally built image equals one built from the snapshot; snapshots
  survive CBOR.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftlog.errors import ErrorCode
from raftlog.metadata import model as model_module
from raftlog.metadata.model import OPS, MetadataModel
from raftlog.metadata.placement import Candidate, place_partitions
from tests.metadata_helpers import Cluster, commit, group_fields

topic_specs = st.lists(
    st.tuples(st.integers(1, 20), st.integers(1, 6)), min_size=1, max_size=8
)  # (partitions, replication factor)


def _spread(values: list[int]) -> int:
    return max(values) - min(values)


def _create_all(c: Cluster, specs: list[tuple[int, int]], eligible: list[int]) -> None:
    for i, (partitions, rf) in enumerate(specs):
        rf = min(rf, len(eligible))
        c.topic(f"t{i}", partitions, rf)
        for replicas in c.replicas(f"t{i}"):
            assert len(replicas) == rf == len(set(replicas))
            assert set(replicas) <= set(eligible)


@settings(max_examples=300, deadline=None)
@given(
    brokers=st.integers(1, 10),
    unavailable=st.sets(st.integers(0, 9), max_size=3),
    specs=topic_specs,
)
def test_placement_is_even_without_racks(
    brokers: int, unavailable: set[int], specs: list[tuple[int, int]]
) -> None:
    c = Cluster()
    # some brokers expire (their last heartbeat is old), some are drained: they get nothing
    for b in range(brokers):
        c.broker(b, now_ms=0 if b in unavailable and b % 2 == 0 else 1_000)
        if b in unavailable and b % 2:
            c.ok("drain_broker", broker_id=b)
    c.ok("expire_brokers", now_ms=1_000, timeout_ms=999)
    image = c.model.image()
    eligible = [b.broker_id for b in image.brokers.values() if b.alive and not b.draining]
    if not eligible:
        return
    _create_all(c, specs, eligible)
    image = c.model.image()
    replicas = Counter(b for t in image.topics.values() for p in t.partitions for b in p.replicas)
    leaders = Counter(p.preferred_leader for t in image.topics.values() for p in t.partitions)
    assert _spread([replicas[b] for b in eligible]) <= 1, replicas
    assert _spread([leaders[b] for b in eligible]) <= 1, leaders


@settings(max_examples=300, deadline=None)
@given(racks=st.integers(1, 5), per_rack=st.integers(1, 3), specs=topic_specs)
def test_placement_spreads_racks(racks: int, per_rack: int, specs: list[tuple[int, int]]) -> None:
    c = Cluster()
    brokers = racks * per_rack
    for b in range(brokers):
        c.broker(b, rack=f"rack-{b % racks}")
    _create_all(c, specs, list(range(brokers)))
    image = c.model.image()
    for t in image.topics.values():
        for p in t.partitions:
            on_rack = Counter(image.brokers[b].rack for b in p.replicas)
            # as even as the racks allow: one per rack when there are enough racks
            assert max(on_rack.values()) == math.ceil(len(p.replicas) / racks), on_rack
    leaders = Counter(p.preferred_leader for t in image.topics.values() for p in t.partitions)
    replicas = Counter(b for t in image.topics.values() for p in t.partitions for b in p.replicas)
    assert _spread([leaders[b] for b in range(brokers)]) <= 1, leaders
    # the rack rule comes first; replica counts stay within two of each other
    assert _spread([replicas[b] for b in range(brokers)]) <= 2, replicas


@settings(max_examples=300, deadline=None)
@given(
    rack_of=st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=9),
    partitions=st.integers(1, 30),
    rf=st.integers(1, 9),
)
def test_place_partitions_with_uneven_racks(
    rack_of: list[str | None], partitions: int, rf: int
) -> None:
    rf = min(rf, len(rack_of))
    candidates = [Candidate(b, r) for b, r in enumerate(rack_of)]
    distinct_racks = len({r if r is not None else f"none-{b}" for b, r in enumerate(rack_of)})
    placed = place_partitions(candidates, {}, {}, partitions, rf)
    assert placed == place_partitions(list(reversed(candidates)), {}, {}, partitions, rf)
    for replicas in placed:
        assert len(set(replicas)) == rf
        if distinct_racks >= rf:
            named = [rack_of[b] for b in replicas if rack_of[b] is not None]
            assert len(named) == len(set(named))


# ------------------------------------------------------------------ apply never raises

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.binary(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(-2, 5), inner, max_size=4)
    ),
    max_leaves=12,
)
topics = st.sampled_from(["t", "u", "gone", "", "../x"])
partition_lists = st.lists(st.integers(-1, 4), max_size=4)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "broker_id": st.integers(-1, 4),
    "client_address": st.sampled_from(["h:1", "h:2", "bad"]),
    "internal_address": st.sampled_from(["i:1", "i:2"]),
    "rack": st.sampled_from([None, "r1", "r2"]),
    "now_ms": st.integers(0, 10_000),
    "timeout_ms": st.integers(0, 5_000),
    "draining": st.booleans(),
    "topic": topics,
    "partitions": st.integers(0, 6)
    | st.lists(
        st.fixed_dictionaries({"topic": topics, "partition": st.integers(-1, 4)}), max_size=3
    ),
    "replication_factor": st.integers(0, 4),
    "configs": st.dictionaries(
        st.sampled_from(["retention.ms", "fsync", "nope"]), st.sampled_from(["1", "true", "-5"])
    ),
    "assignments": st.lists(st.lists(st.integers(-1, 4), max_size=3), max_size=3),
    "set": st.dictionaries(
        st.sampled_from(["retention.ms", "fsync"]), st.sampled_from(["7", "false"])
    ),
    "delete": st.lists(st.sampled_from(["retention.ms", "fsync", "nope"]), max_size=2),
    "partition": st.integers(-1, 4),
    "leader": st.none() | st.integers(-1, 4),
    "term": st.integers(-1, 6),
    "group_id": st.sampled_from(["g", "h", ""]),
    "generation": st.integers(-2, 4),
    "member_id": st.sampled_from(["", "m1", "m2", "x"]),
    "force": st.booleans(),
    "offsets": st.lists(
        st.builds(commit, topics, st.integers(-1, 4), st.integers(-1, 100)), max_size=3
    ),
}
FIELDS["commits"] = st.lists(
    st.fixed_dictionaries(
        {
            "group_id": FIELDS["group_id"],
            "generation": FIELDS["generation"],
            "member_id": FIELDS["member_id"],
            "offsets": FIELDS["offsets"],
        }
    )
    | plain,
    max_size=3,
)
GROUP_PUTS = st.builds(
    group_fields,
    st.integers(0, 3),
    st.dictionaries(
        st.sampled_from(["m1", "m2"]),
        st.dictionaries(st.sampled_from(["t", "u"]), partition_lists, max_size=2),
        max_size=2,
    ),
    st.sampled_from(["g", "h"]),
)


@st.composite
def commands(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(plain)  # anything at all
    op = draw(st.sampled_from([*OPS, "nope"]))
    if op == "group_put" and kind < 5:
        command: dict[str, Any] = draw(GROUP_PUTS)
    else:
        if op in model_module._OPS and kind < 8:  # every field the op takes, so many apply
            names = sorted(model_module._OPS[op].fields)
        else:
            names = draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=6, unique=True))
        command = {
            name: draw(plain) if draw(st.integers(0, 15)) == 0 else draw(FIELDS.get(name, plain))
            for name in names
        }
    command["op"] = op
    if draw(st.integers(0, 9)):
        command["rid"] = draw(st.sampled_from(["r1", "r2", "r3"]) | st.text(min_size=1, max_size=6))
    return command


def _setup() -> Cluster:
    c = Cluster()
    for b in range(3):
        c.broker(b, rack="r1" if b else "r2")
    c.topic("t", 3, 2)
    c.ok("group_put", **group_fields(1, {"m1": {"t": [0, 1]}, "m2": {"t": [2]}}))
    return c


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands(), min_size=1, max_size=25))
def test_apply_never_raises_and_keeps_its_invariants(cmds: list[Any]) -> None:
    c = _setup()
    twin = _setup()
    m = c.model
    for cmd in cmds:
        before = m.to_snapshot()
        result = m.apply(cmd)
        assert twin.model.apply(cmd) == result
        assert isinstance(result, dict) and isinstance(result["ok"], bool)
        if not result["ok"]:
            assert ErrorCode(result["code"]) != ErrorCode.UNKNOWN, result
            assert isinstance(result["message"], str) and result["message"]
            assert m.to_snapshot() == before
            continue
        stored = dict(before["rids"]).get(cmd.get("rid")) if isinstance(cmd, dict) else None
        if stored is not None:
            assert result == stored and m.to_snapshot() == before
        else:
            assert result["version"] == before["version"] + int(result["changed"])
            if not result["changed"]:
                assert m.to_snapshot() == before
        if result["changed"] and stored is None:
            again = m.apply(cmd)
            assert again == result
        m.image()  # build incrementally along the way
    snap = m.to_snapshot()
    assert snap == twin.model.to_snapshot()
    assert cbor2.loads(cbor2.dumps(snap)) == snap
    restored = MetadataModel.from_snapshot(cbor2.loads(cbor2.dumps(snap)))
    assert restored.to_snapshot() == snap
    assert restored.image() == m.image()
