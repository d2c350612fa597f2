"""One broker process for every CLI test (started once; stopped by PID at the end)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from raftlog.testing.procs import ProcessGroup, free_port_blocks, wait_until
from tests.cli.helpers import RAFTLOG, Cli


def _ready(brokers: str) -> bool:
    from raftlog.client import Admin
    from raftlog.errors import RaftlogError

    try:
        with Admin(brokers, request_timeout_ms=2_000, connect_timeout_ms=1_000) as admin:
            return bool(admin.describe_cluster().brokers)
    except RaftlogError:
        return False


@pytest.fixture(scope="session")
def cli(tmp_path_factory: Any) -> Iterator[Cli]:
    root = tmp_path_factory.mktemp("cli-broker")
    with ProcessGroup(str(root)) as pg:
        port = free_port_blocks(1)[0]
        brokers = f"127.0.0.1:{port}"
        args = [RAFTLOG, "node", "start", "--listen", brokers, "--data-dir", str(root / "data")]
        node = pg.start("node", args)
        try:
            wait_until(lambda: _ready(brokers), timeout_s=30, what="the broker to serve admin")
            yield Cli(brokers, str(root / "home"))
        except BaseException:
            print(node.log()[-5000:])
            raise
