"""Throughput: producers and a consumer against three real brokers on 127.0.0.1 (RF=3,
acks=all, fsync on: the defaults), with this machine's ceilings measured in the same run.

    raftlog bench produce --size 100 --rounds 3      (or python -m raftlog.bench.throughput)
    raftlog bench consume

Each round, on fresh topics of ``partitions`` partitions:

- ``produce_100b_rps``: ``producers`` processes send ``records`` 100-byte values in all
  (split evenly) and flush; records / wall time from the go signal (every producer
  connected and ready) to the last flush;
- ``consume_100b_rps``: one consumer process reads that topic from the start to its end
  (the end offsets taken before the go signal); records / wall time;
- ``produce_1kib_mbps``: as the first, with ``records / 5`` values of 1 KiB; MB/s of
  value bytes;
- after each produce, the check: the records read back per partition equal the records
  acknowledged per partition, read up to the end offset, offsets only increasing (no
  duplicate; offsets skip the control batch each new partition leader appends), else the
  figure is aborted with a message.

Ceilings (``bench.ceilings``): one TCP stream over loopback, and sequential write+fsync
of producer-sized batches on the data disk. All three replicas share this machine's one
disk and two cores, so each acknowledged byte is written and fsynced three times on the
same disk: the produce ceiling is min(loopback, disk / 3); the consume ceiling is
loopback (reads come from the page cache). Ratios compare value bytes only.

Broker RSS (VmRSS) is read idle, before the first round (``rss_idle_mib``, one sample per
broker), and right after each produce (``rss_produce_mib``). With ``profile`` (a folder)
an extra 100 B produce, before the counted rounds and not counted, runs with
``py-spy record`` attached to every broker and producer.
"""

from __future__ import annotations

import argparse
import collections
import time
from dataclasses import asdict, dataclass

from .ceilings import disk_fsync_mbps, loopback_mbps
from .cluster import BenchCluster, bench_cluster
from .run import CheckFailed, Run

MB = 1e6


@dataclass(frozen=True, slots=True)
class ThroughputSettings:
    rounds: int = 3
    records: int = 300_000  # 100 B records per round (1 KiB: a fifth)
    partitions: int = 6
    producers: int = 1
    linger_ms: int = 5
    batch_bytes: int = 64 * 1024
    max_in_flight: int = 5
    compression: str = "none"


def produce_key(value_bytes: int) -> str:
    """The figure a produce of ``value_bytes`` values reports."""
    if value_bytes == 100:
        return "produce_100b_rps"
    if value_bytes == 1024:
        return "produce_1kib_mbps"
    return f"produce_{value_bytes}b_mbps"


def produce(
    cluster: BenchCluster,
    s: ThroughputSettings,
    topic: str,
    records: int,
    value_bytes: int,
    profile: str | None = None,
) -> tuple[float, dict[int, int]]:
    """``records`` values sent by ``s.producers`` processes: (wall s, acked per partition)."""
    k = s.producers
    shares = [records // k + (1 if j < records % k else 0) for j in range(k)]
    producer = {
        "linger_ms": s.linger_ms,
        "batch_bytes": s.batch_bytes,
        "max_in_flight": s.max_in_flight,
        "compression": s.compression,
    }
    specs = [
        {"topic": topic, "records": n, "value_bytes": value_bytes, "producer": producer}
        for n in shares
    ]
    wall, results = cluster.run_workers("produce", specs, profile)
    acked: collections.Counter[int] = collections.Counter()
    for r in results:
        if r["errors"]:
            raise CheckFailed(f"{topic}: sends failed, e.g. {r['errors']}")
        for p, n in r["acked"].items():
            acked[int(p)] += n
    if sum(acked.values()) != records:
        raise CheckFailed(f"{topic}: {sum(acked.values())} acknowledged of {records} sent")
    return wall, dict(acked)


def consume_and_check(
    cluster: BenchCluster, topic: str, partitions: int, acked: dict[int, int]
) -> tuple[float, int]:
    """One consumer reads ``topic`` to its end: (wall s, records); ``CheckFailed`` unless
    it read exactly the acknowledged records per partition, offsets only increasing."""
    spec = {"topic": topic, "partitions": partitions}
    wall, (r,) = cluster.run_workers("consume", [spec])
    count = {int(p): n for p, n in r["count"].items()}
    ends = {int(p): n for p, n in r["ends"].items()}
    problems = list(r["bad"])
    if r["timed_out"]:
        problems.append("the consumer did not reach the end offsets before its deadline")
    for p in range(partitions):
        a, c, e = acked.get(p, 0), count.get(p, 0), ends.get(p, 0)
        if a != c:
            problems.append(f"partition {p}: acknowledged {a}, read {c} (end offset {e})")
    if problems:
        raise CheckFailed(
            f"{topic}: records read back differ from records acknowledged: " + "; ".join(problems)
        )
    return wall, sum(count.values())


def measure_ceilings(run: Run, s: ThroughputSettings) -> None:
    """Loopback and disk ceilings, as raw MB/s and in each throughput figure's unit."""
    run.progress.note("ceilings: loopback TCP and disk write+fsync ...")
    lo = loopback_mbps()
    disk = disk_fsync_mbps(run.data_dir, s.batch_bytes)
    produce_mbps = min(lo, disk / 3)
    run.measured.update(
        {
            "loopback_mbps": lo,
            "disk_fsync_mbps": disk,
            "disk_fsync_batch_bytes": s.batch_bytes,
            "produce_ceiling_mbps": produce_mbps,
            "consume_ceiling_mbps": lo,
        }
    )
    run.ceiling("produce_100b_rps", produce_mbps * MB / 100)
    run.ceiling("produce_1kib_mbps", produce_mbps)
    run.ceiling("consume_100b_rps", lo * MB / 100)
    run.progress.note(f"ceilings: loopback {lo:,.0f} MB/s, disk write+fsync {disk:,.1f} MB/s")


def measure(
    run: Run,
    s: ThroughputSettings,
    jobs: tuple[tuple[int, int], ...] | None = None,
    keep: tuple[str, ...] | None = None,
    profile: str | None = None,
) -> None:
    """Every round, produce (and read back) each job's ``(value_bytes, records)``; by
    default ``s.records`` of 100 B and a fifth as many of 1 KiB. The figures named in
    ``keep`` (all when None) go into ``run``."""
    if jobs is None:
        jobs = ((100, s.records), (1024, max(1, s.records // 5)))
    run.settings["throughput"] = {
        **asdict(s),
        "jobs": [{"value_bytes": size, "records": n} for size, n in jobs],
        "replication_factor": 3,
        "acks": "all",
        "fsync": True,
    }
    samples: dict[str, list[float]] = collections.defaultdict(list)
    rss_produce: list[float] = []
    rss_idle: list[float] = []

    def wanted(key: str) -> bool:
        return keep is None or key in keep

    with bench_cluster(run.progress, run.data_dir, "throughput", run.brokers) as cluster:
        time.sleep(1.0)  # let start-up settle before the idle reading
        rss_idle = list(cluster.rss_mib().values())
        if profile:
            cluster.create_topic("profile", s.partitions)
            wall, _ = produce(cluster, s, "profile", s.records, 100, profile=profile)
            run.note(
                f"profiled 100 B produce (not counted): {s.records / wall:,.0f} records/s; "
                f"py-spy raw stacks in {profile}"
            )
        for r in range(s.rounds):
            for size, n in jobs:
                key = produce_key(size)
                topic = f"b{size}-r{r}"
                cluster.create_topic(topic, s.partitions)
                try:
                    wall, acked = produce(cluster, s, topic, n, size, profile=None)
                    rss_produce.extend(cluster.rss_mib().values())
                    cwall, got = consume_and_check(cluster, topic, s.partitions, acked)
                except CheckFailed as e:
                    run.abort(key, str(e))
                    if size == 100 and wanted("consume_100b_rps"):
                        run.abort("consume_100b_rps", str(e))
                    continue
                value = n / wall if key.endswith("_rps") else n * size / wall / MB
                samples[key].append(value)
                samples["consume_100b_rps" if size == 100 else f"consume_{size}b"].append(
                    got / cwall
                )
                run.progress.note(
                    f"round {r + 1}/{s.rounds}: produce {size} B: {n / wall:,.0f} records/s "
                    f"({n * size / wall / MB:.1f} MB/s, {wall:.2f} s); read back "
                    f"{got / cwall:,.0f} records/s; check ok"
                )
    for key, values in samples.items():
        if (key.startswith(("produce_", "consume_100b"))) and wanted(key):
            run.add(key, values, unit="MB/s")
    if wanted("rss_idle_mib"):
        run.add("rss_idle_mib", rss_idle, per="broker, idle before the first round")
    if wanted("rss_produce_mib"):
        run.add("rss_produce_mib", rss_produce, per="broker, after each produce")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--records", type=int, default=300_000, help="100 B records per round")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--producers", type=int, default=1, help="producer processes")
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--batch-bytes", type=int, default=64 * 1024)
    ap.add_argument("--max-in-flight", type=int, default=5)
    ap.add_argument("--compression", default="none")
    ap.add_argument("--dir", default=".", help="where the temporary data folder goes")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--py-spy", metavar="DIR", help="profile one extra 100 B produce")
    args = ap.parse_args()
    s = ThroughputSettings(
        args.rounds, args.records, args.partitions, args.producers, args.linger_ms,
        args.batch_bytes, args.max_in_flight, args.compression,
    )  # fmt: skip
    r = Run(data_dir=args.dir)
    measure_ceilings(r, s)
    measure(r, s, profile=args.py_spy)
    raise SystemExit(r.finish("raftlog throughput", args.json))


if __name__ == "__main__":
    main()
