"""The README's quick start, word for word: terminal 1 runs what ``make run`` runs (taken
from the Makefile), terminal 2 runs each command of the README's ``<!-- quickstart -->``
block; then Ctrl-C (SIGINT) in terminal 1 must stop every broker it started. A change to
the README, the Makefile or the commands that breaks the quick start breaks this test."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from raftlog.testing.procs import wait_until
from tests.cli.cluster_helpers import REPO, cli_env, is_running, kill_leftovers, read_pids

pytestmark = pytest.mark.integration
READY_MARK = "The cluster runs until Ctrl-C here."


def quickstart_commands() -> list[str]:
    """The commands of the README's quick start block (between the markers)."""
    readme = (REPO / "README.md").read_text()
    found = re.search(
        r"<!-- quickstart -->\s*```[^\n]*\n(.*?)```\s*<!-- /quickstart -->", readme, re.S
    )
    assert found, "README.md has no <!-- quickstart --> ... <!-- /quickstart --> code block"
    lines = [ln.strip() for ln in found.group(1).splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def make_run_command() -> list[str]:
    """The command of the Makefile's ``run`` recipe that is not the install step."""
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^run:[^\n]*\n((?:\t[^\n]*\n)+)", makefile, re.M)
    assert recipe, "the Makefile has no run target"
    lines = [ln.strip() for ln in recipe.group(1).splitlines()]
    assert len(lines) == 1, f"expected one command in 'make run', got {lines}"
    return shlex.split(lines[0].replace("$(BIN)", ".venv/bin").replace("$(VENV)", ".venv"))


# what each quick start command must print (by its raftlog subcommand)
EXPECT = {
    "produce": lambda out: True,
    "consume": lambda out: "hello" in out.splitlines(),
    "topic describe": lambda out: "demo" in out and "replicas" in out,
    "group describe": lambda out: "demo-readers" in out and "lag" in out,
    "cluster status": lambda out: "0 offline, 0 under-replicated" in out,
}


def _check(command: str, result: subprocess.CompletedProcess[str]) -> None:
    shown = f"$ {command}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, shown
    assert "Traceback" not in result.stderr, shown
    words = command.split("raftlog", 1)[1].split()
    for key, ok in EXPECT.items():
        if words[: len(key.split())] == key.split():
            assert ok(result.stdout), shown
            return
    raise AssertionError(f"no expectation for the quick start command {command!r}")


def test_readme_quick_start(tmp_path: Path) -> None:
    commands = quickstart_commands()
    assert len(commands) >= 5 and all(".venv/bin/raftlog" in c for c in commands)
    cdir = tmp_path / "cluster"
    # a new user's environment; only the data folder moves out of the repository
    env = cli_env(tmp_path / "home", RAFTLOG_CLUSTER_DIR=str(cdir))
    terminal1 = subprocess.Popen(
        make_run_command(),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own session: SIGINT reaches only it, as Ctrl-C would
    )
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert terminal1.stdout is not None
        for line in terminal1.stdout:
            output.append(line)
            if READY_MARK in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    pids: dict[int, int] = {}
    try:
        started = time.monotonic()
        while not ready.wait(0.2):
            assert terminal1.poll() is None, "make run's command exited:\n" + "".join(output)
            assert time.monotonic() - started < 90, "no cluster after 90 s:\n" + "".join(output)
        pids = read_pids(cdir)
        assert sorted(pids) == [1, 2, 3] and all(map(is_running, pids.values()))
        # terminal 1 shows the status table (plain: a pipe) and the README's commands
        try:
            wait_until(
                lambda: all(f"  {c}\n" in "".join(output) for c in commands),
                timeout_s=10,
                what="make run to print every command of the README's quick start",
            )
        except TimeoutError as e:
            raise AssertionError(f"{e}; it printed:\n{''.join(output)}") from None
        shown = "".join(output)
        assert "broker\taddress\thealth" in shown
        assert "3 partitions in 1 topic: 0 offline, 0 under-replicated" in shown

        for command in commands:
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            _check(command, result)

        terminal1.send_signal(signal.SIGINT)  # Ctrl-C
        assert terminal1.wait(timeout=60) == 0, "".join(output)
        reader.join(timeout=5)
        assert "stopped: broker 1, 2, 3" in "".join(output)
        assert not any(map(is_running, pids.values())), pids
        assert not (cdir / "pids.json").exists()
    finally:
        if terminal1.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(terminal1.pid, signal.SIGKILL)
            terminal1.wait(timeout=10)
        kill_leftovers(cdir, pids)
