"""A one-node broker as a real process (``raftlog node start``, data in ./raftlog-data of
its working folder): 100k records in and out in order, long-poll timing, hostile frames,
a clean SIGTERM stop and a restart that keeps everything."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest

from raftlog.testing.procs import ProcessGroup, free_port_blocks, wait_until
from raftlog.testing.wire_client import WireClient

pytestmark = pytest.mark.integration
RAFTLOG = os.path.join(os.path.dirname(sys.executable), "raftlog")


class Node:
    def __init__(self, pg: ProcessGroup, root: str, port: int) -> None:
        self.pg, self.root, self.port = pg, root, port

    def start(self) -> None:
        args = [RAFTLOG, "node", "start", "--listen", f"127.0.0.1:{self.port}"]
        self.pg.start("node", args)
        wait_until(self.client, timeout_s=30, what="the broker to accept clients")

    def client(self) -> WireClient:
        return WireClient("127.0.0.1", self.port)


@pytest.fixture
def node(tmp_path: Any, request: Any) -> Iterator[Node]:
    root = str(tmp_path)
    old = os.getcwd()
    os.chdir(root)  # the broker's default data folder is ./raftlog-data
    try:
        with ProcessGroup(root) as pg:
            n = Node(pg, root, free_port_blocks(1)[0])
            try:
                n.start()
                yield n
            finally:
                if getattr(request.node, "rep_call_failed", False):
                    print(pg.procs["node"].log()[-5000:])
    finally:
        os.chdir(old)


def test_one_node_produce_and_consume_100k_in_order(node: Node) -> None:
    assert os.path.isdir(os.path.join(node.root, "raftlog-data"))
    c = node.client()
    assert c.create_topic("orders", 1, 1).error == 0
    c.wait_leaders("orders")
    sent = 0
    for _ in range(1000):
        r = c.produce("orders", 0, [b"%d" % (sent + i) for i in range(100)])
        assert r.error == 0, r
        assert r.base_offset >= sent
        sent += 100
    got = c.read_all("orders", 0)
    assert [v for _, v in got] == [b"%d" % i for i in range(100_000)]
    offsets = [o for o, _ in got]
    assert offsets == sorted(set(offsets)), "offsets must be increasing and unique"

    # the admin port (native + 2) answers health and metrics
    with urllib.request.urlopen(f"http://127.0.0.1:{node.port + 2}/health", timeout=5) as h:
        doc = json.loads(h.read())
    assert doc["broker_id"] == 1 and doc["metadata_ready"] and doc["leading"] == 1
    with urllib.request.urlopen(f"http://127.0.0.1:{node.port + 2}/metrics", timeout=5) as m:
        text = m.read().decode()
    assert 'raftlog_high_watermark{topic="orders",partition="0"} 100001' in text, text

    # long-poll: an idle fetch waits max_wait; a produce wakes a waiting fetch at once
    hw = c.fetch("orders", 0, 0).high_watermark
    t0 = time.monotonic()
    r = c.fetch("orders", 0, hw, max_wait_ms=400)
    idle = time.monotonic() - t0
    assert not r.records and 0.38 <= idle < 1.5, idle
    woke: list[float] = []

    def poll() -> None:
        poller = node.client()
        poller.fetch("orders", 0, hw, max_wait_ms=5000)
        woke.append(time.monotonic())
        poller.close()

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.3)  # let the fetch park in the broker (the timing itself is measured)
    t_produce = time.monotonic()
    assert c.produce("orders", 0, [b"wake"]).error == 0
    waiter.join(10)
    assert woke, "the parked fetch never returned"
    print(f"long-poll woke {1000 * (woke[0] - t_produce):.1f} ms after the produce was sent")
    assert woke[0] - t_produce < 0.5

    # stop with SIGTERM: it exits cleanly; a restart has every record
    c.close()
    node.pg.kill("node", signal.SIGTERM, timeout_s=20)
    assert node.pg.procs["node"].popen.returncode == 0  # type: ignore[union-attr]
    node.start()
    c = node.client()
    c.wait_leaders("orders")
    assert len(c.read_all("orders", 0)) == 100_001


def _raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        s.settimeout(2)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


def _frame(envelope: Any, payload: bytes = b"") -> bytes:
    env = cbor2.dumps(envelope)
    return struct.pack(">II", 4 + len(env) + len(payload), len(env)) + env + payload


def test_hostile_frames_leave_the_broker_and_other_clients_unharmed(node: Node) -> None:
    c = node.client()
    assert c.create_topic("t", 1, 1).error == 0
    c.wait_leaders("t")
    hello = _frame(
        {"v": 1, "k": 0, "c": 1, "r": 0, "b": {"role": "client", "client_id": "x", "versions": [1]}}
    )
    nested: Any = 0
    for _ in range(1000):
        nested = [nested]
    attacks = [
        b"\x00\x00",  # truncated length
        struct.pack(">I", 2**31),  # absurd length
        hello[:-3],  # truncated frame
        hello + _frame({"v": 1, "k": 99, "c": 2, "r": 0, "b": {}}),  # unknown API
        hello + _frame({"v": 1, "k": 3, "c": 2, "r": 0, "b": {"topics": "nope"}}),  # wrong types
        hello + _frame({"v": 1, "k": 1, "c": 2, "r": 0, "b": {"topics": nested}}),  # deep nesting
        b"\xff" * 100_000,  # garbage
        _frame({"v": 1, "k": 0, "c": 1, "r": 0, "b": {"role": "client"}}),  # bad HELLO
    ]
    for payload in attacks:
        _raw(node.port, payload)
    answer = _raw(node.port, hello + _frame({"v": 1, "k": 99, "c": 2, "r": 0, "b": {}}))
    assert b"unknown" in answer.lower() or b"api" in answer.lower(), answer[-200:]
    # still up, still serving the well-behaved client
    r = c.produce("t", 0, [b"after"])
    assert r.error == 0
    assert node.pg.procs["node"].alive()
    log = node.pg.procs["node"].log()
    assert "Traceback" not in log, log[-3000:]


def test_retention_runs_in_the_background_per_topic_config(tmp_path: Any) -> None:
    from raftlog.wire import (
        ListOffsetsPartition,
        ListOffsetsRequest,
        ListOffsetsTopic,
        NewTopic,
    )
    from raftlog.wire.admin import CreateTopicsRequest

    root = str(tmp_path)
    conf = os.path.join(root, "broker.toml")
    port = free_port_blocks(1)[0]
    with open(conf, "w") as f:
        f.write(f'data_dir = "{root}/data"\nlisten = "127.0.0.1:{port}"\n'
                "retention_check_ms = 200\n")  # fmt: skip
    with ProcessGroup(root) as pg:
        pg.start("node", [RAFTLOG, "node", "start", "--config", conf])
        c = wait_until(lambda: WireClient("127.0.0.1", port), timeout_s=30, what="broker")
        topic = NewTopic("short", 1, 1, {"retention.bytes": "3000", "segment.bytes": "1000"})
        assert c.call(CreateTopicsRequest((topic,))).topics[0].error == 0
        c.wait_leaders("short")
        for _i in range(60):
            assert c.produce("short", 0, [b"x" * 100]).error == 0

        def log_start() -> int:
            req = ListOffsetsRequest((ListOffsetsTopic("short", (ListOffsetsPartition(0, -2),)),))
            return int(c.call(req).topics[0].partitions[0].offset)

        folder = os.path.join(root, "data", "short", "0")

        def settled() -> bool:
            # retention's fixed point: no closed segment may go any more, i.e. dropping the
            # oldest would leave less than retention.bytes (or only the active one is left)
            sizes = [
                os.path.getsize(os.path.join(folder, n))
                for n in sorted(os.listdir(folder))
                if n.endswith(".log")
            ]
            return len(sizes) == 1 or sum(sizes) - sizes[0] < 3000

        # passes may have run while we were still producing: wait for the fixed point,
        # after which nothing moves the log start any more
        wait_until(settled, timeout_s=10, what="retention by size to settle")
        start = log_start()
        assert start > 0
        assert c.fetch("short", 0, 0).error == 3  # OFFSET_OUT_OF_RANGE below the start
        assert c.fetch("short", 0, start).error == 0
        c.close()
