"""Real processes for integration tests: free ports, start, wait with deadlines, stop by PID.

Rules kept: every wait has a deadline (no bare sleeps as synchronisation), every process
started is stopped by its own PID (never by name), also when a test fails: use
``ProcessGroup`` as a context manager or fixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports that were free a moment ago on ``host``."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port_blocks(n: int, width: int = 3, host: str = "127.0.0.1") -> list[int]:
    """``n`` ports P, each with P .. P+width-1 free a moment ago (a broker uses its native
    port, +1 for metadata and +2 for admin), the blocks not overlapping."""
    found: list[int] = []
    taken: set[int] = set()
    for _ in range(1000):
        if len(found) == n:
            return found
        (base,) = free_ports(1, host)
        block = set(range(base, base + width))
        if base + width > 65535 or block & taken:
            continue
        socks = []
        try:
            for port in block:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((host, port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        found.append(base)
        taken |= block
    raise RuntimeError(f"could not find {n} blocks of {width} free ports")


def wait_until(
    predicate: Callable[[], T], *, timeout_s: float, interval_s: float = 0.02, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError at the
    deadline with ``what`` in the message."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, KeyError) as e:
            last_error = e
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout_s:g} s waiting for {what or predicate}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        time.sleep(interval_s)


@dataclass
class Proc:
    name: str
    args: list[str]
    log_path: str
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        with (
            contextlib.suppress(OSError),
            open(self.log_path, encoding="utf-8", errors="replace") as f,
        ):
            return f.read()
        return ""


@dataclass
class ProcessGroup:
    """Processes started by one test; ``stop_all`` (also on exceptions) kills each by PID."""

    workdir: str
    procs: dict[str, Proc] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        log_path = os.path.join(self.workdir, f"{name}.log")
        proc = self.procs.get(name) or Proc(name, args, log_path)
        proc.args = args
        out = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc.popen = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
            )
        finally:
            out.close()
        self.procs[name] = proc
        return proc

    def python(self, name: str, module: str, *argv: str) -> Proc:
        return self.start(name, [sys.executable, "-m", module, *argv])

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout_s: float = 10.0) -> None:
        proc = self.procs[name]
        if proc.alive():
            assert proc.popen is not None
            os.kill(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=timeout_s)
        if proc.alive():
            assert proc.popen is not None
            os.kill(proc.pid, signal.SIGKILL)
            proc.popen.wait(timeout=timeout_s)

    def stop_all(self) -> None:
        for name in list(self.procs):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self.kill(name, signal.SIGTERM, timeout_s=5.0)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


class JsonLineClient:
    """A blocking client for a JSON-lines control port, with a timeout on every call."""

    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.file = self.sock.makefile("rwb")

    def call(self, request: dict[str, Any]) -> Any:
        self.file.write(json.dumps(request).encode() + b"\n")
        self.file.flush()
        line = self.file.readline()
        if not line:
            raise ConnectionError("control port closed the connection")
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()


@contextlib.contextmanager
def json_client(host: str, port: int, timeout_s: float = 10.0) -> Iterator[JsonLineClient]:
    client = JsonLineClient(host, port, timeout_s)
    try:
        yield client
    finally:
        client.close()
