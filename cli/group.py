"""``raftlog group ...``: list, describe, reset the offsets of and delete consumer groups.

The words are kafka-consumer-groups' (``--describe``, ``--reset-offsets --to-earliest``,
``--dry-run``), as subcommands. Everything goes through ``raftlog.client.Admin``'s group
API, which talks to the group coordinator. Offsets can only be reset, and a group only
deleted, while it has no active member: the command then says to stop the consumers first.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import typer

from raftlog.cli.common import (
    CliError,
    check_output,
    reported,
    show_json,
    show_table,
    with_admin,
)

app = typer.Typer(
    help="List, describe, reset the offsets of and delete consumer groups.\n\n"
    "Example:\n\n    raftlog group describe billing",
    no_args_is_help=True,
)


def _output_option() -> Any:
    return typer.Option(
        "auto",
        "--output",
        help="auto (a table on a terminal, tab-separated when piped), text or json.",
    )


def _stop_consumers_first(e: Exception, group: str, what: str) -> None:
    """A group with active members refuses ``what``: say what to do, in one line."""
    from raftlog.client import BrokerError
    from raftlog.errors import ErrorCode

    if isinstance(e, BrokerError) and e.code == ErrorCode.NON_EMPTY_GROUP:
        raise CliError(
            f"group {group!r} has active members, so {what}: stop its consumers first "
            "(or wait for their session timeout), then try again"
        ) from None


# ------------------------------------------------------------------ list


@app.command("list")
def list_groups(ctx: typer.Context, output: str = _output_option()) -> None:
    """List the consumer groups with their state and number of members.

    Example:

        raftlog group list
    """
    with reported(ctx):
        check_output(output)
        groups = with_admin(ctx, lambda admin: admin.list_groups())
        show_table(
            ctx,
            output,
            ("group", "state", "members"),
            [(g.group_id, g.state, g.members) for g in groups],
            records=[dataclasses.asdict(g) for g in groups],
        )


# ------------------------------------------------------------------ describe


@app.command()
def describe(
    ctx: typer.Context,
    group: str = typer.Argument(..., help="Group id."),
    output: str = _output_option(),
) -> None:
    """Show a group: its state and members, and per partition its offsets and lag.

    Lag = log end (high watermark) - committed offset.

    Example:

        raftlog group describe billing
    """
    with reported(ctx):
        check_output(output)
        d = with_admin(ctx, lambda admin: admin.describe_group(group))
        if output == "json":
            doc = dataclasses.asdict(d)
            doc["lag"] = d.lag
            show_json(doc)
            return
        members = {m.member_id: m for m in d.members}
        typer.echo(
            f"group {d.group_id}: {d.state}, generation {d.generation}, "
            f"{len(d.members)} member{'s' * (len(d.members) != 1)}"
            + (f", strategy {d.strategy}" if d.strategy else "")
            + f", total lag {d.lag}"
        )
        if d.members:
            show_table(
                ctx,
                output,
                ("member", "client", "host", "partitions"),
                [
                    (m.instance_id or m.member_id, m.client_id, m.host, _partitions(m.assignment))
                    for m in d.members
                ],
                title="members",
            )
        show_table(
            ctx,
            output,
            ("topic", "partition", "committed", "log end", "lag", "member"),
            [
                (p.topic, p.partition, p.committed, p.log_end, p.lag, _member(members, p.member_id))
                for p in d.partitions
            ],
            title="offsets",
        )


def _partitions(assignment: Any) -> str:
    by: dict[str, list[str]] = {}
    for tp in assignment:
        by.setdefault(tp.topic, []).append(str(tp.partition))
    return " ".join(f"{t}:{','.join(ps)}" for t, ps in by.items()) or "-"


def _member(members: dict[str, Any], member_id: str | None) -> str | None:
    if member_id is None:
        return None
    m = members.get(member_id)
    return (m.instance_id or m.client_id) if m is not None else member_id


# ------------------------------------------------------------------ reset-offsets


def _timestamp_ms(text: str) -> int:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"--to-datetime takes an ISO 8601 time such as 2024-05-01T12:00:00Z, not {text!r}"
        ) from None
    return int(when.timestamp() * 1000)  # a time without zone is local time


@app.command("reset-offsets")
def reset_offsets(
    ctx: typer.Context,
    group: str = typer.Argument(..., help="Group id."),
    topic: str = typer.Option(..., "--topic", "-t", help="Topic whose offsets to reset."),
    partition: list[int] = typer.Option(
        None, "--partition", "-p", help="Only this partition (repeatable; default: all)."
    ),
    to_earliest: bool = typer.Option(False, "--to-earliest", help="To the log start."),
    to_latest: bool = typer.Option(False, "--to-latest", help="To the log end (skip all)."),
    to_datetime: str = typer.Option(
        None, "--to-datetime", help="To the first record at or after this ISO 8601 time."
    ),
    to_timestamp: int = typer.Option(
        None, "--to-timestamp", help="To the first record at or after this time (ms)."
    ),
    shift_by: int = typer.Option(
        None, "--shift-by", help="Move the committed offsets by N (negative: back)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show the new offsets without committing them."
    ),
    output: str = _output_option(),
) -> None:
    """Set a group's committed offsets for a topic (one --to-... or --shift-by).

    The group must have no active members: stop its consumers first.

    Example:

        raftlog group reset-offsets billing --topic orders --to-earliest --dry-run
    """
    with reported(ctx):
        check_output(output)
        chosen = [
            flag
            for flag, given in (
                ("--to-earliest", to_earliest),
                ("--to-latest", to_latest),
                ("--to-datetime", to_datetime is not None),
                ("--to-timestamp", to_timestamp is not None),
                ("--shift-by", shift_by is not None),
            )
            if given
        ]
        if len(chosen) != 1:
            raise typer.BadParameter(
                "give exactly one of --to-earliest, --to-latest, --to-datetime, "
                f"--to-timestamp, --shift-by (got {', '.join(chosen) or 'none'})"
            )
        kwargs: dict[str, Any] = {"partitions": partition or None, "dry_run": dry_run}
        if to_earliest or to_latest:
            kwargs["to"] = "earliest" if to_earliest else "latest"
        elif to_datetime is not None:
            kwargs["timestamp_ms"] = _timestamp_ms(to_datetime)
        elif to_timestamp is not None:
            kwargs["timestamp_ms"] = to_timestamp
        else:
            kwargs["shift"] = shift_by

        def reset(admin: Any) -> tuple[dict[Any, int | None], dict[Any, int]]:
            from raftlog.client import BrokerError
            from raftlog.errors import ErrorCode

            try:
                before = {
                    (p.topic, p.partition): p.committed
                    for p in admin.describe_group(group).partitions
                }
            except BrokerError as e:
                if e.code != ErrorCode.GROUP_ID_NOT_FOUND:
                    raise
                before = {}
            try:
                return before, admin.reset_offsets(group, topic, **kwargs)
            except BrokerError as e:
                _stop_consumers_first(e, group, "its offsets cannot be reset")
                raise

        before, after = with_admin(ctx, reset)
        rows = [
            (tp.topic, tp.partition, before.get((tp.topic, tp.partition)), offset)
            for tp, offset in after.items()
        ]
        show_table(
            ctx,
            output,
            ("topic", "partition", "committed", "new offset"),
            rows,
            records=[
                {"topic": t, "partition": p, "committed": c, "new_offset": n, "dry_run": dry_run}
                for t, p, c, n in rows
            ],
        )
        if output != "json":
            done = "would be set (dry run: nothing committed)" if dry_run else "committed"
            typer.echo(f"{len(rows)} offset{'s' * (len(rows) != 1)} of group {group!r} {done}")


# ------------------------------------------------------------------ delete


@app.command()
def delete(ctx: typer.Context, group: str = typer.Argument(..., help="Group id.")) -> None:
    """Delete a group and its committed offsets (it must have no active members).

    Example:

        raftlog group delete billing
    """
    with reported(ctx):

        def remove(admin: Any) -> None:
            from raftlog.client import BrokerError

            try:
                admin.delete_group(group)
            except BrokerError as e:
                _stop_consumers_first(e, group, "it cannot be deleted")
                raise

        with_admin(ctx, remove)
        typer.echo(f"deleted group {group!r}")
