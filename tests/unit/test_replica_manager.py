"""Three brokers' replica managers reconciled from a real metadata model: replicas appear
where they are assigned, elect leaders that report themselves (term-fenced by the model),
replicate, disappear with their topic, and a topic created again under the same name
starts from an empty log."""

from __future__ import annotations

import os
from typing import Any

import trio

from raftlog.metadata.model import MetadataModel
from raftlog.raft import Message, Role
from raftlog.runtime.flusher import Flusher
from raftlog.runtime.partition import Acks
from raftlog.runtime.replicas import RaftTimings, ReplicaManager, group_id
from raftlog.storage.files import OsFileSystem
from raftlog.storage.records import Record, build_batch

BROKERS = (1, 2, 3)


def apply_ok(model: MetadataModel, cmd: dict[str, Any]) -> dict[str, Any]:
    result = model.apply(cmd)
    assert result["ok"], result
    return result


def model_with_brokers() -> MetadataModel:
    """A metadata model with ``BROKERS`` registered."""
    model = MetadataModel()
    for b in BROKERS:
        apply_ok(model, {"op": "register_broker", "rid": f"r{b}", "broker_id": b,
                         "client_address": f"127.0.0.1:{9000 + b}",
                         "internal_address": f"127.0.0.1:{9000 + b}", "now_ms": 1})  # fmt: skip
    return model


async def start_managers(
    nursery: trio.Nursery,
    managers: dict[int, ReplicaManager],
    root: str,
    flusher: Flusher,
    send: Any,
    **kw: Any,
) -> None:
    """Start a ReplicaManager for each of ``BROKERS`` into ``managers`` (folder b<id>
    under ``root``, seeded by broker id); ``kw`` per broker as callables of its id."""
    for b in BROKERS:
        managers[b] = ReplicaManager(
            b,
            os.path.join(root, f"b{b}"),
            OsFileSystem(),
            flusher,
            send,
            seed=b,
            **{k: v(b) for k, v in kw.items()},
        )
        await nursery.start(managers[b].run)


async def test_replicas_follow_the_metadata(tmp_path: Any) -> None:
    model = model_with_brokers()
    managers: dict[int, ReplicaManager] = {}
    reports: list[tuple[str, int, int | None, int]] = []

    def sender(msg: Message) -> None:
        managers[int(msg.dst)].route(msg)

    def on_leader(topic: str, partition: int, tid: int, leader: int | None, term: int) -> None:
        reports.append((topic, partition, leader, term))
        model.apply({"op": "report_leader", "rid": f"l-{topic}-{tid}-{partition}-{term}",
                     "topic": topic, "partition": partition, "leader": leader,
                     "term": term})  # fmt: skip

    flusher = Flusher()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        await start_managers(
            nursery,
            managers,
            str(tmp_path),
            flusher,
            sender,
            timings=lambda b: RaftTimings(tick_ms=10),
            on_leader=lambda b: on_leader,
        )

        async def reconcile_all() -> None:
            image = model.image()
            for m in managers.values():
                m.reconcile(image)
            for m in managers.values():  # replicas open on worker threads
                await m.wait_opened()

        apply_ok(model, {"op": "create_topic", "rid": "c1", "topic": "orders", "partitions": 3,
                         "replication_factor": 2})  # fmt: skip
        await reconcile_all()
        image = model.image()
        for p in image.topics["orders"].partitions:
            holders = {b for b, m in managers.items() if m.get("orders", p.partition)}
            assert holders == set(p.replicas)

        async def leaders_reported() -> None:
            with trio.fail_after(10):
                while any(p.leader is None for p in model.image().topics["orders"].partitions):
                    await trio.sleep(0.01)

        await leaders_reported()
        for p in model.image().topics["orders"].partitions:
            leader = managers[p.leader].get("orders", p.partition)
            assert leader is not None and leader.driver.role is Role.LEADER
            entry = await leader.driver.propose(
                build_batch([Record(b"k", b"v")], now_ms=1), 1, Acks.ALL
            )
            assert entry.offset >= 1  # after the leader's no-op
        folders = [
            os.path.join(str(tmp_path), f"b{b}", "orders", str(p.partition))
            for p in model.image().topics["orders"].partitions
            for b in p.replicas
        ]
        assert all(os.path.isdir(f) for f in folders)

        # delete the topic: replicas stop and their folders go
        apply_ok(model, {"op": "delete_topic", "rid": "d1", "topic": "orders"})
        await reconcile_all()
        assert not any(m.replicas for m in managers.values())
        assert not any(os.path.exists(f) for f in folders)

        # the same name again: a new topic id, empty logs, new leaders
        apply_ok(model, {"op": "create_topic", "rid": "c2", "topic": "orders", "partitions": 1,
                         "replication_factor": 3})  # fmt: skip
        await reconcile_all()
        await leaders_reported()
        p0 = model.image().topics["orders"].partitions[0]
        leader = managers[p0.leader].get("orders", 0)
        assert leader is not None
        entry = await leader.driver.propose(
            build_batch([Record(None, b"x")], now_ms=1), 1, Acks.ALL
        )
        assert entry.offset == 1, "a re-created topic starts from an empty log"
        assert all(r[0] == "orders" for r in reports)
        assert group_id("orders", 0) in managers[p0.leader].replicas
        for m in managers.values():
            await m.close()
        nursery.cancel_scope.cancel()
