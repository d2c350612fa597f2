"""``raftlog node ...``: run a broker."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from raftlog.config import load_broker_config
from raftlog.errors import InvalidConfigError

app = typer.Typer(help="Run and inspect a raftlog broker (one per host).", no_args_is_help=True)

LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


@app.command()
def start(
    node_id: int = typer.Option(None, "--id", help="This broker's id (default 1)."),
    data_dir: str = typer.Option(None, "--data-dir", help="Data folder (default ./raftlog-data)."),
    listen: str = typer.Option(
        None,
        "--listen",
        help="HOST:PORT of the native port (clients and peers; default 127.0.0.1:9092).",
    ),
    advertise: str = typer.Option(
        None,
        "--advertise",
        help="HOST:PORT clients and peers use to reach this broker (needed with 0.0.0.0).",
    ),
    peer: list[str] = typer.Option(
        None,
        "--peer",
        help="ID@HOST:PORT of every member, this one included; the same list on every member.",
    ),
    cluster_secret_file: str = typer.Option(
        None,
        "--cluster-secret-file",
        help="File with the shared cluster secret (required with peers).",
    ),
    metadata_port: int = typer.Option(
        None, "--metadata-port", help="Metadata port (default native + 1)."
    ),
    admin_port: int = typer.Option(
        None, "--admin-port", help="Admin HTTP port (default native + 2)."
    ),
    config_file: Path = typer.Option(
        None, "--config", help="TOML file with the same settings; flags override it."
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Debug logs."),
) -> None:
    """Start a broker in the foreground; stop it with Ctrl-C or SIGTERM.

    With no flags it runs a one-node cluster with its data in ./raftlog-data.

    Examples:

        raftlog node start

        raftlog node start --id 1 --listen 10.0.0.1:9092 --peer 1@10.0.0.1:9092
        --peer 2@10.0.0.2:9092 --peer 3@10.0.0.3:9092 --cluster-secret-file /etc/raftlog/secret
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, stream=sys.stderr
    )
    try:
        text = config_file.read_text() if config_file is not None else None
        config = load_broker_config(
            text,
            {
                "node_id": node_id,
                "data_dir": data_dir,
                "listen": listen,
                "advertise": advertise,
                "peers": tuple(peer or ()),
                "cluster_secret_file": cluster_secret_file,
                "metadata_port": metadata_port,
                "admin_port": admin_port,
            },
        )
    except (InvalidConfigError, OSError) as e:
        typer.echo(f"error: {getattr(e, 'message', e)}", err=True)
        raise typer.Exit(2) from None
    from raftlog.broker.broker import run_broker

    try:
        run_broker(config)
    except OSError as e:
        typer.echo(f"error: cannot start the broker: {e}", err=True)
        raise typer.Exit(1) from None
