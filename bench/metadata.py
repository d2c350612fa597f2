"""Metadata benchmark: commands through the trio bridge of a 3-member quorum on 127.0.0.1.

    python -m bench.metadata [--runs 3] [--sequential 300] [--concurrent 3000] [--tasks 64]

Two members run as processes (``raftlog.testing.metadata_node``); the third runs here, with
the bridge, exactly as inside a broker. It measures, median of ``--runs`` runs:

- sequential: one ``broker_heartbeat`` at a time (latency p50/p99, commands/s);
- concurrent: ``--tasks`` trio tasks sending ``--concurrent`` commands in all;
- folded commits: ``--tasks`` members each committing offsets, folded by the bridge into one
  ``offset_commit_many`` command every few ms (commits/s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import trio

from raftlog.metadata.bridge import MetadataBridge
from raftlog.metadata.quorum import MetadataQuorum, QuorumConfig
from raftlog.testing.procs import JsonLineClient, ProcessGroup, free_ports, wait_until

SECRET = "bench-secret-0123456789abcdef"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def run_once(bridge: MetadataBridge, args: argparse.Namespace, run: int) -> dict[str, float]:
    out: dict[str, float] = {}
    # sequential
    lat: list[float] = []
    t0 = time.perf_counter()
    for i in range(args.sequential):
        t = time.perf_counter()
        r = await bridge.submit({"op": "broker_heartbeat", "broker_id": 0, "now_ms": i + 2})
        assert r["ok"], r
        lat.append(time.perf_counter() - t)
    out["seq_ops"] = args.sequential / (time.perf_counter() - t0)
    out["seq_p50_ms"] = pct(lat, 0.5) * 1000
    out["seq_p99_ms"] = pct(lat, 0.99) * 1000
    # concurrent
    lat = []
    per_task = args.concurrent // args.tasks

    async def worker(k: int) -> None:
        for i in range(per_task):
            t = time.perf_counter()
            r = await bridge.submit(
                {"op": "broker_heartbeat", "broker_id": 0, "now_ms": 10**6 + k * 10**4 + i}
            )
            assert r["ok"], r
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    async with trio.open_nursery() as n:
        for k in range(args.tasks):
            n.start_soon(worker, k)
    out["conc_ops"] = per_task * args.tasks / (time.perf_counter() - t0)
    out["conc_p50_ms"] = pct(lat, 0.5) * 1000
    out["conc_p99_ms"] = pct(lat, 0.99) * 1000
    # folded offset commits (simple commits: a group with no members)
    lat = []

    async def committer(k: int) -> None:
        for i in range(per_task):
            t = time.perf_counter()
            r = await bridge.commit_offsets(
                {
                    "group_id": f"g{run}-{k}",
                    "generation": -1,
                    "member_id": "",
                    "offsets": [
                        {
                            "topic": "bench",
                            "partition": 0,
                            "offset": i,
                            "metadata": "",
                            "commit_ms": 1,
                        }
                    ],
                }
            )
            assert r["ok"], r
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    async with trio.open_nursery() as n:
        n.start_soon(bridge.run_commit_folder)
        async with trio.open_nursery() as inner:
            for k in range(args.tasks):
                inner.start_soon(committer, k)
        n.cancel_scope.cancel()
    out["commit_ops"] = per_task * args.tasks / (time.perf_counter() - t0)
    out["commit_p50_ms"] = pct(lat, 0.5) * 1000
    out["commit_p99_ms"] = pct(lat, 0.99) * 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sequential", type=int, default=300)
    ap.add_argument("--concurrent", type=int, default=3000)
    ap.add_argument("--tasks", type=int, default=64)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="raftlog-bench-meta-", dir=".")
    with open(os.path.join(root, "secret"), "w") as f:
        f.write(SECRET)
    ports = free_ports(5)
    peers = [f"127.0.0.1:{p}" for p in ports[:3]]
    results: list[dict[str, float]] = []
    try:
        with ProcessGroup(root) as pg:
            for i in (1, 2):
                pg.python(
                    f"n{i}", "raftlog.testing.metadata_node", "--self", peers[i],
                    "--peers", ",".join(peers), "--data", os.path.join(root, f"n{i}"),
                    "--secret-file", os.path.join(root, "secret"),
                    "--control", f"127.0.0.1:{ports[2 + i]}",
                )  # fmt: skip
            for i in (1, 2):

                def status(i: int = i) -> Any:
                    return JsonLineClient("127.0.0.1", ports[2 + i]).call({"cmd": "status"})

                wait_until(
                    status,
                    timeout_s=30,
                    what=f"member {i}",
                )
            box: list[MetadataBridge] = []
            quorum = MetadataQuorum(
                QuorumConfig(peers[0], tuple(peers), os.path.join(root, "n0"), SECRET),
                on_image=lambda im: box[0].on_image(im) if box else None,
            )

            async def bench() -> None:
                bridge = MetadataBridge(quorum)
                box.append(bridge)
                with trio.fail_after(30):
                    while quorum.status()["leader"] is None:
                        await trio.sleep(0.05)
                r = await bridge.submit(
                    {"op": "register_broker", "broker_id": 0, "client_address": "127.0.0.1:1",
                     "internal_address": "127.0.0.1:1", "now_ms": 1}
                )  # fmt: skip
                assert r["ok"], r
                r = await bridge.submit(
                    {"op": "create_topic", "topic": "bench", "partitions": 1,
                     "replication_factor": 1}
                )  # fmt: skip
                assert r["ok"], r
                for run in range(args.runs):
                    results.append(await run_once(bridge, args, run))
                    figures = ", ".join(f"{k}={v:.1f}" for k, v in results[-1].items())
                    print(f"run {run + 1}: {figures}", file=sys.stderr)

            try:
                trio.run(bench)
            finally:
                leader = quorum.status()["leader"]
                quorum.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    where = "this member" if leader == peers[0] else "another member (forwarded)"
    print(f"raftlog metadata benchmark: 3 members on 127.0.0.1, leader on {where}, "
          f"median of {args.runs} runs")  # fmt: skip
    rows = [
        ("sequential commands", med["seq_ops"], med["seq_p50_ms"], med["seq_p99_ms"]),
        (f"concurrent commands ({args.tasks} tasks)", med["conc_ops"], med["conc_p50_ms"],
         med["conc_p99_ms"]),
        (f"folded offset commits ({args.tasks} members)", med["commit_ops"], med["commit_p50_ms"],
         med["commit_p99_ms"]),
    ]  # fmt: skip
    print(f"{'figure':44} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, ops, p50, p99 in rows:
        print(f"{name:44} {ops:9.0f} {p50:8.1f} {p99:8.1f}")


if __name__ == "__main__":
    main()
