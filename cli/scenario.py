"""``raftlog scenario list|run``: fault injection against a real local cluster.

``run`` starts brokers on 127.0.0.x behind the fault proxy, drives the workload, injects the
scenario's faults on a seeded schedule, then checks the recorded history (SCENARIOS.md). On
a terminal a live view shows the faults as they happen and the acknowledged sends; piped, the
same lines are printed plainly. Each run leaves an artifacts folder; a failure prints the
command that replays its seed. The last line of ``run all`` is ``N passed, N failed, N
skipped``; the exit code is 0 only when nothing failed or errored.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import typer

from raftlog.cli.common import CliError, is_terminal, reported, show_table

app = typer.Typer(
    help="Fault-injection scenarios against a real local cluster.\n\n"
    "Example:\n\n    raftlog scenario run S01 --seed 7",
    no_args_is_help=True,
)

DEFAULT_ARTIFACTS = Path("scenario-runs")


@app.command("list")
def list_scenarios(
    ctx: typer.Context,
    output: str = typer.Option("auto", "--output", help="auto, text or json."),
) -> None:
    """List the scenarios of the catalogue and what each one does.

    Example:

        raftlog scenario list
    """
    from raftlog.scenarios.catalogue import SCENARIOS

    with reported(ctx):
        rows = [
            (s.id, s.name, "SKIP: " + s.skip_reason if s.skip_reason else s.faults)
            for s in SCENARIOS
        ]
        show_table(ctx, output, ["id", "name", "faults"], rows, title="scenarios")


class _View:
    """What the user sees while a run goes: plain lines, or a rich live panel."""

    def __init__(self, live: bool) -> None:
        self.live_mode = live
        self.lines: deque[str] = deque(maxlen=14)
        self.started = time.monotonic()
        self.title = ""
        self._live: Any = None
        self._lock = threading.Lock()
        self.acked = 0
        self.history_file: Path | None = None

    def say(self, text: str) -> None:
        stamp = f"{time.monotonic() - self.started:7.1f}s"
        with self._lock:
            self.lines.append(f"{stamp}  {text}")
        if not self.live_mode:
            typer.echo(f"{stamp}  {text}", err=False)
        else:
            self.refresh()

    def render(self) -> Any:
        from rich.panel import Panel
        from rich.text import Text

        with self._lock:
            body = "\n".join(self.lines)
        status = f"elapsed {time.monotonic() - self.started:.0f} s"
        if self.history_file is not None:
            status += f" · acknowledged sends {self._count_acked()}"
        return Panel(Text(body), title=self.title, subtitle=status, subtitle_align="left")

    def _count_acked(self) -> int:
        path = self.history_file
        if path is None or not path.exists():
            return 0
        try:
            with open(path, "rb") as f:
                return f.read().count(b'"phase": "ok"')
        except OSError:
            return 0

    def refresh(self) -> None:
        if self._live is not None:
            self._live.update(self.render())

    def __enter__(self) -> _View:
        if self.live_mode:
            from rich.live import Live

            self._live = Live(self.render(), refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None


@app.command("run")
def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A scenario id or name (S03, isolate-leader) or all."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fault schedule and the workload."),
    nodes: int = typer.Option(3, "--nodes", help="Brokers: 3 or 5."),
    duration: float = typer.Option(
        None, "--duration", help="Seconds of faults (default 60; 20 with --short)."
    ),
    short: bool = typer.Option(False, "--short", help="The CI tier's shortened form."),
    artifacts: Path = typer.Option(
        DEFAULT_ARTIFACTS, "--artifacts", help="Folder for each run's history, logs, results."
    ),
) -> None:
    """Run one scenario (or all of them) against a fresh local cluster and check it.

    Example:

        raftlog scenario run S01 --seed 7

        raftlog scenario run all --seed 1 --nodes 5 --duration 30
    """
    from raftlog.scenarios.catalogue import SCENARIOS, find
    from raftlog.scenarios.runner import RunSettings, replay_command, run_scenario

    with reported(ctx):
        if nodes not in (3, 5):
            raise CliError(f"--nodes must be 3 or 5, got {nodes}")
        if duration is not None and not 5 <= duration <= 3600:
            raise CliError(f"--duration must be 5..3600 seconds, got {duration:g}")
        if name.lower() == "all":
            chosen = SCENARIOS
        else:
            try:
                chosen = [find(name)]
            except KeyError:
                raise CliError(
                    f"no scenario {name!r}; `raftlog scenario list` shows them"
                ) from None
        length = duration if duration is not None else (20.0 if short else 60.0)
        results = []
        stop = threading.Event()
        for scenario in chosen:
            settings = RunSettings(nodes=nodes, seed=seed, duration_s=length, short=short)
            view = _View(is_terminal())
            view.title = f"{scenario.id} {scenario.name} · seed {seed} · {nodes} brokers"
            try:
                with view:
                    result = run_scenario(scenario, settings, artifacts, say=view.say, stop=stop)
            except KeyboardInterrupt:
                stop.set()
                typer.echo("interrupted: every process started was stopped", err=True)
                raise typer.Exit(130) from None
            results.append(result)
            line = result.summary()
            if result.reason:
                line += f" ({result.reason})"
            typer.echo(line)
            if result.folder is not None:
                typer.echo(f"artifacts: {result.folder}")
            if result.measures:
                m = result.measures
                typer.echo(
                    f"measured: longest gap without an ack {m.get('longest_gap_s')} s, "
                    f"recovery after the last heal {m.get('recovery_s')} s, sends {m.get('sends')}"
                )
            if result.status in ("FAIL", "ERROR"):
                typer.echo(f"replay: {replay_command(result)}")
        passed = sum(r.status == "PASS" for r in results)
        failed = sum(r.status in ("FAIL", "ERROR") for r in results)
        skipped = sum(r.status == "SKIP" for r in results)
        typer.echo(f"{passed} passed, {failed} failed, {skipped} skipped")
        if failed:
            raise typer.Exit(1)
