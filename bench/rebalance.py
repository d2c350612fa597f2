"""Rebalance benchmark: a member joins a consuming group; how long until every member is
consuming again? One real broker on 127.0.0.1, members in this process (threads).

    python -m bench.rebalance [--rounds 5] [--partitions 12] [--members 3]

Each round: ``--members`` consumers of group ``bench-<round>`` read a topic of
``--partitions`` partitions that a producer keeps writing to (keys spread over every
partition). Once all of them consume, one more member subscribes; the time from that
``subscribe`` call until every member (the new one included) has read a record produced
after the join is the rebalance time. Prints min / median / max over the rounds.
The group's first rebalance waits ``INITIAL_REBALANCE_DELAY_S`` (0.5 s) by design; the
join of a member to a stable group does not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

from raftlog import Admin, Consumer, Producer
from raftlog.testing.procs import ProcessGroup, free_port_blocks, wait_until
from raftlog.testing.wire_client import WireClient

RAFTLOG = os.path.join(os.path.dirname(sys.executable), "raftlog")


class Member(threading.Thread):
    """One consumer; ``last_value`` is the largest producer counter it has read."""

    def __init__(self, boot: str, group: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer([boot], group_id=group, auto_offset_reset="latest",
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
        self.join(10)
        self.consumer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--members", type=int, default=3)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="raftlog-bench-rebalance-", dir=".")
    port = free_port_blocks(1)[0]
    boot = f"127.0.0.1:{port}"
    samples: list[float] = []
    try:
        with ProcessGroup(root) as pg:
            pg.start("node", [RAFTLOG, "node", "start", "--listen", boot,
                              "--data-dir", os.path.join(root, "data")])  # fmt: skip
            wait_until(lambda: WireClient("127.0.0.1", port), timeout_s=30, what="the broker")
            admin = Admin([boot])
            admin.create_topic("rb", partitions=args.partitions)
            counter = [0]
            stop = threading.Event()

            def produce() -> None:
                with Producer([boot], linger_ms=1) as p:
                    while not stop.is_set():
                        n = counter[0]
                        p.send("rb", str(n).encode(), partition=n % args.partitions)
                        counter[0] = n + 1
                        time.sleep(0.001)

            producer = threading.Thread(target=produce, daemon=True)
            producer.start()
            for r in range(args.rounds):
                group = f"bench-{r}"
                members = [Member(boot, group, "rb") for _ in range(args.members)]
                for m in members:
                    m.consumer.subscribe(["rb"])
                    m.start()
                mark = counter[0]
                wait_until(lambda ms=members, k=mark: all(m.last_value > k for m in ms),
                           timeout_s=60, what="every member to consume")  # fmt: skip
                joiner = Member(boot, group, "rb")
                t0 = time.monotonic()
                mark = counter[0]
                joiner.consumer.subscribe(["rb"])
                joiner.start()
                everyone = [*members, joiner]
                wait_until(lambda ms=everyone, k=mark: all(m.last_value > k for m in ms),
                           timeout_s=60, what="everyone consuming after the join")  # fmt: skip
                took = time.monotonic() - t0
                samples.append(took)
                print(f"round {r + 1}: {args.members} -> {args.members + 1} members, "
                      f"consuming again after {took * 1000:.0f} ms", flush=True)  # fmt: skip
                for m in everyone:
                    m.close()
            stop.set()
            producer.join(10)
            admin.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"rebalance (join to everyone consuming), {len(samples)} rounds: "
        f"min {min(samples) * 1000:.0f} ms, median {statistics.median(samples) * 1000:.0f} ms, "
        f"max {max(samples) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
