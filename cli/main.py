"""The ``raftlog`` console script.

Only this package imports typer. Commands are added here as the layers under them exist;
none is a placeholder.
"""

from __future__ import annotations

import typer

import raftlog

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


@app.callback()
def _root() -> None:
    """raftlog: a distributed commit log in the model of Apache Kafka."""


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
