"""Run many simulator seeds: ``python -m raftlog.testing.sim_cli --seeds N --seed-start S``.

Seeds ``S .. S+N-1`` run one after the other; without ``--nodes`` even seeds run 3 nodes and
odd seeds 5. It prints the rate in seeds per second and, for the first failure, the exact
command that replays that seed with its event trace, and exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time

from raftlog.testing.simulator import BUGS, run_seed


def nodes_for(seed: int, nodes: int | None) -> int:
    return nodes if nodes is not None else (3 if seed % 2 == 0 else 5)


def replay_command(seed: int, nodes: int, bug: str | None) -> str:
    cmd = f"python -m raftlog.testing.sim_cli --seeds 1 --seed-start {seed} --nodes {nodes} -v"
    return cmd + (f" --bug {bug}" if bug else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--nodes", type=int, choices=[3, 5], default=None)
    parser.add_argument("--bug", choices=BUGS, default=None, help="switch on a deliberate bug")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the event trace")
    args = parser.parse_args(argv)
    started = time.monotonic()
    events = 0
    for seed in range(args.seed_start, args.seed_start + args.seeds):
        nodes = nodes_for(seed, args.nodes)
        result = run_seed(seed, nodes=nodes, bug=args.bug, verbose=args.verbose)
        events += result.events
        if not result.ok:
            print(f"seed {seed} ({nodes} nodes) FAILED: {result.error}")
            print(f"replay: {replay_command(seed, nodes, args.bug)}")
            return 1
    elapsed = time.monotonic() - started
    rate = args.seeds / elapsed if elapsed > 0 else float("inf")
    print(
        f"{args.seeds} seeds ({args.seed_start}..{args.seed_start + args.seeds - 1}) passed"
        f" in {elapsed:.1f} s: {rate:.1f} seeds/s, {events} events"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
