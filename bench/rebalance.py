"""Rebalance: a member joins a consuming group; how long until every member is consuming
again? Three real brokers on 127.0.0.1 (the topic RF=3), members in this process
(threads).

    raftlog bench rebalance --rounds 5                (or python -m raftlog.bench.rebalance)

Each round: ``members`` consumers (3: with the joiner a group of 4) of a fresh group read
a topic of ``partitions`` partitions that a producer keeps writing to (spread over every
partition). Once all of them consume, one more member subscribes; the time from that
``subscribe`` call until every member (the new one included) has read a record produced
after the join is the rebalance time: ``rebalance_s``, min / median / max over the rounds
(goal: <= 1 s). Every wait has a deadline; the background producer sends at most one
record a millisecond and stops with the group.
The group's first rebalance waits ``INITIAL_REBALANCE_DELAY_S`` (0.5 s) by design; the
join of a member to a stable group does not.
"""

from __future__ import annotations

import argparse
import functools
import threading
import time
from dataclasses import asdict, dataclass

from raftlog import Consumer, Producer
from raftlog.testing.procs import wait_until

from .cluster import bench_cluster
from .run import Run

PRODUCE_INTERVAL_S = 0.001


@dataclass(frozen=True, slots=True)
class RebalanceSettings:
    rounds: int = 5
    partitions: int = 12
    members: int = 3  # before the join


class Member(threading.Thread):
    """One consumer; ``last_value`` is the largest producer counter it has read."""

    def __init__(self, bootstrap: list[str], group: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(bootstrap, group_id=group, auto_offset_reset="latest",
                                 session_timeout_ms=6000, heartbeat_interval_ms=1000)  # fmt: skip
        self.topic = topic
        self.last_value = -1
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for r in self.consumer.poll(timeout_ms=100, max_records=1000):
                self.last_value = max(self.last_value, int(r.value or b"-1"))

    def close(self) -> None:
        self.stop.set()
        if self.ident is not None:  # started
            self.join(10)
        self.consumer.close()


def measure(run: Run, s: RebalanceSettings) -> None:
    run.settings["rebalance"] = {**asdict(s), "group_after_join": s.members + 1}
    samples: list[float] = []
    with bench_cluster(run.progress, run.data_dir, "rebalance", run.brokers) as cluster:
        boot = cluster.bootstrap
        topic = f"rb-{time.monotonic_ns()}" if cluster.external else "rb"
        cluster.create_topic(topic, s.partitions)
        counter = [0]
        stop = threading.Event()

        def produce() -> None:
            with Producer(boot, linger_ms=1) as p:
                while not stop.is_set():
                    n = counter[0]
                    p.send(topic, str(n).encode(), partition=n % s.partitions)
                    counter[0] = n + 1
                    time.sleep(PRODUCE_INTERVAL_S)

        producer = threading.Thread(target=produce, name="rebalance-producer", daemon=True)
        producer.start()
        try:
            for r in range(s.rounds):
                group = f"{topic}-bench-{r}"
                members = [Member(boot, group, topic) for _ in range(s.members)]
                everyone = list(members)
                try:
                    for m in members:
                        m.consumer.subscribe([topic])
                        m.start()
                    mark = counter[0]
                    wait_until(functools.partial(_all_past, members, mark),
                               timeout_s=60, what="every member to consume")  # fmt: skip
                    joiner = Member(boot, group, topic)
                    everyone.append(joiner)
                    t0 = time.monotonic()
                    mark = counter[0]
                    joiner.consumer.subscribe([topic])
                    joiner.start()
                    wait_until(functools.partial(_all_past, everyone, mark),
                               timeout_s=60, what="everyone consuming after the join")  # fmt: skip
                    took = time.monotonic() - t0
                finally:
                    for m in everyone:
                        m.close()
                samples.append(took)
                run.progress.note(
                    f"rebalance round {r + 1}/{s.rounds}: {s.members} -> {s.members + 1} "
                    f"members, all consuming again after {took * 1000:.0f} ms"
                )
        except TimeoutError as e:
            run.abort("rebalance_s", str(e))
        finally:
            stop.set()
            producer.join(10)
    run.add("rebalance_s", samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--dir", default=".")
    ap.add_argument("--json")
    args = ap.parse_args()
    r = Run(data_dir=args.dir)
    measure(r, RebalanceSettings(args.rounds, args.partitions, args.members))
    raise SystemExit(r.finish("raftlog rebalance", args.json))


def _all_past(members: list[Member], mark: int) -> bool:
    """Every member consumed a record produced after ``mark``."""
    return all(m.last_value > mark for m in members)


if __name__ == "__main__":
    main()
