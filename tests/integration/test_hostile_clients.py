"""S16 hostile clients against one real broker process: the driver
(``raftlog.scenarios.hostile``) throws malformed and oversized frames, raw pickles at the
metadata port, HTTP garbage and a flood of idle connections for ~10 s, and the broker must
keep serving a legitimate client throughout, stay alive, log no traceback, stay within 3x
its memory, and still take a produce and serve it back afterwards."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from raftlog.scenarios.hostile import HostileTargets, run_hostile
from raftlog.testing.procs import ProcessGroup, free_port_blocks, wait_until
from raftlog.testing.wire_client import WireClient

pytestmark = pytest.mark.integration
RAFTLOG = os.path.join(os.path.dirname(sys.executable), "raftlog")
SEED = 16
DURATION_S = 10.0


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


@pytest.fixture
def broker(tmp_path: Any, request: Any) -> Iterator[tuple[ProcessGroup, int]]:
    root = str(tmp_path)
    old = os.getcwd()
    os.chdir(root)  # the broker's default data folder is ./raftlog-data
    try:
        with ProcessGroup(root) as pg:
            port = free_port_blocks(1)[0]
            pg.start("node", [RAFTLOG, "node", "start", "--listen", f"127.0.0.1:{port}"])
            try:
                wait_until(
                    lambda: WireClient("127.0.0.1", port), timeout_s=30, what="the broker"
                ).close()
                yield pg, port
            finally:
                if getattr(request.node, "rep_call_failed", False):
                    print(pg.procs["node"].log()[-5000:])
    finally:
        os.chdir(old)


def test_hostile_clients_leave_one_broker_serving(broker: tuple[ProcessGroup, int]) -> None:
    pg, port = broker
    proc = pg.procs["node"]
    rss_before = _rss_kib(proc.pid)
    lines: list[str] = []
    report = run_hostile(
        HostileTargets.of_native_ports([port]),
        seed=SEED,
        duration_s=DURATION_S,
        log=lines.append,
    )
    rss_after = _rss_kib(proc.pid)
    print("\n".join(lines))
    print(
        f"S16: {report.rounds} round(s), {report.connections_opened} connections "
        f"(flood held {report.flood_held_max}), longest legitimate wait "
        f"{report.longest_legit_wait_s:.3f} s, RSS {rss_before} -> {rss_after} KiB, "
        f"attacks {report.attacks}, notes {report.notes}"
    )

    assert report.problems == [], report.problems
    assert not report.pickle_marker_appeared and not os.path.exists(report.pickle_marker)
    assert report.rounds >= 1 and report.flood_held_max > 0
    tally = report.brokers[f"127.0.0.1:{port}"]
    assert tally.answered > 0 and tally.late == 0
    assert proc.alive(), proc.log()[-3000:]
    log = proc.log()
    assert "Traceback" not in log, log[-5000:]
    assert rss_after < 3 * rss_before, (rss_before, rss_after)

    # a produce and consume round trip still works
    c = WireClient("127.0.0.1", port)
    try:
        assert c.create_topic("after-s16", 1, 1).error == 0
        c.wait_leaders("after-s16")
        r = c.produce("after-s16", 0, [b"still", b"here"])
        assert r.error == 0, r
        assert [v for _, v in c.read_all("after-s16", 0)] == [b"still", b"here"]
    finally:
        c.close()
