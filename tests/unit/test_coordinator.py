"""The group coordinator over a real metadata model (no network): joins and the join
barrier, fencing, expiry on the monotonic clock, static membership, partition changes,
and a coordinator that takes over from the metadata."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trio
import trio.testing

from raftlog.broker.coordinator import Coordinator, GroupError
from raftlog.errors import ErrorCode
from raftlog.metadata.model import MetadataModel
from raftlog.wire.groups import (
    CommitPartition,
    CommitTopic,
    HeartbeatRequest,
    JoinGroupRequest,
    JoinGroupResponse,
    LeaveGroupRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
    SyncGroupRequest,
)


class ModelBridge:
    """The parts of ``MetadataBridge`` the coordinator uses, over a local model."""

    def __init__(self) -> None:
        self.model = MetadataModel()
        self._rids = itertools.count()
        self.submit_sync({"op": "register_broker", "broker_id": 1, "client_address": "h:1",
                          "internal_address": "h:2", "now_ms": 1})  # fmt: skip

    def submit_sync(self, command: dict[str, Any]) -> dict[str, Any]:
        result = self.model.apply({**command, "rid": f"r{next(self._rids)}"})
        return result

    async def submit(self, command: dict[str, Any], *, timeout_s: float = 10.0) -> dict[str, Any]:
        await trio.sleep(0)
        return self.submit_sync(command)

    async def barrier(self, *, timeout_s: float = 10.0) -> Any:
        return self.model.image()

    def image(self) -> Any:
        return self.model.image()

    async def commit_offsets(self, commit: dict[str, Any], *, timeout_s: float = 10.0) -> Any:
        return await self.submit({"op": "offset_commit", **commit})


def topic(bridge: ModelBridge, name: str, partitions: int) -> None:
    r = bridge.submit_sync({"op": "create_topic", "topic": name, "partitions": partitions,
                            "replication_factor": 1})  # fmt: skip
    assert r["ok"], r


def join_req(member_id: str = "", **kw: Any) -> JoinGroupRequest:
    return JoinGroupRequest(
        "g", ("t",), member_id=member_id, session_timeout_ms=kw.pop("session", 3000),
        rebalance_timeout_ms=kw.pop("rebalance", 2000), **kw,
    )  # fmt: skip


async def started(bridge: ModelBridge, nursery: trio.Nursery) -> tuple[Coordinator, list[bool]]:
    leading = [True]
    c = Coordinator(1, bridge, lambda: leading[0], lambda: 1000)  # type: ignore[arg-type]
    nursery.start_soon(c.run)
    with trio.fail_after(5):
        while c._groups is None:
            await trio.sleep(0.01)
    return c, leading


async def join_all(c: Coordinator, reqs: list[JoinGroupRequest]) -> list[JoinGroupResponse]:
    out: list[Any] = [None] * len(reqs)

    async def one(i: int) -> None:
        out[i] = await c.join(reqs[i])

    async with trio.open_nursery() as n:
        for i in range(len(reqs)):
            n.start_soon(one, i)
    return out


async def owned(c: Coordinator, r: JoinGroupResponse) -> list[int]:
    s = await c.sync(SyncGroupRequest("g", r.generation, r.member_id))
    return [p for t in s.topics for p in t.partitions]


@pytest.mark.parametrize("members, sizes", [(3, [1, 1, 2]), (5, [0, 1, 1, 1, 1]), (4, [1] * 4)])
async def test_the_three_pictures(members: int, sizes: list[int]) -> None:
    bridge = ModelBridge()
    topic(bridge, "t", 4)
    async with trio.open_nursery() as nursery:
        c, _ = await started(bridge, nursery)
        answers = await join_all(c, [join_req(client_id=f"c{i}") for i in range(members)])
        assert {a.generation for a in answers} == {1}
        parts = [await owned(c, a) for a in answers]
        assert sorted(len(p) for p in parts) == sizes
        assert sorted(p for ps in parts for p in ps) == [0, 1, 2, 3]
        stored = bridge.image().groups["g"]
        assert stored.generation == 1 and stored.state == "Stable"
        nursery.cancel_scope.cancel()


async def test_fencing_expiry_and_commits() -> None:
    bridge = ModelBridge()
    topic(bridge, "t", 2)
    async with trio.open_nursery() as nursery:
        c, _ = await started(bridge, nursery)
        a, b = await join_all(c, [join_req(client_id="a"), join_req(client_id="b", session=1000)])
        pa = await owned(c, a)
        await owned(c, b)
        commit = OffsetCommitRequest(
            "g", (CommitTopic("t", (CommitPartition(pa[0], 7),)),), a.generation, a.member_id
        )
        await c.commit(commit)
        fetched = await c.fetch_offsets(OffsetFetchRequest("g", None))
        assert fetched.topics[0].partitions[0].offset == 7
        # b stops heartbeating: expired after its 1 s session, a rebalance starts
        with trio.fail_after(5), pytest.raises(GroupError) as e:
            while True:
                await c.heartbeat(HeartbeatRequest("g", a.generation, a.member_id))
                await trio.sleep(0.2)
        assert e.value.code == ErrorCode.REBALANCE_IN_PROGRESS
        with pytest.raises(GroupError) as e:
            await c.heartbeat(HeartbeatRequest("g", b.generation, b.member_id))
        assert e.value.code == ErrorCode.UNKNOWN_MEMBER_ID
        (a2,) = await join_all(c, [join_req(a.member_id, client_id="a")])
        assert a2.generation == 2
        assert sorted(await owned(c, a2)) == [0, 1]
        # the old generation can no longer commit
        with pytest.raises(GroupError) as e:
            await c.commit(commit)
        assert e.value.code == ErrorCode.ILLEGAL_GENERATION
        # an admin reset is refused while the group has members
        with pytest.raises(GroupError) as e:
            await c.commit(OffsetCommitRequest("g", commit.topics))
        assert e.value.code == ErrorCode.NON_EMPTY_GROUP
        await c.leave(LeaveGroupRequest("g", a2.member_id))
        with trio.fail_after(5):
            while bridge.image().groups["g"].state != "Empty":
                await trio.sleep(0.05)
        await c.commit(OffsetCommitRequest("g", commit.topics))  # empty: allowed
        nursery.cancel_scope.cancel()


async def test_static_member_returns_without_a_rebalance() -> None:
    bridge = ModelBridge()
    topic(bridge, "t", 4)
    async with trio.open_nursery() as nursery:
        c, _ = await started(bridge, nursery)
        a, b = await join_all(
            c, [join_req(instance_id="one", client_id="a"), join_req(client_id="b")]
        )
        before = await owned(c, a)
        again = await c.join(join_req(instance_id="one", client_id="a"))
        assert again.generation == a.generation and again.member_id != a.member_id
        assert await owned(c, again) == before
        with pytest.raises(GroupError) as e:  # the old id is fenced
            await c.heartbeat(HeartbeatRequest("g", a.generation, a.member_id))
        assert e.value.code == ErrorCode.UNKNOWN_MEMBER_ID
        await c.heartbeat(HeartbeatRequest("g", b.generation, b.member_id))  # b undisturbed
        nursery.cancel_scope.cancel()


async def test_more_partitions_rebalance_and_a_new_coordinator_rebuilds() -> None:
    bridge = ModelBridge()
    topic(bridge, "t", 2)
    async with trio.open_nursery() as nursery:
        c, leading = await started(bridge, nursery)
        (a,) = await join_all(c, [join_req(client_id="a")])
        assert await owned(c, a) == [0, 1]
        # the coordinator moves: a new one rebuilds the group from the metadata
        leading[0] = False
        c2, _ = await started(bridge, nursery)
        with pytest.raises(GroupError) as e:
            await c.heartbeat(HeartbeatRequest("g", a.generation, a.member_id))
        assert e.value.code == ErrorCode.NOT_COORDINATOR
        await c2.heartbeat(HeartbeatRequest("g", a.generation, a.member_id))
        assert await owned(c2, a) == [0, 1]
        r = bridge.submit_sync({"op": "add_partitions", "topic": "t", "partitions": 3})
        assert r["ok"], r
        with trio.fail_after(5):
            while True:
                try:
                    await c2.heartbeat(HeartbeatRequest("g", a.generation, a.member_id))
                except GroupError as err:
                    assert err.code == ErrorCode.REBALANCE_IN_PROGRESS
                    break
                await trio.sleep(0.05)
        (a2,) = await join_all(c2, [join_req(a.member_id, client_id="a")])
        assert await owned(c2, a2) == [0, 1, 2]
        nursery.cancel_scope.cancel()


async def test_a_waiting_joiner_outlives_its_session_and_a_silent_member_is_dropped() -> None:
    """B joins while A (still heartbeating, never rejoining) holds everything: B waits in
    JOIN_GROUP past its own session timeout without being expired, and the phase ends at
    the rebalance timeout with A dropped."""
    bridge = ModelBridge()
    topic(bridge, "t", 2)
    async with trio.open_nursery() as nursery:
        c, _ = await started(bridge, nursery)
        (a,) = await join_all(c, [join_req(client_id="a", session=1000, rebalance=2500)])
        await owned(c, a)

        async def heartbeats() -> None:  # alive, but never rejoins
            while True:
                try:
                    await c.heartbeat(HeartbeatRequest("g", a.generation, a.member_id))
                except GroupError as e:
                    if e.code != ErrorCode.REBALANCE_IN_PROGRESS:
                        return
                await trio.sleep(0.2)

        nursery.start_soon(heartbeats)
        start = trio.current_time()
        b = await c.join(join_req(client_id="b", session=1000, rebalance=2500))
        waited = trio.current_time() - start
        assert 2.0 < waited < 4.0, waited  # the rebalance timeout, not b's 1 s session
        assert b.generation == 2
        assert await owned(c, b) == [0, 1]
        assert sorted(c.describe_for_tests()["g"][2]) == [b.member_id]
        nursery.cancel_scope.cancel()
