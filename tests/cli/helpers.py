"""Running the real ``raftlog`` console script against a real broker process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

RAFTLOG = os.path.join(os.path.dirname(sys.executable), "raftlog")
BOX_CHARS = set("─│┌┐└┘├┤┬┴┼━┃┏┓┗┛┡┩╇╈╭╮╯╰═║")


@dataclass
class Cli:
    """The CLI, pointed at one broker (``RAFTLOG_BROKERS``) with its own ``RAFTLOG_HOME``."""

    brokers: str
    home: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTLOG_")}
        env.pop("COLUMNS", None)
        env["RAFTLOG_BROKERS"] = self.brokers
        env["RAFTLOG_HOME"] = self.home
        # `raftlog` in a shell pipeline is this venv's console script
        env["PATH"] = os.path.dirname(RAFTLOG) + os.pathsep + env.get("PATH", "")
        env.update(extra)
        return env

    def run(
        self, *args: str, input: str | None = None, timeout_s: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """``raftlog ARGS...`` with stdout and stderr captured (stdout is a pipe)."""
        return subprocess.run(
            [RAFTLOG, *args],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout_s,
        )

    def ok(self, *args: str, input: str | None = None) -> str:
        """stdout of a command that must succeed."""
        r = self.run(*args, input=input)
        assert r.returncode == 0, f"raftlog {' '.join(args)}: exit {r.returncode}\n{r.stderr}"
        assert "Traceback" not in r.stderr, r.stderr
        return r.stdout

    def fails(self, code: int, *args: str, input: str | None = None) -> str:
        """stderr of a command that must exit with ``code`` (no traceback)."""
        r = self.run(*args, input=input)
        assert r.returncode == code, (
            f"raftlog {' '.join(args)}: exit {r.returncode}, wanted {code}\n{r.stdout}\n{r.stderr}"
        )
        assert "Traceback" not in r.stderr, r.stderr
        return r.stderr

    def sh(self, script: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """A bash pipeline (``set -o pipefail``) with this CLI's environment."""
        return subprocess.run(
            ["bash", "-c", f"set -euo pipefail; {script}"],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout_s,
        )

    def records(self, topic: str, *args: str) -> list[dict[str, Any]]:
        """``consume TOPIC ARGS --output json -q`` (give -e or -n), parsed."""
        out = self.ok("consume", topic, *args, "--output", "json", "-q")
        return [json.loads(line) for line in out.splitlines()]

    def create(self, topic: str, partitions: int = 1) -> None:
        self.ok("topic", "create", topic, "-p", str(partitions))
