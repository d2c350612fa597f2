"""Three brokers as real processes on 127.0.0.1: a topic with 6 partitions and replication
factor 3 takes 100k records with acks=all while the leader of a partition is killed with
SIGKILL and later restarted. Every acknowledged record is read back exactly once at its
acknowledged offset, and the three replicas of every partition hold byte-identical logs."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from raftlog.config import LogConfig
from raftlog.storage.files import OsFileSystem
from raftlog.storage.log import PartitionLog
from raftlog.storage.record_batch import iter_batches
from raftlog.testing.procs import ProcessGroup, free_port_blocks, wait_until
from raftlog.testing.wire_client import WireClient
from raftlog.wire import MetadataRequest

pytestmark = pytest.mark.integration
RAFTLOG = os.path.join(os.path.dirname(sys.executable), "raftlog")
IDS = (1, 2, 3)
PARTITIONS = 6


class Cluster:
    def __init__(self, pg: ProcessGroup, root: str) -> None:
        self.pg, self.root = pg, root
        ports = free_port_blocks(3)
        self.ports = dict(zip(IDS, ports, strict=True))
        self.secret = os.path.join(root, "secret")
        with open(self.secret, "w") as f:
            f.write("cluster-test-secret-0123456789abcdef")
        self.clients: dict[int, WireClient] = {}

    def start(self, i: int) -> None:
        args = [RAFTLOG, "node", "start", "--id", str(i),
                "--listen", f"127.0.0.1:{self.ports[i]}",
                "--data-dir", os.path.join(self.root, f"n{i}"),
                "--cluster-secret-file", self.secret]  # fmt: skip
        for j in IDS:
            args += ["--peer", f"{j}@127.0.0.1:{self.ports[j]}"]
        self.pg.start(f"n{i}", args)
        wait_until(lambda: self.client(i), timeout_s=30, what=f"broker {i}")

    def client(self, i: int) -> WireClient:
        c = self.clients.get(i)
        if c is None:
            c = self.clients[i] = WireClient("127.0.0.1", self.ports[i], timeout_s=15)
        return c

    def drop_client(self, i: int) -> None:
        c = self.clients.pop(i, None)
        if c is not None:
            c.close()

    def leaders(self, topic: str) -> dict[int, int]:
        for i in IDS:
            if not self.pg.procs[f"n{i}"].alive():
                continue
            try:
                return self.client(i).wait_leaders(topic, timeout_s=20)
            except (OSError, ConnectionError) as e:
                print(f"metadata from broker {i} failed: {e!r}")
                self.drop_client(i)
        raise AssertionError("no broker answers metadata")


@pytest.fixture
def cluster(tmp_path: Any, request: Any) -> Iterator[Cluster]:
    with ProcessGroup(str(tmp_path)) as pg:
        c = Cluster(pg, str(tmp_path))
        try:
            for i in IDS:
                c.start(i)
            yield c
        finally:
            for cl in list(c.clients.values()):
                cl.close()
            if getattr(request.node, "rep_call_failed", False):
                for p in pg.procs.values():
                    print(f"--- {p.name} ---\n{p.log()[-4000:]}")


def test_acks_all_survive_a_leader_kill_and_replicas_are_identical(cluster: Cluster) -> None:
    c = cluster
    wait_until(
        lambda: len(c.client(1).call(MetadataRequest()).brokers) == 3,
        timeout_s=30,
        what="three registered brokers",
    )
    assert c.client(1).create_topic("orders", PARTITIONS, 3).error == 0
    leaders = c.leaders("orders")
    acked: dict[tuple[int, int], bytes] = {}  # (partition, offset) -> value
    unknown = 0
    outcomes: dict[str, int] = {}
    failover_s: float | None = None
    kill_time = 0.0
    victim = leaders[0]
    killed_at = restarted = False
    seq = 0
    for i in range(1000):
        if i == 300:
            c.drop_client(victim)
            c.pg.kill(f"n{victim}", signal.SIGKILL)
            killed_at = True
            kill_time = time.monotonic()
        if i == 600:
            c.start(victim)
            restarted = True
        p = i % PARTITIONS
        values = [b"%d" % (seq + k) for k in range(100)]
        seq += 100
        deadline = time.monotonic() + 30
        while True:
            leader = leaders.get(p)
            try:
                client = c.client(leader) if leader else None
            except OSError:  # cannot connect: nothing was sent, so retrying is safe
                client = None
            if client is None:
                r = None
            else:
                try:
                    r = client.produce("orders", p, values)
                except (OSError, ConnectionError):
                    # sent, but the answer was lost: may have been written, never resend
                    c.drop_client(leader)  # type: ignore[arg-type]
                    unknown += 1
                    leaders = c.leaders("orders")
                    break
            if r is not None and r.error == 0:
                if killed_at and p == 0 and failover_s is None:
                    failover_s = time.monotonic() - kill_time
                for k, v in enumerate(values):
                    acked[(p, r.base_offset + k)] = v
                break
            if r is not None and r.error not in (7, 8):  # anything but not-leader
                unknown += 1
                key = f"{r.error.name}: {r.message}"
                outcomes[key] = outcomes.get(key, 0) + 1
                break
            assert time.monotonic() < deadline, f"partition {p} unavailable: {r}"
            time.sleep(0.05)
            leaders = c.leaders("orders")
    assert killed_at and restarted
    print(f"acked {len(acked)} records, {unknown} batches with unknown outcome: {outcomes}")
    assert len(acked) >= 95_000

    # read every partition back from its leader
    leaders = c.leaders("orders")
    seen: dict[bytes, int] = {}
    for p in range(PARTITIONS):
        for offset, value in c.client(leaders[p]).read_all("orders", p):
            assert value is not None
            seen[value] = seen.get(value, 0) + 1
            if (p, offset) in acked:
                assert acked[(p, offset)] == value, f"{p}/{offset} holds {value!r}"
    missing = [v for v in acked.values() if v not in seen]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}"
    dupes = [v for v in acked.values() if seen[v] != 1]
    assert not dupes, f"acknowledged records read more than once: {dupes[:5]}"

    # a graceful stop (SIGTERM) hands leadership over at once: a survivor names a new
    # leader sooner than any election could (their timeout is at least 0.6 s)
    leaders = c.leaders("orders")
    leaving = leaders[0]
    watcher = next(i for i in IDS if i != leaving)
    c.drop_client(leaving)
    proc = c.pg.procs[f"n{leaving}"]
    assert proc.popen is not None
    t_term = time.monotonic()
    proc.popen.send_signal(signal.SIGTERM)
    handed = wait_until(
        lambda: (
            (c.client(watcher).leaders("orders").get(0) not in (None, leaving)) and time.monotonic()
        ),
        timeout_s=10,
        interval_s=0.005,
        what="a new leader after SIGTERM",
    )
    hand_over_s = handed - t_term
    assert proc.popen.wait(timeout=20) == 0, "SIGTERM must end the broker cleanly (exit 0)"
    print(f"graceful hand-over of partition 0 took {hand_over_s:.3f} s")
    assert hand_over_s < 0.6, f"no leadership transfer on SIGTERM ({hand_over_s:.2f} s)"

    # stop everything cleanly and compare the replicas' files: the common part is
    # identical, and the two brokers that never went down hold every acknowledged offset
    for cl in list(c.clients):
        c.drop_client(cl)
    for i in IDS:
        c.pg.kill(f"n{i}", signal.SIGTERM, timeout_s=20)
    for p in range(PARTITIONS):
        logs: dict[int, bytes] = {}
        for i in IDS:
            folder = os.path.join(c.root, f"n{i}", "orders", str(p))
            log = PartitionLog.open(OsFileSystem(), folder, LogConfig())
            data = bytearray()
            offset = log.log_start_offset()
            while offset < log.log_end_offset():
                chunk = log.read(offset, 1 << 24)
                data += chunk
                offset = iter_batches(chunk)[-1].last_offset + 1
            logs[i] = bytes(data)
            log.close()
        shortest = min(len(x) for x in logs.values())
        assert len({x[:shortest] for x in logs.values()}) == 1, f"replicas of {p} differ"
        top = max((o for (q, o) in acked if q == p), default=-1)
        for i in IDS:
            if i != victim:
                last = iter_batches(logs[i])[-1].last_offset
                assert last >= top, f"broker {i} lacks acknowledged offsets of partition {p}"
    # restart all three: everything acknowledged is still there
    for i in IDS:
        c.start(i)
    leaders = c.leaders("orders")
    after: dict[tuple[int, int], bytes | None] = {}
    for p in range(PARTITIONS):
        for offset, value in c.client(leaders[p]).read_all("orders", p):
            after[(p, offset)] = value
    lost = [k for k, v in acked.items() if after.get(k) != v]
    assert not lost, f"{len(lost)} acknowledged records gone after a full restart"
    print(f"kill -9 of broker {victim}: first ack on partition 0 after {failover_s:.2f} s")
