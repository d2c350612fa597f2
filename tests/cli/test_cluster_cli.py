"""``raftlog cluster up/status/logs/down`` and ``raftlog node status`` against real broker
processes, as a user runs them (the console script, a private ``RAFTLOG_HOME``)."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raftlog.cli.main import app
from raftlog.client import Admin
from raftlog.testing.procs import free_port_blocks, wait_until
from tests.cli.cluster_helpers import (
    BOX_CHARS,
    cli_env,
    is_running,
    kill_leftovers,
    read_pids,
    run_cli,
    run_in_pty,
    wait_gone,
)

pytestmark = pytest.mark.integration


def test_cluster_up_status_logs_and_down(tmp_path: Path) -> None:
    home, cdir = tmp_path / "home", tmp_path / "cluster"
    env = cli_env(home)
    pids: dict[int, int] = {}
    try:
        up = run_cli(["cluster", "up", "--nodes", "3", "--dir", str(cdir)], env, timeout_s=90)
        pids = read_pids(cdir)
        assert sorted(pids) == [1, 2, 3] and all(map(is_running, pids.values()))
        profile = json.loads((home / "profiles" / "local.json").read_text())
        assert (home / "current").read_text().strip() == "local"
        assert profile["dir"] == str(cdir) and len(profile["brokers"]) == 3
        for address in profile["brokers"]:
            assert address in up.stdout  # the ports are printed
        for i in (1, 2, 3):
            assert (cdir / f"n{i}" / "broker.log").stat().st_size > 0

        again = run_cli(["cluster", "up", "--dir", str(cdir)], env, check=False)
        assert again.returncode == 1, again
        assert "already running" in again.stderr and "Traceback" not in again.stderr
        assert read_pids(cdir) == pids
        other = run_cli(["cluster", "up", "--dir", str(tmp_path / "other")], env, check=False)
        assert other.returncode == 1 and "profile 'local' belongs to" in other.stderr

        with Admin(profile["brokers"]) as admin:
            admin.create_topic("orders", partitions=3, replication_factor=3)

        # piped: tab-separated, no box drawing; the profile gives the brokers
        text = run_cli(["cluster", "status"], env).stdout
        assert not BOX_CHARS & set(text), text
        rows = [ln.split("\t") for ln in text.splitlines() if ln[:1].isdigit() and "\t" in ln]
        assert [r[0] for r in rows] == ["1", "2", "3"], text
        assert all(r[2] == "ok" for r in rows), text
        assert sorted(r[3] for r in rows) == ["follower", "follower", "leader"], text
        assert sum(int(r[5]) for r in rows) == 3 and sum(int(r[4]) for r in rows) == 9
        assert "3 partitions in 1 topic: 0 offline, 0 under-replicated" in text

        doc = json.loads(run_cli(["cluster", "status", "--output", "json"], env).stdout)
        assert [b["id"] for b in doc["brokers"]] == [1, 2, 3]
        assert all(b["alive"] and b["ready"] for b in doc["brokers"])
        assert [b["id"] for b in doc["brokers"] if b["metadata_leader"]] == [doc["metadata_leader"]]
        assert doc["partitions"] == 3 and doc["offline"] == doc["under_replicated"] == []

        # a terminal of 80 columns: rich tables that fit
        shown = run_in_pty(["cluster", "status"], env, columns=80)
        assert BOX_CHARS & set(shown), shown
        assert max(len(line) for line in shown.splitlines()) <= 80, shown

        # node status: the first broker by default, any with --admin
        node = run_cli(["node", "status"], env).stdout
        fields = dict(line.split("\t", 1) for line in node.splitlines()[1:])
        assert fields["broker"] == "1" and fields["ready"] == "yes", node
        assert "leads" in fields["role"] and fields["metadata leader"] == str(
            doc["metadata_leader"]
        )
        port3 = int(profile["brokers"][2].rsplit(":", 1)[1])
        n3 = run_cli(
            ["node", "status", "--output", "json", "--admin", f"127.0.0.1:{port3 + 2}"], env
        )
        health = json.loads(n3.stdout)
        assert health["broker_id"] == 3 and health["ready"] is True
        assert health["leading"] + health["following"] == health["replicas"] == 3

        logs = run_cli(["cluster", "logs", "-n", "5"], env).stdout.splitlines()
        for i in (1, 2, 3):
            mine = [line for line in logs if line.startswith(f"n{i} | ")]
            assert 1 <= len(mine) <= 5, logs
        assert len(logs) <= 15
        one = run_cli(["cluster", "logs", "--node", "2", "-n", "3"], env).stdout.splitlines()
        assert len(one) == 3 and not one[0].startswith("n2 | "), one

        # a broker killed: it shows as down, its partitions as under-replicated or offline
        os.kill(pids[3], signal.SIGKILL)
        wait_until(lambda: not is_running(pids[3]), timeout_s=10, what="broker 3 to die")
        doc = json.loads(run_cli(["cluster", "status", "--output", "json"], env).stdout)
        assert [b["alive"] for b in doc["brokers"]] == [True, True, False]
        hurt = doc["offline"] + doc["under_replicated"]
        assert len(hurt) == 3 and all(p["down"] == [3] for p in hurt), doc

        down = run_cli(["cluster", "down"], env, timeout_s=60)
        assert "stopped: broker 1, 2" in down.stdout and "not running: broker 3" in down.stdout
        wait_gone(pids, timeout_s=5)
        assert not (cdir / "pids.json").exists() and not (home / "current").exists()

        purge = run_cli(["cluster", "down", "--dir", str(cdir), "--purge"], env)
        assert "no broker" in purge.stdout and not cdir.exists()
    finally:
        kill_leftovers(cdir, pids)


def test_errors_are_one_line_with_an_exit_code(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    (port,) = free_port_blocks(1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))
        args = ["cluster", "up", "--dir", str(tmp_path / "c"), "--base-port", str(port)]
        used = run_cli(args, env, check=False)
    assert used.returncode == 1 and "in use" in used.stderr and "Traceback" not in used.stderr
    assert not (tmp_path / "c" / "pids.json").exists()  # nothing was started
    status = run_cli(["--brokers", f"127.0.0.1:{port}", "cluster", "status"], env, check=False)
    assert status.returncode == 1 and status.stderr.startswith("error: no broker answers")
    assert "Traceback" not in status.stderr and len(status.stderr.splitlines()) == 1
    node = run_cli(["--brokers", f"127.0.0.1:{port}", "node", "status"], env, check=False)
    assert node.returncode == 1 and node.stderr.startswith("error: no broker answers")
    down = run_cli(["cluster", "down"], env, check=False)  # no profile at all
    assert down.returncode == 1 and "no profile 'local'" in down.stderr
    bad = run_cli(["cluster", "up", "--nodes", "0"], env, check=False)
    assert bad.returncode == 2


COMMANDS = [
    ["node", "status"],
    ["cluster", "up"],
    ["cluster", "down"],
    ["cluster", "status"],
    ["cluster", "logs"],
    ["group", "list"],
    ["group", "describe"],
    ["group", "reset-offsets"],
    ["group", "delete"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
