"""The scenario catalogue's short tier, run by ``make test``: S00, S01, S08 and S09 in a
shortened form (15 s of faults) against a real 3-broker cluster behind the fault proxy,
every checker of SCENARIOS.md judging the history. ``make scenarios`` runs the full
catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftlog.scenarios.catalogue import find
from raftlog.scenarios.checkers import format_results
from raftlog.scenarios.runner import RunSettings, run_scenario

SHORT_TIER = ["S00", "S01", "S08", "S09"]


@pytest.mark.parametrize("scenario_id", SHORT_TIER)
def test_short_tier_scenario_passes(scenario_id: str, tmp_path: Path) -> None:
    scenario = find(scenario_id)
    settings = RunSettings(nodes=3, seed=11, duration_s=15.0, tail_s=8.0, short=True, rate=100.0)
    lines: list[str] = []
    result = run_scenario(scenario, settings, tmp_path, say=lines.append)
    report = format_results(result.checks) if result.checks else "\n".join(lines[-30:])
    assert result.status == "PASS", f"{result.summary()} {result.reason}\n{report}"
    names = {c.name for c in result.checks}
    assert {"lost-write", "replicas-identical", "election-safety", "availability"} <= names
    acked = result.measures["sends"]["ok"]
    assert acked > 500, f"the workload acknowledged only {acked} sends"
    if scenario_id != "S00":
        assert result.measures["faults"] >= 1, "the nemesis injected no fault"
