"""The pure parts of ``raftlog bench``: statistics, ratios to goals and ceilings, the JSON
document's shape, and the table as printed when stdout is not a terminal."""

from __future__ import annotations

import io
import json

import pytest

from raftlog.bench.figures import (
    BY_KEY,
    FIGURES,
    GROUPS,
    document,
    median,
    oriented_ratio,
    percentile,
    rate_figures,
    shortfalls,
    summary,
)
from raftlog.bench.report import COLUMNS, num, plain_table, print_report, ratio, rows
from raftlog.bench.run import Run, busy_note

ISSUE_KEYS = {
    "produce_100b_rps",
    "produce_1kib_mbps",
    "consume_100b_rps",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "idle_cpu_pct_1000p",
    "failover_p99_s",
    "rebalance_s",
    "rss_idle_mib",
    "rss_produce_mib",
    "mem_per_replica_kib",
}


def test_every_figure_of_the_issue_is_declared_with_its_goal() -> None:
    assert set(BY_KEY) >= ISSUE_KEYS
    goals = {f.key: (f.goal, f.higher_is_better) for f in FIGURES}
    assert goals["produce_100b_rps"] == (200_000, True)
    assert goals["produce_1kib_mbps"] == (150, True)
    assert goals["consume_100b_rps"] == (400_000, True)
    assert goals["e2e_p50_ms"] == (3, False)
    assert goals["e2e_p99_ms"] == (10, False)
    assert goals["idle_cpu_pct_1000p"] == (5, False)
    assert goals["failover_p99_s"] == (2, False)
    assert goals["rebalance_s"] == (1, False)
    assert all(f.group in GROUPS for f in FIGURES)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 99, 5.0),
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),  # nearest rank: one of the values
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 100, 100),
        ([0.5, 0.9, 0.7, 0.6, 0.8, 1.0], 99, 1.0),  # a p99 of 6 partitions is their max
        ([2.0, 1.0], 0, 1.0),
    ],
)
def test_percentile_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_percentile_refuses_nothing_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_median_and_summary() -> None:
    assert median([1.0, 3.0, 2.0]) == 2.0
    assert median([1.0, 2.0, 3.0, 4.0]) == 2.5
    s = summary([3, 1, 2], "ms", max_ms=9.0)
    assert s == {
        "min": 1.0,
        "median": 2.0,
        "max": 3.0,
        "unit": "ms",
        "samples": [3.0, 1.0, 2.0],
        "max_ms": 9.0,
    }
    with pytest.raises(ValueError):
        summary([], "ms")


def test_ratios_are_oriented_so_that_one_or_more_meets_the_goal() -> None:
    assert oriented_ratio(100_000, 200_000, True) == 0.5
    assert oriented_ratio(6.0, 3.0, False) == 0.5  # 6 ms against <= 3 ms
    assert oriented_ratio(1.0, 2.0, False) == 2.0
    assert oriented_ratio(0.0, 2.0, False) is None
    figures = {
        "produce_100b_rps": summary([100_000, 300_000], "records/s"),
        "e2e_p99_ms": summary([20.0], "ms"),
        "rss_idle_mib": summary([60.0], "MiB"),
    }
    rate_figures(figures, {"produce_100b_rps": 800_000.0, "e2e_p99_ms": 1.0})
    p = figures["produce_100b_rps"]
    assert (p["goal"], p["goal_direction"], p["ratio_to_goal"]) == (200_000, ">=", 1.0)
    assert p["ratio_to_ceiling"] == 0.25
    e = figures["e2e_p99_ms"]
    assert (e["goal_direction"], e["ratio_to_goal"], e["ratio_to_ceiling"]) == ("<=", 0.5, 0.05)
    r = figures["rss_idle_mib"]
    assert r["goal"] is None and r["ratio_to_goal"] is None and r["ceiling"] is None
    assert shortfalls(figures) == ["e2e_p99_ms"]


def test_document_shape_orders_figures_as_declared() -> None:
    figures = {
        "rebalance_s": summary([0.5], "s"),
        "produce_100b_rps": summary([1.0], "records/s"),
        "idle_cpu_pct_300p": summary([9.0], "% core"),
    }
    rate_figures(figures, {})
    doc = document({"cpus": 2}, {"rounds": 1}, figures, {"loopback_mbps": 1.0}, ["n"], {})
    assert list(doc) == [
        "machine",
        "settings",
        "figures",
        "ceilings",
        "shortfalls",
        "notes",
        "aborted",
        "extra",
    ]
    assert list(doc["figures"]) == ["produce_100b_rps", "rebalance_s", "idle_cpu_pct_300p"]
    for fig in doc["figures"].values():
        assert {"min", "median", "max", "unit"} <= set(fig)
    json.dumps(doc)  # plain JSON


def test_num_formats() -> None:
    assert num(None) == "-"
    assert num(0) == "0"
    assert num(123_456.7) == "123,457"
    assert num(12.345) == "12.3"
    assert num(0.004567) == "0.0046"
    assert ratio(None) == "-"
    assert ratio(1.234) == "1.23"
    assert ratio(0.0031) == "0.0031"  # small ratios keep two significant digits


def test_rows_and_plain_table() -> None:
    figures = {"e2e_p50_ms": summary([2.0, 4.0, 6.0], "ms")}
    rate_figures(figures, {"e2e_p50_ms": 0.2})
    body = rows(figures, {"failover_p99_s": "no failover"})
    assert body[0] == ("e2e_p50_ms", "2", "4", "6", "ms", "<= 3", "0.75", "0.2", "0.05")
    assert body[1][:2] == ("failover_p99_s", "ABORTED")
    text = plain_table(COLUMNS, body)
    lines = text.splitlines()
    assert lines[0].startswith("figure")
    assert all(line == line.rstrip() for line in lines)
    # columns line up: every "x goal" cell ends where its header ends
    end = lines[0].index("x goal") + len("x goal")
    assert lines[1][:end].endswith("0.75")


def test_report_when_piped_has_no_box_characters() -> None:
    figures = {"rebalance_s": summary([0.4, 0.5], "s")}
    rate_figures(figures, {})
    out = io.StringIO()  # not a terminal
    print_report("title", figures, ["a note"], {"e2e_p50_ms": "lost records"}, out=out)
    text = out.getvalue()
    assert "rebalance_s" in text and "a note" in text and "ABORTED e2e_p50_ms" in text
    assert not set(text) & set("─│┃┏┓┗┛━╭╮╰╯┌┐└┘├┤┬┴┼")


def test_run_writes_the_json_file(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    run = Run(data_dir=str(tmp_path))
    run.add("rebalance_s", [0.4, 0.6])
    run.add("idle_cpu_pct_300p", [7.0], unit="% core")
    run.ceiling("rebalance_s", 0.1)
    path = tmp_path / "out.json"
    assert run.finish("t", str(path)) == 0
    doc = json.loads(path.read_text())
    assert {"cpus", "cpu_model", "python", "kernel"} <= set(doc["machine"])
    assert doc["figures"]["rebalance_s"]["median"] == 0.5
    assert doc["figures"]["idle_cpu_pct_300p"]["unit"] == "% core"
    assert "rebalance_s" in capsys.readouterr().out
    run.abort("e2e_p50_ms", "lost")
    assert run.finish("t", None) == 1


def test_busy_note_only_when_load_exceeds_the_cpus() -> None:
    idle = {"cpus": 2, "load_avg_start": [0.5, 0, 0], "load_avg_end": [1.9, 0, 0]}
    assert busy_note(idle) is None
    busy = {"cpus": 2, "load_avg_start": [0.5, 0, 0], "load_avg_end": [6.0, 0, 0]}
    note = busy_note(busy)
    assert note is not None and "shared" in note and "6.0" in note
