"""Failover benchmark: kill -9 of a partition leader to the first acknowledged produce on
its new leader, on three real brokers on 127.0.0.1 with default settings.

    python -m bench.failover [--rounds 5] [--partitions 6]

Each round: find the broker that leads partition 0, SIGKILL it, and from that instant try
to produce (acks=all) to every partition it led, through whichever broker the metadata
names, until one batch is acknowledged; the time it took is that partition's failover.
Then restart the broker and wait until every partition has a leader again. Prints the
min / median / max of all partitions' failover times (goal: under 2 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

from raftlog.testing.procs import ProcessGroup, free_port_blocks, wait_until
from raftlog.testing.wire_client import WireClient
from raftlog.wire import MetadataRequest

RAFTLOG = os.path.join(os.path.dirname(sys.executable), "raftlog")
IDS = (1, 2, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--partitions", type=int, default=6)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="raftlog-bench-failover-", dir=".")
    secret = os.path.join(root, "secret")
    with open(secret, "w") as f:
        f.write(os.urandom(16).hex())
    ports = dict(zip(IDS, free_port_blocks(3), strict=True))
    samples: list[float] = []
    try:
        with ProcessGroup(root) as pg:

            def start(i: int) -> None:
                argv = [RAFTLOG, "node", "start", "--id", str(i), "--listen",
                        f"127.0.0.1:{ports[i]}", "--data-dir", os.path.join(root, f"n{i}"),
                        "--cluster-secret-file", secret]  # fmt: skip
                for j in IDS:
                    argv += ["--peer", f"{j}@127.0.0.1:{ports[j]}"]
                pg.start(f"n{i}", argv)

            def client(i: int) -> WireClient:
                return WireClient("127.0.0.1", ports[i], timeout_s=5)

            for i in IDS:
                start(i)
            for i in IDS:
                wait_until(lambda i=i: client(i), timeout_s=30, what=f"broker {i}")
            c = client(1)
            wait_until(lambda: len(c.call(MetadataRequest()).brokers) == 3, timeout_s=30,
                       what="3 brokers")  # fmt: skip
            assert c.create_topic("bench", args.partitions, 3).error == 0
            for r in range(args.rounds):
                alive = [i for i in IDS if pg.procs[f"n{i}"].alive()]
                leaders = client(alive[0]).wait_leaders("bench", timeout_s=30)
                victim = leaders[0]
                led = [p for p, b in leaders.items() if b == victim]
                t_kill = time.monotonic()
                pg.kill(f"n{victim}", signal.SIGKILL)
                survivors = [i for i in IDS if i != victim]
                pending = set(led)
                while pending:
                    assert time.monotonic() - t_kill < 30, f"no failover for {pending}"
                    for p in sorted(pending):
                        try:
                            view = client(survivors[0]).leaders("bench")
                            leader = view.get(p)
                            if leader is None or leader == victim:
                                continue
                            ans = client(leader).produce("bench", p, [b"x"])
                        except OSError:
                            continue
                        if ans.error == 0:
                            samples.append(time.monotonic() - t_kill)
                            pending.discard(p)
                    time.sleep(0.01)
                start(victim)
                wait_until(lambda v=victim: client(v), timeout_s=30, what="restart")
                print(f"round {r + 1}: killed broker {victim}, failover of {len(led)} "
                      f"partitions: {', '.join(f'{s:.2f}' for s in samples[-len(led):])} s",
                      file=sys.stderr)  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"raftlog failover benchmark: 3 brokers, {args.partitions} partitions RF=3, "
          f"{args.rounds} leader kills, {len(samples)} partition failovers")  # fmt: skip
    low, mid, high = min(samples), statistics.median(samples), max(samples)
    print(f"kill -9 to first ack on the new leader: min {low:.2f} s, median {mid:.2f} s, "
          f"max {high:.2f} s (goal < 2 s)")  # fmt: skip


if __name__ == "__main__":
    main()
