"""End-to-end latency at a fixed rate: a producer process sends ``rate`` records/s (100 B,
paced every ``tick_ms`` in small batches, ``linger_ms`` small, acks=all) round-robin over
``partitions`` partitions of an RF=3 topic, while a consumer process in the same run reads
them. Each value carries its sequence number and its send time (``time.monotonic_ns``,
one clock for every process on this host); latency = the consumer's receive time (when
``poll`` returned) - the send time.

    raftlog bench e2e --rate 10000                    (or python -m raftlog.bench.e2e)

Each round sends for ``warmup_s + measure_s``; only records sent after the warm-up count
for the latencies, every record counts for the check: every acknowledged record received
exactly once (no duplicate, none missing), else the figures are aborted. Reports p50 and
p99 (``e2e_p50_ms``, ``e2e_p99_ms``: min / median / max over rounds) and the max.

Floor (``bench.ceilings``): one small write+fsync plus one loopback round trip, measured
in the same run.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

from .ceilings import fsync_latency_ms, loopback_rtt_ms
from .cluster import BenchCluster, bench_cluster
from .run import CheckFailed, Run


@dataclass(frozen=True, slots=True)
class E2eSettings:
    rounds: int = 3
    rate: int = 10_000  # records/s
    warmup_s: float = 2.0
    measure_s: float = 10.0
    partitions: int = 3
    value_bytes: int = 100
    linger_ms: int = 1
    tick_ms: int = 2
    fetch_max_wait_ms: int = 100


def measure_floor(run: Run) -> None:
    """The e2e floors: write+fsync of 1 KiB plus a loopback round trip (p50 and p99)."""
    fs = fsync_latency_ms(run.data_dir)
    rtt = loopback_rtt_ms()
    run.measured["fsync_1kib_ms"] = fs
    run.measured["loopback_rtt_ms"] = rtt
    run.ceiling("e2e_p50_ms", fs["p50"] + rtt["p50"])
    run.ceiling("e2e_p99_ms", fs["p99"] + rtt["p99"])


def one_round(cluster: BenchCluster, s: E2eSettings, topic: str) -> dict[str, float]:
    """One timed run on a fresh topic: the consumer's latency figures, checked."""
    cluster.create_topic(topic, s.partitions)
    common = {"topic": topic, **asdict(s)}
    # the consumer (first) learns the producer's acknowledged count from its result file
    specs = [{**common, "kind": "e2e_consume"}, {**common, "kind": "e2e_produce"}]
    _, (c, p) = cluster.run_workers("e2e", specs)
    problems = []
    if p["errors"]:
        problems.append(f"{p['failed']} sends failed, e.g. {p['errors']}")
    if c["expected"] is None:
        problems.append("the consumer never saw the producer's result")
    elif c["unique"] != p["acked"]:
        problems.append(f"received {c['unique']} distinct records of {p['acked']} acknowledged")
    if c["duplicates"]:
        problems.append(f"{c['duplicates']} records received twice")
    if not c["measured"]:
        problems.append("no record after the warm-up was received")
    if problems:
        raise CheckFailed(f"{topic}: " + "; ".join(problems))
    return {
        "p50_ms": c["p50_ms"],
        "p99_ms": c["p99_ms"],
        "max_ms": c["max_ms"],
        "rate_achieved": p["rate_achieved"],
        "ack_p50_ms": p["ack_p50_ms"],
        "ack_p99_ms": p["ack_p99_ms"],
        "behind_max": p["behind_max"],
        "records": p["acked"],
    }


def measure(run: Run, s: E2eSettings) -> None:
    run.settings["e2e"] = {**asdict(s), "replication_factor": 3, "acks": "all", "fsync": True}
    rounds: list[dict[str, float]] = []
    with bench_cluster(run.progress, run.data_dir, "e2e", run.brokers) as cluster:
        for r in range(s.rounds):
            run.progress.note(
                f"e2e round {r + 1}/{s.rounds}: {s.rate:,} records/s for "
                f"{s.warmup_s:g} s warm-up + {s.measure_s:g} s ..."
            )
            try:
                got = one_round(cluster, s, f"e2e-r{r}")
            except CheckFailed as e:
                run.abort("e2e_p50_ms", str(e))
                run.abort("e2e_p99_ms", str(e))
                return
            rounds.append(got)
            run.progress.note(
                f"e2e round {r + 1}/{s.rounds}: p50 {got['p50_ms']:.2f} ms, p99 "
                f"{got['p99_ms']:.2f} ms, max {got['max_ms']:.1f} ms (producer ack p50 "
                f"{got['ack_p50_ms']:.2f} ms, p99 {got['ack_p99_ms']:.2f} ms); sent at "
                f"{got['rate_achieved']:,.0f} records/s; every record received once"
            )
    maxima = [g["max_ms"] for g in rounds]
    rates = [g["rate_achieved"] for g in rounds]
    extra = {
        "max_ms": max(maxima),
        "rate_achieved": rates,
        "producer_ack_p50_ms": [g["ack_p50_ms"] for g in rounds],
        "producer_ack_p99_ms": [g["ack_p99_ms"] for g in rounds],
    }
    run.add("e2e_p50_ms", [g["p50_ms"] for g in rounds], **extra)
    run.add("e2e_p99_ms", [g["p99_ms"] for g in rounds], **extra)
    if rates and min(rates) < 0.95 * s.rate:
        run.note(
            f"e2e: the producer fell behind the {s.rate:,} records/s pace "
            f"(achieved {min(rates):,.0f} records/s in its slowest round)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--measure-s", type=float, default=10.0)
    ap.add_argument("--dir", default=".")
    ap.add_argument("--json")
    args = ap.parse_args()
    r = Run(data_dir=args.dir)
    measure_floor(r)
    measure(r, E2eSettings(rounds=args.rounds, rate=args.rate, measure_s=args.measure_s))
    raise SystemExit(r.finish("raftlog end-to-end latency", args.json))


if __name__ == "__main__":
    main()
