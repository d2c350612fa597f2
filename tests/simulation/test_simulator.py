"""The simulator: many seeds pass, one seed replays one history, deliberate bugs are caught."""

from __future__ import annotations

import pytest

from raftlog.testing import sim_cli
from raftlog.testing.simulator import BUGS, SimOptions, Simulation, run_seed

# make test: 400 seeds (even seeds 3 nodes, odd seeds 5), under ten seconds on two cores.
FAST_SEEDS = range(400)


@pytest.mark.parametrize("chunk", range(10))
def test_many_seeds_keep_raft_safe_and_live(chunk: int) -> None:
    for seed in FAST_SEEDS[chunk::10]:
        nodes = sim_cli.nodes_for(seed, None)
        result = run_seed(seed, nodes=nodes)
        assert result.ok, f"{result.error}\nreplay: {sim_cli.replay_command(seed, nodes, None)}"
        assert result.elections >= 1
        assert result.committed_end > 0


@pytest.mark.slow
def test_thousands_of_seeds() -> None:
    assert sim_cli.main(["--seeds", "3000", "--seed-start", "1000"]) == 0


def test_one_seed_replays_one_history(capsys: pytest.CaptureFixture[str]) -> None:
    run_seed(7, nodes=5, verbose=True)
    first = capsys.readouterr().out
    run_seed(7, nodes=5, verbose=True)
    assert capsys.readouterr().out == first
    assert first.count("\n") > 100
    run_seed(8, nodes=5, verbose=True)
    assert capsys.readouterr().out != first


def test_faults_really_happen() -> None:
    """The fault phase exercises what the checkers are about (seen in the traces): every
    kind of event shows up within the first ``SEEDS_MAX`` seeds. Seeds run until all have
    been seen, so a change to the histories (quiescence, election timing) does not need a
    new hand-picked seed count; a kind that stopped happening still fails."""
    import contextlib
    import io

    wanted = {
        "FAULT power loss",
        "FAULT crash",
        "FAULT bounce",
        "FAULT retention",
        "FAULT transfer",
        "FAULT membership add learner",
        "FAULT membership promote",
        "FAULT membership remove",
        "InstallLogStart",
        "reject prev=",
        "TimeoutNow",
        "bridge",
        "+cut",
        "HEAL",
        "LIVE every proposal",
        "quiesce=True",
        "quiesce=False",
    }
    seeds_max = 100
    for seed in range(seeds_max):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            Simulation(seed, SimOptions(nodes=3 + 2 * (seed % 2), verbose=True)).run()
        trace = out.getvalue()
        wanted = {what for what in wanted if what not in trace}
        if not wanted:
            return
    raise AssertionError(f"never happened in {seeds_max} seeds: {sorted(wanted)}")


# Seed budget per deliberate bug: the first failing seed must come within it.
BUG_BUDGET = {
    "commit-without-majority": 20,
    "vote-for-stale-log": 50,
    "forget-vote-on-restart": 20,
    "send-before-persist": 20,
    "skip-fsync": 20,
}


@pytest.mark.parametrize("bug", BUGS)
def test_a_deliberate_bug_is_caught_within_the_seed_budget(bug: str) -> None:
    for seed in range(BUG_BUDGET[bug]):
        result = run_seed(seed, nodes=3, bug=bug)
        if not result.ok:
            assert result.error is not None
            assert "SafetyViolation" in result.error, result.error
            return
    pytest.fail(f"bug {bug} went unnoticed for {BUG_BUDGET[bug]} seeds")


def test_cli_reports_rate_and_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_cli.main(["--seeds", "4", "--seed-start", "10"]) == 0
    out = capsys.readouterr().out
    assert "4 seeds (10..13) passed" in out and "seeds/s" in out


def test_cli_prints_the_replay_command_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_cli.main(["--seeds", "5", "--seed-start", "0", "--bug", "skip-fsync"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert (
        "replay: python -m raftlog.testing.sim_cli --seeds 1 --seed-start 0 --nodes 3 -v"
        " --bug skip-fsync" in out
    )
