"""``raftlog group list/describe/reset-offsets/delete`` against one real broker process,
with a group made by the Python client (produce, consume with a group, commit, close)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raftlog.cli.node import fetch_health
from raftlog.client import Admin, Consumer, Producer
from raftlog.testing.procs import ProcessGroup, free_port_blocks, wait_until
from tests.cli.cluster_helpers import RAFTLOG, cli_env, run_cli

pytestmark = pytest.mark.integration
GROUP, TOPIC = "billing", "orders"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    """One broker (``raftlog node start``) on free ports; its bootstrap address."""
    with ProcessGroup(str(tmp_path)) as pg:
        port = free_port_blocks(1)[0]
        args = [RAFTLOG, "node", "start", "--listen", f"127.0.0.1:{port}",
                "--data-dir", str(tmp_path / "data")]  # fmt: skip
        node = pg.start("node", args)
        try:
            wait_until(
                lambda: fetch_health("127.0.0.1", port + 2, timeout_s=1)["ready"],
                timeout_s=30,
                what="the broker to be ready",
            )
            yield f"127.0.0.1:{port}"
        except BaseException:
            print(node.log()[-5000:])
            raise


def _produce(boot: str, first: int, count: int) -> None:
    with Producer(boot) as p:
        for i in range(first, first + count):
            p.send(TOPIC, b"v%d" % i, key=b"k%d" % i)
        p.flush()


def _describe(env: dict[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        run_cli(["group", "describe", GROUP, "--output", "json"], env).stdout
    )
    return doc


def _committed(env: dict[str, str]) -> dict[int, int | None]:
    return {p["partition"]: p["committed"] for p in _describe(env)["partitions"]}


def test_group_list_describe_reset_delete(broker: str, tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home", RAFTLOG_BROKERS=broker)
    with Admin(broker) as admin:
        admin.create_topic(TOPIC, partitions=2)
    _produce(broker, 0, 10)
    consumer = Consumer(
        broker, group_id=GROUP, auto_offset_reset="earliest", enable_auto_commit=False
    )
    try:
        consumer.subscribe([TOPIC])
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while len(got) < 10 and time.monotonic() < deadline:
            got += consumer.poll(timeout_ms=500)
        assert len(got) == 10
        consumer.commit()
    finally:
        consumer.close()
    _produce(broker, 10, 5)  # not read by the group: lag 5

    listed = run_cli(["group", "list"], env).stdout
    assert f"{GROUP}\tEmpty\t0" in listed.splitlines(), listed

    text = run_cli(["group", "describe", GROUP], env).stdout
    assert f"group {GROUP}: Empty" in text and "total lag 5" in text, text
    assert "committed\tlog end\tlag" in text, text
    doc = _describe(env)
    assert doc["lag"] == 5 and doc["members"] == []
    before = _committed(env)
    ends = {p["partition"]: p["log_end"] for p in doc["partitions"]}
    assert sorted(before) == [0, 1] and all(before.values())
    # offsets also count the Raft no-op batch of each leader term: compare, never count
    assert sum(ends.values()) - sum(before.values()) == 5  # type: ignore[arg-type]

    # a dry run shows the offsets and changes nothing
    reset = ["group", "reset-offsets", GROUP, "--topic", TOPIC]
    dry = run_cli([*reset, "--to-earliest", "--dry-run"], env)
    rows = [ln.split("\t") for ln in dry.stdout.splitlines() if ln.startswith(f"{TOPIC}\t")]
    assert [(r[1], r[3]) for r in rows] == [("0", "0"), ("1", "0")], dry.stdout
    assert "dry run" in dry.stdout and _committed(env) == before

    run_cli([*reset, "--to-earliest"], env)
    assert _committed(env) == {0: 0, 1: 0} and _describe(env)["lag"] == sum(ends.values())
    shifted = json.loads(run_cli([*reset, "--shift-by", "2", "--output", "json"], env).stdout)
    assert [(r["partition"], r["new_offset"]) for r in shifted] == [(0, 2), (1, 2)]
    run_cli([*reset, "--to-latest", "-p", "1"], env)
    assert _committed(env) == {0: 2, 1: ends[1]}

    two = run_cli([*reset, "--to-earliest", "--to-latest"], env, check=False)
    assert two.returncode == 2 and "exactly one" in two.stderr

    # with an active member, reset and delete refuse in one line
    member = Consumer(broker, group_id=GROUP, auto_offset_reset="earliest")
    try:
        member.subscribe([TOPIC])
        deadline = time.monotonic() + 30
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(timeout_ms=200)
        assert member.assignment()
        for args in ([*reset, "--to-earliest"], ["group", "delete", GROUP]):
            refused = run_cli(args, env, check=False)
            assert refused.returncode == 1, refused
            assert "stop its consumers first" in refused.stderr, refused.stderr
            assert len(refused.stderr.splitlines()) == 1 and "Traceback" not in refused.stderr
        assert "1 member" in run_cli(["group", "describe", GROUP], env).stdout
    finally:
        member.close()

    assert f"deleted group '{GROUP}'" in run_cli(["group", "delete", GROUP], env).stdout
    assert GROUP not in run_cli(["group", "list"], env).stdout
    gone = run_cli(["group", "describe", GROUP], env, check=False)
    assert gone.returncode == 1 and gone.stderr.startswith("error: ")
