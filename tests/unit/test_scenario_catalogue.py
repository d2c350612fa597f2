"""The scenario catalogue and runner pieces that need no cluster: lookup, the partition
shapes of S04, the corruption of S11, the measures and the replica-agreement test."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from raftlog.scenarios.catalogue import SCENARIOS, _shapes, corrupt_partition_files, find
from raftlog.scenarios.history import Heal, ReplicaDump, Send
from raftlog.scenarios.runner import _converged, measure


def test_every_scenario_of_the_catalogue_is_listed_once_with_s10_s13_skipped() -> None:
    ids = [s.id for s in SCENARIOS]
    assert ids == [f"S{n:02d}" for n in range(17)]
    skipped = {s.id for s in SCENARIOS if s.skip_reason}
    assert skipped == {"S10", "S13"}


@pytest.mark.parametrize("name", ["S3", "s03", "S03", "isolate-leader"])
def test_find_by_id_or_name(name: str) -> None:
    assert find(name).id == "S03"


def test_find_unknown_raises() -> None:
    with pytest.raises(KeyError):
        find("S99")


@pytest.mark.parametrize("n", [3, 5])
def test_partition_shapes_cut_what_they_claim(n: int) -> None:
    ids = list(range(1, n + 1))
    shapes = dict(_shapes(ids, random.Random(4)))
    pairs = {(a, b) for a in ids for b in ids if a < b}
    for name, cut in shapes.items():
        assert set(cut) <= pairs, name
        assert cut, name
    # one node: every pair of exactly one node is cut
    lonely = {x for pair in shapes["one-node"] for x in pair}
    counts = {i: sum(i in pair for pair in shapes["one-node"]) for i in lonely}
    assert sorted(counts.values())[-1] == n - 1
    if n == 5:
        # a majorities ring keeps each node connected to its two neighbours only
        kept = pairs - set(shapes["majorities-ring"])
        assert all(sum(i in p for p in kept) == 2 for i in ids)
        # a bridge: the bridge node keeps every link
        assert "bridge" in shapes


def test_corruption_touches_only_segment_files(tmp_path: Path) -> None:
    for p in range(3):
        folder = tmp_path / str(p)
        folder.mkdir()
        (folder / "00000000000000000000.log").write_bytes(bytes(range(256)) * 4)
        (folder / "00000000000000000000.index").write_bytes(b"i" * 100)
    done = corrupt_partition_files(tmp_path, random.Random(1))
    assert done and all(".log" in d for d in done)
    assert all((tmp_path / str(p) / "00000000000000000000.index").read_bytes() == b"i" * 100
               for p in range(3))  # fmt: skip
    changed = [p for p in range(3)
               if (tmp_path / str(p) / "00000000000000000000.log").read_bytes()
               != bytes(range(256)) * 4]  # fmt: skip
    assert len(changed) == len(done)


def _send(partition: int, t_end: float, phase: str = "ok") -> Send:
    return Send("p", None, f"v{t_end}", partition, phase, 0 if phase == "ok" else None,  # type: ignore[arg-type]
                t_end - 0.01, t_end)  # fmt: skip


def test_measure_longest_gap_and_recovery() -> None:
    history = [_send(0, 1.0), _send(0, 1.5), _send(0, 5.5), _send(1, 1.0), Heal(5.0),
               _send(1, 6.0), _send(0, 7.0, "info")]  # fmt: skip
    m = measure(history)  # type: ignore[arg-type]
    assert m["longest_gap_s"] == 5.0  # partition 1: 1.0 -> 6.0
    assert m["recovery_s"] == 1.0  # partition 1's first ack after the heal at 5.0
    assert m["sends"] == {"ok": 5, "fail": 0, "info": 1}


def test_replicas_agree_only_when_identical_below_the_end() -> None:
    a = ReplicaDump(0, 1, [(1, "x"), (2, "y")], 3)
    b = ReplicaDump(0, 2, [(1, "x"), (2, "y"), (3, "tail")], 3)
    lagging = ReplicaDump(0, 3, [(1, "x")], 3)
    assert _converged([a, b])
    assert not _converged([a, b, lagging])
