"""The cluster a benchmark group runs against, and the worker processes it starts.

``bench_cluster(...)`` starts three brokers on 127.0.0.1 (RF=3 possible, acks=all and
fsync on: the defaults) with their data in a fresh temporary folder on the real disk, and
on leaving, also on an error or Ctrl-C, stops every process it started by its PID and
removes the folder. With ``brokers=[...]`` it targets a running cluster instead and starts
none (no RSS or CPU readings then).

Worker processes (``run_workers``) are ``python -m raftlog.bench.workers SPEC``: each
writes a ready file once connected, waits for the common go file, does its work and writes
its result as JSON; every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from raftlog.testing.procs import ProcessGroup, free_port_blocks, wait_until
from raftlog.testing.wire_client import WireClient
from raftlog.wire import MetadataRequest

from .progress import Progress

RAFTLOG = os.path.join(os.path.dirname(sys.executable), "raftlog")
PY_SPY = os.path.join(os.path.dirname(sys.executable), "py-spy")
WORKER_MODULE = "raftlog.bench.workers"
IDS = (1, 2, 3)
WORKER_DEADLINE_S = 120.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def write_json(path: str, data: dict[str, Any]) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (-1 when it has none or is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # the command name (field 2) may hold spaces: fields after its closing parenthesis
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


class BenchCluster:
    """Three local brokers (or an existing cluster) plus the worker processes of a run."""

    def __init__(
        self, pg: ProcessGroup, root: str, progress: Progress, brokers: list[str] | None = None
    ) -> None:
        self.pg = pg
        self.root = root
        self.progress = progress
        self.external = bool(brokers)
        self.seq = 0
        if brokers:
            self.bootstrap = list(brokers)
            self.ports: dict[int, int] = {}
        else:
            self.ports = dict(zip(IDS, free_port_blocks(3), strict=True))
            self.bootstrap = [f"127.0.0.1:{self.ports[i]}" for i in IDS]
            self.secret = os.path.join(root, "secret")
            with open(self.secret, "w") as f:
                f.write(os.urandom(16).hex())

    # ------------------------------------------------------------------ brokers

    def start(self) -> None:
        if self.external:
            return
        for i in IDS:
            self.start_node(i)
        try:
            for i in IDS:
                wait_until(functools.partial(self.client, i), timeout_s=30, what=f"broker {i}")
            c = self.client(1)
            wait_until(
                lambda: len(c.call(MetadataRequest()).brokers) == 3, timeout_s=30, what="3 brokers"
            )
        except TimeoutError:
            for i in IDS:
                log = self.pg.procs[f"n{i}"].log()[-2000:]
                print(f"--- broker {i} log:\n{log}", file=sys.stderr)
            raise

    def start_node(self, i: int) -> None:
        argv = [RAFTLOG, "node", "start", "--id", str(i), "--listen",
                f"127.0.0.1:{self.ports[i]}", "--data-dir", os.path.join(self.root, f"n{i}"),
                "--cluster-secret-file", self.secret]  # fmt: skip
        for j in IDS:
            argv += ["--peer", f"{j}@127.0.0.1:{self.ports[j]}"]
        self.pg.start(f"n{i}", argv)

    def kill_node(self, i: int, sig: int = signal.SIGKILL) -> None:
        self.pg.kill(f"n{i}", sig)

    def alive(self, i: int) -> bool:
        return self.pg.procs[f"n{i}"].alive()

    def client(self, i: int) -> WireClient:
        """A wire client of broker ``i`` (of the first bootstrap broker when external)."""
        if self.external:
            host, _, port = self.bootstrap[0].rpartition(":")
            return WireClient(host, int(port), timeout_s=5)
        return WireClient("127.0.0.1", self.ports[i], timeout_s=5)

    def broker_pids(self) -> dict[str, int]:
        if self.external:
            return {}
        return {f"n{i}": self.pg.procs[f"n{i}"].pid for i in IDS}

    def rss_mib(self) -> dict[str, float]:
        return {n: round(rss_kib(pid) / 1024, 1) for n, pid in self.broker_pids().items()}

    def cpu_seconds(self) -> dict[str, float]:
        return {n: cpu_seconds(pid) for n, pid in self.broker_pids().items()}

    def create_topic(self, name: str, partitions: int, timeout_ms: int = 60_000) -> None:
        from raftlog import Admin

        with Admin(self.bootstrap) as admin:
            admin.create_topic(
                name, partitions=partitions, replication_factor=3, timeout_ms=timeout_ms
            )

    # ------------------------------------------------------------------ workers

    def run_workers(
        self, kind: str, specs: list[dict[str, Any]], profile: str | None = None
    ) -> tuple[float, list[dict[str, Any]]]:
        """Start one process per spec, wait until all are ready, give the go signal and
        wait for every result; returns (wall seconds from go to the last ``t_end``,
        results). With ``profile`` (a folder), ``py-spy record`` samples every broker and
        worker from the go signal to the end (raw collapsed stacks, one file per process)."""
        self.seq += 1
        base = os.path.join(self.root, f"w{self.seq}")
        go = base + ".go"
        names = []
        result_paths = [f"{base}-{k}.json" for k in range(len(specs))]
        for k, spec in enumerate(specs):
            spec = {
                "kind": kind,
                **spec,
                "go": go,
                "bootstrap": self.bootstrap,
                "ready": f"{base}-{k}.ready",
                "result": result_paths[k],
                "results": result_paths,  # a worker may wait on a sibling's result
                "deadline_s": WORKER_DEADLINE_S,
            }
            path = f"{base}-{k}.spec"
            write_json(path, spec)
            name = f"{spec['kind']}-{self.seq}-{k}"
            self.pg.start(name, [sys.executable, "-m", WORKER_MODULE, path])
            names.append(name)

        def all_ready() -> bool:
            for k, name in enumerate(names):
                if not self.pg.procs[name].alive() and not os.path.exists(f"{base}-{k}.json"):
                    raise RuntimeError(f"{name} exited early:\n{self.pg.procs[name].log()[-3000:]}")
            return all(os.path.exists(f"{base}-{k}.ready") for k in range(len(names)))

        try:
            wait_until(all_ready, timeout_s=60, what=f"{kind} workers ready")
        except BaseException:
            for name in names:
                self.pg.kill(name)
            raise
        spies = self.start_py_spy(profile, names) if profile else []
        try:
            t_go = time.time()
            with open(go, "w"):
                pass
            results = self.collect(base, names)
        finally:
            for spy in spies:
                self.pg.kill(spy, signal.SIGINT)  # py-spy writes its file and exits
        return max(r["t_end"] for r in results) - t_go, results

    def start_py_spy(self, folder: str, workers: list[str]) -> list[str]:
        os.makedirs(folder, exist_ok=True)
        pids = {**self.broker_pids(), **{w: self.pg.procs[w].pid for w in workers}}
        spies = []
        for name, pid in pids.items():
            out = os.path.join(os.path.abspath(folder), f"{name}.txt")
            argv = [PY_SPY, "record", "--format", "raw", "-o", out, "--pid", str(pid)]
            argv += ["--duration", "600", "--rate", "100", "--nonblocking"]
            spies.append(self.pg.start(f"py-spy-{name}", argv).name)
        time.sleep(1.0)  # let py-spy attach before the clock starts
        return spies

    def collect(self, base: str, names: list[str]) -> list[dict[str, Any]]:
        results = []
        for k, name in enumerate(names):
            proc = self.pg.procs[name]
            assert proc.popen is not None
            try:
                proc.popen.wait(timeout=WORKER_DEADLINE_S + 60)
            except BaseException:
                for other in names:
                    self.pg.kill(other)
                raise
            path = f"{base}-{k}.json"
            if not os.path.exists(path):
                raise RuntimeError(f"{name} left no result:\n{proc.log()[-3000:]}")
            with open(path) as f:
                results.append(json.load(f))
        return results


@contextlib.contextmanager
def bench_cluster(
    progress: Progress, data_dir: str, group: str, brokers: list[str] | None = None
) -> Iterator[BenchCluster]:
    """A started cluster for one figure group; every process it started is stopped by PID
    and its temporary folder removed on the way out, also on failure."""
    root = tempfile.mkdtemp(prefix=f"raftlog-bench-{group}-", dir=data_dir)
    try:
        with ProcessGroup(root) as pg:
            cluster = BenchCluster(pg, root, progress, brokers)
            if not cluster.external:
                progress.note(f"{group}: starting 3 brokers in {root}")
            cluster.start()
            yield cluster
    finally:
        shutil.rmtree(root, ignore_errors=True)
