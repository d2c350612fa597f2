"""The benchmark figures of issue 10: what each one means, its goal, and how a run's
samples become the ``{"min", "median", "max", "unit"}`` objects of the JSON file.

Pure functions only (no processes, no clock), so that they are unit tested.

Ratios are oriented so that 1.0 or more always means "meets the goal":

- a figure where more is better (records/s, MB/s): ``ratio_to_goal = median / goal``;
- a figure where less is better (ms, s, % of a core): ``ratio_to_goal = goal / median``.

A ceiling is the best this machine allows for the same work, measured in the same run
(``bench.ceilings``); for a figure where less is better it is a floor (the least the work
can take). ``ratio_to_ceiling`` is the share of that best reached, oriented the same way:
``median / ceiling`` or ``floor / median``, at most about 1.0.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of the table: ``goal`` None when the issue sets none (memory)."""

    key: str
    title: str
    unit: str
    goal: float | None
    higher_is_better: bool
    group: str


FIGURES: tuple[Figure, ...] = (
    Figure("produce_100b_rps", "produce, 100 B records", "records/s", 200_000, True, "throughput"),
    Figure("produce_1kib_mbps", "produce, 1 KiB records", "MB/s", 150, True, "throughput"),
    Figure("consume_100b_rps", "consume, 1 process, 100 B", "records/s", 400_000, True,
           "throughput"),
    Figure("e2e_p50_ms", "end-to-end p50 at 10k records/s", "ms", 3, False, "e2e"),
    Figure("e2e_p99_ms", "end-to-end p99 at 10k records/s", "ms", 10, False, "e2e"),
    Figure("idle_cpu_pct_1000p", "idle CPU, 1,000 partitions", "% core", 5, False, "scale"),
    Figure("failover_p99_s", "kill -9 leader to first ack, p99", "s", 2, False, "failover"),
    Figure("rebalance_s", "group of 4: join to all consuming", "s", 1, False, "rebalance"),
    Figure("rss_idle_mib", "broker RSS, idle, no partitions", "MiB", None, False, "throughput"),
    Figure("rss_produce_mib", "broker RSS after produce", "MiB", None, False, "throughput"),
    Figure("mem_per_replica_kib", "memory per partition replica", "KiB", None, False, "scale"),
    Figure("create_partitions_s", "create the partitions, to all led", "s", None, False, "scale"),
)  # fmt: skip
BY_KEY: dict[str, Figure] = {f.key: f for f in FIGURES}
GROUPS: tuple[str, ...] = ("throughput", "e2e", "scale", "failover", "rebalance")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` percentile (0..100) of ``values``, nearest rank (one of the values, so a
    p99 of 6 samples is their maximum). Raises ``ValueError`` when ``values`` is empty."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not in 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Iterable[float], unit: str, **extra: Any) -> dict[str, Any]:
    """``{"min", "median", "max", "unit", "samples", ...extra}`` of one figure's samples
    (one sample per round). Raises ``ValueError`` when there are none."""
    samples = [float(v) for v in values]
    if not samples:
        raise ValueError("a figure needs at least one sample")
    return {
        "min": min(samples),
        "median": median(samples),
        "max": max(samples),
        "unit": unit,
        "samples": samples,
        **extra,
    }


def median(values: Sequence[float]) -> float:
    """The median (the mean of the two middle values for an even count)."""
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def oriented_ratio(value: float, reference: float, higher_is_better: bool) -> float | None:
    """``value / reference`` when more is better, ``reference / value`` when less is; None
    when it cannot be computed (a zero or negative divisor)."""
    num, den = (value, reference) if higher_is_better else (reference, value)
    if den <= 0:
        return None
    return num / den


def rate_figures(figures: dict[str, dict[str, Any]], ceilings: Mapping[str, float]) -> None:
    """Add ``goal``, ``ratio_to_goal``, ``ceiling`` and ``ratio_to_ceiling`` (None when not
    applicable) to every figure in place, from its median. ``ceilings`` maps figure keys to
    their ceiling (or floor) in the figure's own unit."""
    for key, fig in figures.items():
        spec = BY_KEY.get(key)
        higher = spec.higher_is_better if spec else True
        goal = spec.goal if spec else None
        fig["goal"] = goal
        fig["goal_direction"] = ">=" if higher else "<="
        fig["ratio_to_goal"] = None if goal is None else oriented_ratio(fig["median"], goal, higher)
        ceiling = ceilings.get(key)
        fig["ceiling"] = ceiling
        fig["ratio_to_ceiling"] = (
            None if ceiling is None else oriented_ratio(fig["median"], ceiling, higher)
        )


def shortfalls(figures: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The keys whose median misses its goal (ratio to goal below 1)."""
    return [
        k
        for k, f in figures.items()
        if f.get("ratio_to_goal") is not None and f["ratio_to_goal"] < 1.0
    ]


def document(
    machine: Mapping[str, Any],
    settings: Mapping[str, Any],
    figures: Mapping[str, Mapping[str, Any]],
    ceilings: Mapping[str, Any],
    notes: Sequence[str] = (),
    aborted: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document of a run: ``machine``, ``settings``, ``figures`` (keyed as in
    ``FIGURES``, in that order, then any others), ``ceilings``, ``shortfalls``,
    ``notes``, ``aborted``, ``extra`` (other observations)."""
    order = [f.key for f in FIGURES if f.key in figures]
    order += [k for k in figures if k not in BY_KEY]
    return {
        "machine": dict(machine),
        "settings": dict(settings),
        "figures": {k: dict(figures[k]) for k in order},
        "ceilings": dict(ceilings),
        "shortfalls": shortfalls(figures),
        "notes": list(notes),
        "aborted": dict(aborted or {}),
        "extra": dict(extra or {}),
    }


# ---------------------------------------------------------------------- this machine


def fs_type(path: str) -> str:
    """The file-system type holding ``path`` (longest mount point in /proc/mounts), or ""."""
    best, kind = "", ""
    real = os.path.realpath(path)
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1]
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, parts[2]
    except OSError:
        return ""
    return kind


def machine_info(data_dir: str) -> dict[str, Any]:
    """CPU count and model, memory, Python, kernel, the data folder, its file-system type
    and the load average when asked (the machine may be shared)."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "data_dir": os.path.abspath(data_dir),
        "data_fs": fs_type(data_dir),
        "load_avg_start": list(os.getloadavg()),
    }
