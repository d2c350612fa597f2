"""Helpers for the metadata model's tests: a model with a request-id counter, and
assertions that a command succeeded or was rejected without changing anything."""

from __future__ import annotations

import itertools
from typing import Any

from raftlog.errors import ErrorCode
from raftlog.metadata.model import MetadataModel


class Cluster:
    """A ``MetadataModel`` plus shorthands; every command gets a fresh rid unless given."""

    def __init__(self, model: MetadataModel | None = None) -> None:
        self.model = model or MetadataModel()
        self._rids = itertools.count()

    def apply(self, op: str, rid: str | None = "auto", **fields: Any) -> dict[str, Any]:
        command: dict[str, Any] = {"op": op, **fields}
        if rid == "auto":
            rid = f"rid-{next(self._rids)}"
        if rid is not None:
            command["rid"] = rid
        return self.model.apply(command)

    def ok(self, op: str, **fields: Any) -> dict[str, Any]:
        before = self.model.version
        result = self.apply(op, **fields)
        assert result["ok"] is True, result
        assert result["version"] == before + (1 if result["changed"] else 0), result
        return result

    def err(self, code: ErrorCode, op: str, **fields: Any) -> str:
        """Apply, expect rejection with ``code`` and no change at all; return the message."""
        before = self.model.to_snapshot()
        result = self.apply(op, **fields)
        assert result["ok"] is False, result
        assert result["code"] == code, (ErrorCode(result["code"]).name, result["message"])
        assert isinstance(result["message"], str) and len(result["message"]) > 10
        assert self.model.to_snapshot() == before
        return str(result["message"])

    def broker(self, broker_id: int, rack: str | None = None, now_ms: int = 0) -> None:
        self.ok(
            "register_broker",
            broker_id=broker_id,
            client_address=f"host{broker_id}:9092",
            internal_address=f"10.0.0.{broker_id % 250}:9093",
            rack=rack,
            now_ms=now_ms,
        )

    def topic(self, name: str, partitions: int = 3, rf: int = 1, **fields: Any) -> None:
        self.ok("create_topic", topic=name, partitions=partitions, replication_factor=rf, **fields)

    def replicas(self, topic: str) -> list[tuple[int, ...]]:
        return [p.replicas for p in self.model.image().topics[topic].partitions]


def cluster(brokers: int = 3, racks: list[str] | None = None) -> Cluster:
    c = Cluster()
    for b in range(brokers):
        c.broker(b, rack=racks[b] if racks else None)
    return c


def member(*topics: str, instance_id: str | None = None) -> dict[str, Any]:
    return {
        "client_id": "app",
        "host": "/10.1.1.1",
        "instance_id": instance_id,
        "subscription": list(topics),
    }


def group_fields(
    generation: int,
    assignment: dict[str, dict[str, list[int]]],
    group_id: str = "g",
    state: str = "Stable",
) -> dict[str, Any]:
    """A ``group_put`` whose members are the keys of ``assignment``."""
    members = {m: member(*sorted(a)) for m, a in assignment.items()}
    return {
        "group_id": group_id,
        "generation": generation,
        "protocol_type": "consumer",
        "protocol": "range" if members else "",
        "leader": min(members) if members else "",
        "state": state if members else "Empty",
        "members": members,
        "assignment": assignment,
    }


def commit(topic: str, partition: int, offset: int, metadata: str = "") -> dict[str, Any]:
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "metadata": metadata,
        "commit_ms": 1_000,
    }
