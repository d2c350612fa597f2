"""Dial overrides through the scenario fault proxy: three brokers on 127.0.0.2/.3/.4 reach
each other only through ``python -m raftlog.scenarios.proxy`` on 127.0.0.1 (``--dial`` for
the native port of every directed pair, ``--metadata-dial`` for the metadata port where
pysyncobj lets the higher address dial the lower). A topic with RF=3 takes records and
gives them back, bytes cross every link, and cutting every link of the metadata leader's
broker elects a new metadata leader among the other two."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from raftlog import Admin, Consumer, Producer
from raftlog.cli.node import fetch_health
from raftlog.scenarios.proxy_control import ProxyControl
from raftlog.testing.procs import ProcessGroup, free_port_blocks, free_ports, wait_until
from raftlog.testing.wire_client import WireClient
from raftlog.wire import MetadataRequest

pytestmark = pytest.mark.integration
RAFTLOG = os.path.join(os.path.dirname(sys.executable), "raftlog")
IDS = (1, 2, 3)


def host_of(i: int) -> str:
    return f"127.0.0.{i + 1}"


class ProxiedCluster:
    def __init__(self, pg: ProcessGroup, root: str) -> None:
        self.pg, self.root = pg, root
        ports = free_port_blocks(3)
        self.ports = dict(zip(IDS, ports, strict=True))
        self.secret = os.path.join(root, "secret")
        with open(self.secret, "w") as f:
            f.write("dial-test-secret-0123456789abcdef")
        # native: every broker dials every other one; metadata: only the greater address
        self.native_links = [f"{i}->{j}" for i in IDS for j in IDS if i != j]
        self.metadata_links = [f"m:{i}->{j}" for i in IDS for j in IDS if i > j]
        links = self.native_links + self.metadata_links
        *listen, self.control_port = free_ports(len(links) + 1, "127.0.0.1")
        self.routes: dict[str, list[Any]] = {}
        for link, port in zip(links, listen, strict=True):
            _, j = (int(x) for x in link.removeprefix("m:").split("->"))
            if link.startswith("m:"):
                self.routes[link] = [port, host_of(j), self.ports[j] + 1, False]
            else:
                self.routes[link] = [port, host_of(j), self.ports[j], True]

    def start_proxy(self) -> ProxyControl:
        path = os.path.join(self.root, "routes.json")
        with open(path, "w") as f:
            json.dump(self.routes, f)
        self.pg.python("proxy", "raftlog.scenarios.proxy", "--routes", path,
                       "--control-port", str(self.control_port), "--seed", "1")  # fmt: skip
        control = ProxyControl(self.control_port, connect_timeout_s=15)
        assert sorted(control.ping()) == sorted(self.routes)
        return control

    def start(self, i: int) -> None:
        args = [RAFTLOG, "node", "start", "--id", str(i),
                "--listen", f"{host_of(i)}:{self.ports[i]}",
                "--data-dir", os.path.join(self.root, f"n{i}"),
                "--cluster-secret-file", self.secret]  # fmt: skip
        for j in IDS:
            args += ["--peer", f"{j}@{host_of(j)}:{self.ports[j]}"]
            if j != i:
                args += ["--dial", f"{j}@127.0.0.1:{self.routes[f'{i}->{j}'][0]}"]
            if j < i:
                args += ["--metadata-dial", f"{j}@127.0.0.1:{self.routes[f'm:{i}->{j}'][0]}"]
        self.pg.start(f"n{i}", args)

    def bootstrap(self) -> list[str]:
        return [f"{host_of(i)}:{self.ports[i]}" for i in IDS]

    def health(self, i: int) -> dict[str, Any]:
        return fetch_health(host_of(i), self.ports[i] + 2, timeout_s=2)


@pytest.fixture
def cluster(tmp_path: Any, request: Any) -> Iterator[ProxiedCluster]:
    with ProcessGroup(str(tmp_path)) as pg:
        c = ProxiedCluster(pg, str(tmp_path))
        try:
            yield c
        finally:
            if getattr(request.node, "rep_call_failed", False):
                for p in pg.procs.values():
                    print(f"--- {p.name} ---\n{p.log()[-4000:]}")


def test_brokers_talk_only_through_the_proxy_and_fail_over(cluster: ProxiedCluster) -> None:
    c = cluster
    t0 = time.monotonic()
    control = c.start_proxy()
    for i in IDS:
        c.start(i)

    def three_brokers() -> bool:
        client = WireClient(host_of(1), c.ports[1], timeout_s=5)
        try:
            return len(client.call(MetadataRequest()).brokers) == 3
        finally:
            client.close()

    wait_until(three_brokers, timeout_s=30, what="three registered brokers")
    with Admin(c.bootstrap()) as admin:
        admin.create_topic("dialled", partitions=1, replication_factor=3)
    values = [b"v%d" % n for n in range(200)]
    with Producer(c.bootstrap(), acks="all", linger_ms=2) as producer:
        futures = [producer.send("dialled", v, partition=0) for v in values]
        producer.flush(30)
        offsets = [f.result(0).offset for f in futures]
    assert offsets == sorted(offsets)
    consumer = Consumer(c.bootstrap(), auto_offset_reset="earliest")
    try:
        consumer.assign([("dialled", 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(got) < len(values) and time.monotonic() < deadline:
            got.extend(r.value for r in consumer.poll(timeout_ms=500))
    finally:
        consumer.close()
    assert got == values

    # every link carried bytes: the brokers reached each other only through the proxy
    stats = control.stats()
    for link in c.native_links + c.metadata_links:
        s = stats[link]
        assert s["a_to_b"]["bytes_forwarded"] > 0 and s["b_to_a"]["bytes_forwarded"] > 0, (
            link,
            s,
        )
    # the native links between a partition's leader and its followers carry the records
    assert sum(stats[link]["a_to_b"]["bytes_forwarded"] for link in c.native_links) > 200 * 2

    # cut every link of the metadata leader's broker: the other two elect a new one
    leader = wait_until(lambda: c.health(1).get("metadata_leader"), timeout_s=10,
                        what="a metadata leader")  # fmt: skip
    assert all(c.health(i)["metadata_leader"] == leader for i in IDS)
    for link in c.native_links + c.metadata_links:
        if str(leader) in link.removeprefix("m:").split("->"):
            control.cut(link)
    others = [i for i in IDS if i != leader]
    t_cut = time.monotonic()

    def new_leader() -> int | None:
        seen = {c.health(i).get("metadata_leader") for i in others}
        if len(seen) == 1 and None not in seen and leader not in seen:
            return seen.pop()
        return None

    elected = wait_until(new_leader, timeout_s=15, what="a new metadata leader")
    print(f"new metadata leader {elected} {time.monotonic() - t_cut:.2f} s after the cut")
    assert elected in others
    assert all(c.health(i)["ready"] for i in others)
    print(f"test body took {time.monotonic() - t0:.1f} s")
