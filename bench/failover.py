"""Failover: kill -9 of a partition leader to the first acknowledged produce on its new
leader, on three real brokers on 127.0.0.1 (RF=3, acks=all, default settings).

    raftlog bench failover --rounds 5                 (or python -m raftlog.bench.failover)

Each round: find the broker that leads the most partitions of a ``partitions``-partition
topic, SIGKILL it, and from that instant try to produce (acks=all) one record to every
partition it led, through whichever broker the metadata names (asked of a survivor), until
one is acknowledged; the time it took is that partition's failover. The round's figure is
the p99 over those partitions (nearest rank: with a few partitions, their maximum). Then
restart the broker, wait until it answers and every partition has a leader, and let it
catch up for ``settle_s`` before the next round.

``failover_p99_s``: min / median / max of the rounds' p99; every partition's time is kept
in the JSON (``samples_per_partition``). Goal: <= 2 s.
"""

from __future__ import annotations

import argparse
import collections
import signal
import time
from dataclasses import asdict, dataclass

from raftlog.testing.procs import wait_until
from raftlog.testing.wire_client import WireClient

from .cluster import IDS, BenchCluster, bench_cluster
from .figures import percentile
from .run import Run

PROBE_INTERVAL_S = 0.01


@dataclass(frozen=True, slots=True)
class FailoverSettings:
    rounds: int = 5
    partitions: int = 12
    settle_s: float = 3.0
    deadline_s: float = 30.0  # per round, for every partition to fail over


def one_round(cluster: BenchCluster, s: FailoverSettings, topic: str) -> tuple[int, list[float]]:
    """Kill the broker leading most partitions; (its id, failover seconds per partition)."""
    alive = [i for i in IDS if cluster.alive(i)]
    leaders = cluster.client(alive[0]).wait_leaders(topic, timeout_s=30)
    victim = collections.Counter(leaders.values()).most_common(1)[0][0]
    led = sorted(p for p, b in leaders.items() if b == victim)
    survivors = [i for i in IDS if i != victim]
    clients: dict[int, WireClient] = {}

    def client(i: int) -> WireClient:
        if i not in clients:
            clients[i] = cluster.client(i)
        return clients[i]

    took: dict[int, float] = {}
    t_kill = time.monotonic()
    cluster.kill_node(victim, signal.SIGKILL)
    try:
        while len(took) < len(led):
            if time.monotonic() - t_kill > s.deadline_s:
                missing = sorted(set(led) - set(took))
                raise TimeoutError(f"no failover within {s.deadline_s:g} s for {missing}")
            try:
                view = client(survivors[0]).leaders(topic)
            except OSError:
                clients.pop(survivors[0], None)
                survivors.reverse()  # ask the other survivor next time
                time.sleep(PROBE_INTERVAL_S)
                continue
            for p in led:
                leader = view.get(p)
                if p in took or leader is None or leader == victim:
                    continue
                try:
                    answer = client(leader).produce(topic, p, [b"x"])
                except OSError:
                    clients.pop(leader, None)
                    continue
                if answer.error == 0:
                    took[p] = time.monotonic() - t_kill
            time.sleep(PROBE_INTERVAL_S)
    finally:
        for c in clients.values():
            c.close()
    cluster.start_node(victim)
    wait_until(lambda: cluster.client(victim), timeout_s=30, what=f"broker {victim} restart")
    cluster.client(victim).wait_leaders(topic, timeout_s=30)
    time.sleep(s.settle_s)  # the restarted replica catches up before the next kill
    return victim, [took[p] for p in led]


def measure(run: Run, s: FailoverSettings) -> None:
    run.settings["failover"] = {**asdict(s), "replication_factor": 3, "acks": "all"}
    if run.brokers:
        run.abort("failover_p99_s", "failover kills brokers: it needs its own")
        return
    p99s: list[float] = []
    every: list[float] = []
    with bench_cluster(run.progress, run.data_dir, "failover") as cluster:
        cluster.create_topic("failover", s.partitions)
        for r in range(s.rounds):
            try:
                victim, took = one_round(cluster, s, "failover")
            except TimeoutError as e:
                run.abort("failover_p99_s", str(e))
                return
            p99s.append(percentile(took, 99))
            every.extend(took)
            run.progress.note(
                f"failover round {r + 1}/{s.rounds}: killed broker {victim}, leader of "
                f"{len(took)} partitions: first ack after "
                + ", ".join(f"{t:.2f}" for t in took)
                + f" s (p99 {p99s[-1]:.2f} s)"
            )
    run.add(
        "failover_p99_s",
        p99s,
        samples_per_partition=every,
        p50_all_s=percentile(every, 50),
        p99_all_s=percentile(every, 99),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--dir", default=".")
    ap.add_argument("--json")
    args = ap.parse_args()
    r = Run(data_dir=args.dir)
    measure(r, FailoverSettings(rounds=args.rounds, partitions=args.partitions))
    raise SystemExit(r.finish("raftlog failover", args.json))


if __name__ == "__main__":
    main()
