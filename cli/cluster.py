"""``raftlog cluster ...``: a local cluster of brokers on this machine, to try raftlog.

- ``up`` starts N brokers as background processes, each in its own session (so a Ctrl-C in
  the terminal reaches only ``up``, which then stops them itself), with data and log in
  ``<dir>/n<i>/``, one shared secret (``<dir>/secret``) and free ports, kept in
  ``<dir>/cluster.json`` so that a restart on the same data reuses them. It waits, with a
  deadline, until every broker answers its health endpoint, the metadata has a leader and
  every broker is registered; then writes ``<dir>/pids.json`` and a profile made current,
  so that later commands need no ``--brokers``. ``--foreground`` stays until Ctrl-C or
  SIGTERM, then stops exactly the brokers it started.
- ``down`` stops the brokers listed in ``pids.json``, by PID, and only processes whose
  command line is still ``raftlog node start ... --data-dir <dir>/n<i>`` (a PID may have
  been reused): SIGTERM, a deadline, then SIGKILL (``raftlog.cli.node``).
- ``status`` asks the metadata (brokers, topics, partition leaders and replicas) and every
  broker's health endpoint (its native port + 2).
- ``logs`` prints the end of the brokers' logs, or follows them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from raftlog.cli.common import (
    CliError,
    brokers,
    check_output,
    clear_current_profile,
    current_profile_name,
    globals_of,
    profile_path,
    read_profile,
    reported,
    show_json,
    show_table,
    write_profile,
)
from raftlog.cli.node import (
    admin_address,
    fetch_health,
    is_broker_process,
    process_args,
    stop_broker_processes,
)

HOST = "127.0.0.1"
NODES_MAX = 9
PORTS_PER_BROKER = 3  # native, metadata (+1), admin HTTP (+2)
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
KILL_WAIT_S = 5.0
HEALTH_POLL_TIMEOUT_S = 1.0
DEMO_TOPIC = "demo"
DEMO_PARTITIONS = 3
DEMO_GROUP = "demo-readers"

app = typer.Typer(
    help="A local cluster on this machine: up, status, logs, down.\n\n"
    "Example:\n\n    raftlog cluster up --nodes 3 && raftlog cluster status",
    no_args_is_help=True,
)


# ------------------------------------------------------------------ the cluster folder


class ClusterDir:
    """The files of a local cluster under ``root``: ``n<i>/`` (the data and ``broker.log``
    of broker i), ``secret``, ``cluster.json`` (its ports), ``pids.json`` (while it runs)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.secret, self.layout = root / "secret", root / "cluster.json"
        self.pids = root / "pids.json"

    def node_dir(self, i: int) -> Path:
        return self.root / f"n{i}"

    def log(self, i: int) -> Path:
        return self.node_dir(i) / "broker.log"

    def node_ids(self) -> list[int]:
        layout = _read_json(self.layout) or {}
        ports = layout.get("ports")
        if isinstance(ports, list) and ports:
            return list(range(1, len(ports) + 1))
        return sorted(int(p.name[1:]) for p in self.root.glob("n[0-9]*") if p.name[1:].isdigit())

    def read_pids(self) -> dict[int, int]:
        data = _read_json(self.pids) or {}
        listed = data.get("pids")
        if not isinstance(listed, dict):
            return {}
        return {int(i): int(pid) for i, pid in listed.items()}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read {path}: {e}") from None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _profile_name(ctx: typer.Context, name: str | None) -> str:
    return (
        name
        or globals_of(ctx).profile
        or os.environ.get("RAFTLOG_PROFILE")
        or current_profile_name()
        or "local"
    )


def _cluster_dir(ctx: typer.Context, name: str | None, directory: Path | None) -> ClusterDir:
    """The folder given with ``--dir``, else the one the profile names."""
    if directory is not None:
        found = ClusterDir(directory.resolve())
        if not found.layout.exists():
            raise CliError(f"{found.root} is not a cluster folder (no cluster.json in it)")
        return found
    name = _profile_name(ctx, name)
    where = read_profile(name).get("dir")
    if not isinstance(where, str):
        raise CliError(
            f"profile {name!r} names no cluster folder (it was not written by 'raftlog "
            "cluster up'); pass --dir"
        )
    return ClusterDir(Path(where))


# ------------------------------------------------------------------ processes


def running_brokers(cdir: ClusterDir) -> dict[int, int]:
    """Broker id -> PID of the brokers of ``pids.json`` that still run."""
    pids = cdir.read_pids()
    return {i: pid for i, pid in pids.items() if is_broker_process(pid, cdir.node_dir(i))}


class _Hurry:
    """Set by a second Ctrl-C while brokers are stopping: kill them at once."""

    now = False


def stop_brokers(cdir: ClusterDir, pids: dict[int, int], timeout_s: float) -> dict[int, str]:
    """Stop the brokers ``pids`` (id -> PID) of this cluster; see ``stop_broker_processes``."""
    procs = {i: (pid, cdir.node_dir(i)) for i, pid in pids.items()}
    return stop_broker_processes(procs, timeout_s, lambda: _Hurry.now)


def _forget(cdir: ClusterDir, name: str) -> None:
    """The cluster no longer runs: drop pids.json and, if profile ``name`` is this
    cluster's, the PIDs in it, and stop making it current."""
    cdir.pids.unlink(missing_ok=True)
    with contextlib.suppress(CliError, OSError):
        data = read_profile(name)
        if data.get("dir") == str(cdir.root):
            clear_current_profile(name)
            data["pids"] = {}
            write_profile(name, data, make_current=False)


def _raftlog_command() -> list[str]:
    """How to run ``raftlog``: this installation's console script, else ``python -m``."""
    script = Path(sys.executable).parent / "raftlog"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "raftlog.cli.main"]


def _raftlog_shown() -> str:
    """``raftlog`` as the user should type it here (``.venv/bin/raftlog`` in the repo)."""
    script = Path(sys.executable).parent / "raftlog"
    if not script.is_file():
        return "raftlog"
    found = shutil.which("raftlog")
    if found and Path(found).resolve() == script.resolve():
        return "raftlog"
    rel = os.path.relpath(script)
    return rel if not rel.startswith("..") else str(script)


def _tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a text file (reads at most what it needs from the end)."""
    if lines <= 0:
        return []
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        size = min(end, 8192)
        while True:
            f.seek(end - size)
            chunk = f.read(size)
            if chunk.count(b"\n") > lines or size == end:
                break
            size = min(end, size * 4)
    text = chunk.decode(errors="replace").splitlines()
    return text[-lines:]


# ------------------------------------------------------------------ up


def _block_free(base: int) -> bool:
    for port in range(base, base + PORTS_PER_BROKER):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, port))
            except OSError:
                return False
    return True


def _pick_ports(cdir: ClusterDir, nodes: int, base_port: int | None) -> list[int]:
    """Ports of ``--base-port``, else those of the last run on this data, else free ones."""
    before = (_read_json(cdir.layout) or {}).get("ports")
    if isinstance(before, list) and len(before) != nodes and cdir.node_dir(1).exists():
        raise CliError(
            f"{cdir.root} holds the data of a {len(before)}-broker cluster: use --nodes "
            f"{len(before)}, another --dir, or delete it first ('raftlog cluster down --dir "
            f"{cdir.root} --purge')"
        )
    if base_port is not None:
        ports = [base_port + PORTS_PER_BROKER * k for k in range(nodes)]
        if ports[-1] + PORTS_PER_BROKER > 65536:
            raise typer.BadParameter(f"--base-port {base_port} leaves no room for {nodes} brokers")
        taken = [p for p in ports if not _block_free(p)]
        if taken:
            raise CliError(
                f"ports {taken[0]}-{taken[0] + PORTS_PER_BROKER - 1} are in use; pick another "
                "--base-port, or leave it out to use free ports"
            )
        return ports
    if isinstance(before, list) and len(before) == nodes and all(map(_block_free, before)):
        return [int(p) for p in before]  # the same addresses as last time, for the same data
    from raftlog.testing.procs import free_port_blocks

    return free_port_blocks(nodes, PORTS_PER_BROKER, HOST)


def _start_broker(cdir: ClusterDir, i: int, ports: Sequence[int]) -> subprocess.Popen[bytes]:
    args = [*_raftlog_command(), "node", "start", "--id", str(i),
            "--listen", f"{HOST}:{ports[i - 1]}", "--data-dir", str(cdir.node_dir(i)),
            "--cluster-secret-file", str(cdir.secret)]  # fmt: skip
    for j, port in enumerate(ports, start=1):
        args += ["--peer", f"{j}@{HOST}:{port}"]
    cdir.node_dir(i).mkdir(parents=True, exist_ok=True)
    with open(cdir.log(i), "ab") as out:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        out.write(f"--- raftlog cluster up: broker {i} starting at {stamp} ---\n".encode())
        out.flush()
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cdir.root,
            start_new_session=True,  # Ctrl-C in the terminal is for 'up', which stops them
        )


@contextlib.contextmanager
def _progress(text: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield lambda _: None
        return
    from rich.console import Console

    with Console(stderr=True).status(text) as status:
        yield lambda t: status.update(t)


def _health_or_none(address: str) -> dict[str, Any] | None:
    try:
        return fetch_health(*admin_address(address), timeout_s=HEALTH_POLL_TIMEOUT_S)
    except (OSError, ValueError):
        return None


def _wait_ready(
    cdir: ClusterDir,
    procs: dict[int, subprocess.Popen[bytes]],
    addresses: dict[int, str],
    timeout_s: float,
    progress: Callable[[str], None],
) -> None:
    """Until every broker is healthy, knows the metadata leader and is registered, and
    every partition has a leader."""
    from raftlog.client import Admin
    from raftlog.errors import RaftlogError

    deadline = time.monotonic() + timeout_s
    admin: Admin | None = None
    try:
        while True:
            for i, p in procs.items():
                if p.poll() is not None:
                    tail = "\n".join(_tail(cdir.log(i), 15))
                    raise CliError(
                        f"broker {i} exited with code {p.returncode} while starting; the end "
                        f"of {cdir.log(i)}:\n{tail}"
                    )
            ready = [
                i
                for i, address in addresses.items()
                if (doc := _health_or_none(address))
                and doc["ready"]
                and doc.get("metadata_leader") is not None
            ]
            state = f"{len(ready)} of {len(procs)} brokers ready"
            if len(ready) == len(procs):
                if admin is None:
                    admin = Admin(list(addresses.values()), request_timeout_ms=5000)
                with contextlib.suppress(RaftlogError):
                    registered = len(admin.describe_cluster().brokers)
                    state += f", {registered} registered"
                    if registered >= len(procs):
                        leaderless = _leaderless(admin)
                        if not leaderless:
                            return
                        state += f", {leaderless} partition(s) electing a leader"
            progress(f"starting the cluster: {state}")
            if time.monotonic() > deadline:
                raise CliError(
                    f"the cluster was not ready within {timeout_s:g} s ({state}); see the "
                    f"brokers' logs in {cdir.root}/n*/broker.log (or give a longer --timeout)"
                )
            time.sleep(0.2)
    finally:
        if admin is not None:
            admin.close()


def _leaderless(admin: Any) -> int:
    """How many partitions have no leader (after a restart, their Raft groups elect)."""
    return sum(
        p.leader is None
        for topic in admin.list_topics()
        for p in admin.describe_topic(topic).partitions
    )


def _create_demo(boot: Sequence[str], nodes: int) -> None:
    from raftlog.client import Admin, BrokerError
    from raftlog.errors import ErrorCode

    with Admin(list(boot)) as admin:
        try:
            admin.create_topic(DEMO_TOPIC, DEMO_PARTITIONS, min(3, nodes))
        except BrokerError as e:
            if e.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                raise
            typer.echo(f"topic {DEMO_TOPIC!r} exists already (kept from the last run)")
            return
    typer.echo(
        f"created topic {DEMO_TOPIC!r}: {DEMO_PARTITIONS} partitions, replication factor "
        f"{min(3, nodes)}"
    )


def demo_commands(raftlog: str) -> list[str]:
    """What to try in a second terminal (README's quick start shows the same)."""
    return [
        f"echo 'k1:hello' | {raftlog} produce {DEMO_TOPIC} --key-separator :",
        f"{raftlog} consume {DEMO_TOPIC} --group {DEMO_GROUP} --from-beginning -e",
        f"{raftlog} topic describe {DEMO_TOPIC}",
        f"{raftlog} group describe {DEMO_GROUP}",
        f"{raftlog} cluster status",
    ]


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _hurry(signum: int, frame: object) -> None:
    _Hurry.now = True


def _run_until_signal(cdir: ClusterDir, procs: dict[int, subprocess.Popen[bytes]]) -> None:
    """Wait for Ctrl-C / SIGTERM (KeyboardInterrupt); say when a broker exits on its own."""
    gone: set[int] = set()
    while True:
        time.sleep(0.5)
        for i, p in procs.items():
            if i not in gone and p.poll() is not None:
                gone.add(i)
                typer.echo(
                    f"broker {i} exited with code {p.returncode}; see {cdir.log(i)}", err=True
                )
        if len(gone) == len(procs):
            raise CliError(f"every broker has exited; see their logs in {cdir.root}")


def _shut_down(cdir: ClusterDir, name: str, procs: dict[int, subprocess.Popen[bytes]]) -> None:
    """Stop the brokers this process started (a second Ctrl-C kills them at once)."""
    signal.signal(signal.SIGINT, _hurry)
    signal.signal(signal.SIGTERM, _hurry)
    typer.echo(f"stopping {len(procs)} broker(s)... (Ctrl-C again to kill them at once)", err=True)
    try:
        outcome = stop_brokers(cdir, {i: p.pid for i, p in procs.items()}, STOP_TIMEOUT_S)
    finally:
        for p in procs.values():
            with contextlib.suppress(OSError):
                p.poll()
        _forget(cdir, name)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    typer.echo(_said(outcome), err=True)


def _said(outcome: dict[int, str]) -> str:
    by: dict[str, list[str]] = {}
    for i, how in sorted(outcome.items()):
        by.setdefault(how, []).append(str(i))
    parts = [f"{how}: broker {', '.join(ids)}" for how, ids in by.items()]
    return "; ".join(parts) if parts else "no broker to stop"


@app.command()
def up(
    ctx: typer.Context,
    nodes: int = typer.Option(3, "--nodes", min=1, max=NODES_MAX, help="How many brokers."),
    directory: Path = typer.Option(
        Path("raftlog-cluster"),
        "--dir",
        envvar="RAFTLOG_CLUSTER_DIR",
        help="Folder for the data, logs, secret and PIDs (n1/, n2/, ...).",
    ),
    base_port: int = typer.Option(
        None,
        "--base-port",
        min=1,
        max=65533,
        help="Native port of broker 1; broker i uses base + 3(i-1) .. +2 (default: free ports).",
    ),
    name: str = typer.Option("local", "--name", help="Profile to write and make current."),
    foreground: bool = typer.Option(
        False, "--foreground", help="Stay until Ctrl-C or SIGTERM, then stop the brokers."
    ),
    demo: bool = typer.Option(
        False,
        "--demo",
        help=f"Create topic {DEMO_TOPIC!r} ({DEMO_PARTITIONS} partitions), show the status and "
        "what to try next.",
    ),
    timeout: float = typer.Option(
        READY_TIMEOUT_S, "--timeout", min=1, help="Seconds to wait for the cluster to be ready."
    ),
) -> None:
    """Start a local cluster of N brokers on 127.0.0.1, in the background.

    Data and logs go to DIR/n1, DIR/n2, ...; the PIDs to DIR/pids.json.

    The profile NAME is made current, so later commands need no --brokers.

    With --foreground it runs until Ctrl-C, then stops every broker it started (make run).

    Example:

        raftlog cluster up --nodes 3 --dir ./raftlog-cluster

        raftlog cluster up --nodes 3 --foreground --demo
    """
    with reported(ctx):
        profile_path(name)  # a bad name fails before anything starts
        cdir = ClusterDir(directory.resolve())
        running = running_brokers(cdir)
        if running:
            listed = ", ".join(f"broker {i}: pid {pid}" for i, pid in sorted(running.items()))
            raise CliError(
                f"a cluster is already running from {cdir.root} ({listed}); see it with "
                f"'raftlog cluster status', stop it with 'raftlog cluster down --dir "
                f"{directory}', or pick another --dir"
            )
        _check_profile_free(name, cdir)
        cdir.root.mkdir(parents=True, exist_ok=True)
        ports = _pick_ports(cdir, nodes, base_port)
        if not cdir.secret.exists():
            cdir.secret.touch(mode=0o600)
            cdir.secret.write_text(secrets.token_urlsafe(32) + "\n")
        _write_json(cdir.layout, {"host": HOST, "ports": ports})
        addresses = {i: f"{HOST}:{port}" for i, port in enumerate(ports, start=1)}
        procs: dict[int, subprocess.Popen[bytes]] = {}
        ready = False
        if foreground:
            signal.signal(signal.SIGTERM, _raise_interrupt)
            signal.signal(signal.SIGHUP, _raise_interrupt)
        try:
            started = time.monotonic()
            typer.echo(f"starting {nodes} broker(s) in {cdir.root}:")
            for i in addresses:
                procs[i] = _start_broker(cdir, i, ports)
                port = ports[i - 1]
                typer.echo(
                    f"  broker {i}  {addresses[i]}  (metadata :{port + 1}, admin :{port + 2})  "
                    f"pid {procs[i].pid}  log {cdir.log(i)}"
                )
            pids = {str(i): p.pid for i, p in procs.items()}
            _write_json(
                cdir.pids,
                {"pids": pids, "brokers": list(addresses.values()), "up_pid": os.getpid(),
                 "foreground": foreground},
            )  # fmt: skip
            with _progress("starting the cluster") as progress:
                _wait_ready(cdir, procs, addresses, timeout, progress)
            ready = True
            write_profile(
                name, {"brokers": list(addresses.values()), "dir": str(cdir.root), "pids": pids}
            )
            typer.echo(
                f"cluster ready in {time.monotonic() - started:.1f} s; profile {name!r} is "
                "current, so raftlog commands need no --brokers"
            )
            if demo:
                _create_demo(list(addresses.values()), nodes)
            if demo or foreground:
                show_status(ctx, "auto", collect_status(list(addresses.values())))
            if foreground:
                shown = _raftlog_shown()
                tries = demo_commands(shown) if demo else [f"{shown} cluster status"]
                typer.echo(
                    "\nThe cluster runs until Ctrl-C here. In another terminal, from this folder:"
                    "\n\n" + "\n".join(f"  {c}" for c in tries) + "\n"
                )
                _run_until_signal(cdir, procs)
        except BaseException as e:
            if procs and (foreground or not ready):
                _shut_down(cdir, name, procs)
            if foreground and ready and isinstance(e, KeyboardInterrupt):
                return  # Ctrl-C is how a foreground cluster ends
            raise


def _check_profile_free(name: str, cdir: ClusterDir) -> None:
    """Refuse to take over a profile whose cluster (in another folder) still runs."""
    try:
        other = read_profile(name).get("dir")
    except CliError:  # no such profile yet
        return
    mine = isinstance(other, str) and other == str(cdir.root)
    if isinstance(other, str) and not mine and running_brokers(ClusterDir(Path(other))):
        raise CliError(
            f"profile {name!r} belongs to the cluster running from {other}; stop it first "
            f"('raftlog cluster down --name {name}') or pick another --name"
        )


# ------------------------------------------------------------------ down


@app.command()
def down(
    ctx: typer.Context,
    name: str = typer.Option(None, "--name", help="Profile of the cluster (default: current)."),
    directory: Path = typer.Option(None, "--dir", help="Cluster folder, instead of --name."),
    purge: bool = typer.Option(False, "--purge", help="Also delete the cluster's folder."),
    timeout: float = typer.Option(
        STOP_TIMEOUT_S, "--timeout", min=0, help="Seconds to wait before SIGKILL."
    ),
) -> None:
    """Stop the brokers 'raftlog cluster up' started, and stop making its profile current.

    SIGTERM, then SIGKILL after --timeout seconds; --purge also deletes the data.

    Only the PIDs in DIR/pids.json are signalled, while still 'raftlog node start' on DIR.

    Example:

        raftlog cluster down --purge
    """
    with reported(ctx):
        cdir = _cluster_dir(ctx, name, directory)
        pids = cdir.read_pids()
        running = running_brokers(cdir)
        up_pid = (_read_json(cdir.pids) or {}).get("up_pid")
        if isinstance(up_pid, int) and up_pid != os.getpid() and _is_cluster_up(up_pid):
            typer.echo(f"asking 'raftlog cluster up --foreground' (pid {up_pid}) to stop")
            _stop_foreground(up_pid, timeout)  # it stops its own brokers
        outcome = stop_brokers(cdir, pids, timeout) if pids else {}
        outcome.update({i: "stopped" for i in running if outcome.get(i) == "not running"})
        _forget(cdir, _profile_name(ctx, name))
        typer.echo(_said(outcome) if outcome else f"no broker of {cdir.root} was running")
        if purge:
            if not cdir.layout.exists():
                raise CliError(f"not deleting {cdir.root}: it has no cluster.json")
            shutil.rmtree(cdir.root)
            typer.echo(f"deleted {cdir.root}")


def _is_cluster_up(pid: int) -> bool:
    args = process_args(pid)
    return "cluster" in args and "up" in args and "--foreground" in args


def _stop_foreground(pid: int, timeout_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s + KILL_WAIT_S
    while time.monotonic() < deadline and _is_cluster_up(pid):
        time.sleep(0.05)


# ------------------------------------------------------------------ status


def collect_status(boot: Sequence[str]) -> dict[str, Any]:
    """Brokers (metadata + health endpoints), partitions per broker, and the partitions
    without a leader ("offline") or with a replica on a broker that is down."""
    from raftlog.client import Admin, BrokerError, BrokerUnreachableError
    from raftlog.errors import ErrorCode

    try:
        with Admin(list(boot), request_timeout_ms=10_000, connect_timeout_ms=3_000) as admin:
            cluster = admin.describe_cluster()
            topics = []
            for topic in admin.list_topics():
                try:
                    topics.append(admin.describe_topic(topic))
                except BrokerError as e:  # deleted meanwhile
                    if e.code != ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                        raise
    except BrokerUnreachableError as e:
        raise CliError(
            f"no broker answers at {','.join(boot)} ({e}); start a cluster with 'raftlog "
            "cluster up', or pass --brokers"
        ) from None
    addresses = [f"{b.host}:{b.port}" for b in cluster.brokers]
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(addresses)))) as pool:
        healths = list(pool.map(_health_or_none, addresses))
    live = {b.id for b, h in zip(cluster.brokers, healths, strict=True) if h is not None}
    replicas = dict.fromkeys(live | {b.id for b in cluster.brokers}, 0)
    leaders = dict(replicas)
    offline, under = [], []
    count = 0
    for t in topics:
        for p in t.partitions:
            count += 1
            for r in p.replicas:
                replicas[r] = replicas.get(r, 0) + 1
            if p.leader is not None:
                leaders[p.leader] = leaders.get(p.leader, 0) + 1
            down = [r for r in p.replicas if r not in live]
            row = {"topic": t.name, "partition": p.partition, "leader": p.leader,
                   "replicas": list(p.replicas), "down": down}  # fmt: skip
            if p.leader is None or p.leader not in live:
                offline.append(row)
            elif down:
                under.append(row)
    rows = []
    for b, h in zip(cluster.brokers, healths, strict=True):
        rows.append(
            {
                "id": b.id,
                "address": f"{b.host}:{b.port}",
                "alive": h is not None,
                "ready": bool(h and h["ready"]),
                "metadata_leader": b.id == cluster.metadata_leader,
                "partitions": replicas.get(b.id, 0),
                "leaders": leaders.get(b.id, 0),
            }
        )
    return {
        "cluster_id": cluster.cluster_id,
        "metadata_leader": cluster.metadata_leader,
        "brokers": rows,
        "topics": len(topics),
        "partitions": count,
        "offline": offline,
        "under_replicated": under,
    }


def show_status(ctx: typer.Context, output: str, doc: dict[str, Any]) -> None:
    if output == "json":
        show_json(doc)
        return
    rows = []
    for b in doc["brokers"]:
        health = "ok" if b["ready"] else ("catching up" if b["alive"] else "DOWN")
        role = "leader" if b["metadata_leader"] else ("follower" if b["alive"] else "-")
        rows.append((b["id"], b["address"], health, role, b["partitions"], b["leaders"]))
    leader = doc["metadata_leader"]
    title = f"cluster {doc['cluster_id'] or '?'}: metadata leader " + (
        f"broker {leader}" if leader is not None else "none (electing)"
    )
    columns = ("broker", "address", "health", "metadata", "partitions", "leaders")
    show_table(ctx, output, columns, rows, title=title)
    problems = [("offline", p) for p in doc["offline"]] + [
        ("under-replicated", p) for p in doc["under_replicated"]
    ]
    if problems:
        show_table(
            ctx,
            output,
            ("topic", "partition", "state", "leader", "replicas", "down"),
            [
                (
                    p["topic"],
                    p["partition"],
                    state,
                    p["leader"],
                    ",".join(map(str, p["replicas"])),
                    ",".join(map(str, p["down"])),
                )
                for state, p in problems
            ],
            title="partitions needing attention",
        )
    n, t = doc["partitions"], doc["topics"]
    typer.echo(
        f"{n} partition{'s' * (n != 1)} in {t} topic{'s' * (t != 1)}: "
        f"{len(doc['offline'])} offline, {len(doc['under_replicated'])} under-replicated"
    )


@app.command()
def status(
    ctx: typer.Context,
    output: str = typer.Option(
        "auto",
        "--output",
        help="auto (a table on a terminal, tab-separated when piped), text or json.",
    ),
) -> None:
    """Show the brokers, and the partitions that are offline or under-replicated.

    Per broker: address, health, metadata role, partitions held and led.

    Offline: no live leader. Under-replicated: a replica on a broker that is down.

    Example:

        raftlog cluster status --output json
    """
    with reported(ctx):
        check_output(output)
        show_status(ctx, output, collect_status(brokers(ctx)))


# ------------------------------------------------------------------ logs


@app.command()
def logs(
    ctx: typer.Context,
    node: int = typer.Option(None, "--node", min=1, help="Only this broker (default: all)."),
    lines: int = typer.Option(50, "-n", "--lines", min=0, help="Lines from the end of each."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
    name: str = typer.Option(None, "--name", help="Profile of the cluster (default: current)."),
    directory: Path = typer.Option(None, "--dir", help="Cluster folder, instead of --name."),
) -> None:
    """Print the end of the brokers' logs (DIR/n<i>/broker.log); --follow until Ctrl-C.

    With several brokers, each line starts with its broker (n1 | ...).

    Example:

        raftlog cluster logs --node 2 -n 100 --follow
    """
    with reported(ctx):
        cdir = _cluster_dir(ctx, name, directory)
        ids = [node] if node is not None else cdir.node_ids()
        missing = [i for i in ids if not cdir.log(i).is_file()]
        if missing or not ids:
            raise CliError(f"no log of broker {missing[0] if missing else 1} in {cdir.root}")
        prefix = {i: f"n{i} | " if len(ids) > 1 else "" for i in ids}
        positions = {}
        for i in ids:
            positions[i] = cdir.log(i).stat().st_size
            for line in _tail(cdir.log(i), lines):
                typer.echo(prefix[i] + line)
        if follow:
            with contextlib.suppress(KeyboardInterrupt):
                _follow(cdir, positions, prefix)


def _follow(cdir: ClusterDir, positions: dict[int, int], prefix: dict[int, str]) -> None:
    partial = dict.fromkeys(positions, b"")
    while True:
        for i, pos in positions.items():
            path = cdir.log(i)
            with contextlib.suppress(FileNotFoundError):
                size = path.stat().st_size
                if size < pos:  # truncated or replaced: start over
                    pos = positions[i] = 0
                    partial[i] = b""
                if size > pos:
                    with open(path, "rb") as f:
                        f.seek(pos)
                        data = partial[i] + f.read(size - pos)
                    positions[i] = size
                    *done, partial[i] = data.split(b"\n")
                    for line in done:
                        typer.echo(prefix[i] + line.decode(errors="replace"))
        sys.stdout.flush()
        time.sleep(0.25)
