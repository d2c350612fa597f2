"""The metadata model's consumer-group ops: the coordinator's group record with its
generation fence, and committed offsets fenced by generation, member and ownership."""

from __future__ import annotations

from typing import Any

import pytest

from raftlog.errors import ErrorCode
from tests.metadata_helpers import cluster, commit, group_fields

E = ErrorCode


# ------------------------------------------------------------------ consumer groups


def test_group_put_generations() -> None:
    c = cluster(1)
    c.topic("t", 4)
    c.err(E.ILLEGAL_GENERATION, "group_put", **group_fields(2, {"m1": {"t": [0]}}))
    c.ok("group_put", **group_fields(1, {"m1": {"t": [0, 1]}, "m2": {"t": [2, 3]}}))
    g = c.model.image().groups["g"]
    assert g.generation == 1 and g.leader == "m1" and g.state == "Stable"
    assert g.members["m2"].assignment == {"t": (2, 3)} and g.members["m2"].subscription == ("t",)
    # an update in the same generation, then the next generation
    c.ok("group_put", **group_fields(1, {"m1": {"t": [0, 1, 2, 3]}, "m2": {}}))
    c.ok("group_put", **group_fields(2, {"m2": {"t": [0, 1, 2, 3]}}))
    for gen in [0, 1, 4]:
        msg = c.err(E.ILLEGAL_GENERATION, "group_put", **group_fields(gen, {"m2": {}}))
        assert "generation 2" in msg
    # a new group may start empty at generation 0
    c.ok("group_put", **group_fields(0, {}, group_id="fresh"))
    assert c.model.image().groups["fresh"].members == {}


def test_group_put_malformed() -> None:
    c = cluster(1)
    base = group_fields(1, {"m1": {"t": [0]}, "m2": {"t": [1]}})
    bad: list[dict[str, Any]] = [
        {"leader": "stranger"},
        {"state": "Happy"},
        {"assignment": {"m3": {"t": [0]}}},
        {"assignment": {"m1": {"t": [0]}, "m2": {"t": [0]}}},
        {"assignment": {"m1": {"t": [-1]}}},
        {"assignment": {"m1": {"../x": [0]}}},
        {"members": {"m1": {**base["members"]["m1"], "extra": 1}, "m2": base["members"]["m2"]}},
        {"members": {"m1": {"client_id": "c", "host": "h", "instance_id": None}}},
        {
            "members": {
                "m1": {**base["members"]["m1"], "instance_id": "i"},
                "m2": {**base["members"]["m2"], "instance_id": "i"},
            }
        },
        {"members": {"": base["members"]["m1"]}, "leader": ""},
        {"members": {}, "assignment": {}},  # no members, yet the leader "m1" is kept
        {"leader": ""},  # members, but no leader
    ]
    for change in bad:
        code = E.INVALID_TOPIC if "../x" in repr(change) else E.INVALID_REQUEST
        c.err(code, "group_put", **{**base, **change})
    # the same generation emptied: no members, no leader, no assignment
    c.ok("group_put", **{**base, "members": {}, "leader": "", "assignment": {}})


def test_group_delete() -> None:
    c = cluster(1)
    c.topic("t", 2)
    c.ok("group_put", **group_fields(1, {"m1": {"t": [0, 1]}}))
    c.ok("offset_commit", group_id="g", generation=1, member_id="m1", offsets=[commit("t", 0, 4)])
    c.err(E.NON_EMPTY_GROUP, "group_delete", group_id="g")
    c.ok("group_delete", group_id="g", force=True)
    image = c.model.image()
    assert "g" not in image.groups and "g" not in image.offsets
    c.err(E.GROUP_ID_NOT_FOUND, "group_delete", group_id="g")
    # a group with only simple commits, and an empty group
    c.ok("offset_commit", group_id="s", generation=-1, member_id="", offsets=[commit("t", 1, 1)])
    c.ok("group_delete", group_id="s")
    c.ok("group_put", **group_fields(0, {}, group_id="e"))
    c.ok("group_delete", group_id="e")
    assert c.model.to_snapshot()["groups"] == {} and c.model.to_snapshot()["offsets"] == {}


def test_offset_commit_is_fenced() -> None:
    c = cluster(1)
    c.topic("t", 4)
    for generation in (1, 2, 3):
        c.ok("group_put", **group_fields(generation, {"m1": {"t": [0, 1]}, "m2": {"t": [2, 3]}}))
    res = c.ok(
        "offset_commit",
        group_id="g",
        generation=3,
        member_id="m1",
        offsets=[commit("t", 0, 10, "meta"), commit("t", 1, 11)],
    )
    assert res["committed"] == 2
    got = c.model.image().committed("g", "t", 0)
    assert got is not None and (got.offset, got.metadata, got.commit_ms) == (10, "meta", 1_000)
    c.err(
        E.ILLEGAL_GENERATION,
        "offset_commit",
        group_id="g",
        generation=2,
        member_id="m1",
        offsets=[commit("t", 0, 12)],
    )
    c.err(
        E.UNKNOWN_MEMBER_ID,
        "offset_commit",
        group_id="g",
        generation=3,
        member_id="zombie",
        offsets=[commit("t", 0, 12)],
    )
    # all or nothing: one owned and one not owned partition commit nothing
    msg = c.err(
        E.NOT_OWNER,
        "offset_commit",
        group_id="g",
        generation=3,
        member_id="m1",
        offsets=[commit("t", 0, 12), commit("t", 2, 12)],
    )
    assert "t-2" in msg
    # a simple commit is refused while the group has members
    c.err(
        E.UNKNOWN_MEMBER_ID,
        "offset_commit",
        group_id="g",
        generation=-1,
        member_id="",
        offsets=[commit("t", 0, 12)],
    )
    c.err(
        E.UNKNOWN_TOPIC_OR_PARTITION,
        "offset_commit",
        group_id="g",
        generation=3,
        member_id="m1",
        offsets=[commit("nope", 0, 1)],
    )
    c.err(
        E.OFFSET_METADATA_TOO_LARGE,
        "offset_commit",
        group_id="g",
        generation=3,
        member_id="m1",
        offsets=[commit("t", 0, 1, "x" * 4097)],
    )
    c.err(
        E.INVALID_REQUEST,
        "offset_commit",
        group_id="g",
        generation=3,
        member_id="m1",
        offsets=[commit("t", 0, 1), commit("t", 0, 2)],
    )
    c.err(
        E.INVALID_REQUEST, "offset_commit", group_id="g", generation=3, member_id="m1", offsets=[]
    )
    # committing the same thing again is a no-op
    same = c.ok(
        "offset_commit",
        group_id="g",
        generation=3,
        member_id="m1",
        offsets=[commit("t", 0, 10, "meta")],
    )
    assert same["changed"] is False
    assert c.model.image().committed("g", "t", 0).offset == 10  # type: ignore[union-attr]


def test_simple_commits_need_a_group_without_members() -> None:
    c = cluster(1)
    c.topic("t", 2)
    c.ok("offset_commit", group_id="solo", generation=-1, member_id="", offsets=[commit("t", 0, 3)])
    assert "solo" not in c.model.image().groups
    c.err(
        E.UNKNOWN_MEMBER_ID,
        "offset_commit",
        group_id="solo",
        generation=-1,
        member_id="m",
        offsets=[commit("t", 0, 4)],
    )
    c.err(
        E.ILLEGAL_GENERATION,
        "offset_commit",
        group_id="solo",
        generation=0,
        member_id="",
        offsets=[commit("t", 0, 4)],
    )
    # an empty group (everyone left) takes simple commits again
    c.ok("group_put", **group_fields(1, {"m": {"t": [0, 1]}}, group_id="solo"))
    c.ok("group_put", **group_fields(2, {}, group_id="solo"))
    c.ok("offset_commit", group_id="solo", generation=-1, member_id="", offsets=[commit("t", 1, 9)])
    assert c.model.image().committed("solo", "t", 1).offset == 9  # type: ignore[union-attr]


def test_offset_reset_and_delete() -> None:
    c = cluster(1)
    c.topic("t", 3)
    c.ok("group_put", **group_fields(1, {"m": {"t": [0, 1, 2]}}))
    c.err(E.NON_EMPTY_GROUP, "offset_reset", group_id="g", offsets=[commit("t", 0, 0)])
    c.err(
        E.NON_EMPTY_GROUP,
        "offset_delete",
        group_id="g",
        partitions=[{"topic": "t", "partition": 0}],
    )
    c.ok("group_put", **group_fields(2, {}))
    c.ok("offset_reset", group_id="g", offsets=[commit("t", 0, 5), commit("t", 1, 6)])
    c.err(E.UNKNOWN_TOPIC_OR_PARTITION, "offset_reset", group_id="g", offsets=[commit("t", 3, 5)])
    res = c.ok(
        "offset_delete",
        group_id="g",
        partitions=[{"topic": "t", "partition": 0}, {"topic": "t", "partition": 2}],
    )
    assert res["deleted"] == 1
    assert dict(c.model.image().offsets["g"]).keys() == {("t", 1)}
    assert (
        c.ok("offset_delete", group_id="g", partitions=[{"topic": "t", "partition": 0}])["changed"]
        is False
    )
    c.ok("offset_delete", group_id="g", partitions=[{"topic": "t", "partition": 1}])
    assert "g" not in c.model.image().offsets
    c.err(
        E.GROUP_ID_NOT_FOUND,
        "offset_delete",
        group_id="nobody",
        partitions=[{"topic": "t", "partition": 1}],
    )
    c.err(
        E.INVALID_REQUEST,
        "offset_delete",
        group_id="g",
        partitions=[{"topic": "t", "partition": 1, "offset": 1}],
    )


def test_offset_commit_many_judges_each_commit_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from raftlog.metadata import groups as groups_module

    c = cluster(1)
    c.topic("t", 4)
    c.ok("group_put", **group_fields(1, {"m1": {"t": [0, 1]}, "m2": {"t": [2, 3]}}))
    good = {"group_id": "g", "generation": 1, "member_id": "m1", "offsets": [commit("t", 0, 7)]}
    stale = {"group_id": "g", "generation": 0, "member_id": "m2", "offsets": [commit("t", 2, 7)]}
    half = {
        "group_id": "g",
        "generation": 1,
        "member_id": "m2",
        "offsets": [commit("t", 3, 7), commit("t", 0, 99)],  # t-0 is not m2's
    }
    simple = {"group_id": "s", "generation": -1, "member_id": "", "offsets": [commit("t", 1, 3)]}
    typo = {**good, "offsetz": []}
    res = c.ok("offset_commit_many", commits=[good, stale, half, simple, typo, "junk"])
    assert res["changed"] and res["version"] == 4
    codes = [r.get("code") for r in res["results"]]
    assert codes == [
        None,
        E.ILLEGAL_GENERATION,
        E.NOT_OWNER,
        None,
        E.INVALID_REQUEST,
        E.INVALID_REQUEST,
    ]
    assert res["results"][0] == {
        "ok": True,
        "group_id": "g",
        "committed": 1,
        "changed": True,
        "version": 4,
    }
    image = c.model.image()
    assert image.committed("g", "t", 0).offset == 7  # type: ignore[union-attr]
    assert image.committed("g", "t", 3) is None  # the half-bad commit left nothing
    assert image.committed("s", "t", 1).offset == 3  # type: ignore[union-attr]
    # nothing to change: no version bump
    again = c.ok("offset_commit_many", commits=[good, stale])
    assert again["changed"] is False and again["results"][0]["changed"] is False
    # a malformed envelope rejects the whole command
    c.err(E.INVALID_REQUEST, "offset_commit_many", commits=[])
    c.err(E.INVALID_REQUEST, "offset_commit_many", commits={"a": good})
    monkeypatch.setattr(groups_module, "OFFSETS_PER_BATCH_MAX", 1)
    c.err(E.INVALID_REQUEST, "offset_commit_many", commits=[good, simple])
