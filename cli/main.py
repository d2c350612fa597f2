"""The ``raftlog`` console script.

Only this package imports typer. Commands are added here as the layers under them exist;
none is a placeholder.
"""

from __future__ import annotations

import sys

import typer

import raftlog
from raftlog.cli.common import Globals

app = typer.Typer(
    name="raftlog",
    help=(
        "raftlog: a distributed commit log in the model of Apache Kafka, with Raft everywhere.\n\n"
        "Example:\n\n    raftlog version"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


from raftlog.cli import node  # noqa: E402

app.add_typer(node.app, name="node")

from raftlog.cli import cluster, group  # noqa: E402

app.add_typer(cluster.app, name="cluster")
app.add_typer(group.app, name="group")

from raftlog.cli import consume, produce, topic  # noqa: E402

app.add_typer(topic.app, name="topic")
app.command("produce")(produce.produce)
app.command("consume")(consume.consume)

from raftlog.cli import bench  # noqa: E402

app.add_typer(bench.app, name="bench")

from raftlog.cli import scenario  # noqa: E402

app.add_typer(scenario.app, name="scenario")


@app.callback()
def _root(
    ctx: typer.Context,
    brokers: str = typer.Option(
        None,
        "--brokers",
        "-b",
        envvar="RAFTLOG_BROKERS",
        help="HOST:PORT[,HOST:PORT...] of brokers to start from (default: the current "
        "profile, else 127.0.0.1:9092).",
    ),
    profile: str = typer.Option(
        None,
        "--profile",
        envvar="RAFTLOG_PROFILE",
        help="Profile to take the brokers from (written by 'raftlog cluster up').",
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Tracebacks and debug logs."),
) -> None:
    """raftlog: a distributed commit log in the model of Apache Kafka."""
    ctx.obj = Globals(brokers=brokers, profile=profile, verbose=verbose)
    if verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)


@app.command()
def version() -> None:
    """Print raftlog's version.

    Example:

        raftlog version
    """
    typer.echo(f"raftlog {raftlog.__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
