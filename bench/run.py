"""One benchmark run: the figures its groups measure, the ceilings measured alongside, the
notes and aborted figures; at the end one table on stdout and, if asked, the JSON file.

A group (``throughput.measure``, ``e2e.measure``, ...) takes a ``Run``, starts its own cluster
(``cluster.bench_cluster``), measures, and calls ``add`` / ``ceiling`` / ``abort`` /
``note``. ``finish`` rates every figure against its goal and ceiling (``figures``) and
prints the table (``report``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from .figures import BY_KEY, document, machine_info, rate_figures, summary
from .progress import Progress
from .report import print_report


class CheckFailed(RuntimeError):
    """A figure's correctness check failed (records lost, duplicated, reordered)."""


def busy_note(machine: dict[str, Any]) -> str | None:
    """A warning when the 1-minute load average at the start or end exceeded the CPU
    count: other work shared the machine, so the figures understate it."""
    cpus = machine.get("cpus") or 1
    loads = [machine.get("load_avg_start", [0])[0], machine.get("load_avg_end", [0])[0]]
    if max(loads) <= cpus:
        return None
    return (
        f"the machine was shared: 1-minute load average {loads[0]:.1f} at the start and "
        f"{loads[1]:.1f} at the end on {cpus} cpus (this run's own brokers and clients "
        "count too); throughput and latency figures understate an idle machine"
    )


@dataclass
class Run:
    data_dir: str = "."
    brokers: list[str] | None = None
    progress: Progress = field(default_factory=Progress)
    settings: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    ceilings: dict[str, float] = field(default_factory=dict)  # figure key -> its unit
    measured: dict[str, Any] = field(default_factory=dict)  # raw ceilings (MB/s, ms)
    extra: dict[str, Any] = field(default_factory=dict)  # other observations
    notes: list[str] = field(default_factory=list)
    aborted: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = os.path.abspath(self.data_dir)
        os.makedirs(self.data_dir, exist_ok=True)
        self.machine = machine_info(self.data_dir)
        if self.machine["data_fs"] in ("tmpfs", "ramfs"):
            self.note(
                f"the data folder {self.data_dir} is on {self.machine['data_fs']}: fsync costs "
                "nothing there; pass --dir on a real disk"
            )

    def add(self, key: str, samples: list[float], **extra: Any) -> None:
        if not samples:
            return
        unit = extra.pop("unit", "")
        unit = BY_KEY[key].unit if key in BY_KEY else unit
        self.figures[key] = summary(samples, unit, **extra)

    def ceiling(self, key: str, value: float) -> None:
        self.ceilings[key] = value

    def abort(self, key: str, why: str) -> None:
        self.aborted.setdefault(key, why)
        self.progress.note(f"ABORTED {key}: {why}")

    def note(self, text: str) -> None:
        self.notes.append(text)

    def finish(self, title: str, json_path: str | None = None) -> int:
        """Print the table (and write ``json_path``); 1 when a figure was aborted."""
        self.machine["load_avg_end"] = list(os.getloadavg())
        busy = busy_note(self.machine)
        if busy:
            self.note(busy)
        rate_figures(self.figures, self.ceilings)
        m = self.machine
        head = (
            f"{title}: {m['cpus']} cpus ({m['cpu_model'] or 'unknown model'}), "
            f"Python {m['python']}, Linux {m['kernel']}, data on {m['data_fs'] or '?'}"
        )
        sys.stdout.flush()
        footer = [
            "",
            "x goal: the median against the goal, >= 1.00 meets it (goal / median where "
            "less is better).",
            "x ceiling: the median against the best this machine allows for the same work, "
            "measured in this run (for latencies a floor: floor / median).",
            *self.notes,
        ]
        print_report(head, self.figures, footer, self.aborted)
        if json_path:
            doc = document(
                self.machine,
                self.settings,
                self.figures,
                {"per_figure": self.ceilings, **self.measured},
                self.notes,
                self.aborted,
                self.extra,
            )
            with open(json_path, "w") as f:
                json.dump(doc, f, indent=2)
                f.write("\n")
            self.progress.note(f"wrote {json_path}")
        return 1 if self.aborted else 0
