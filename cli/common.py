"""What every ``raftlog`` command shares: finding the brokers, errors, and output.

- **Brokers**: ``--brokers H:P,H:P`` (global option), else ``$RAFTLOG_BROKERS``, else the
  profile (``--profile NAME``, else ``$RAFTLOG_PROFILE``, else the one ``raftlog cluster up``
  made current), else ``127.0.0.1:9092`` (what ``raftlog node start`` listens on). Profiles
  are JSON files in ``$RAFTLOG_HOME`` (default ``~/.raftlog``): ``profiles/NAME.json`` with
  ``{"brokers": [...], ...}``; ``current`` holds the current profile's name.
- **Errors**: a ``RaftlogError`` (or a bad argument) is one line on stderr, ``error: ...``,
  with what to do next; exit code 1 (2 for usage). ``-v`` adds the traceback.
- **Output**: tables with rich on a terminal, tab-separated plain text when stdout is a pipe
  or a file (``--output text`` forces it), one JSON document with ``--output json``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from raftlog.errors import RaftlogError

T = TypeVar("T")
DEFAULT_BROKERS = ("127.0.0.1:9092",)
OUTPUTS = ("auto", "text", "json")


@dataclass
class Globals:
    """The global options, kept on the typer context (``ctx.obj``)."""

    brokers: str | None = None
    profile: str | None = None
    verbose: bool = False
    _console: Console | None = field(default=None, repr=False)

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = Console(highlight=False, soft_wrap=False)
        return self._console


def globals_of(ctx: typer.Context) -> Globals:
    obj = ctx.find_root().obj
    if not isinstance(obj, Globals):
        obj = Globals()
        ctx.find_root().obj = obj
    return obj


# ------------------------------------------------------------------ profiles


def raftlog_home() -> Path:
    return Path(os.environ.get("RAFTLOG_HOME") or Path.home() / ".raftlog")


def profile_path(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise typer.BadParameter(f"a profile name is a plain word, not {name!r}")
    return raftlog_home() / "profiles" / f"{name}.json"


def write_profile(name: str, data: dict[str, Any], *, make_current: bool = True) -> Path:
    path = profile_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    if make_current:
        (raftlog_home() / "current").write_text(name + "\n")
    return path


def read_profile(name: str) -> dict[str, Any]:
    path = profile_path(name)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(
            f"no profile {name!r} ({path}); start a cluster with 'raftlog cluster up' or "
            "pass --brokers"
        ) from None
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read profile {path}: {e}") from None
    if not isinstance(data, dict):
        raise CliError(f"profile {path} is not a JSON object")
    return data


def current_profile_name() -> str | None:
    try:
        name = (raftlog_home() / "current").read_text().strip()
    except OSError:
        return None
    return name or None


def clear_current_profile(name: str) -> None:
    if current_profile_name() == name:
        (raftlog_home() / "current").unlink(missing_ok=True)


def brokers(ctx: typer.Context) -> list[str]:
    """The bootstrap brokers for this command (see the module docstring)."""
    g = globals_of(ctx)
    if g.brokers:
        return _split(g.brokers, "--brokers")
    env = os.environ.get("RAFTLOG_BROKERS")
    if env:
        return _split(env, "RAFTLOG_BROKERS")
    name = g.profile or os.environ.get("RAFTLOG_PROFILE") or current_profile_name()
    if name:
        listed = read_profile(name).get("brokers")
        if isinstance(listed, list) and listed and all(isinstance(b, str) for b in listed):
            return list(listed)
        raise CliError(f"profile {name!r} lists no brokers; recreate it or pass --brokers")
    return list(DEFAULT_BROKERS)


def _split(text: str, what: str) -> list[str]:
    out = [b.strip() for b in text.split(",") if b.strip()]
    for b in out:
        host, _, port = b.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise typer.BadParameter(f"{what}: {b!r} is not HOST:PORT")
    if not out:
        raise typer.BadParameter(f"{what} is empty; give HOST:PORT[,HOST:PORT...]")
    return out


# ------------------------------------------------------------------ errors


class CliError(Exception):
    """A failure to report in one line (exit code 1)."""


@contextmanager
def reported(ctx: typer.Context) -> Iterator[None]:
    """Run a command's body: errors become one line on stderr and exit code 1 (usage
    errors 2); ``-v`` adds the traceback. Ctrl-C exits with 130."""
    verbose = globals_of(ctx).verbose
    try:
        yield
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except (RaftlogError, CliError) as e:
        if verbose:
            traceback.print_exc()
        message = getattr(e, "message", None) or str(e)
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None
    except (OSError, ValueError) as e:
        if verbose:
            traceback.print_exc()
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None


# ------------------------------------------------------------------ output


def check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise typer.BadParameter(f"--output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    return output


def is_terminal() -> bool:
    return sys.stdout.isatty()


def show_table(
    ctx: typer.Context,
    output: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    records: Sequence[dict[str, Any]] | None = None,
) -> None:
    """A table: rich on a terminal, tab-separated text when piped, JSON (``records``, or one
    object per row keyed by the column names) with ``--output json``."""
    output = check_output(output)
    if output == "json":
        data = (
            records if records is not None else [dict(zip(columns, r, strict=True)) for r in rows]
        )
        typer.echo(json.dumps(list(data), indent=2, default=str))
        return
    if output == "text" or not is_terminal():
        if title:
            typer.echo(f"# {title}")
        typer.echo("\t".join(columns))
        for r in rows:
            typer.echo("\t".join("" if v is None else str(v) for v in r))
        return
    table = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*("-" if v is None else str(v) for v in r))
    globals_of(ctx).console.print(table)


def show_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def note(ctx: typer.Context, text: str) -> None:
    """A message for the person (stderr, so stdout stays data)."""
    typer.echo(text, err=True)


def with_admin(ctx: typer.Context, fn: Callable[[Any], T]) -> T:
    """Run ``fn(admin)`` with an ``Admin`` on this command's brokers, closed afterwards."""
    from raftlog.client import Admin

    admin = Admin(brokers(ctx))
    try:
        return fn(admin)
    finally:
        admin.close()
