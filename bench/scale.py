"""Scale: many idle partitions. Three brokers on 127.0.0.1; ``partitions`` partitions of
RF=3 are created as topics of ``per_topic`` partitions, one topic at a time, each once
the previous one's partitions all have a leader; once every one has a leader and
the cluster has settled, each broker's CPU is read over ``window_s`` (utime + stime from
/proc/PID/stat, as percent of one core), ``rounds`` windows in a row, and its RSS.

    raftlog bench scale --partitions 1000             (or python -m raftlog.bench.scale)

Figures:

- ``idle_cpu_pct_1000p`` (named after the partitions created, and suffixed ``_<n>led``
  when only n of them had a leader): one sample per broker and window; goal <= 5 % of a
  core per broker;
- ``mem_per_replica_kib``: (RSS with the partitions - RSS before them) / replicas the
  broker hosts, one sample per broker;
- ``create_partitions_s``: from the first create request to every partition having a
  leader.

Before creating anything the same CPU reading is taken over a shorter window
(``cpu_pct_no_partitions``, an extra of the CPU figure), so that the cost of the partitions
can be told from the cost of an empty broker. When not every partition has a leader by
``create_deadline_s``, the figure is named after what exists and the shortfall is
reported (a batch that gets no full set of leaders in ``batch_deadline_s`` ends the
creation). With ``profile`` (a folder), ``py-spy record`` samples every broker while the
partitions are created and during the first idle window.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import signal
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from raftlog.errors import ErrorCode
from raftlog.testing.procs import wait_until
from raftlog.wire import MetadataRequest

from .cluster import PY_SPY, BenchCluster, bench_cluster
from .run import Run

CREATE_RETRIES = 5


@dataclass(frozen=True, slots=True)
class ScaleSettings:
    rounds: int = 1  # idle CPU windows
    partitions: int = 1000
    per_topic: int = 50
    settle_s: float = 10.0
    window_s: float = 20.0
    baseline_window_s: float = 5.0
    create_deadline_s: float = 300.0
    batch_deadline_s: float = 60.0  # for one topic's partitions to all have a leader


def cpu_percent(cluster: BenchCluster, window_s: float) -> dict[str, float]:
    """Each broker's CPU over ``window_s`` as percent of one core."""
    before = cluster.cpu_seconds()
    t0 = time.monotonic()
    time.sleep(window_s)
    after = cluster.cpu_seconds()
    wall = time.monotonic() - t0
    return {n: 100 * (after[n] - before[n]) / wall for n in before}


def led_partitions(cluster: BenchCluster) -> tuple[int, dict[int, int], int]:
    """(partitions with a leader, replicas hosted per broker id, highest leader term) over
    every topic."""
    md = cluster.client(1).call(MetadataRequest())
    led = term_max = 0
    hosted: collections.Counter[int] = collections.Counter()
    for t in md.topics:
        for p in t.partitions:
            led += p.leader is not None
            term_max = max(term_max, int(p.leader_term or 0))
            hosted.update(int(r) for r in p.replicas)
    return led, dict(hosted), term_max


def spy(cluster: BenchCluster, folder: str, tag: str, duration_s: float) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    names = []
    for name, pid in cluster.broker_pids().items():
        out = os.path.join(os.path.abspath(folder), f"scale-{tag}-{name}.txt")
        argv = [PY_SPY, "record", "--format", "raw", "-o", out, "--pid", str(pid)]
        argv += ["--duration", str(int(duration_s)), "--rate", "50", "--nonblocking"]
        names.append(cluster.pg.start(f"py-spy-{tag}-{name}", argv).name)
    return names


def create(cluster: BenchCluster, run: Run, s: ScaleSettings) -> tuple[int, float, dict[int, int]]:
    """Create the topics one batch (topic) at a time, each once the previous one's
    partitions all have a leader: (partitions led, seconds, replicas hosted per broker).
    Stops at a batch that gets no full set of leaders within ``batch_deadline_s``, or at
    ``create_deadline_s`` in all."""
    topics: list[tuple[str, int]] = []
    left = s.partitions
    while left > 0:
        topics.append((f"scale-{len(topics):04d}", min(s.per_topic, left)))
        left -= topics[-1][1]
    t0 = time.monotonic()
    deadline = t0 + s.create_deadline_s
    led, term_max = 0, 0
    hosted: dict[int, int] = {}
    requested = 0
    with run.progress.bar(f"creating {s.partitions} partitions (RF=3)", s.partitions) as update:
        client = cluster.client(1)
        for name, count in topics:
            client.sock.settimeout(max(5.0, deadline - time.monotonic()))
            answer = client.create_topic(name, count, 3)
            for _ in range(CREATE_RETRIES):
                # "unknown outcome" (the metadata leader changed, which a loaded machine
                # sees): ask again; "already exists" then means the first one applied
                if answer.error != ErrorCode.UNKNOWN_OUTCOME:
                    break
                run.progress.note(f"scale: creating {name}: unknown outcome, asking again")
                time.sleep(1.0)
                answer = client.create_topic(name, count, 3)
                if answer.error == ErrorCode.TOPIC_ALREADY_EXISTS:
                    answer = replace(answer, error=ErrorCode.NONE)
            if answer.error != 0:
                raise RuntimeError(f"creating {name}: {answer}")
            requested += count
            batch_end = min(deadline, time.monotonic() + s.batch_deadline_s)
            while True:
                led, hosted, term_max = led_partitions(cluster)
                update(led)
                if led >= requested or time.monotonic() > batch_end:
                    break
                time.sleep(0.2)
            if led < requested:
                run.progress.note(
                    f"scale: {led} of {requested} partitions led after "
                    f"{time.monotonic() - t0:.0f} s (highest leader term {term_max}); "
                    "creating no more"
                )
                break
    run.extra["scale_create"] = {
        "requested": requested,
        "led": led,
        "seconds": time.monotonic() - t0,
        "highest_leader_term": term_max,
    }
    return led, time.monotonic() - t0, hosted


def measure(run: Run, s: ScaleSettings, profile: str | None = None) -> None:
    run.settings["scale"] = {**asdict(s), "replication_factor": 3}
    if run.brokers:
        run.abort("idle_cpu_pct_1000p", "scale needs its own brokers (CPU and RSS by PID)")
        return
    spies: list[str] = []
    with bench_cluster(run.progress, run.data_dir, "scale") as cluster:
        time.sleep(2.0)
        rss0 = cluster.rss_mib()
        base = cpu_percent(cluster, s.baseline_window_s)
        run.progress.note(
            "scale: no partitions: CPU "
            + ", ".join(f"{n} {v:.1f} %" for n, v in base.items())
            + "; RSS "
            + ", ".join(f"{n} {v:.0f} MiB" for n, v in rss0.items())
        )
        if profile:
            spies = spy(cluster, profile, "create", s.create_deadline_s)
        led, took, hosted = create(cluster, run, s)
        created = run.extra["scale_create"]["requested"]
        for name in spies:
            cluster.pg.kill(name, signal.SIGINT)
        run.progress.note(
            f"scale: {led} of {s.partitions} partitions have a leader after {took:.1f} s"
        )
        if led < s.partitions:
            c = run.extra.get("scale_create", {})
            why = (
                f"only {led} of {s.partitions} partitions had a leader after {took:.0f} s "
                f"(created {c.get('requested')} before a batch got no full set of leaders "
                f"within {s.batch_deadline_s:g} s; highest leader term "
                f"{c.get('highest_leader_term')}); the idle figures are for the {created} "
                f"created, {led} of them led"
            )
            run.abort(f"idle_cpu_pct_{s.partitions}p", why)
        if led == 0:
            return
        run.add("create_partitions_s", [took], partitions=created, led=led)
        run.progress.note(f"scale: settling {s.settle_s:g} s ...")
        time.sleep(s.settle_s)
        if profile:
            spies = spy(cluster, profile, "idle", s.window_s)
        samples: list[float] = []
        for w in range(s.rounds):
            pct = cpu_percent(cluster, s.window_s)
            samples.extend(pct.values())
            run.progress.note(
                f"scale: idle window {w + 1}/{s.rounds} ({s.window_s:g} s): CPU "
                + ", ".join(f"{n} {v:.1f} %" for n, v in pct.items())
            )
        for name in spies:
            wait_until(functools.partial(_ended, cluster, name), timeout_s=30, what=name)
        rss1 = cluster.rss_mib()
        if not all(cluster.alive(i) for i in (1, 2, 3)):
            run.note("scale: a broker died during the idle windows")
        led_after, _, term_after = led_partitions(cluster)
        run.extra["scale_after_idle"] = {"led": led_after, "highest_leader_term": term_after}
        if led_after != led or term_after > run.extra["scale_create"]["highest_leader_term"]:
            run.note(
                f"scale: not idle: leaders changed during the idle windows ({led} led before, "
                f"{led_after} after; highest leader term "
                f"{run.extra['scale_create']['highest_leader_term']} -> {term_after})"
            )
    per_replica = [
        (rss1[f"n{i}"] - rss0[f"n{i}"]) * 1024 / hosted[i] for i in (1, 2, 3) if hosted.get(i)
    ]
    run.add(
        # named after the partitions that exist, and how many of them had a leader if not all
        f"idle_cpu_pct_{created}p" + ("" if led == created else f"_{led}led"),
        samples,
        unit="% core",
        cpu_pct_no_partitions=list(base.values()),
        window_s=s.window_s,
        led_after_idle=led_after,
    )
    run.add(
        "mem_per_replica_kib",
        per_replica,
        rss_before_mib=rss0,
        rss_after_mib=rss1,
        replicas_per_broker=hosted,
    )


def _ended(cluster: Any, name: str) -> bool:
    return not cluster.pg.procs[name].alive()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--per-topic", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=1, help="idle CPU windows")
    ap.add_argument("--window-s", type=float, default=20.0)
    ap.add_argument("--dir", default=".")
    ap.add_argument("--json")
    ap.add_argument("--py-spy", metavar="DIR")
    args = ap.parse_args()
    r = Run(data_dir=args.dir)
    s = ScaleSettings(
        rounds=args.rounds,
        partitions=args.partitions,
        per_topic=args.per_topic,
        window_s=args.window_s,
    )
    measure(r, s, args.py_spy)
    raise SystemExit(r.finish("raftlog scale", args.json))


if __name__ == "__main__":
    main()
