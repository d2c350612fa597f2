"""``raftlog bench ...``: the benchmarks of issue 10 against real brokers on 127.0.0.1.

Each command starts three brokers (RF=3, acks=all, fsync on) with their data in a fresh
temporary folder under ``--dir`` (a real disk), measures, stops every broker it started by
PID, and prints one table: each figure's min / median / max, its ratio to the goal and,
where one applies, to the ceiling measured in the same run. Progress goes to stderr, the
table to stdout (rich on a terminal, plain aligned text when piped), ``--json FILE``
writes every number. The measuring code lives in ``raftlog.bench`` (the ``bench/`` folder).
"""

from __future__ import annotations

import time
from typing import Any

import typer

from raftlog.cli.common import _split

app = typer.Typer(
    help="Benchmarks on 3 local brokers (RF=3, acks=all, fsync on), with goals and ceilings."
    "\n\nExample:\n\n    raftlog bench all --rounds 3 --json bench-results.json",
    no_args_is_help=True,
)


def _rounds(default: int) -> Any:
    return typer.Option(default, "--rounds", "-n", min=1, help="Rounds (samples) per figure.")


def _json() -> Any:
    return typer.Option(None, "--json", help="Also write every number to this JSON file.")


def _dir() -> Any:
    return typer.Option(
        ".", "--dir", help="Where the temporary data folders go (a real disk, not tmpfs)."
    )


def _brokers() -> Any:
    return typer.Option(
        None,
        "--brokers",
        help="HOST:PORT,... of a running cluster to measure instead of starting 3 brokers "
        "(no RSS figures then).",
    )


def _quiet() -> Any:
    return typer.Option(False, "--quiet", "-q", help="No progress on stderr.")


def _start(dir_: str, brokers: str | None, quiet: bool) -> Any:
    from raftlog.bench.progress import Progress
    from raftlog.bench.run import Run

    listed = _split(brokers, "--brokers") if brokers else None
    return Run(data_dir=dir_, brokers=listed, progress=Progress(quiet=quiet))


def _finish(run: Any, title: str, json_path: str | None, t0: float) -> None:
    run.note(f"wall time: {time.monotonic() - t0:.0f} s")
    raise typer.Exit(run.finish(title, json_path))


@app.command()
def produce(
    size: int = typer.Option(100, "--size", min=1, help="Value size in bytes."),
    records: int = typer.Option(
        None, "--records", min=1, help="Records per round (default 300,000; above 100 B 60,000)."
    ),
    partitions: int = typer.Option(6, "--partitions", "-p", min=1),
    producers: int = typer.Option(1, "--producers", min=1, help="Producer processes."),
    linger_ms: int = typer.Option(5, "--linger-ms", min=0),
    batch_bytes: int = typer.Option(64 * 1024, "--batch-bytes", min=1024),
    compression: str = typer.Option("none", "--compression"),
    py_spy: str = typer.Option(
        None, "--py-spy", help="Folder: profile one extra (uncounted) 100 B produce with py-spy."
    ),
    rounds: int = _rounds(3),
    json_path: str = _json(),
    dir_: str = _dir(),
    brokers: str = _brokers(),
    quiet: bool = _quiet(),
) -> None:
    """Produce throughput, every round read back and checked.

    records/s for 100 B values, MB/s otherwise; the check: records read = records
    acknowledged, per partition, offsets only increasing.

    Example:

        raftlog bench produce --size 100 --rounds 3
    """
    from raftlog.bench import throughput

    t0 = time.monotonic()
    run = _start(dir_, brokers, quiet)
    if records is None:
        records = 300_000 if size <= 100 else 60_000
    s = throughput.ThroughputSettings(
        rounds=rounds, records=records, partitions=partitions, producers=producers,
        linger_ms=linger_ms, batch_bytes=batch_bytes, compression=compression,
    )  # fmt: skip
    throughput.measure_ceilings(run, s)
    key = throughput.produce_key(size)
    throughput.measure(
        run, s, ((size, records),), (key, "rss_idle_mib", "rss_produce_mib"), profile=py_spy
    )
    _finish(run, f"raftlog bench produce --size {size}", json_path, t0)


@app.command()
def consume(
    records: int = typer.Option(300_000, "--records", min=1, help="100 B records per round."),
    partitions: int = typer.Option(6, "--partitions", "-p", min=1),
    rounds: int = _rounds(3),
    json_path: str = _json(),
    dir_: str = _dir(),
    brokers: str = _brokers(),
    quiet: bool = _quiet(),
) -> None:
    """Consume throughput of one consumer process, checked.

    The 100 B records are written first (not counted); what is read must equal what was
    acknowledged, per partition, offsets only increasing.

    Example:

        raftlog bench consume --records 300000
    """
    from raftlog.bench import throughput

    t0 = time.monotonic()
    run = _start(dir_, brokers, quiet)
    s = throughput.ThroughputSettings(rounds=rounds, records=records, partitions=partitions)
    throughput.measure_ceilings(run, s)
    throughput.measure(run, s, ((100, records),), keep=("consume_100b_rps",))
    _finish(run, "raftlog bench consume", json_path, t0)


@app.command()
def e2e(
    rate: int = typer.Option(10_000, "--rate", min=1, help="Records per second to send."),
    measure_s: float = typer.Option(10.0, "--seconds", min=1, help="Measured seconds a round."),
    warmup_s: float = typer.Option(2.0, "--warmup", min=0, help="Warm-up seconds a round."),
    partitions: int = typer.Option(3, "--partitions", "-p", min=1),
    linger_ms: int = typer.Option(1, "--linger-ms", min=0, help="The producer's linger."),
    fetch_max_wait_ms: int = typer.Option(
        100, "--fetch-max-wait-ms", min=0, help="The consumer's long-poll wait."
    ),
    rounds: int = _rounds(3),
    json_path: str = _json(),
    dir_: str = _dir(),
    brokers: str = _brokers(),
    quiet: bool = _quiet(),
) -> None:
    """End-to-end latency (p50, p99) at a fixed rate.

    One producer process sends at --rate, one consumer process reads; latency = receive
    time - send time carried in the record; every record must arrive exactly once.

    Example:

        raftlog bench e2e --rate 10000
    """
    from raftlog.bench import e2e as e2e_bench

    t0 = time.monotonic()
    run = _start(dir_, brokers, quiet)
    e2e_bench.measure_floor(run)
    s = e2e_bench.E2eSettings(
        rounds=rounds, rate=rate, measure_s=measure_s, warmup_s=warmup_s, partitions=partitions,
        linger_ms=linger_ms, fetch_max_wait_ms=fetch_max_wait_ms,
    )  # fmt: skip
    e2e_bench.measure(run, s)
    _finish(run, f"raftlog bench e2e --rate {rate}", json_path, t0)


@app.command()
def scale(
    partitions: int = typer.Option(1000, "--partitions", "-p", min=1),
    per_topic: int = typer.Option(50, "--per-topic", min=1, help="Partitions per topic."),
    window_s: float = typer.Option(20.0, "--window", min=1, help="Seconds of each CPU reading."),
    deadline_s: float = typer.Option(
        300.0, "--deadline", min=10, help="Give up creating after this many seconds."
    ),
    py_spy: str = typer.Option(
        None, "--py-spy", help="Folder: profile the brokers while creating and while idle."
    ),
    rounds: int = _rounds(1),
    json_path: str = _json(),
    dir_: str = _dir(),
    quiet: bool = _quiet(),
) -> None:
    """Idle cost of many partitions: CPU per broker, memory per replica.

    Also how long creating them (RF=3, in topics of --per-topic) took until every one had
    a leader.

    Example:

        raftlog bench scale --partitions 1000
    """
    from raftlog.bench import scale as scale_bench

    t0 = time.monotonic()
    run = _start(dir_, None, quiet)
    s = scale_bench.ScaleSettings(
        rounds=rounds, partitions=partitions, per_topic=per_topic, window_s=window_s,
        create_deadline_s=deadline_s,
    )  # fmt: skip
    scale_bench.measure(run, s, profile=py_spy)
    _finish(run, f"raftlog bench scale --partitions {partitions}", json_path, t0)


@app.command()
def failover(
    partitions: int = typer.Option(12, "--partitions", "-p", min=1),
    rounds: int = _rounds(5),
    json_path: str = _json(),
    dir_: str = _dir(),
    quiet: bool = _quiet(),
) -> None:
    """Failover: kill -9 of a leader to the first ack on the new leader.

    Each round kills the broker leading most partitions; the figure is the p99 over its
    partitions of the time to the first acknowledged produce on the new leader.

    Example:

        raftlog bench failover --rounds 5
    """
    from raftlog.bench import failover as failover_bench

    t0 = time.monotonic()
    run = _start(dir_, None, quiet)
    failover_bench.measure(run, failover_bench.FailoverSettings(rounds, partitions))
    _finish(run, "raftlog bench failover", json_path, t0)


@app.command()
def rebalance(
    partitions: int = typer.Option(12, "--partitions", "-p", min=1),
    members: int = typer.Option(3, "--members", min=1, help="Members before the join."),
    rounds: int = _rounds(5),
    json_path: str = _json(),
    dir_: str = _dir(),
    quiet: bool = _quiet(),
) -> None:
    """Rebalance: a member joins a group (3 -> 4), time to all consuming again.

    Example:

        raftlog bench rebalance --rounds 5
    """
    from raftlog.bench import rebalance as rebalance_bench

    t0 = time.monotonic()
    run = _start(dir_, None, quiet)
    rebalance_bench.measure(run, rebalance_bench.RebalanceSettings(rounds, partitions, members))
    _finish(run, "raftlog bench rebalance", json_path, t0)


@app.command("all")
def all_(
    records: int = typer.Option(300_000, "--records", min=1, help="100 B records per round."),
    scale_partitions: int = typer.Option(1000, "--scale-partitions", min=1),
    only: str = typer.Option(
        None,
        "--only",
        help="Comma-separated groups: throughput, e2e, scale, failover, rebalance.",
    ),
    py_spy: str = typer.Option(
        None, "--py-spy", help="Folder: profile one extra 100 B produce with py-spy."
    ),
    rounds: int = _rounds(3),
    json_path: str = _json(),
    dir_: str = _dir(),
    quiet: bool = _quiet(),
) -> None:
    """The standard set: every figure in one run and one table.

    Ceilings first, then throughput, e2e, scale, failover, rebalance, each on its own 3
    brokers.

    Example:

        raftlog bench all --rounds 3 --json bench-results.json
    """
    from raftlog.bench import suite
    from raftlog.bench.figures import GROUPS

    groups = GROUPS
    if only:
        groups = tuple(g.strip() for g in only.split(",") if g.strip())
        unknown = [g for g in groups if g not in GROUPS]
        if unknown:
            raise typer.BadParameter(f"--only: unknown group(s) {unknown}; known: {GROUPS}")
    t0 = time.monotonic()
    run = _start(dir_, None, quiet)
    s = suite.SuiteSettings(rounds=rounds, records=records, scale_partitions=scale_partitions)
    suite.measure_all(run, s, groups, profile=py_spy)
    _finish(run, f"raftlog bench all ({rounds} rounds)", json_path, t0)
