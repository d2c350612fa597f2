"""Helpers for the CLI tests that start real brokers: run ``raftlog`` as a user would
(a subprocess, its own ``RAFTLOG_HOME``), read a local cluster's PIDs, run a command in a
pseudo-terminal, and kill by PID whatever a test leaves running."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from raftlog.testing.procs import wait_until

RAFTLOG = os.path.join(os.path.dirname(sys.executable), "raftlog")
REPO = Path(__file__).resolve().parents[2]
BOX_CHARS = set("┏┓┗┛┡┩┢┪━┃│─┌┐└┘├┤┬┴┼╇╈┳┻")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a new user: no broker or profile preset, ``RAFTLOG_HOME`` in
    the test's folder."""
    drop = ("RAFTLOG_BROKERS", "RAFTLOG_PROFILE", "RAFTLOG_CLUSTER_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["RAFTLOG_HOME"] = str(home)
    env.update(extra)
    return env


def run_cli(
    args: list[str],
    env: dict[str, str],
    *,
    check: bool = True,
    timeout_s: float = 60.0,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``raftlog ARGS``; with ``check``, fail the test (showing both outputs) unless it
    exits 0."""
    r = subprocess.run(
        [RAFTLOG, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if check and r.returncode != 0:
        raise AssertionError(
            f"raftlog {' '.join(args)} exited with {r.returncode}\n"
            f"--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
        )
    return r


def read_pids(cluster_dir: Path) -> dict[int, int]:
    """Broker id -> PID from ``<dir>/pids.json`` (empty when there is none)."""
    try:
        data = json.loads((cluster_dir / "pids.json").read_text())
    except FileNotFoundError:
        return {}
    return {int(i): int(pid) for i, pid in data["pids"].items()}


def is_running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _is_broker_under(pid: int, root: Path) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return False
    return "node" in args and "start" in args and any(a.startswith(str(root)) for a in args)


def kill_leftovers(cluster_dir: Path, pids: dict[int, int] | None = None) -> list[int]:
    """SIGKILL the brokers of ``cluster_dir`` (from ``pids`` and its pids.json) that still
    run, checking first that each PID is a broker on that folder; returns those killed."""
    known = dict(read_pids(cluster_dir))
    known.update(pids or {})
    killed = []
    for pid in set(known.values()):
        if is_running(pid) and _is_broker_under(pid, cluster_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    for pid in killed:
        wait_until(lambda p=pid: not is_running(p), timeout_s=10, what=f"pid {pid} to die")
    return killed


def wait_gone(pids: dict[int, int], timeout_s: float = 30.0) -> None:
    wait_until(
        lambda: not any(is_running(p) for p in pids.values()),
        timeout_s=timeout_s,
        what=f"brokers {sorted(pids.values())} to exit",
    )


def run_in_pty(args: list[str], env: dict[str, str], columns: int = 80) -> str:
    """``raftlog ARGS`` with a pseudo-terminal of ``columns`` columns as stdout; its output
    without ANSI escapes."""
    env = {**env, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm-256color"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        os.execve(RAFTLOG, [RAFTLOG, *args], env)
    chunks = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(fd)
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    assert os.waitstatus_to_exitcode(status) == 0, text
    return _ANSI.sub("", text)
