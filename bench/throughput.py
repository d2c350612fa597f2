"""End-to-end throughput: producers and a consumer against three real brokers on 127.0.0.1
(RF=3, acks=all, fsync on: the defaults), with this machine's ceilings measured in the
same run.

    python -m bench.throughput [--rounds 3] [--records N] [--partitions 6] [--producers 1]
                               [--json FILE] [--py-spy DIR]

Each round, on fresh topics:

- ``produce_100b_rps``: ``--producers`` processes send ``--records`` 100-byte values in all
  (split evenly) and flush; records / wall time from the go signal (every producer
  connected and ready) to the last flush;
- ``consume_100b_rps``: one consumer process reads that topic from the start to its end
  (the end offsets taken before the go signal); records / wall time;
- ``produce_1kib_mbps``: as the first, with ``--records / 5`` values of 1 KiB; MB/s of
  value bytes;
- after each figure, the check: the records read back per partition equal the records
  acknowledged per partition, read up to the end offset, offsets only increasing (no
  duplicate; offsets skip the control batch each new partition leader appends), else the
  figure is aborted with a message.

Ceilings (see ``bench.ceilings``): one TCP stream over loopback, and sequential
write+fsync of producer-sized batches on the data disk. All three replicas share this
machine's one disk and two cores, so each acknowledged byte is written and fsynced three
times on the same disk: the produce ceiling is min(loopback, disk / 3).

Broker RSS (VmRSS) is read idle, before the first round, and right after each produce
figure. With ``--py-spy DIR`` an extra 100 B produce, before the counted rounds and not
counted, runs with ``py-spy record`` attached to every broker and producer (raw collapsed
stacks in DIR, one file per process).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from typing import Any

from bench.ceilings import disk_fsync_mbps, loopback_mbps
from raftlog.testing.procs import ProcessGroup, free_port_blocks, wait_until
from raftlog.testing.wire_client import WireClient
from raftlog.wire import MetadataRequest

RAFTLOG = os.path.join(os.path.dirname(sys.executable), "raftlog")
PY_SPY = os.path.join(os.path.dirname(sys.executable), "py-spy")
ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDS = (1, 2, 3)
MB = 1e6
WORKER_DEADLINE_S = 120.0


class CheckFailed(RuntimeError):
    """Records read back differ from the records acknowledged."""


# ---------------------------------------------------------------------- worker processes


def _wait_go(go_path: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(go_path):
        if time.monotonic() > deadline:
            raise TimeoutError("no go signal within 60 s")
        time.sleep(0.001)


def _write_json(path: str, data: dict[str, Any]) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


def worker_produce(spec: dict[str, Any]) -> None:
    from raftlog import Producer

    value = os.urandom(spec["value_bytes"])
    n = spec["records"]
    topic = spec["topic"]
    producer = Producer(spec["bootstrap"], acks="all", **spec["producer"])
    try:
        producer.partitions_for(topic)  # metadata before the clock starts
        _write_json(spec["ready"], {"pid": os.getpid()})
        _wait_go(spec["go"])
        t_start = time.time()
        futures = [producer.send(topic, value) for _ in range(n)]
        producer.flush(timeout=WORKER_DEADLINE_S)
        t_end = time.time()
        acked: collections.Counter[int] = collections.Counter()
        errors: list[str] = []
        for f in futures:
            exc = f.exception(timeout=0)
            if exc is not None:
                if len(errors) < 5:
                    errors.append(repr(exc))
                continue
            acked[f.result().partition] += 1
    finally:
        producer.close(timeout=30)
    _write_json(
        spec["result"],
        {"t_start": t_start, "t_end": t_end, "acked": dict(acked), "errors": errors},
    )


def worker_consume(spec: dict[str, Any]) -> None:
    from raftlog import Consumer

    topic = spec["topic"]
    tps = [(topic, p) for p in range(spec["partitions"])]
    consumer = Consumer(spec["bootstrap"], auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        consumer.assign(tps)
        ends = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
        _write_json(spec["ready"], {"pid": os.getpid()})
        _wait_go(spec["go"])
        t_start = time.time()
        deadline = time.monotonic() + WORKER_DEADLINE_S
        count: collections.Counter[int] = collections.Counter()
        # a leader's Raft no-op is a control batch: it takes an offset but is no record,
        # so offsets may skip; they must only increase (no duplicate, no reordering)
        next_offset = dict.fromkeys(ends, 0)
        bad: list[str] = []
        done = False
        nbytes = 0
        while not done and time.monotonic() < deadline:
            records = consumer.poll(timeout_ms=1000, max_records=10_000)
            for r in records:
                p = r.partition
                if r.offset < next_offset[p] and len(bad) < 5:
                    bad.append(f"partition {p}: offset {r.offset} after {next_offset[p] - 1}")
                next_offset[p] = r.offset + 1
                count[p] += 1
                nbytes += len(r.value or b"")
            if all(next_offset[p] >= e for p, e in ends.items()):
                done = True
            elif not records:  # maybe only control batches are left: ask the positions
                done = all(consumer.position(topic, p) >= e for p, e in ends.items())
        t_end = time.time()
    finally:
        consumer.close(timeout_ms=10_000)
    _write_json(
        spec["result"],
        {
            "t_start": t_start,
            "t_end": t_end,
            "count": dict(count),
            "ends": ends,
            "bytes": nbytes,
            "bad": bad,
            "timed_out": not done,
        },
    )


# ---------------------------------------------------------------------- the cluster


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def machine_info(data_dir: str) -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "data_dir": os.path.abspath(data_dir),
    }


class Bench:
    def __init__(self, pg: ProcessGroup, root: str, args: argparse.Namespace) -> None:
        self.pg = pg
        self.root = root
        self.args = args
        self.ports = dict(zip(IDS, free_port_blocks(3), strict=True))
        self.bootstrap = [f"127.0.0.1:{self.ports[i]}" for i in IDS]
        self.secret = os.path.join(root, "secret")
        with open(self.secret, "w") as f:
            f.write(os.urandom(16).hex())
        self.seq = 0

    def start_cluster(self) -> None:
        for i in IDS:
            argv = [
                RAFTLOG,
                "node",
                "start",
                "--id",
                str(i),
                "--listen",
                f"127.0.0.1:{self.ports[i]}",
                "--data-dir",
                os.path.join(self.root, f"n{i}"),
                "--cluster-secret-file",
                self.secret,
            ]
            for j in IDS:
                argv += ["--peer", f"{j}@127.0.0.1:{self.ports[j]}"]
            self.pg.start(f"n{i}", argv)
        try:
            for i in IDS:
                wait_until(lambda i=i: self.client(i), timeout_s=30, what=f"broker {i}")
        except TimeoutError:
            for i in IDS:
                print(
                    f"--- broker {i} log:\n{self.pg.procs[f'n{i}'].log()[-2000:]}", file=sys.stderr
                )
            raise
        c = self.client(1)
        wait_until(
            lambda: len(c.call(MetadataRequest()).brokers) == 3, timeout_s=30, what="3 brokers"
        )

    def client(self, i: int) -> WireClient:
        return WireClient("127.0.0.1", self.ports[i], timeout_s=5)

    def broker_pids(self) -> dict[str, int]:
        return {f"n{i}": self.pg.procs[f"n{i}"].pid for i in IDS}

    def rss(self) -> dict[str, float]:
        return {name: round(rss_kib(pid) / 1024, 1) for name, pid in self.broker_pids().items()}

    def create_topic(self, name: str) -> None:
        from raftlog import Admin

        with Admin(self.bootstrap) as admin:
            admin.create_topic(name, partitions=self.args.partitions, replication_factor=3)

    def run_workers(
        self, kind: str, specs: list[dict[str, Any]], profile: str | None = None
    ) -> tuple[float, list[dict[str, Any]]]:
        """Start one process per spec, wait until all are ready, give the go signal and
        wait for all results; returns (wall seconds from go to the last end, results).
        With ``profile`` (a folder), ``py-spy record`` samples every broker and worker
        from the go signal to the end (raw collapsed stacks, one file per process)."""
        self.seq += 1
        base = os.path.join(self.root, f"w{self.seq}")
        go = base + ".go"
        names = []
        for k, spec in enumerate(specs):
            spec = {
                **spec,
                "kind": kind,
                "go": go,
                "bootstrap": self.bootstrap,
                "ready": f"{base}-{k}.ready",
                "result": f"{base}-{k}.json",
            }
            path = f"{base}-{k}.spec"
            _write_json(path, spec)
            name = f"{kind}-{self.seq}-{k}"
            self.pg.start(
                name,
                [sys.executable, "-m", "bench.throughput", "--worker", path],
                env={"PYTHONPATH": ROOT_DIR},
            )
            names.append(name)

        def all_ready() -> bool:
            for k, name in enumerate(names):
                if not self.pg.procs[name].alive() and not os.path.exists(f"{base}-{k}.json"):
                    raise RuntimeError(f"{name} exited early:\n{self.pg.procs[name].log()[-3000:]}")
            return all(os.path.exists(f"{base}-{k}.ready") for k in range(len(names)))

        wait_until(all_ready, timeout_s=60, what=f"{kind} workers ready")
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
            except Exception:
                self.pg.kill(name)
                raise
            path = f"{base}-{k}.json"
            if not os.path.exists(path):
                raise RuntimeError(f"{name} left no result:\n{proc.log()[-3000:]}")
            with open(path) as f:
                results.append(json.load(f))
        return results

    def produce(
        self, topic: str, records: int, value_bytes: int, profile: str | None = None
    ) -> tuple[float, dict[int, int]]:
        k = self.args.producers
        shares = [records // k + (1 if j < records % k else 0) for j in range(k)]
        producer = {
            "linger_ms": self.args.linger_ms,
            "batch_bytes": self.args.batch_bytes,
            "max_in_flight": self.args.max_in_flight,
            "compression": self.args.compression,
        }
        specs = [
            {"topic": topic, "records": n, "value_bytes": value_bytes, "producer": producer}
            for n in shares
        ]
        wall, results = self.run_workers("produce", specs, profile)
        acked: collections.Counter[int] = collections.Counter()
        for r in results:
            if r["errors"]:
                raise CheckFailed(f"{topic}: sends failed, e.g. {r['errors']}")
            for p, n in r["acked"].items():
                acked[int(p)] += n
        if sum(acked.values()) != records:
            raise CheckFailed(f"{topic}: {sum(acked.values())} acknowledged of {records} sent")
        return wall, dict(acked)

    def consume_and_check(self, topic: str, acked: dict[int, int]) -> tuple[float, int, int]:
        spec = {"topic": topic, "partitions": self.args.partitions}
        wall, (r,) = self.run_workers("consume", [spec])
        count = {int(p): n for p, n in r["count"].items()}
        ends = {int(p): n for p, n in r["ends"].items()}
        problems = list(r["bad"])
        if r["timed_out"]:
            problems.append(f"consumer did not reach the end within {WORKER_DEADLINE_S:g} s")
        for p in range(self.args.partitions):
            a, c, e = acked.get(p, 0), count.get(p, 0), ends.get(p, 0)
            if a != c:
                problems.append(f"partition {p}: acknowledged {a}, read {c} (end offset {e})")
        if problems:
            raise CheckFailed(
                f"{topic}: records read back differ from records acknowledged: "
                + "; ".join(problems)
            )
        return wall, sum(count.values()), r["bytes"]


# ---------------------------------------------------------------------- main


def summary(values: list[float], unit: str) -> dict[str, Any]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "unit": unit,
        "samples": values,
    }


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
    ap.add_argument("--py-spy", metavar="DIR", help="profile the brokers in round 1 (100 B)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        with open(args.worker) as f:
            spec = json.load(f)
        (worker_produce if spec["kind"] == "produce" else worker_consume)(spec)
        return

    root = tempfile.mkdtemp(prefix="raftlog-bench-throughput-", dir=args.dir)
    samples: dict[str, list[float]] = collections.defaultdict(list)
    aborted: dict[str, str] = {}
    rss: dict[str, Any] = {}
    ceilings: dict[str, float] = {}
    machine = machine_info(root)
    try:
        # ceilings first, on a quiet machine
        print("measuring ceilings ...", file=sys.stderr)
        ceilings["loopback_mbps"] = loopback_mbps()
        ceilings["disk_fsync_mbps"] = disk_fsync_mbps(root, args.batch_bytes)
        ceilings["produce_ceiling_mbps"] = min(
            ceilings["loopback_mbps"], ceilings["disk_fsync_mbps"] / 3
        )
        ceilings["consume_ceiling_mbps"] = ceilings["loopback_mbps"]
        with ProcessGroup(root) as pg:
            bench = Bench(pg, root, args)
            bench.start_cluster()
            time.sleep(1.0)  # let start-up settle before the idle reading
            rss["idle_mib"] = bench.rss()
            rss["after_produce_100b_mib"] = []
            rss["after_produce_1kib_mib"] = []
            if args.py_spy:
                # an extra round, not counted: the profiler slows what it samples
                bench.create_topic("profile")
                wall, _ = bench.produce("profile", args.records, 100, profile=args.py_spy)
                print(
                    f"profiled 100 B produce (not counted): {args.records / wall:,.0f} "
                    f"records/s; py-spy raw stacks in {args.py_spy}",
                    file=sys.stderr,
                )
            for r in range(args.rounds):
                t100, t1k = f"b100-r{r}", f"b1k-r{r}"
                bench.create_topic(t100)
                bench.create_topic(t1k)
                wall, acked = bench.produce(t100, args.records, 100)
                rss["after_produce_100b_mib"].append(bench.rss())
                print(
                    f"round {r + 1}: produce 100 B: {args.records / wall:,.0f} records/s "
                    f"({wall:.2f} s)",
                    file=sys.stderr,
                )
                try:
                    cwall, n, _ = bench.consume_and_check(t100, acked)
                    samples["produce_100b_rps"].append(args.records / wall)
                    samples["consume_100b_rps"].append(n / cwall)
                    print(
                        f"round {r + 1}: consume 100 B: {n / cwall:,.0f} records/s "
                        f"({cwall:.2f} s), check ok",
                        file=sys.stderr,
                    )
                except CheckFailed as e:
                    aborted["produce_100b_rps"] = aborted["consume_100b_rps"] = str(e)
                    print(f"round {r + 1}: ABORTED 100 B figures: {e}", file=sys.stderr)
                n1k = args.records // 5
                wall, acked = bench.produce(t1k, n1k, 1024)
                rss["after_produce_1kib_mib"].append(bench.rss())
                try:
                    bench.consume_and_check(t1k, acked)
                    samples["produce_1kib_mbps"].append(n1k * 1024 / wall / MB)
                    print(
                        f"round {r + 1}: produce 1 KiB: {n1k * 1024 / wall / MB:.2f} MB/s "
                        f"({wall:.2f} s), check ok",
                        file=sys.stderr,
                    )
                except CheckFailed as e:
                    aborted["produce_1kib_mbps"] = str(e)
                    print(f"round {r + 1}: ABORTED 1 KiB figure: {e}", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    units = {
        "produce_100b_rps": "records/s",
        "consume_100b_rps": "records/s",
        "produce_1kib_mbps": "MB/s",
    }
    figures = {k: summary(samples[k], units[k]) for k in units if samples.get(k)}
    # each figure as MB/s of value bytes, against its ceiling
    as_mbps = {"produce_100b_rps": 100 / MB, "consume_100b_rps": 100 / MB, "produce_1kib_mbps": 1.0}
    ceiling_of = {
        "produce_100b_rps": "produce_ceiling_mbps",
        "consume_100b_rps": "consume_ceiling_mbps",
        "produce_1kib_mbps": "produce_ceiling_mbps",
    }
    for k, fig in figures.items():
        fig["median_mbps"] = fig["median"] * as_mbps[k]
        fig["ceiling"] = ceiling_of[k]
        fig["ratio_to_ceiling"] = fig["median_mbps"] / ceilings[ceiling_of[k]]
    settings = {
        "rounds": args.rounds,
        "records_100b": args.records,
        "records_1kib": args.records // 5,
        "partitions": args.partitions,
        "replication_factor": 3,
        "acks": "all",
        "fsync": True,
        "producers": args.producers,
        "linger_ms": args.linger_ms,
        "batch_bytes": args.batch_bytes,
        "max_in_flight": args.max_in_flight,
        "compression": args.compression,
    }
    report(machine, settings, figures, ceilings, rss, aborted)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": machine,
                    "settings": settings,
                    "figures": figures,
                    "ceilings": ceilings,
                    "rss": rss,
                    "aborted": aborted,
                },
                f,
                indent=2,
            )
    if aborted:
        sys.exit(1)


def report(
    machine: dict[str, Any],
    settings: dict[str, Any],
    figures: dict[str, dict[str, Any]],
    ceilings: dict[str, float],
    rss: dict[str, Any],
    aborted: dict[str, str],
) -> None:
    def num(v: float) -> str:
        return f"{v:,.0f}" if v >= 1000 else f"{v:.2f}"

    title = (
        f"raftlog throughput: 3 brokers on 127.0.0.1, {settings['partitions']} partitions "
        f"RF=3, acks=all, fsync on, {settings['producers']} producer process(es), "
        f"{settings['rounds']} rounds; {machine['cpus']} cpus, {machine['cpu_model']}"
    )
    head = ("figure", "min", "median", "max", "unit", "median MB/s", "ceiling MB/s", "ratio")
    rows = []
    for k, f in figures.items():
        rows.append(
            (
                k,
                num(f["min"]),
                num(f["median"]),
                num(f["max"]),
                f["unit"],
                f"{f['median_mbps']:.2f}",
                f"{ceilings[f['ceiling']]:.1f}",
                f"{f['ratio_to_ceiling']:.1%}",
            )
        )
    for k in aborted:
        rows.append((k, "ABORTED", "", "", "", "", "", ""))
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for h in head:
            table.add_column(h, justify="left" if h in ("figure", "unit") else "right")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    else:
        print(title)
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        for row in [head, *rows]:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    for k, msg in aborted.items():
        print(f"ABORTED {k}: {msg}")
    print()
    print("ceilings, measured in this run:")
    print(
        "  loopback TCP, one Python stream, 64 KiB sends:        "
        f"{ceilings['loopback_mbps']:9.1f} MB/s"
    )
    print(
        f"  disk write+fsync per {settings['batch_bytes']} B batch (data folder):  "
        f"{ceilings['disk_fsync_mbps']:9.1f} MB/s"
    )
    print(
        f"  produce ceiling = min(loopback, disk / 3):            "
        f"{ceilings['produce_ceiling_mbps']:9.1f} MB/s"
    )
    print(
        "  (all 3 replicas share this machine's one disk and two cores: every acknowledged\n"
        "   byte is written and fsynced 3 times on the same disk, so the disk allows at\n"
        "   most disk/3 of produced bytes; the loopback term ignores that replication also\n"
        "   sends each byte 3 times over loopback and that the brokers, producer and\n"
        "   consumer share 2 cores. Consume ceiling = loopback (reads come from the page\n"
        "   cache). Ratios compare value bytes only, so they understate the wire bytes.)"
    )
    print()
    print("broker RSS (VmRSS, MiB):")
    print(f"  idle before the run:        {rss['idle_mib']}")
    if rss["after_produce_100b_mib"]:
        print(f"  after produce 100 B (last): {rss['after_produce_100b_mib'][-1]}")
    if rss["after_produce_1kib_mib"]:
        print(f"  after produce 1 KiB (last): {rss['after_produce_1kib_mib'][-1]}")


if __name__ == "__main__":
    main()
