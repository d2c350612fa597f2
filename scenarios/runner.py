"""Runs one fault scenario end to end and judges its history.

``run_scenario`` starts a :class:`~raftlog.scenarios.cluster.ScenarioCluster` behind the
fault proxy, creates the workload topic, starts the workload processes
(:mod:`raftlog.scenarios.workload`), lets the scenario's nemesis act for the run's duration
(every fault logged as a ``fault`` event, every heal as ``heal``), then heals everything,
restarts what is down, waits for recovery, lets the workload run on for a while, stops it,
reads every partition from 0 to its end, reads the group's committed offsets, stops the
cluster, dumps every replica from disk, parses the brokers' Raft events from their logs,
merges it all into ``history.jsonl`` and runs every checker. Artifacts stay in the run's
folder: the history, each process's log, ``results.json``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftlog.scenarios.checkers import CheckParams, format_results, run_all
from raftlog.scenarios.cluster import ScenarioCluster
from raftlog.scenarios.data_checkers import CheckResult
from raftlog.scenarios.history import (
    CommittedRead,
    Event,
    Fault,
    FinalRead,
    Heal,
    HistoryWriter,
    ReplicaDump,
    Send,
    read_history,
)
from raftlog.storage.files import OsFileSystem
from raftlog.storage.log import PartitionLog
from raftlog.storage.records import decode_batches
from raftlog.testing.procs import wait_until

TOPIC = "scenario"
GROUP = "scenario-group"
MEMBERS = 3
READERS = 2
STOP_GRACE_S = 20.0


@dataclass
class RunSettings:
    """How one run is shaped; scenarios adjust these (``short`` for the CI tier)."""

    nodes: int = 3
    seed: int = 0
    duration_s: float = 60.0
    partitions: int = 6
    rate: float = 150.0
    tail_s: float = 12.0
    warmup_s: float = 4.0
    session_ms: int = 6_000
    params: CheckParams = field(default_factory=CheckParams)
    short: bool = False


@dataclass
class ScenarioResult:
    scenario: str
    name: str
    status: str  # PASS, FAIL, SKIP, ERROR
    seed: int
    nodes: int
    folder: Path | None
    reason: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    measures: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def summary(self) -> str:
        return f"RESULT {self.scenario} {self.name}: {self.status}"


class Stop(Exception):
    """The run was asked to stop (Ctrl-C) or its nemesis ran out of time."""


class Nemesis:
    """What a scenario's fault schedule acts through: the cluster, the workload, a seeded
    random source, and a clock bounded by the run's duration."""

    def __init__(
        self,
        cluster: ScenarioCluster,
        workload: Workload,
        settings: RunSettings,
        record: Callable[[Event], None],
        say: Callable[[str], None],
        stop: threading.Event,
    ) -> None:
        self.cluster = cluster
        self.workload = workload
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.record = record
        self.say = say
        self.stop_event = stop
        self.started = time.monotonic()
        self.deadline = self.started + settings.duration_s
        self.faults = 0
        self.extra: dict[str, Any] = {}

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def sleep(self, seconds: float, *, allow_past_deadline: bool = False) -> None:
        """Wait ``seconds`` (cut at the deadline unless allowed past it); raises ``Stop``
        when the run is asked to stop."""
        end = time.monotonic() + max(0.0, seconds)
        if not allow_past_deadline:
            end = min(end, self.deadline)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            if self.stop_event.wait(min(left, 0.5)):
                raise Stop()
            self.workload.check_alive()

    def fault(self, kind: str, target: str, detail: str = "", *, available: bool = True) -> None:
        """Log a fault; ``available=False`` when it takes away the service the cluster owes
        (every broker or a majority down, clients cut off): the availability checker's U
        does not apply while it lasts."""
        self.faults += 1
        self.record(Fault(kind, target, detail, time.monotonic(), available))
        self.say(f"fault {kind} {target} {detail}".rstrip())

    def heal(self) -> None:
        """End every active fault: links, disk and clock faults, paused and stopped brokers."""
        cluster = self.cluster
        cluster.heal_network()
        for i in cluster.ids:
            if cluster.nodes[i].disk_faults.exists():
                cluster.set_disk_faults(i, None)
            if cluster.nodes[i].clock_file.exists():
                cluster.set_clock(i)
        cluster.ensure_running()
        self.workload.heal()
        self.record(Heal(time.monotonic()))
        self.say("heal: every link healed, every broker running")

    def running(self) -> bool:
        return self.remaining() > 0 and not self.stop_event.is_set()


# ------------------------------------------------------------------ the workload processes


class Workload:
    """The producer, the group members and the readers, each a process writing its own
    history file under ``folder``."""

    def __init__(self, folder: Path, cluster: ScenarioCluster, settings: RunSettings) -> None:
        self.folder = folder
        self.cluster = cluster
        self.settings = settings
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.paused: set[str] = set()
        self.expected_dead: set[str] = set()
        self.generation = 0
        self._lock = threading.Lock()

    def _start(self, role: str, name: str, *extra: str) -> None:
        s = self.settings
        args = [sys.executable, "-m", "raftlog.scenarios.workload", role,
                "--bootstrap", self.cluster.bootstrap(), "--topic", TOPIC,
                "--partitions", str(s.partitions), "--name", name,
                "--history", str(self.folder / f"history-{name}.jsonl"),
                "--duration", "3000", "--seed", str(s.seed), *extra]  # fmt: skip
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()
        with self._lock:
            self.procs[name] = proc

    def start(self) -> None:
        s = self.settings
        self._start("producer", "p1", "--rate", str(s.rate))
        for m in range(1, MEMBERS + 1):
            self.start_member(f"m{m}")
        for r in range(1, READERS + 1):
            self._start("reader", f"r{r}")

    def start_member(self, name: str) -> None:
        self._start("member", name, "--group", GROUP, "--session-ms", str(self.settings.session_ms))

    def members(self) -> list[str]:
        with self._lock:
            return sorted(
                n for n, p in self.procs.items() if n.startswith("m") and p.poll() is None
            )

    def kill(self, name: str) -> None:
        with self._lock:
            proc = self.procs[name]
            self.expected_dead.add(name)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        self.paused.discard(name)

    def pause(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGSTOP)
            self.paused.add(name)

    def resume(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None and name in self.paused:
            proc.send_signal(signal.SIGCONT)
        self.paused.discard(name)

    def heal(self) -> None:
        for name in list(self.paused):
            self.resume(name)

    def check_alive(self) -> None:
        """A workload process that died on its own is a harness failure: say which."""
        with self._lock:
            for name, proc in self.procs.items():
                if proc.poll() is not None and name not in self.expected_dead:
                    self.expected_dead.add(name)
                    raise RuntimeError(
                        f"workload process {name} exited with {proc.returncode}: "
                        f"see {self.folder / (name + '.log')}"
                    )

    def stop(self, names: list[str], timeout_s: float) -> None:
        for name in names:
            self.resume(name)
            proc = self.procs[name]
            self.expected_dead.add(name)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for name in names:
            proc = self.procs[name]
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def stop_all(self) -> None:
        producers = [n for n in self.procs if n.startswith("p")]
        self.stop(producers, timeout_s=90.0)
        self.stop([n for n in self.procs if n not in producers], timeout_s=STOP_GRACE_S)

    def histories(self) -> list[Path]:
        """The workload processes' history files (not the nemesis's)."""
        return sorted(self.folder / f"history-{name}.jsonl" for name in self.procs)


# ------------------------------------------------------------------ end of run reads


def final_reads(cluster: ScenarioCluster, partitions: int) -> tuple[list[Event], dict[int, int]]:
    """Every partition from 0 to its end (and the group's committed offsets)."""
    from raftlog.client import Consumer

    events: list[Event] = []
    ends: dict[int, int] = {}
    consumer = Consumer(cluster.bootstrap().split(","), client_id="final-read")
    try:
        parts = [(TOPIC, p) for p in range(partitions)]
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, 0)
        end_offsets = consumer.end_offsets(parts)
        ends = {tp.partition: int(off) for tp, off in end_offsets.items()}
        got: dict[int, list[tuple[int, str]]] = {p: [] for p in range(partitions)}
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            if all(consumer.position((TOPIC, p)) >= ends[p] for p in range(partitions)):
                break
            for r in consumer.poll(timeout_ms=500, max_records=5000):
                value = r.value.decode() if isinstance(r.value, bytes) else str(r.value)
                got[r.partition].append((int(r.offset), value))
        else:
            raise RuntimeError("the final read did not reach the end offsets within 120 s")
        events.extend(FinalRead(p, got[p]) for p in range(partitions))
    finally:
        consumer.close(timeout_ms=5_000)
    group = Consumer(cluster.bootstrap().split(","), group_id=GROUP, client_id="final-offsets")
    try:
        for p in range(partitions):
            committed = group.committed((TOPIC, p))
            if committed is not None:
                events.append(CommittedRead(GROUP, p, int(committed), time.monotonic()))
    finally:
        group.close(timeout_ms=5_000)
    return events, ends


def dump_replicas(
    cluster: ScenarioCluster, partitions: int, ends: dict[int, int], scratch: Path
) -> list[ReplicaDump]:
    """Every broker's replica of every partition, read from a copy of its folder."""
    dumps = []
    fs = OsFileSystem()
    for i in cluster.ids:
        for p in range(partitions):
            folder = cluster.nodes[i].data_dir / TOPIC / str(p)
            if not folder.is_dir():
                continue
            copy = scratch / f"b{i}-p{p}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(folder, copy)
            log = PartitionLog.open(fs, str(copy))
            records: list[tuple[int, str]] = []
            try:
                offset = log.log_start_offset()
                end = log.log_end_offset()
                while offset < end:
                    data = log.read(offset, 4 * 1024 * 1024, end)
                    if not data:
                        break
                    for header, decoded in decode_batches(data):
                        offset = header.last_offset + 1
                        if header.is_control:
                            continue
                        for r in decoded:
                            value = r.value.decode(errors="replace") if r.value else ""
                            records.append((r.offset, value))
            finally:
                log.close()
            shutil.rmtree(copy, ignore_errors=True)
            dumps.append(ReplicaDump(p, i, records, ends.get(p, 0)))
    return dumps


def _converged(dumps: list[ReplicaDump]) -> bool:
    by_partition: dict[int, list[ReplicaDump]] = {}
    for d in dumps:
        by_partition.setdefault(d.partition, []).append(d)
    for of_p in by_partition.values():
        views = [[(o, v) for o, v in d.records if o < d.committed_end] for d in of_p]
        if any(view != views[0] for view in views):
            return False
    return True


# ------------------------------------------------------------------ measures


def measure(history: list[Event]) -> dict[str, Any]:
    """Unavailability (the longest stretch a partition acknowledged nothing while sends
    were pending) and recovery (last heal to the first ok send per partition), seconds."""
    sends = [e for e in history if isinstance(e, Send) and e.t_end is not None]
    heals = [e.t for e in history if isinstance(e, Heal)]
    oks: dict[int, list[float]] = {}
    for s in sends:
        if s.phase == "ok" and s.t_end is not None:
            oks.setdefault(s.partition, []).append(s.t_end)
    longest = 0.0
    for times in oks.values():
        times.sort()
        for a, b in itertools.pairwise(times):
            longest = max(longest, b - a)
    recovery = None
    if heals:
        last = max(heals)
        firsts = [
            min((t for t in times if t > last), default=float("inf")) for times in oks.values()
        ]
        if firsts:
            recovery = max(firsts) - last
    counts = {"ok": 0, "fail": 0, "info": 0}
    for s in sends:
        if s.phase in counts:
            counts[s.phase] += 1
    return {
        "longest_gap_s": round(longest, 3),
        "recovery_s": None if recovery is None or recovery == float("inf") else round(recovery, 3),
        "sends": counts,
        "faults": sum(1 for e in history if isinstance(e, Fault)),
    }


# ------------------------------------------------------------------ one run


def run_scenario(
    scenario: Any,
    settings: RunSettings,
    artifacts: Path,
    *,
    say: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> ScenarioResult:
    """Run ``scenario`` (a :class:`raftlog.scenarios.catalogue.Scenario`) once."""
    stop = stop or threading.Event()
    started = time.monotonic()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = artifacts / f"{scenario.id}-n{settings.nodes}-seed{settings.seed}-{stamp}"
    result = ScenarioResult(
        scenario.id, scenario.name, "ERROR", settings.seed, settings.nodes, folder
    )
    if scenario.skip_reason:
        result.status, result.reason, result.folder = "SKIP", scenario.skip_reason, None
        return result
    missing = scenario.missing_capability(settings)
    if missing:
        result.status, result.reason, result.folder = "SKIP", missing, None
        return result
    folder.mkdir(parents=True, exist_ok=True)
    say = _teed(say, folder / "run.log")
    nemesis_log = HistoryWriter(folder / "history-nemesis.jsonl")
    cluster = ScenarioCluster(folder / "cluster", settings.nodes, settings.seed,
                              record=nemesis_log.append, say=say)  # fmt: skip
    workload = Workload(folder, cluster, settings)
    monitor_stop = threading.Event()
    try:
        say(f"{scenario.id} {scenario.name}: {settings.nodes} brokers, seed {settings.seed}, "
            f"{settings.duration_s:.0f} s of faults; artifacts in {folder}")  # fmt: skip
        cluster.start()
        _create_topic(cluster, settings)
        workload.start()
        monitor = threading.Thread(
            target=_monitor, args=(cluster, monitor_stop, say), daemon=True, name="monitor"
        )
        monitor.start()
        nemesis = Nemesis(cluster, workload, settings, nemesis_log.append, say, stop)
        nemesis.sleep(settings.warmup_s, allow_past_deadline=True)
        nemesis.deadline = time.monotonic() + settings.duration_s
        try:
            scenario.nemesis(nemesis)
        except Stop:
            say("stopping early")
        nemesis.heal()
        cluster.wait_ready(timeout_s=90.0)
        say(f"recovered; the workload runs on for {settings.tail_s:.0f} s")
        nemesis.sleep(settings.tail_s, allow_past_deadline=True)
        workload.stop_all()
        monitor_stop.set()
        say("final read of every partition")
        events, ends = final_reads(cluster, settings.partitions)
        for e in events:
            nemesis_log.append(e)
        dumps = _stop_and_dump(cluster, settings, ends, folder, say)
        for d in dumps:
            nemesis_log.append(d)
        for e in cluster.broker_events():
            nemesis_log.append(e)
        nemesis_log.close()
        history = _merge(folder, workload)
        result.checks = run_all(history, scenario.params_for(settings))
        result.checks.extend(_extra_checks(nemesis.extra))
        result.measures = measure(history)
        failed = [c for c in result.checks if not c.passed]
        result.status = "FAIL" if failed else "PASS"
        report = format_results(result.checks)
        (folder / "checks.txt").write_text(report + "\n")
        say(report)
    except Stop:
        result.status, result.reason = "ERROR", "stopped before the end"
    except Exception as e:
        result.status = "ERROR"
        result.reason = f"{type(e).__name__}: {e}"
        (folder / "error.txt").write_text(traceback.format_exc())
        say(f"error: {result.reason} (traceback in {folder / 'error.txt'})")
    finally:
        monitor_stop.set()
        with contextlib.suppress(Exception):
            workload.stop(list(workload.procs), timeout_s=10.0)
        cluster.close()
        with contextlib.suppress(Exception):
            nemesis_log.close()
        result.elapsed_s = time.monotonic() - started
        _write_results(folder, result, settings)
    return result


def _teed(say: Callable[[str], None], path: Path) -> Callable[[str], None]:
    """``say`` that also appends each line, with its time, to the run's ``run.log``."""
    lock = threading.Lock()
    t0 = time.monotonic()

    def both(text: str) -> None:
        with lock, open(path, "a", encoding="utf-8") as f:
            f.write(f"{time.monotonic() - t0:8.1f}s  {text}\n")
        say(text)

    return both


def _extra_checks(extra: dict[str, Any]) -> list[CheckResult]:
    """Checks a scenario adds to the table (S16's hostile-clients report)."""
    checks = []
    report = extra.get("hostile")
    if report is not None:
        problems = list(getattr(report, "problems", []))
        counts = {"problems": len(problems)}
        for key in ("rounds", "connections_opened"):
            value = getattr(report, key, None)
            if isinstance(value, int):
                counts[key] = value
        checks.append(CheckResult("hostile-clients", not problems, counts, problems[:8]))
    return checks


def _create_topic(cluster: ScenarioCluster, settings: RunSettings) -> None:
    from raftlog.client import Admin

    admin = Admin(cluster.bootstrap().split(","))
    try:
        rf = min(settings.nodes, 5)
        admin.create_topic(TOPIC, settings.partitions, rf, wait=True, timeout_ms=60_000)
    finally:
        admin.close()


def _monitor(cluster: ScenarioCluster, stop: threading.Event, say: Callable[[str], None]) -> None:
    n = 0
    while not stop.wait(1.0):
        for i in cluster.unexpected_exits():
            say(f"broker {i} exited on its own: see {cluster.log_of(i)}")
        n += 1
        if n % 5 == 0:
            cluster.sample_memory()


def _stop_and_dump(
    cluster: ScenarioCluster, settings: RunSettings, ends: dict[int, int], folder: Path,
    say: Callable[[str], None],
) -> list[ReplicaDump]:  # fmt: skip
    """Wait (at most 60 s) until the running replicas agree below the final end offsets
    (read from copies of their folders), then stop every broker and dump its replicas."""
    scratch = folder / "dump-scratch"

    def agreed() -> bool:
        try:
            return _converged(dump_replicas(cluster, settings.partitions, ends, scratch))
        except Exception:  # a copy taken mid-write that cannot be read: try again
            return False

    try:
        wait_until(agreed, timeout_s=60.0, interval_s=1.0, what="replicas to catch up")
    except TimeoutError:
        say("replicas did not agree within 60 s; judging what is on disk")
    cluster.sample_memory()
    for i in cluster.ids:
        cluster.stop_broker(i)
    dumps = dump_replicas(cluster, settings.partitions, ends, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    return dumps


def _merge(folder: Path, workload: Workload) -> list[Event]:
    history: list[Event] = []
    for path in [*workload.histories(), folder / "history-nemesis.jsonl"]:
        if path.name == "history.jsonl" or not path.exists():
            continue
        history.extend(read_history(path))
    with open(folder / "history.jsonl", "w", encoding="utf-8") as out:
        from raftlog.scenarios.history import to_json_line

        for e in history:
            out.write(to_json_line(e) + "\n")
    return history


def _write_results(folder: Path | None, result: ScenarioResult, settings: RunSettings) -> None:
    if folder is None or not folder.exists():
        return
    doc = {
        "scenario": result.scenario,
        "name": result.name,
        "status": result.status,
        "reason": result.reason,
        "seed": settings.seed,
        "nodes": settings.nodes,
        "duration_s": settings.duration_s,
        "elapsed_s": round(result.elapsed_s, 1),
        "measures": result.measures,
        "checks": [
            {"name": c.name, "passed": c.passed, "counts": c.counts, "examples": c.examples}
            for c in result.checks
        ],
    }
    (folder / "results.json").write_text(json.dumps(doc, indent=2) + "\n")


def replay_command(result: ScenarioResult) -> str:
    return f"raftlog scenario run {result.scenario} --seed {result.seed} --nodes {result.nodes}"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
