"""``raftlog topic ...``: create, list, describe, reconfigure, grow and delete topics.

The words are kafka-topics' (create, list, describe, alter, delete); the flags rpk's
(``-p`` partitions, ``-r`` replication factor, ``-c key=value`` configs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer

from raftlog.cli.common import (
    CliError,
    brokers,
    check_output,
    note,
    reported,
    show_json,
    show_table,
    with_admin,
)
from raftlog.errors import ErrorCode, RaftlogError

app = typer.Typer(
    help="Create, list, describe, reconfigure, grow and delete topics.\n\n"
    "Example:\n\n    raftlog topic create orders -p 4 -r 3",
    no_args_is_help=True,
)

DEFAULT_REPLICATION_MAX = 3
"""Without ``-r``, a topic gets this many replicas (fewer when the cluster is smaller)."""


def parse_pairs(items: Sequence[str] | None, flag: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` as ``{"a": "1", "b": "2"}``; a usage error names ``flag``."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{flag} takes KEY=VALUE, not {item!r}")
        out[key.strip()] = value
    return out


@contextmanager
def existing(name: str) -> Iterator[None]:
    """An unknown topic ``name`` is reported as such, with where to see the topics."""
    try:
        yield
    except RaftlogError as e:
        if getattr(e, "code", None) != ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
            raise
        raise CliError(f"there is no topic {name!r}; 'raftlog topic list' shows them") from None


def _output_option() -> Any:
    return typer.Option(
        "auto",
        "--output",
        help="auto (a table on a terminal, tab-separated when piped), text or json.",
    )


# ------------------------------------------------------------------ create


@app.command()
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Topic name."),
    partitions: int = typer.Option(1, "--partitions", "-p", help="Number of partitions."),
    replication_factor: int = typer.Option(
        None,
        "--replication-factor",
        "-r",
        help="Replicas of each partition (default: 3, or every broker when there are fewer).",
    ),
    config: list[str] = typer.Option(
        None, "--config", "-c", help="KEY=VALUE topic config override (repeatable)."
    ),
) -> None:
    """Create a topic; returns once every partition has a leader.

    Example:

        raftlog topic create orders -p 4 -r 3 -c retention.ms=86400000
    """
    configs = parse_pairs(config, "--config")
    if partitions < 1:
        raise typer.BadParameter(f"--partitions must be at least 1, not {partitions}")
    if replication_factor is not None and replication_factor < 1:
        raise typer.BadParameter(
            f"--replication-factor must be at least 1, not {replication_factor}"
        )
    with reported(ctx):

        def run(admin: Any) -> int:
            rf = replication_factor
            if rf is None:
                rf = max(1, min(DEFAULT_REPLICATION_MAX, len(admin.describe_cluster().brokers)))
            admin.create_topic(name, partitions=partitions, replication_factor=rf, configs=configs)
            return rf

        rf = with_admin(ctx, run)
        extra = f", configs {', '.join(f'{k}={v}' for k, v in configs.items())}" if configs else ""
        typer.echo(
            f"created topic {name!r}: {partitions} partition(s), replication factor {rf}{extra}"
        )


# ------------------------------------------------------------------ list


@app.command("list")
def list_(ctx: typer.Context, output: str = _output_option()) -> None:
    """List the topics with their partition count and replication factor.

    Example:

        raftlog topic list

        raftlog topic list --output json
    """
    check_output(output)
    with reported(ctx):

        def run(admin: Any) -> list[Any]:
            return [admin.describe_topic(n) for n in admin.list_topics()]

        described = with_admin(ctx, run)
        rows = [
            (
                d.name,
                len(d.partitions),
                max((len(p.replicas) for p in d.partitions), default=0),
            )
            for d in described
        ]
        records = [{"topic": t, "partitions": p, "replication_factor": r} for t, p, r in rows]
        show_table(
            ctx, output, ("topic", "partitions", "replicas"), rows, title=None, records=records
        )
        if not rows and output != "json":
            note(ctx, "no topics yet; create one with 'raftlog topic create NAME'")


# ------------------------------------------------------------------ describe


def _offsets(ctx: typer.Context, name: str, ids: list[int]) -> tuple[dict[int, int], ...]:
    """(log start, high watermark) per partition id, from the partitions' leaders; empty
    dicts when the leaders cannot answer (a note says so)."""
    from raftlog.client import Consumer
    from raftlog.errors import RaftlogError

    consumer = Consumer(brokers(ctx), request_timeout_ms=10_000, client_id="raftlog-cli")
    try:
        tps = [(name, p) for p in ids]
        starts = consumer.beginning_offsets(tps)
        ends = consumer.end_offsets(tps)
        return (
            {tp.partition: o for tp, o in starts.items()},
            {tp.partition: o for tp, o in ends.items()},
        )
    except RaftlogError as e:
        note(ctx, f"warning: cannot read the offsets of {name!r}: {e}")
        return {}, {}
    finally:
        consumer.close()


@app.command()
def describe(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Topic name."),
    output: str = _output_option(),
) -> None:
    """Show a topic's partitions (leader, replicas, log start, high watermark) and configs.

    A config's source is "override" when the topic sets it, else "default".

    Example:

        raftlog topic describe orders

        raftlog topic describe orders --output json
    """
    check_output(output)
    with reported(ctx):

        def run(admin: Any) -> tuple[Any, Any]:
            return admin.describe_topic(name), admin.describe_configs(name)

        with existing(name):
            desc, configs = with_admin(ctx, run)
        led = [p.partition for p in desc.partitions if p.leader is not None]
        starts, ends = _offsets(ctx, name, led) if led else ({}, {})
        parts = [
            {
                "partition": p.partition,
                "leader": p.leader,
                "replicas": list(p.replicas),
                "log_start": starts.get(p.partition),
                "high_watermark": ends.get(p.partition, p.high_watermark),
            }
            for p in desc.partitions
        ]
        conf = {
            k: {"value": v.value, "source": "default" if v.is_default else "override"}
            for k, v in configs.items()
        }
        if output == "json":
            show_json({"topic": desc.name, "partitions": parts, "configs": conf})
            return
        rf = max((len(p["replicas"]) for p in parts), default=0)
        show_table(
            ctx,
            output,
            ("partition", "leader", "replicas", "log_start", "high_watermark"),
            [
                (
                    p["partition"],
                    p["leader"],
                    ",".join(str(r) for r in p["replicas"]),
                    p["log_start"],
                    p["high_watermark"],
                )
                for p in parts
            ],
            title=f"topic {desc.name}: {len(parts)} partition(s), replication factor {rf}",
        )
        # overrides first: they are what this topic changes
        ordered = sorted(conf.items(), key=lambda kv: (kv[1]["source"] != "override", kv[0]))
        show_table(
            ctx,
            output,
            ("config", "value", "source"),
            [(k, v["value"], v["source"]) for k, v in ordered],
            title="configs",
        )


# ------------------------------------------------------------------ alter, grow, delete


@app.command("alter-config")
def alter_config(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Topic name."),
    set_: list[str] = typer.Option(None, "--set", "-s", help="KEY=VALUE to override (repeatable)."),
    delete: list[str] = typer.Option(
        None, "--delete", "-d", help="KEY to reset to its default (repeatable)."
    ),
) -> None:
    """Change a topic's config overrides; the others stay as they are.

    Example:

        raftlog topic alter-config orders --set retention.ms=3600000 --delete cleanup.policy
    """
    sets = parse_pairs(set_, "--set")
    deletes = [d.strip() for d in delete or () if d.strip()]
    if not sets and not deletes:
        raise typer.BadParameter("give --set KEY=VALUE and/or --delete KEY")
    both = sorted(set(sets) & set(deletes))
    if both:
        raise typer.BadParameter(f"{', '.join(both)}: both --set and --delete; pick one")
    with reported(ctx):
        with existing(name):
            with_admin(ctx, lambda admin: admin.alter_configs(name, set=sets, delete=deletes))
        done = [f"{k}={v}" for k, v in sets.items()] + [f"{k} reset" for k in deletes]
        typer.echo(f"altered topic {name!r}: {', '.join(done)}")


@app.command("add-partitions")
def add_partitions(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Topic name."),
    partitions: int = typer.Option(
        ..., "--partitions", "-p", help="The new total number of partitions (not the increase)."
    ),
) -> None:
    """Grow a topic to a total of N partitions (partitions are never removed).

    Keys written afterwards may map to other partitions than before.

    Example:

        raftlog topic add-partitions orders -p 8
    """
    with reported(ctx):
        with existing(name):
            with_admin(ctx, lambda admin: admin.create_partitions(name, partitions))
        typer.echo(f"topic {name!r} now has {partitions} partitions")


@app.command()
def delete(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Topic name."),
) -> None:
    """Delete a topic and all its records.

    Example:

        raftlog topic delete orders
    """
    with reported(ctx):
        with existing(name):
            with_admin(ctx, lambda admin: admin.delete_topic(name))
        typer.echo(f"deleted topic {name!r}")
