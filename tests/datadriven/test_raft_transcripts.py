"""Runs every transcript in ``testdata/``; ``RAFTLOG_REWRITE=1`` regenerates them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from raft_interaction import parse, render, run_file

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path: Path) -> None:
    run_file(path, rewrite=os.environ.get("RAFTLOG_REWRITE") == "1")


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 8


def test_parse_and_render_round_trip() -> None:
    text = "# intro\n\ncampaign 1\n----\na\nb\n\n# tail\n"
    parsed = parse(text)
    assert [b.command for _, b in parsed if b] == ["campaign 1"]
    assert render(parsed, [["a", "b"]]) == text


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("add-nodes 1\n----\nsomething else\n")
    with pytest.raises(AssertionError, match="expected"):
        run_file(f, rewrite=False)
    run_file(f, rewrite=True)
    assert "1: added voters=(1) learners=()" in f.read_text()
    run_file(f, rewrite=False)
