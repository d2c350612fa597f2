"""One broker with the scenario storage seams (``RAFTLOG_SCENARIO_LEDGER`` and
``RAFTLOG_SCENARIO_DISK_FAULTS``): records are acknowledged, then the disk fails. The
policy (``raftlog/storage/failure.py``) is fail-stop, as Kafka with its only log directory
offline:

- a partition fsync failure fences the replica (``event=replica_fenced``) and the broker
  halts at once with exit code 74 and one CRITICAL ``event=disk_failure_halt`` line, no
  traceback;
- a metadata journal fsync failure halts it the same way (pysyncobj would otherwise go on
  counting entries that are not durable);
- the producer's connection is closed without an answer: the client sees an unknown
  outcome, never a traceback nor an acknowledgement;
- service comes back when the broker is started again (here after a simulated power loss
  from the ledger), with every acknowledged record.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from raftlog.storage.failure import DISK_FAILURE_EXIT
from raftlog.storage.files import apply_power_loss
from raftlog.testing.procs import ProcessGroup, free_port_blocks, wait_until
from raftlog.testing.wire_client import WireClient

pytestmark = pytest.mark.integration
RAFTLOG = os.path.join(os.path.dirname(sys.executable), "raftlog")


class FaultyNode:
    def __init__(self, pg: ProcessGroup, root: str) -> None:
        self.pg, self.root = pg, root
        self.port = free_port_blocks(1)[0]
        self.faults = os.path.join(root, "faults.json")
        self.ledger = os.path.join(root, "ledger")

    def start(self) -> None:
        args = [RAFTLOG, "node", "start", "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", os.path.join(self.root, "data")]  # fmt: skip
        env = {"RAFTLOG_SCENARIO_LEDGER": self.ledger, "RAFTLOG_SCENARIO_DISK_FAULTS": self.faults}
        self.pg.start("node", args, env=env)
        wait_until(self.client, timeout_s=30, what="the broker to accept clients")

    def client(self) -> WireClient:
        return WireClient("127.0.0.1", self.port, timeout_s=15)

    def set_faults(self, doc: dict[str, Any] | None) -> None:
        if doc is None:
            os.remove(self.faults)
            return
        tmp = self.faults + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.faults)

    def log(self) -> str:
        return self.pg.procs["node"].log()


@pytest.fixture
def node(tmp_path: Any, request: Any) -> Iterator[FaultyNode]:
    with ProcessGroup(str(tmp_path)) as pg:
        n = FaultyNode(pg, str(tmp_path))
        try:
            n.start()
            yield n
        finally:
            if getattr(request.node, "rep_call_failed", False):
                print(n.log()[-6000:])


def test_fsync_eio_stops_the_broker_and_a_restart_keeps_every_ack(node: FaultyNode) -> None:
    c = node.client()
    assert c.create_topic("orders", 2, 1).error == 0
    c.wait_leaders("orders")
    acked: dict[int, list[bytes]] = {0: [], 1: []}
    for n in range(20):
        p = n % 2
        values = [b"%d-%d" % (n, k) for k in range(10)]
        r = c.produce("orders", p, values)
        assert r.error == 0, r
        acked[p].extend(values)

    node.set_faults({"fsync": "EIO"})
    wait_until(lambda: "event=disk_faults_changed faults=fsync:EIO" in node.log(),
               timeout_s=5, what="the broker to pick up the faults file")  # fmt: skip
    try:
        r = c.produce("orders", 0, [b"never-acked"])
        outcome = f"answer {r.error.name}: {r.message}"
        assert r.error != 0, "a produce must never be acknowledged after a failed fsync"
    except (ConnectionError, OSError) as e:
        outcome = f"connection error: {e}"
    print(f"produce during fsync EIO -> {outcome}")
    assert "Traceback" not in outcome

    # fail-stop: the fenced replica halts the broker process
    proc = node.pg.procs["node"]
    assert proc.popen is not None
    code = proc.popen.wait(timeout=20)
    log = node.log()
    assert code == DISK_FAILURE_EXIT, log[-3000:]
    assert "event=replica_fenced group=orders/0" in log
    assert "event=disk_failure_halt where=partition orders/0" in log
    assert "Input/output error" in log
    assert "Traceback" not in log
    c.close()

    # heal the disk, lose power (the process is dead), start again on the same ledger
    node.set_faults(None)
    cut = apply_power_loss(node.ledger)
    print(f"power loss cut {sum(cut.values())} unsynced bytes in {len(cut)} files")
    node.start()
    c = node.client()
    c.wait_leaders("orders")
    for p in (0, 1):
        values = [v for _, v in c.read_all("orders", p)]
        assert values[: len(acked[p])] == acked[p], f"partition {p} lost acknowledged records"
    assert c.produce("orders", 1, [b"after-restart"]).error == 0
    c.close()

    # the ledger keeps working across restarts: a second power loss keeps the new ack too
    node.pg.kill("node", signal.SIGKILL)
    apply_power_loss(node.ledger)
    node.start()
    c = node.client()
    c.wait_leaders("orders")
    values = [v for _, v in c.read_all("orders", 1)]
    assert values == [*acked[1], b"after-restart"]
    c.close()


def test_metadata_journal_fsync_eio_halts_the_broker_and_a_restart_keeps_every_ack(
    node: FaultyNode,
) -> None:
    c = node.client()
    assert c.create_topic("orders", 1, 1).error == 0
    c.wait_leaders("orders")
    assert c.produce("orders", 0, [b"before"]).error == 0
    node.set_faults({"fsync": "EIO", "path_contains": "@metadata"})
    proc = node.pg.procs["node"]
    assert proc.popen is not None
    code = proc.popen.wait(timeout=20)
    log = node.log()
    assert code == DISK_FAILURE_EXIT, log[-3000:]
    assert "event=disk_failure_halt where=metadata journal" in log
    assert "Traceback" not in log
    c.close()
    node.set_faults(None)
    apply_power_loss(node.ledger)
    node.start()
    c = node.client()
    c.wait_leaders("orders")
    assert c.create_topic("later", 1, 1).error == 0
    c.wait_leaders("later")
    assert [v for _, v in c.read_all("orders", 0)] == [b"before"]
    c.close()
