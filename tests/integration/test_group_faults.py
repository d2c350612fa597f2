"""Consumer groups under faults, every member a process of its own
(``raftlog.testing.group_member``): a member killed with -9, a member paused past its
session timeout, and the coordinator's broker killed."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from raftlog import Admin, Producer
from raftlog.testing.procs import ProcessGroup, wait_until
from raftlog.testing.wire_client import WireClient
from raftlog.wire import FindCoordinatorRequest, MetadataRequest
from tests.integration.test_broker_cluster import IDS, Cluster
from tests.integration.test_broker_single import Node
from tests.integration.test_broker_single import node as node

pytestmark = pytest.mark.integration
SESSION_MS = 4000


class Members:
    """Member processes and what they wrote."""

    def __init__(self, pg: ProcessGroup, root: str, bootstrap: str, group: str, topic: str):
        self.pg, self.root, self.bootstrap, self.group, self.topic = (
            pg,
            root,
            bootstrap,
            group,
            topic,
        )
        self.names: list[str] = []

    def start(self, name: str, *extra: str) -> None:
        self.pg.python(name, "raftlog.testing.group_member", "--bootstrap", self.bootstrap,
                       "--group", self.group, "--topic", self.topic, "--out", self.out(name),
                       "--session-ms", str(SESSION_MS), *extra)  # fmt: skip
        self.names.append(name)

    def out(self, name: str) -> str:
        return os.path.join(self.root, f"{name}.out")

    def lines(self, name: str) -> list[str]:
        try:
            with open(self.out(name), encoding="utf-8") as f:
                return [ln.rstrip("\n") for ln in f if ln.endswith("\n")]
        except FileNotFoundError:
            return []

    def values(self) -> list[str]:
        return [ln.split(" ", 3)[3] for n in self.names for ln in self.lines(n)
                if ln.startswith("rec ")]  # fmt: skip

    def assigned(self, name: str) -> list[int] | None:
        last = [ln for ln in self.lines(name) if ln.startswith("assigned")]
        if not last:
            return None
        text = last[-1][len("assigned") :].strip()
        return [int(p) for p in text.split(",")] if text else []


def produce_in_background(
    bootstrap: list[str], topic: str, count: int, stop: threading.Event
) -> tuple[threading.Thread, list[str]]:
    sent: list[str] = []

    def run() -> None:
        with Producer(bootstrap, linger_ms=2, delivery_timeout_ms=60_000) as p:
            for i in range(count):
                if stop.is_set():
                    break
                value = f"v{i}"
                p.send(topic, value.encode(), key=str(i).encode()).result(60)
                sent.append(value)
                time.sleep(0.002)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, sent


def everyone_assigned(m: Members, names: list[str], partitions: int) -> bool:
    got = [m.assigned(n) for n in names]
    if any(a is None for a in got):
        return False
    flat = sorted(p for a in got for p in (a or []))
    return flat == list(range(partitions))


def test_a_killed_member_s_partitions_move_and_nothing_is_skipped(node: Node) -> None:
    boot = f"127.0.0.1:{node.port}"
    Admin([boot]).create_topic("gk", partitions=4)
    m = Members(node.pg, node.root, boot, "g-kill", "gk")
    for i in range(3):
        m.start(f"m{i}")
    wait_until(lambda: everyone_assigned(m, m.names, 4), timeout_s=30, what="three members")
    stop = threading.Event()
    producer, sent = produce_in_background([boot], "gk", 3000, stop)
    wait_until(lambda: len(m.values()) > 500, timeout_s=30, what="the group to consume")
    victim = next(n for n in m.names if m.assigned(n))
    node.pg.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    rest = [n for n in m.names if n != victim]
    wait_until(lambda: everyone_assigned(m, rest, 4), timeout_s=SESSION_MS / 1000 + 20,
               what="the victim's partitions to move")  # fmt: skip
    moved_s = time.monotonic() - killed_at
    producer.join(90)
    wait_until(lambda: set(sent) <= set(m.values()), timeout_s=60,
               what="every produced record to be read")  # fmt: skip
    assert moved_s < SESSION_MS / 1000 + 10, f"partitions moved after {moved_s:.1f} s"
    print(f"partitions moved {moved_s:.2f} s after kill -9 (session {SESSION_MS} ms)")


def test_a_member_paused_past_its_session_cannot_commit(node: Node) -> None:
    boot = f"127.0.0.1:{node.port}"
    Admin([boot]).create_topic("gp", partitions=2)
    m = Members(node.pg, node.root, boot, "g-pause", "gp")
    m.start("a", "--process-ms", "1500")  # a commits 1.5 s after it wrote a poll's records
    m.start("b")
    wait_until(lambda: everyone_assigned(m, ["a", "b"], 2), timeout_s=30, what="two members")
    stop = threading.Event()
    producer, _ = produce_in_background([boot], "gp", 100_000, stop)
    try:
        wait_until(lambda: any(ln == "commit_ok" for ln in m.lines("a")), timeout_s=30,
                   what="member a to commit")  # fmt: skip
        seen = m.lines("a").count("processing")
        wait_until(lambda: m.lines("a").count("processing") > seen, timeout_s=30,
                   what="member a to hold records it has not committed")  # fmt: skip
        proc = node.pg.procs["a"]
        assert proc.popen is not None
        proc.popen.send_signal(signal.SIGSTOP)  # a holds records of generation g
        paused_lines = len(m.lines("a"))
        try:
            # b takes over a's partition once a's session expires
            wait_until(lambda: m.assigned("b") == [0, 1], timeout_s=SESSION_MS / 1000 + 20,
                       what="b to own both partitions")  # fmt: skip
        finally:
            proc.popen.send_signal(signal.SIGCONT)
        wait_until(
            lambda: any(ln.startswith("commit_") for ln in m.lines("a")[paused_lines:]),
            timeout_s=30,
            what="a to try a commit after resuming",
        )
    finally:
        stop.set()
        producer.join(60)
    after = [ln for ln in m.lines("a")[paused_lines:] if ln.startswith("commit_")]
    # its commit of generation g's offsets is refused: b owns the partitions now
    assert after[0].startswith("commit_failed"), after[:5]


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[Cluster]:
    with ProcessGroup(str(tmp_path)) as pg:
        c = Cluster(pg, str(tmp_path))
        try:
            for i in IDS:
                c.start(i)
            wait_until(lambda: len(c.client(1).call(MetadataRequest()).brokers) == 3,
                       timeout_s=30, what="three brokers")  # fmt: skip
            yield c
        finally:
            for cl in list(c.clients.values()):
                cl.close()


def test_killing_the_coordinator_s_broker_keeps_the_group_and_its_offsets(
    cluster: Cluster,
) -> None:
    c = cluster
    boots = [f"127.0.0.1:{c.ports[i]}" for i in IDS]
    Admin(boots).create_topic("gc", partitions=4, replication_factor=3)
    m = Members(c.pg, c.root, ",".join(boots), "g-coord", "gc")
    m.start("m0")
    m.start("m1")
    wait_until(lambda: everyone_assigned(m, ["m0", "m1"], 4), timeout_s=30, what="two members")
    stop = threading.Event()
    producer, sent = produce_in_background(boots, "gc", 4000, stop)
    wait_until(lambda: len(m.values()) > 800, timeout_s=60, what="the group to consume")
    coordinator = c.client(1).call(FindCoordinatorRequest("g-coord")).node_id
    before = Admin([b for i, b in zip(IDS, boots, strict=True) if i != coordinator])
    c.drop_client(coordinator)
    c.pg.kill(f"n{coordinator}", signal.SIGKILL)
    survivor = next(i for i in IDS if i != coordinator)
    wait_until(
        lambda: (
            WireClient("127.0.0.1", c.ports[survivor])
            .call(FindCoordinatorRequest("g-coord"))
            .__class__.__name__
            == "FindCoordinatorResponse"
        ),
        timeout_s=30,
        what="a new coordinator",
    )
    producer.join(120)
    wait_until(lambda: set(sent) <= set(m.values()), timeout_s=90,
               what="every record read after the coordinator's loss")  # fmt: skip
    # the group survived: same members, and its committed offsets are there
    desc = before.describe_group("g-coord")
    assert len(desc.members) == 2
    committed = sum(p.committed for p in desc.partitions if p.committed is not None)
    assert committed >= len(sent) - 4 * 200, "committed offsets were lost"
    before.close()
