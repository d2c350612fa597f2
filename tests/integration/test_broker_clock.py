"""One broker on the injected scenario clock (``RAFTLOG_SCENARIO_CLOCK``): at rate 2 it
still serves produce and consume, and it applies changes of its clock file (a jump, a
wall-clock offset; a backwards jump is refused)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from raftlog import Admin, Consumer, Producer
from raftlog.testing.procs import ProcessGroup, free_port_blocks, wait_until
from raftlog.testing.wire_client import WireClient

pytestmark = pytest.mark.integration
RAFTLOG = os.path.join(os.path.dirname(sys.executable), "raftlog")


class ClockedNode:
    def __init__(self, pg: ProcessGroup, root: str) -> None:
        self.pg, self.root = pg, root
        self.port = free_port_blocks(1)[0]
        self.clock = os.path.join(root, "clock.json")

    def set_clock(self, **doc: float) -> None:
        tmp = self.clock + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.clock)

    def start(self) -> None:
        args = [RAFTLOG, "node", "start", "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", os.path.join(self.root, "data")]  # fmt: skip
        self.pg.start("node", args, env={"RAFTLOG_SCENARIO_CLOCK": self.clock})

    def log(self) -> str:
        return self.pg.procs["node"].log()


@pytest.fixture
def node(tmp_path: Any, request: Any) -> Iterator[ClockedNode]:
    with ProcessGroup(str(tmp_path)) as pg:
        n = ClockedNode(pg, str(tmp_path))
        try:
            yield n
        finally:
            if getattr(request.node, "rep_call_failed", False):
                print(n.log()[-6000:])


def test_rate_2_still_serves_and_clock_changes_apply(node: ClockedNode) -> None:
    node.set_clock(rate=2.0)
    node.start()
    wait_until(lambda: "event=broker_started" in node.log(), timeout_s=30,
               what="the broker to start")  # fmt: skip
    assert "event=scenario_clock" in node.log() and "rate=2 " in node.log()
    bootstrap = [f"127.0.0.1:{node.port}"]
    with Admin(bootstrap) as admin:
        admin.create_topic("ticks", partitions=1, replication_factor=1)
    values = [b"%d" % n for n in range(300)]
    with Producer(bootstrap, acks="all", linger_ms=2) as producer:
        futures = [producer.send("ticks", v, partition=0) for v in values]
        producer.flush(30)
        offsets = [f.result(0).offset for f in futures]
        assert offsets == sorted(set(offsets)) and len(offsets) == 300

    # the broker's trio time runs twice as fast: an idle long-poll of 1 s of its time
    # returns after about 0.5 s of real time
    client = WireClient("127.0.0.1", node.port)
    try:
        hw = client.fetch("ticks", 0, 0).high_watermark
        t0 = time.monotonic()
        r = client.fetch("ticks", 0, hw, max_wait_ms=1000)
        idle = time.monotonic() - t0
    finally:
        client.close()
    print(f"an idle 1000 ms long-poll at rate 2 took {1000 * idle:.0f} ms")
    assert not r.records and 0.4 <= idle < 0.8, idle

    # a forward jump and a wall-clock offset of one day: the broker logs the change and
    # keeps serving
    node.set_clock(rate=2.0, jump_s=5.0, wall_offset_s=86_400.0)
    wait_until(lambda: "event=clock_changed rate=2 jump_s=5 wall_offset_s=86400" in node.log(),
               timeout_s=5, what="the broker to apply the clock file")  # fmt: skip
    with Producer(bootstrap, acks="all") as producer:
        producer.send("ticks", b"late", partition=0).result(30)
    consumer = Consumer(bootstrap, auto_offset_reset="earliest")
    try:
        consumer.assign([("ticks", 0)])
        got: list[Any] = []
        deadline = time.monotonic() + 20
        while len(got) < 301 and time.monotonic() < deadline:
            got.extend(consumer.poll(timeout_ms=500))
    finally:
        consumer.close()
    assert [r.value for r in got] == [*values, b"late"]
    # going back in time is refused and logged; the broker still serves
    node.set_clock(rate=1.0, jump_s=1.0)
    wait_until(lambda: "event=clock_jump_ignored" in node.log(), timeout_s=5,
               what="the ignored backwards jump")  # fmt: skip
    with Producer(bootstrap, acks="all") as producer:
        producer.send("ticks", b"after", partition=0).result(30)
