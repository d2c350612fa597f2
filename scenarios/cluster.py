"""A real local cluster for fault scenarios: broker processes behind the fault proxy.

Broker ``i`` binds its native, metadata (+1) and admin (+2) ports on its own loopback
address ``127.0.0.(1+i)``; the fault proxy (:mod:`raftlog.scenarios.proxy`, a process of its
own) listens on 127.0.0.1. Every link goes through the proxy:

- ``"i->j"``: broker i dialling broker j's native port (partition Raft), framed;
- ``"m:i->j"`` for i > j: broker i dialling broker j's metadata port (pysyncobj: only the
  node with the greater address dials, see ``BrokerConfig.metadata_dial``), raw bytes;
- ``"client->i"``: clients to broker i. Each broker advertises its client link's proxy port,
  so every client connection after the bootstrap goes through the proxy too.

Process faults (SIGKILL, SIGSTOP/SIGCONT, restart), power loss (the broker writes through the
storage seam's ledger, ``RAFTLOG_SCENARIO_LEDGER``; ``power_fail`` kills it and cuts every
file back to what was fsynced), disk faults (``RAFTLOG_SCENARIO_DISK_FAULTS``) and clock
faults (``RAFTLOG_SCENARIO_CLOCK``) act on one broker each. Every process is started here and
stopped here by its PID; each broker's life logs to its own file.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftlog.scenarios.history import (
    BecameLeader,
    Event,
    MemorySample,
    ProcessExit,
    TermOnRestart,
    Traceback,
    Vote,
)
from raftlog.scenarios.proxy_control import ProxyControl
from raftlog.storage.failure import DISK_FAILURE_EXIT
from raftlog.storage.files import apply_power_loss
from raftlog.testing.procs import free_port_blocks, wait_until

PROXY_HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
MEMORY_AFTER_S = 8.0


def broker_host(node_id: int) -> str:
    """Broker ``node_id``'s own loopback address (the proxy has 127.0.0.1)."""
    if not 1 <= node_id <= 9:
        raise ValueError(f"a scenario cluster has brokers 1..9, not {node_id}")
    return f"127.0.0.{1 + node_id}"


@dataclass
class BrokerNode:
    node_id: int
    host: str
    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    life: int = 0
    paused: bool = False
    killed_by_us: bool = False
    exit_recorded: bool = False
    started_at: float = 0.0
    logs: list[Path] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def ledger(self) -> Path:
        return self.folder / "fs-ledger.tsv"

    @property
    def disk_faults(self) -> Path:
        return self.folder / "disk-faults.json"

    @property
    def clock_file(self) -> Path:
        return self.folder / "clock.json"

    @property
    def admin(self) -> tuple[str, int]:
        return self.host, self.port + 2

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ScenarioCluster:
    """``n`` brokers and the fault proxy under ``root``; use as a context manager."""

    def __init__(
        self,
        root: Path,
        n: int,
        seed: int,
        *,
        record: Callable[[Event], None],
        say: Callable[[str], None] = lambda text: None,
    ) -> None:
        if not 1 <= n <= 9:
            raise ValueError(f"a scenario cluster has 1..9 brokers, not {n}")
        self.root = root
        self.n = n
        self.seed = seed
        self.rng = random.Random(seed * 7919 + 1)
        self.record = record
        self.say = say
        self.secret_file = root / "cluster.secret"
        self.nodes: dict[int, BrokerNode] = {}
        self.proxy_proc: subprocess.Popen[bytes] | None = None
        self.proxy: ProxyControl | None = None
        self.ports: dict[str, int] = {}
        self._lock = threading.RLock()
        self._last_terms: dict[tuple[int, str], int] = {}
        self._parsed_upto: dict[Path, int] = {}

    # ------------------------------------------------------------------ addresses

    @property
    def ids(self) -> list[int]:
        return sorted(self.nodes)

    def native_link(self, src: int, dst: int) -> str:
        return f"{src}->{dst}"

    def metadata_link(self, a: int, b: int) -> str:
        """The one metadata link between a and b (the greater id dials)."""
        hi, lo = max(a, b), min(a, b)
        return f"m:{hi}->{lo}"

    def peer_links(self, a: int, b: int) -> list[str]:
        return [self.native_link(a, b), self.native_link(b, a), self.metadata_link(a, b)]

    def bootstrap(self) -> str:
        """Client bootstrap addresses: every broker's client link on the proxy."""
        return ",".join(f"{PROXY_HOST}:{self.ports[f'client->{i}']}" for i in self.ids)

    # ------------------------------------------------------------------ start and stop

    def __enter__(self) -> ScenarioCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, attempts: int = 3) -> None:
        """Start the proxy and every broker and wait until they are ready. Ports are picked
        free and then bound by another process, so another program (or a second scenario
        run) can take one in between: a start that fails is undone and tried again with
        fresh ports and folders, ``attempts`` times at most."""
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                return
            except (RuntimeError, TimeoutError, OSError) as e:
                if attempt == attempts:
                    raise
                self.say(f"cluster start failed ({e}); starting again with fresh ports")
                self.close()
                self.nodes.clear()
                self.proxy, self.proxy_proc = None, None
                for child in self.root.iterdir():
                    if child.is_dir():
                        shutil.rmtree(child, ignore_errors=True)

    def _start_once(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.secret_file.write_text(secrets.token_urlsafe(32) + "\n")
        for i in range(1, self.n + 1):
            host = broker_host(i)
            (port,) = free_port_blocks(1, 3, host)
            folder = self.root / f"broker-{i}"
            folder.mkdir(parents=True, exist_ok=True)
            self.nodes[i] = BrokerNode(i, host, port, folder)
        self._start_proxy()
        for i in self.ids:
            self.start_broker(i)
        self.wait_ready()

    def _routes(self) -> dict[str, list[Any]]:
        routes: dict[str, list[Any]] = {}
        for i, a in self.nodes.items():
            routes[f"client->{i}"] = [0, a.host, a.port, True]
            for j, b in self.nodes.items():
                if i == j:
                    continue
                routes[self.native_link(i, j)] = [0, b.host, b.port, True]
                if i > j:
                    routes[self.metadata_link(i, j)] = [0, b.host, b.port + 1, False]
        return routes

    def _start_proxy(self) -> None:
        routes_file = self.root / "proxy-routes.json"
        routes_file.write_text(json.dumps(self._routes(), indent=1))
        log = open(self.root / "proxy.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proxy_proc = subprocess.Popen(
                [sys.executable, "-m", "raftlog.scenarios.proxy", "--routes", str(routes_file),
                 "--control-port", "0", "--seed", str(self.seed)],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            log.close()
        assert self.proxy_proc.stdout is not None
        ready = _read_line(self.proxy_proc.stdout, timeout_s=30.0)
        try:
            doc = json.loads(ready)
        except ValueError:
            doc = {}
        if not isinstance(doc, dict) or doc.get("event") != "ready":
            raise RuntimeError(f"the fault proxy did not start: {ready!r}")
        self.ports = {str(k): int(v) for k, v in doc["ports"].items()}
        threading.Thread(
            target=_drain, args=(self.proxy_proc.stdout,), daemon=True, name="proxy-out"
        ).start()
        self.proxy = ProxyControl(int(doc["control_port"]), PROXY_HOST)
        self.proxy.connect()

    def broker_args(self, i: int) -> list[str]:
        node = self.nodes[i]
        args = [sys.executable, "-m", "raftlog.cli.main", "node", "start",
                "--id", str(i), "--listen", f"{node.host}:{node.port}",
                "--advertise", f"{PROXY_HOST}:{self.ports[f'client->{i}']}",
                "--data-dir", str(node.data_dir),
                "--cluster-secret-file", str(self.secret_file)]  # fmt: skip
        for j, peer in self.nodes.items():
            args += ["--peer", f"{j}@{peer.host}:{peer.port}"]
            if j != i:
                args += ["--dial", f"{j}@{PROXY_HOST}:{self.ports[self.native_link(i, j)]}"]
            if j < i:
                port = self.ports[self.metadata_link(i, j)]
                args += ["--metadata-dial", f"{j}@{PROXY_HOST}:{port}"]
        return args

    def start_broker(self, i: int) -> None:
        with self._lock:
            node = self.nodes[i]
            assert not node.alive(), f"broker {i} is running"
            node.life += 1
            log_path = node.folder / f"broker-{i}.life{node.life}.log"
            node.logs.append(log_path)
            env = {
                **os.environ,
                "RAFTLOG_SCENARIO_LEDGER": str(node.ledger),
                "RAFTLOG_SCENARIO_DISK_FAULTS": str(node.disk_faults),
                "RAFTLOG_SCENARIO_CLOCK": str(node.clock_file),
            }
            out = open(log_path, "ab")  # noqa: SIM115 - handed to the child
            try:
                node.proc = subprocess.Popen(
                    self.broker_args(i), stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env=env,
                )  # fmt: skip
            finally:
                out.close()
            node.paused = False
            node.killed_by_us = False
            node.exit_recorded = False
            node.started_at = time.monotonic()
            self.say(f"broker {i} started (life {node.life}, pid {node.proc.pid})")

    def health(self, i: int, timeout_s: float = 2.0) -> dict[str, Any] | None:
        host, port = self.nodes[i].admin
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=timeout_s) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            body = e.read()
        except (OSError, ValueError):
            return None
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def wait_ready(self, ids: list[int] | None = None, timeout_s: float = START_TIMEOUT_S) -> None:
        """Every listed (default: every running) broker's metadata caught up."""
        wanted = ids if ids is not None else [i for i in self.ids if self.nodes[i].alive()]

        def ready() -> bool:
            for i in wanted:
                if not self.nodes[i].alive():
                    raise RuntimeError(f"broker {i} exited while starting: see {self.log_of(i)}")
                doc = self.health(i)
                if not doc or not doc.get("metadata_ready"):
                    return False
            return True

        wait_until(ready, timeout_s=timeout_s, interval_s=0.2, what=f"brokers {wanted} ready")

    def log_of(self, i: int) -> Path:
        return self.nodes[i].logs[-1]

    def close(self) -> None:
        """Stop every broker and the proxy by PID (resume paused ones first)."""
        for i in self.ids:
            with contextlib.suppress(Exception):
                self.stop_broker(i)
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                self.proxy.close()
        if self.proxy_proc is not None and self.proxy_proc.poll() is None:
            self.proxy_proc.terminate()
            try:
                self.proxy_proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proxy_proc.kill()
                self.proxy_proc.wait(timeout=STOP_TIMEOUT_S)

    # ------------------------------------------------------------------ process faults

    def _reap(self, node: BrokerNode, sig: int) -> None:
        assert node.proc is not None
        node.killed_by_us = True
        if node.proc.poll() is None:
            if node.paused and sig != signal.SIGKILL:
                os.kill(node.proc.pid, signal.SIGCONT)
            os.kill(node.proc.pid, sig)
            try:
                node.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(node.proc.pid, signal.SIGKILL)
                node.proc.wait(timeout=STOP_TIMEOUT_S)
        node.paused = False
        self._record_exit(node)

    def _record_exit(self, node: BrokerNode) -> None:
        assert node.proc is not None
        if node.exit_recorded:
            return
        node.exit_recorded = True
        code = node.proc.returncode if node.proc.returncode is not None else 0
        self.record(ProcessExit(node.node_id, node.killed_by_us, int(code), time.monotonic()))

    def kill(self, i: int) -> None:
        with self._lock:
            node = self.nodes[i]
            if node.alive():
                self._reap(node, signal.SIGKILL)
                self.say(f"broker {i} killed (SIGKILL)")

    def stop_broker(self, i: int) -> None:
        with self._lock:
            node = self.nodes[i]
            if node.alive():
                self._reap(node, signal.SIGTERM)

    def pause(self, i: int) -> None:
        with self._lock:
            node = self.nodes[i]
            if node.alive() and not node.paused:
                assert node.proc is not None
                os.kill(node.proc.pid, signal.SIGSTOP)
                node.paused = True
                self.say(f"broker {i} paused (SIGSTOP)")

    def resume(self, i: int) -> None:
        with self._lock:
            node = self.nodes[i]
            if node.alive() and node.paused:
                assert node.proc is not None
                os.kill(node.proc.pid, signal.SIGCONT)
                node.paused = False
                self.say(f"broker {i} resumed (SIGCONT)")

    def power_fail(self, i: int, *, torn: bool = False) -> dict[str, int]:
        """Kill broker i and cut its files back to what its fsyncs made durable."""
        with self._lock:
            node = self.nodes[i]
            if node.alive():
                self._reap(node, signal.SIGKILL)
            cut: dict[str, int] = {}
            if node.ledger.exists():
                cut = apply_power_loss(str(node.ledger), self.rng, torn=torn)
            lost = sum(cut.values())
            self.say(f"broker {i} power-failed: {len(cut)} files cut, {lost} bytes lost")
            return cut

    def ensure_running(self) -> list[int]:
        """Resume paused brokers and restart stopped ones; returns those restarted."""
        started = []
        for i in self.ids:
            node = self.nodes[i]
            if node.paused:
                self.resume(i)
            if not node.alive():
                if node.proc is not None:
                    self._record_exit(node)
                self.start_broker(i)
                started.append(i)
        return started

    def unexpected_exits(self) -> list[int]:
        """Brokers that died without us killing them (each recorded once)."""
        died = []
        with self._lock:
            for node in self.nodes.values():
                ended = node.proc is not None and node.proc.poll() is not None
                if ended and not node.exit_recorded:
                    if self._halted_by_injected_disk_fault(node):
                        node.killed_by_us = True
                        self.say(f"broker {node.node_id} halted on its injected disk fault")
                    if not node.killed_by_us:
                        died.append(node.node_id)
                    self._record_exit(node)
        return died

    # ------------------------------------------------------------------ disk and clock faults

    def _halted_by_injected_disk_fault(self, node: BrokerNode) -> bool:
        """The broker's fail-stop on a disk error (exit 74) while we inject one: the
        documented answer to the fault (raftlog/storage/failure.py), not a crash."""
        if node.proc is None or node.proc.returncode != DISK_FAILURE_EXIT:
            return False
        try:
            faults = json.loads(node.disk_faults.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(faults, dict) and any(v for v in faults.values())

    def set_disk_faults(self, i: int, faults: dict[str, Any] | None) -> None:
        path = self.nodes[i].disk_faults
        _write_json_atomically(path, faults or {})

    def set_clock(self, i: int, *, rate: float = 1.0, jump_s: float = 0.0,
                  wall_offset_s: float = 0.0) -> None:  # fmt: skip
        _write_json_atomically(
            self.nodes[i].clock_file,
            {"rate": rate, "jump_s": jump_s, "wall_offset_s": wall_offset_s},
        )

    # ------------------------------------------------------------------ network faults

    def control(self) -> ProxyControl:
        assert self.proxy is not None, "the cluster is not started"
        return self.proxy

    def isolate(self, i: int, *, reset: bool = False) -> list[str]:
        """Cut broker i from every peer, both ways (its client link stays up)."""
        links = [link for j in self.ids if j != i for link in self.peer_links(i, j)]
        for link in links:
            self.control().cut(link, "both", reset)
        return links

    def partition(self, groups: list[list[int]]) -> list[str]:
        """Cut every peer link between brokers of different groups."""
        side = {i: g for g, members in enumerate(groups) for i in members}
        cut = []
        for a in self.ids:
            for b in self.ids:
                if a < b and side.get(a) != side.get(b):
                    for link in self.peer_links(a, b):
                        self.control().cut(link, "both")
                        cut.append(link)
        return cut

    def cut_pairs(self, pairs: list[tuple[int, int]]) -> list[str]:
        """Cut every peer link between each pair, both ways."""
        cut = []
        for a, b in pairs:
            for link in self.peer_links(a, b):
                self.control().cut(link, "both")
                cut.append(link)
        return cut

    def _inbound(self, i: int, j: int) -> list[tuple[str, str]]:
        """The (link, direction) pairs that carry bytes from peer j to broker i."""
        meta = self.metadata_link(i, j)
        meta_dir = "b_to_a" if i > j else "a_to_b"  # the greater id is side a (it dials)
        return [
            (self.native_link(j, i), "a_to_b"),
            (self.native_link(i, j), "b_to_a"),
            (meta, meta_dir),
        ]

    def deafen(self, i: int) -> list[str]:
        """Broker i hears nothing from its peers; they still hear it."""
        done = []
        for j in self.ids:
            if j != i:
                for link, direction in self._inbound(i, j):
                    self.control().cut(link, direction)  # type: ignore[arg-type]
                    done.append(f"{link}:{direction}")
        return done

    def mute(self, i: int) -> list[str]:
        """Broker i's peers hear nothing from it; it still hears them."""
        done = []
        for j in self.ids:
            if j != i:
                for link, direction in self._inbound(j, i):
                    self.control().cut(link, direction)  # type: ignore[arg-type]
                    done.append(f"{link}:{direction}")
        return done

    def heal_network(self) -> None:
        self.control().heal()

    # ------------------------------------------------------------------ observation

    def sample_memory(self) -> None:
        """Each running broker's RSS, once it is past start-up (imports and recovery make
        the first seconds of a life no baseline for growth)."""
        now = time.monotonic()
        for node in self.nodes.values():
            if node.alive() and node.proc is not None and now - node.started_at >= MEMORY_AFTER_S:
                rss = _rss_bytes(node.proc.pid)
                if rss:
                    self.record(MemorySample(node.node_id, rss, now))

    def leading_counts(self) -> dict[int, int]:
        counts = {}
        for i in self.ids:
            doc = self.health(i) if self.nodes[i].alive() and not self.nodes[i].paused else None
            if doc is not None:
                counts[i] = int(doc.get("leading", 0))
        return counts

    def metadata_leader(self) -> int | None:
        for i in self.ids:
            if self.nodes[i].alive() and not self.nodes[i].paused:
                doc = self.health(i)
                if doc and doc.get("metadata_leader") is not None:
                    return int(doc["metadata_leader"])
        return None

    def busiest_leader(self) -> int | None:
        counts = self.leading_counts()
        if not counts:
            return None
        return max(sorted(counts), key=lambda i: counts[i])

    def broker_events(self) -> list[Event]:
        """The brokers' Raft events and tracebacks, parsed from every life's log."""
        events: list[Event] = []
        for node in self.nodes.values():
            for life, path in enumerate(node.logs, start=1):
                events.extend(self._parse_log(node.node_id, life, path))
        return events

    def _parse_log(self, broker: int, life: int, path: Path) -> Iterator[Event]:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        last_term: dict[str, int] = {}
        for line in text.splitlines():
            if "event=raft_" not in line:
                continue
            fields = dict(_FIELD.findall(line))
            group = fields.get("group")
            if group is None:
                continue
            t = _line_time(line)
            kind = line.split("event=", 1)[1].split(" ", 1)[0]
            try:
                term = int(fields.get("term", "-1"))
            except ValueError:
                continue
            if kind == "raft_open":
                before = self._last_terms.get((broker, group))
                if before is not None:
                    yield TermOnRestart(group, broker, before, term)
            elif kind == "raft_leader":
                yield BecameLeader(group, broker, term, t)
            elif kind == "raft_hard_state":
                vote = fields.get("vote", "-")
                if vote.isdigit():
                    yield Vote(group, broker, term, int(vote), t)
            last_term[group] = max(last_term.get(group, -1), term)
        self._last_terms.update({(broker, g): term for g, term in last_term.items()})
        if "Traceback (most recent call last)" in text:
            for block in _tracebacks(text):
                yield Traceback(broker, block)


_FIELD = re.compile(r"(\w+)=(\S+)")
_TS = re.compile(r"ts=(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})")


def _line_time(line: str) -> float:
    """A log line's time on this machine's monotonic clock (its local wall time shifted by
    the current wall-monotonic difference); 0.0 when the line has no time."""
    m = _TS.search(line)
    if m is None:
        return 0.0
    try:
        wall = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
    except (ValueError, OverflowError):
        return 0.0
    return wall - (time.time() - time.monotonic())


def _tracebacks(text: str) -> list[str]:
    blocks = []
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            block = [line]
            for follow in lines[n + 1 : n + 60]:
                block.append(follow)
                if follow and not follow.startswith((" ", "\t")):
                    break
            blocks.append("\n".join(block))
    return blocks[:20]


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _write_json_atomically(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def _read_line(stream: Any, timeout_s: float) -> str:
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not box:
        raise RuntimeError(f"no ready line from the fault proxy within {timeout_s} s")
    return box[0].decode(errors="replace").strip()


def _drain(stream: Any) -> None:
    with contextlib.suppress(OSError, ValueError):
        while stream.read(65536):
            pass
