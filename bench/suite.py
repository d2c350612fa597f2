"""The standard set (issue 10): every figure group in one run, one table at the end.

    raftlog bench all --rounds 5 --json bench-results.json     (make bench)

Order: the ceilings first (on a machine as quiet as it gets), then throughput, e2e,
scale, failover, rebalance; each group starts its own three brokers and stops them by PID
at its end, also on failure. A group that fails is reported as aborted and the others
still run. ``rounds`` sets the rounds of throughput and e2e, the idle windows of scale,
and twice as many rounds of failover and rebalance (each of those is short). On 2 cores
3 rounds took about 5 minutes, each more about 75 s; creating the partitions of scale
takes from about 1 to 5 minutes (``ScaleSettings.create_deadline_s``).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from . import e2e, failover, rebalance, scale, throughput
from .figures import FIGURES, GROUPS
from .run import Run


@dataclass(frozen=True, slots=True)
class SuiteSettings:
    rounds: int = 3
    records: int = 300_000
    scale_partitions: int = 1000
    e2e_rate: int = 10_000
    e2e_measure_s: float = 10.0
    scale_window_s: float = 20.0


def measure_all(
    run: Run,
    s: SuiteSettings,
    groups: tuple[str, ...] = GROUPS,
    profile: str | None = None,
) -> None:
    """Run ``groups`` in the standard order; an exception in one aborts its figures only."""
    t_s = throughput.ThroughputSettings(rounds=s.rounds, records=s.records)
    steps: dict[str, Callable[[], None]] = {
        "throughput": lambda: throughput.measure(run, t_s, profile=profile),
        "e2e": lambda: e2e.measure(
            run, e2e.E2eSettings(rounds=s.rounds, rate=s.e2e_rate, measure_s=s.e2e_measure_s)
        ),
        "scale": lambda: scale.measure(
            run,
            scale.ScaleSettings(
                rounds=s.rounds, partitions=s.scale_partitions, window_s=s.scale_window_s
            ),
        ),
        "failover": lambda: failover.measure(run, failover.FailoverSettings(rounds=2 * s.rounds)),
        "rebalance": lambda: rebalance.measure(
            run, rebalance.RebalanceSettings(rounds=2 * s.rounds)
        ),
    }
    run.settings["suite"] = {"rounds": s.rounds, "groups": list(groups)}
    run.progress.note("ceilings (loopback, disk) ...")
    if "throughput" in groups:
        throughput.measure_ceilings(run, t_s)
    if "e2e" in groups:
        e2e.measure_floor(run)
    timings: dict[str, float] = {}
    for group in GROUPS:
        if group not in groups:
            continue
        t0 = time.monotonic()
        run.progress.note(f"== {group}")
        try:
            steps[group]()
        except Exception as e:  # one broken group must not hide the others' figures
            why = f"{type(e).__name__}: {e}"
            run.progress.note(traceback.format_exc())
            for f in FIGURES:
                if f.group == group and f.key not in run.figures and f.goal is not None:
                    run.abort(f.key, why)
        timings[group] = round(time.monotonic() - t0, 1)
    run.extra["group_wall_s"] = timings
