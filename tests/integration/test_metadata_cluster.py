"""Three metadata-quorum processes on 127.0.0.1: leader kill, restart, convergence, and a
power loss of every node at once that must lose no acknowledged metadata."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from raftlog.storage.files import apply_power_loss
from raftlog.testing.procs import JsonLineClient, ProcessGroup, free_ports, wait_until

pytestmark = pytest.mark.integration
SECRET = "integration-secret-0123456789"


@dataclass
class Cluster:
    pg: ProcessGroup
    root: str
    meta: list[str]
    control: list[int]
    ledgers: bool

    def start(self, i: int) -> None:
        data = os.path.join(self.root, f"n{i}")
        args = [
            "--self", self.meta[i],
            "--peers", ",".join(self.meta),
            "--data", data,
            "--secret-file", os.path.join(self.root, "secret"),
            "--control", f"127.0.0.1:{self.control[i]}",
            "--compaction-entries", "50",  # exercise snapshots + journal compaction
        ]  # fmt: skip
        if self.ledgers:
            args += ["--ledger", os.path.join(self.root, f"ledger{i}")]
        self.pg.python(f"n{i}", "raftlog.testing.metadata_node", *args)
        wait_until(lambda: self.call(i, {"cmd": "status"}), timeout_s=20, what=f"node {i} up")

    def call(self, i: int, request: dict[str, Any], timeout_s: float = 10) -> Any:
        client = JsonLineClient("127.0.0.1", self.control[i], timeout_s=timeout_s)
        try:
            return client.call(request)
        finally:
            client.close()

    def leader(self) -> int:
        def find() -> int | None:
            for i in range(3):
                if self.pg.procs[f"n{i}"].alive():
                    try:
                        if self.call(i, {"cmd": "status"}, timeout_s=2)["is_leader"]:
                            return i + 1
                    except OSError:
                        continue
            return None

        return wait_until(find, timeout_s=20, what="a metadata leader") - 1

    def submit(self, i: int, command: dict[str, Any], deadline_s: float = 20) -> dict[str, Any]:
        """Submit through node ``i`` until applied; retries keep the request id, so a
        retry of a command that did apply returns its first result."""
        end = time.monotonic() + deadline_s
        while True:
            try:
                reply = self.call(i, {"cmd": "submit", "command": command, "timeout_s": 3})
                if "result" in reply:
                    return dict(reply["result"])
            except OSError:
                pass
            if time.monotonic() > end:
                raise TimeoutError(f"command {command} not applied through node {i}")
            time.sleep(0.1)

    def snapshots(self) -> list[tuple[int, Any]]:
        out = []
        for i in range(3):
            reply = self.call(i, {"cmd": "snapshot", "barrier": True})
            out.append((reply["version"], reply["snapshot"]))
        return out


@pytest.fixture
def cluster(tmp_path: Any, request: Any) -> Iterator[Cluster]:
    root = str(tmp_path)
    with open(os.path.join(root, "secret"), "w") as f:
        f.write(SECRET)
    ports = free_ports(6)
    with ProcessGroup(root) as pg:
        c = Cluster(pg, root, [f"127.0.0.1:{p}" for p in ports[:3]], ports[3:], request.param)
        try:
            for i in range(3):
                c.start(i)
            yield c
        finally:
            pg.stop_all()
            if getattr(request.node, "rep_call_failed", False):
                for p in pg.procs.values():
                    print(f"--- {p.name} log ---\n{p.log()[-3000:]}")


def register_brokers(c: Cluster) -> None:
    for b in range(3):
        r = c.submit(
            b,
            {
                "op": "register_broker",
                "rid": f"reg-{b}",
                "broker_id": b,
                "client_address": f"127.0.0.1:{9100 + b}",
                "internal_address": f"127.0.0.1:{9100 + b}",
                "now_ms": 1,
            },
        )
        assert r["ok"], r


def create_topic(c: Cluster, via: int, name: str) -> dict[str, Any]:
    return c.submit(
        via,
        {"op": "create_topic", "rid": f"ct-{name}", "topic": name, "partitions": 3,
         "replication_factor": 3},
    )  # fmt: skip


def converged(c: Cluster) -> list[tuple[int, Any]] | None:
    snaps = c.snapshots()
    if all(s == snaps[0] for s in snaps):
        return snaps
    return None


@pytest.mark.parametrize("cluster", [False], indirect=True)
def test_leader_kill_restart_and_convergence(cluster: Cluster) -> None:
    c = cluster
    register_brokers(c)
    for i in range(30):
        assert create_topic(c, i % 3, f"before-{i}")["ok"]
    leader = c.leader()
    t0 = time.monotonic()
    c.pg.kill(f"n{leader}", signal.SIGKILL)
    survivors = [i for i in range(3) if i != leader]
    assert create_topic(c, survivors[0], "after-kill-0")["ok"]
    failover_s = time.monotonic() - t0
    for i in range(1, 30):
        assert create_topic(c, survivors[i % 2], f"after-kill-{i}")["ok"]
    c.start(leader)
    for i in range(10):
        assert create_topic(c, i % 3, f"after-restart-{i}")["ok"]
    snaps = wait_until(lambda: converged(c), timeout_s=30, what="three identical states")
    topics = snaps[0][1]["topics"]
    assert len(topics) == 70
    print(f"metadata failover: first command applied {failover_s:.2f} s after kill -9")


@pytest.mark.parametrize("cluster", [True], indirect=True)
def test_power_loss_of_every_node_loses_no_acknowledged_metadata(cluster: Cluster) -> None:
    c = cluster
    register_brokers(c)
    acked = []
    for i in range(120):  # more than the compaction threshold: snapshots are involved
        r = create_topic(c, i % 3, f"t{i}")
        assert r["ok"], r
        acked.append(f"t{i}")
    # every node dies at once, then every file is cut back to what was fsynced
    for i in range(3):
        c.pg.kill(f"n{i}", signal.SIGKILL)
    rng = random.Random(7)
    for i in range(3):
        apply_power_loss(os.path.join(c.root, f"ledger{i}"), rng, torn=True)
    for i in range(3):
        c.start(i)
    snaps = wait_until(lambda: converged(c), timeout_s=40, what="convergence after power loss")
    topics = snaps[0][1]["topics"]
    missing = [t for t in acked if t not in topics]
    assert not missing, f"acknowledged topics lost by the power loss: {missing[:10]}"
    # and the group still works
    assert create_topic(c, 0, "after-power-loss")["ok"]
