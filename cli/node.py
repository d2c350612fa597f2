"""``raftlog node ...``: run a broker, and show its health; recognise and stop broker
processes started in the background (``raftlog cluster``)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from raftlog.config import load_broker_config
from raftlog.errors import InvalidConfigError

app = typer.Typer(
    help="Run and inspect a raftlog broker (one per host).\n\n"
    "Example:\n\n    raftlog node start --id 1 --listen 127.0.0.1:9092",
    no_args_is_help=True,
)

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
    dial: list[str] = typer.Option(
        None,
        "--dial",
        help="ID@HOST:PORT: reach peer ID's native port at HOST:PORT instead of its --peer "
        "address, e.g. through a NAT or proxy (repeatable).",
    ),
    metadata_dial: list[str] = typer.Option(
        None,
        "--metadata-dial",
        help="ID@HOST:PORT: reach peer ID's metadata port at HOST:PORT instead of its own "
        "(repeatable); only where this broker's metadata address is the greater string, "
        "see the BrokerConfig docs.",
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
                "dial": tuple(dial or ()),
                "metadata_dial": tuple(metadata_dial or ()),
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


# ------------------------------------------------------------------ status

HEALTH_TIMEOUT_S = 3.0


def admin_address(native: str) -> tuple[str, int]:
    """The admin HTTP address of a broker whose native address is ``native`` (HOST:PORT):
    the default admin port, native + 2."""
    host, _, port = native.rpartition(":")
    return host, int(port) + 2


def fetch_health(host: str, port: int, timeout_s: float = HEALTH_TIMEOUT_S) -> dict[str, Any]:
    """GET ``/health`` of a broker's admin port: its JSON document with ``ready`` added
    (True on 200, False on 503: its metadata has not caught up yet). Raises ``OSError``
    when nothing answers, ``ValueError`` when what answers is not a broker."""
    import json
    import urllib.error
    import urllib.request

    url = f"http://{host}:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as e:  # 503 carries the same document
        status, body = e.code, e.read()
    except urllib.error.URLError as e:
        reason = e.reason if isinstance(e.reason, OSError) else OSError(str(e.reason))
        raise reason from None
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if status not in (200, 503) or not isinstance(doc, dict) or "broker_id" not in doc:
        raise ValueError(f"{url} answered HTTP {status} without a broker's health document")
    doc["ready"] = status == 200
    return doc


def role_summary(doc: dict[str, Any]) -> str:
    """``metadata leader, leads 2 of 3 partitions`` (from a health document)."""
    metadata = (
        "metadata leader"
        if doc.get("metadata_leader") == doc.get("broker_id")
        else ("metadata follower")
    )
    replicas, leading = int(doc.get("replicas", 0)), int(doc.get("leading", 0))
    return f"{metadata}, leads {leading} of {replicas} partition{'s' * (replicas != 1)}"


@app.command()
def status(
    ctx: typer.Context,
    admin: str = typer.Option(
        None,
        "--admin",
        help="HOST:PORT of the broker's admin HTTP port (default: the first broker's port + 2).",
    ),
    output: str = typer.Option(
        "auto",
        "--output",
        help="auto (a table on a terminal, tab-separated when piped), text or json.",
    ),
) -> None:
    """Show one broker's health: id, role, partitions led and followed, readiness.

    It asks the broker's admin HTTP port (GET /health; native port + 2 by default).

    Exit code 1 when the broker does not answer or has not caught up with the metadata.

    Example:

        raftlog node status --admin 127.0.0.1:9094
    """
    from raftlog.cli.common import CliError, brokers, check_output, reported, show_json, show_table

    with reported(ctx):
        check_output(output)
        if admin:
            host, _, port = admin.rpartition(":")
            if not host or not port.isdigit():
                raise typer.BadParameter(f"--admin: {admin!r} is not HOST:PORT")
            address = (host, int(port))
        else:
            address = admin_address(brokers(ctx)[0])
        try:
            doc = fetch_health(*address)
        except OSError as e:
            raise CliError(
                f"no broker answers on http://{address[0]}:{address[1]}/health ({e}); is it "
                "running? (raftlog node start, raftlog cluster up; --admin HOST:PORT)"
            ) from None
        replicas, leading = int(doc.get("replicas", 0)), int(doc.get("leading", 0))
        doc.update(
            admin=f"{address[0]}:{address[1]}",
            role=role_summary(doc),
            following=replicas - leading,
        )
        if output == "json":
            show_json(doc)
        else:
            leader = doc.get("metadata_leader")
            rows = [
                ("broker", doc["broker_id"]),
                ("role", doc["role"]),
                ("partitions led", leading),
                ("partitions followed", replicas - leading),
                ("fenced replicas", doc.get("fenced", 0)),
                ("metadata leader", "none (electing)" if leader is None else leader),
                ("ready", "yes" if doc["ready"] else "no: catching up with the metadata"),
                ("cluster", doc.get("cluster_id") or "-"),
                ("admin", doc["admin"]),
            ]
            show_table(ctx, output, ("field", "value"), rows)
        if not doc["ready"]:
            raise typer.Exit(1)


# ------------------------------------------------------------------ background brokers

KILL_WAIT_S = 5.0


def process_args(pid: int) -> list[str]:
    """The command line of process ``pid``; empty when there is none (gone, or a zombie)."""
    proc = Path("/proc")
    if proc.is_dir():
        try:
            raw = (proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            return []
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    try:  # no /proc (macOS): ask ps
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.split()


def is_broker_process(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` runs ``raftlog node start`` with ``--data-dir data_dir`` (a PID
    read from a file may since have been given to another process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child: a zombie does not run
    args = process_args(pid)
    if "node" not in args:
        return False
    k = args.index("node")
    if args[k + 1 : k + 2] != ["start"] or "--data-dir" not in args:
        return False
    if not any(Path(a).name == "raftlog" or a == "raftlog.cli.main" for a in args[:k]):
        return False
    given = args[args.index("--data-dir") + 1 :][:1]
    return bool(given) and Path(given[0]).resolve() == data_dir.resolve()


def stop_broker_processes(
    procs: dict[int, tuple[int, Path]], timeout_s: float, hurry: Callable[[], bool]
) -> dict[int, str]:
    """Stop brokers (id -> (PID, data folder)), only those ``is_broker_process`` confirms:
    SIGTERM (a broker hands its partitions over, then exits), wait up to ``timeout_s`` (or
    until ``hurry()``), SIGKILL what is left. Returns id -> "stopped", "killed" or "not
    running"; ``CliError`` if one survives SIGKILL."""
    from raftlog.cli.common import CliError

    def still(live: dict[int, int]) -> dict[int, int]:
        return {i: pid for i, pid in live.items() if is_broker_process(pid, procs[i][1])}

    outcome = dict.fromkeys(procs, "not running")
    live = still({i: pid for i, (pid, _) in procs.items()})
    for i, pid in live.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        outcome[i] = "stopped"
    deadline = time.monotonic() + timeout_s
    while live and time.monotonic() < deadline and not hurry():
        time.sleep(0.05)
        live = still(live)
    for i, pid in live.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        outcome[i] = "killed"
    deadline = time.monotonic() + KILL_WAIT_S
    while live and time.monotonic() < deadline:
        time.sleep(0.05)
        live = still(live)
    if live:
        left = ", ".join(f"broker {i} (pid {pid})" for i, pid in live.items())
        raise CliError(f"{left} did not stop even after SIGKILL")
    return outcome
