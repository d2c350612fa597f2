"""The one table a benchmark run prints: every figure's min / median / max, its goal and
ratio to the goal, its ceiling (or floor) and ratio to it.

``rows`` and ``plain_table`` are pure (unit tested); ``print_report`` draws the table with
rich on a terminal and as plain aligned text (no box characters) when stdout is a pipe or
a file, then the notes under it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from .figures import BY_KEY

COLUMNS: tuple[str, ...] = (
    "figure",
    "min",
    "median",
    "max",
    "unit",
    "goal",
    "x goal",
    "ceiling",
    "x ceiling",
)


def num(v: float | None) -> str:
    """A figure as people read it: thousands separated from 1,000 up, else 3 significant
    digits; "-" for none."""
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if v == 0:
        return "0"
    return f"{v:.3g}" if abs(v) >= 0.01 else f"{v:.2g}"


def ratio(v: float | None) -> str:
    """A ratio with two decimals; below 0.1 with two significant digits (0.0031)."""
    if v is None:
        return "-"
    return f"{v:.2f}" if v >= 0.1 else f"{v:.2g}"


def rows(
    figures: Mapping[str, Mapping[str, Any]], aborted: Mapping[str, str] | None = None
) -> list[tuple[str, ...]]:
    """One row of strings per figure (as ``COLUMNS``), then one per aborted figure."""
    out: list[tuple[str, ...]] = []
    for key, f in figures.items():
        goal = f.get("goal")
        direction = f.get("goal_direction") or (
            ">=" if BY_KEY.get(key) is None or BY_KEY[key].higher_is_better else "<="
        )
        out.append(
            (
                key,
                num(f["min"]),
                num(f["median"]),
                num(f["max"]),
                f["unit"],
                "-" if goal is None else f"{direction} {num(goal)}",
                ratio(f.get("ratio_to_goal")),
                num(f.get("ceiling")),
                ratio(f.get("ratio_to_ceiling")),
            )
        )
    for key in aborted or {}:
        if key not in figures:
            unit = BY_KEY[key].unit if key in BY_KEY else ""
            out.append((key, "ABORTED", "", "", unit, "", "", "", ""))
    return out


def plain_table(columns: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Columns padded with spaces; the first and the unit column left-aligned, numbers
    right-aligned; no trailing spaces."""
    widths = [max(len(r[i]) for r in [columns, *body]) for i in range(len(columns))]
    lines = []
    for row in [columns, *body]:
        cells = []
        for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
            left = i == 0 or columns[i] == "unit"
            cells.append(cell.ljust(width) if left else cell.rjust(width))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def print_report(
    title: str,
    figures: Mapping[str, Mapping[str, Any]],
    notes: Sequence[str] = (),
    aborted: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> None:
    """The table (rich when ``out`` is a terminal, else plain text), then the notes and
    why any figure was aborted."""
    out = out or sys.stdout
    body = rows(figures, aborted)
    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left", header_style="bold")
        for c in COLUMNS:
            table.add_column(c, justify="left" if c in ("figure", "unit") else "right")
        for r in body:
            style = "red" if r[1] == "ABORTED" or _short(r) else None
            table.add_row(*r, style=style)
        Console(file=out, highlight=False).print(table)
    else:
        print(title, file=out)
        print(plain_table(COLUMNS, body), file=out)
    for key, why in (aborted or {}).items():
        print(f"ABORTED {key}: {why}", file=out)
    for line in notes:
        print(line, file=out)


def _short(row: Sequence[str]) -> bool:
    try:
        return float(row[6]) < 1.0
    except ValueError:
        return False
