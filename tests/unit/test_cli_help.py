"""Every ``raftlog`` command's ``--help`` shows an example (walks the whole command tree, so a
new command without one fails here)."""

from __future__ import annotations

from typing import Any

import typer.main
from typer.testing import CliRunner

from raftlog.cli.main import app


def command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    out: list[list[str]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    return out


def test_every_command_has_an_example_in_its_help() -> None:
    runner = CliRunner()
    paths = command_paths()
    assert len(paths) > 20, paths  # node, cluster, topic, group, produce, consume, ...
    missing = []
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, (path, result.output)
        if "Example" not in result.output:
            missing.append(" ".join(path) or "(root)")
    assert not missing, f"--help without an example: {missing}"
