"""The scenario catalogue of SCENARIOS.md: each scenario's fault schedule (its nemesis).

A nemesis acts through :class:`~raftlog.scenarios.runner.Nemesis` until the run's deadline:
it starts faults (each logged as a ``fault`` event), waits with ``nemesis.sleep`` (bounded by
the deadline), and ends faults with ``nemesis.heal()`` (which logs a ``heal``). The runner
heals everything once more after the nemesis returns. Every choice comes from
``nemesis.rng``, seeded by the run's seed.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from raftlog.scenarios.checkers import CheckParams

if TYPE_CHECKING:
    from raftlog.scenarios.runner import Nemesis, RunSettings


@dataclass(frozen=True)
class Scenario:
    id: str
    name: str
    faults: str
    nemesis: Callable[[Nemesis], None]
    skip_reason: str = ""
    needs: tuple[str, ...] = ()
    params: CheckParams = field(default_factory=CheckParams)
    min_nodes: int = 3

    def params_for(self, settings: RunSettings) -> CheckParams:
        return settings.params if settings.params != CheckParams() else self.params

    def missing_capability(self, settings: RunSettings) -> str:
        if settings.nodes < self.min_nodes:
            return f"needs at least {self.min_nodes} brokers"
        for need in self.needs:
            env = CAPABILITY_ENV.get(need)
            if env is not None and os.environ.get(env) == "0":
                return f"capability {need!r} switched off by {env}=0"
        return ""


CAPABILITY_ENV = {"clock": "RAFTLOG_SCENARIO_CLOCK_OK", "disk-faults": "RAFTLOG_SCENARIO_DISK_OK"}


def _jitter(rng: random.Random, mean: float, spread: float) -> float:
    return max(0.5, rng.uniform(mean - spread, mean + spread))


def _minority(nemesis: Nemesis) -> int:
    return (nemesis.cluster.n - 1) // 2


def _pick_leader(nemesis: Nemesis) -> int:
    leader = nemesis.cluster.busiest_leader()
    return leader if leader is not None else nemesis.rng.choice(nemesis.cluster.ids)


def _short(nemesis: Nemesis) -> float:
    """1.0 for a full run, 0.5 for the CI tier's short form (shorter waits)."""
    return 0.5 if nemesis.settings.short else 1.0


# ------------------------------------------------------------------ the scenarios


def s00_smoke(nemesis: Nemesis) -> None:
    nemesis.sleep(nemesis.remaining())


def s01_leader_kill_loop(nemesis: Nemesis) -> None:
    rng, cluster, k = nemesis.rng, nemesis.cluster, _short(nemesis)
    nemesis.sleep(_jitter(rng, 10 * k, 5 * k))
    while nemesis.running():
        target = _pick_leader(nemesis)
        nemesis.fault("kill", f"broker {target}", "SIGKILL of the broker leading most partitions")
        cluster.kill(target)
        nemesis.sleep(rng.uniform(2.0, 4.0) * k, allow_past_deadline=True)
        nemesis.heal()
        nemesis.sleep(_jitter(rng, 10 * k, 5 * k))


def s02_crash_minority(nemesis: Nemesis) -> None:
    rng, cluster = nemesis.rng, nemesis.cluster
    size = _minority(nemesis)
    while nemesis.running():
        first = rng.sample(cluster.ids, size)
        nemesis.fault("kill", f"brokers {first}", "a minority together")
        for i in first:
            cluster.kill(i)
        nemesis.sleep(rng.uniform(2.0, 4.0), allow_past_deadline=True)
        for i in first:
            cluster.start_broker(i)
        nemesis.sleep(rng.uniform(0.5, 1.5), allow_past_deadline=True)
        others = [i for i in cluster.ids if i not in first] or first
        second = rng.sample(others, min(size, len(others)))
        nemesis.fault(
            "kill", f"brokers {second}", "another minority during recovery", available=False
        )
        for i in second:
            cluster.kill(i)
        nemesis.sleep(rng.uniform(2.0, 4.0), allow_past_deadline=True)
        nemesis.heal()
        nemesis.sleep(rng.uniform(5.0, 8.0))
        if not nemesis.running():
            break
        nemesis.fault("kill", "all brokers", "kill every broker, restart all", available=False)
        for i in cluster.ids:
            cluster.kill(i)
        nemesis.sleep(rng.uniform(1.0, 3.0), allow_past_deadline=True)
        nemesis.heal()
        nemesis.sleep(rng.uniform(8.0, 12.0))


def s03_isolate_leader(nemesis: Nemesis) -> None:
    rng, cluster, k = nemesis.rng, nemesis.cluster, _short(nemesis)
    nemesis.sleep(rng.uniform(3.0, 6.0) * k)
    while nemesis.running():
        target = _pick_leader(nemesis)
        links = cluster.isolate(target)
        nemesis.fault("isolate", f"broker {target}", f"{len(links)} peer links cut, clients stay")
        nemesis.sleep(_jitter(rng, 8 * k, 3 * k), allow_past_deadline=True)
        nemesis.heal()
        nemesis.sleep(_jitter(rng, 7 * k, 2 * k))


def _shapes(ids: list[int], rng: random.Random) -> list[tuple[str, list[tuple[int, int]]]]:
    """(name, pairs to cut) for the shapes of S04 over ``ids``."""
    order = ids[:]
    rng.shuffle(order)
    n = len(order)
    pairs = [(a, b) for a in ids for b in ids if a < b]

    def split(side: list[int]) -> list[tuple[int, int]]:
        return [(a, b) for a, b in pairs if (a in side) != (b in side)]

    shapes = [("one-node", split(order[:1])), ("majority-minority", split(order[: (n - 1) // 2]))]
    ring = {
        (min(order[i], order[(i + 1) % n]), max(order[i], order[(i + 1) % n])) for i in range(n)
    }
    shapes.append(("majorities-ring", [p for p in pairs if p not in ring]))
    if n >= 3:
        half = (n - 1) // 2
        left, bridge, right = order[:half], order[half], order[half + 1 :]
        shapes.append(
            ("bridge", [(min(a, b), max(a, b)) for a in left for b in right if a != bridge])
        )
    return [(name, cut) for name, cut in shapes if cut]


def s04_partition_shapes(nemesis: Nemesis) -> None:
    rng, cluster, k = nemesis.rng, nemesis.cluster, _short(nemesis)
    nemesis.sleep(3.0 * k)
    while nemesis.running():
        for name, cut in _shapes(cluster.ids, rng):
            if not nemesis.running():
                return
            cluster.cut_pairs(cut)
            nemesis.fault("partition", name, f"cut pairs {cut}")
            nemesis.sleep(_jitter(rng, 8 * k, 2 * k), allow_past_deadline=True)
            nemesis.heal()
            nemesis.sleep(_jitter(rng, 5 * k, 1 * k))


def s05_asymmetric(nemesis: Nemesis) -> None:
    rng, cluster, k = nemesis.rng, nemesis.cluster, _short(nemesis)
    nemesis.sleep(3.0 * k)
    while nemesis.running():
        leader = _pick_leader(nemesis)
        follower = rng.choice([i for i in cluster.ids if i != leader])
        for what, target, act in (
            ("deaf-leader", leader, cluster.deafen),
            ("deaf-follower", follower, cluster.deafen),
            ("mute-leader", leader, cluster.mute),
        ):
            if not nemesis.running():
                return
            cut = act(target)
            nemesis.fault("one-way", f"broker {target}", f"{what}: {len(cut)} directions cut")
            nemesis.sleep(_jitter(rng, 8 * k, 2 * k), allow_past_deadline=True)
            nemesis.heal()
            nemesis.sleep(_jitter(rng, 6 * k, 1 * k))


def s06_pause_zombies(nemesis: Nemesis) -> None:
    rng, cluster, workload = nemesis.rng, nemesis.cluster, nemesis.workload
    session_s = nemesis.settings.session_ms / 1000
    nemesis.sleep(3.0)
    while nemesis.running():
        leader = _pick_leader(nemesis)
        nemesis.fault("pause", f"broker {leader}", "SIGSTOP past the election timeout")
        cluster.pause(leader)
        nemesis.sleep(rng.uniform(4.0, 8.0), allow_past_deadline=True)
        nemesis.heal()
        nemesis.sleep(rng.uniform(4.0, 6.0))
        members = workload.members()
        if not members or not nemesis.running():
            continue
        member = rng.choice(members)
        nemesis.fault("pause", f"member {member}", "SIGSTOP past its session timeout")
        workload.pause(member)
        nemesis.sleep(session_s * rng.uniform(1.5, 2.0), allow_past_deadline=True)
        nemesis.heal()
        nemesis.sleep(rng.uniform(5.0, 8.0))


def s07_clock_skew(nemesis: Nemesis) -> None:
    rng, cluster = nemesis.rng, nemesis.cluster
    nemesis.sleep(3.0)
    while nemesis.running():
        leader = _pick_leader(nemesis)
        follower = rng.choice([i for i in cluster.ids if i != leader])
        steps: list[tuple[str, int, dict[str, float]]] = [
            ("fast", leader, {"rate": rng.uniform(2.0, 4.0)}),
            ("slow", follower, {"rate": rng.uniform(0.25, 0.5)}),
            ("jump", follower, {"jump_s": rng.uniform(5.0, 30.0)}),
            ("wall", leader, {"wall_offset_s": rng.choice([-1, 1]) * rng.uniform(60, 3600)}),
        ]
        for what, target, clock in steps:
            if not nemesis.running():
                return
            cluster.set_clock(target, **clock)
            nemesis.fault("clock", f"broker {target}", f"{what} {clock}")
            nemesis.sleep(_jitter(rng, 8, 2), allow_past_deadline=True)
            nemesis.heal()
            nemesis.sleep(_jitter(rng, 5, 1))


def s08_power_loss_minority(nemesis: Nemesis) -> None:
    rng, cluster, k = nemesis.rng, nemesis.cluster, _short(nemesis)
    nemesis.sleep(_jitter(rng, 6 * k, 2 * k))
    rounds = 0
    while nemesis.running():
        rounds += 1
        size = 1 if cluster.n < 5 or rounds % 2 else 2
        targets = rng.sample(cluster.ids, size)
        torn = rng.random() < 0.5
        nemesis.fault("power-loss", f"brokers {targets}", f"torn tail: {torn}")
        for i in targets:
            cluster.power_fail(i, torn=torn)
        nemesis.sleep(rng.uniform(2.0, 4.0) * k, allow_past_deadline=True)
        nemesis.heal()
        nemesis.sleep(_jitter(rng, 8 * k, 3 * k))


def s09_power_loss_all(nemesis: Nemesis) -> None:
    rng, cluster, k = nemesis.rng, nemesis.cluster, _short(nemesis)
    nemesis.sleep(_jitter(rng, 6 * k, 2 * k))
    while nemesis.running():
        torn = rng.random() < 0.5
        nemesis.fault(
            "power-loss", "all brokers", f"every broker at once, torn tail: {torn}",
            available=False,
        )  # fmt: skip
        for i in cluster.ids:
            cluster.power_fail(i, torn=torn)
        nemesis.sleep(rng.uniform(1.0, 3.0) * k, allow_past_deadline=True)
        nemesis.heal()
        cluster.wait_ready(timeout_s=90.0)
        nemesis.sleep(_jitter(rng, 12 * k, 3 * k))


def s11_disk_corruption(nemesis: Nemesis) -> None:
    """One broker, chosen once, has its files damaged while stopped, again and again: a
    minority's files, as SCENARIOS.md says. (Damaging a second broker while the first
    still re-replicates what it lost would damage a majority's copy of a partition, which
    no replication protocol survives: an early version of this nemesis did that.)"""
    rng, cluster = nemesis.rng, nemesis.cluster
    target = rng.choice(cluster.ids)
    nemesis.sleep(_jitter(rng, 8, 2))
    while nemesis.running():
        cluster.kill(target)
        damage = corrupt_partition_files(cluster.nodes[target].data_dir / "scenario", rng)
        nemesis.fault("disk-corruption", f"broker {target}", "; ".join(damage) or "no files")
        nemesis.sleep(rng.uniform(1.0, 2.0), allow_past_deadline=True)
        nemesis.heal()
        nemesis.sleep(_jitter(rng, 10, 3))


def corrupt_partition_files(topic_dir: os.PathLike[str] | str, rng: random.Random) -> list[str]:
    """Flip a few bits in, or cut the tail of, some of the segment files of a stopped
    broker's partitions; returns what was done."""
    done: list[str] = []
    root = os.fspath(topic_dir)
    if not os.path.isdir(root):
        return done
    segments = sorted(
        os.path.join(root, p, name)
        for p in os.listdir(root)
        if os.path.isdir(os.path.join(root, p))
        for name in os.listdir(os.path.join(root, p))
        if name.endswith(".log")
    )
    for path in rng.sample(segments, min(len(segments), 3)):
        size = os.path.getsize(path)
        if size < 64:
            continue
        if rng.random() < 0.5:
            keep = rng.randrange(size // 2, size)
            os.truncate(path, keep)
            done.append(f"truncated {os.path.relpath(path, root)} {size}->{keep}")
        else:
            with open(path, "r+b") as f:
                for _ in range(rng.randint(1, 3)):
                    pos = rng.randrange(size // 2, size)
                    f.seek(pos)
                    byte = f.read(1)[0]
                    f.seek(pos)
                    f.write(bytes([byte ^ (1 << rng.randrange(8))]))
            done.append(f"flipped bits in {os.path.relpath(path, root)}")
    return done


def s12_disk_full(nemesis: Nemesis) -> None:
    rng, cluster = nemesis.rng, nemesis.cluster
    nemesis.sleep(_jitter(rng, 6, 2))
    while nemesis.running():
        target = rng.choice(cluster.ids)
        kind = rng.choice([{"pwrite": "ENOSPC"}, {"fsync": "EIO"}])
        cluster.set_disk_faults(target, kind)
        nemesis.fault("disk", f"broker {target}", f"{kind}")
        nemesis.sleep(_jitter(rng, 8, 2), allow_past_deadline=True)
        nemesis.heal()
        nemesis.sleep(_jitter(rng, 8, 2))


def s14_group_churn(nemesis: Nemesis) -> None:
    rng, cluster, workload = nemesis.rng, nemesis.cluster, nemesis.workload
    session_s = nemesis.settings.session_ms / 1000
    extra = 0
    nemesis.sleep(4.0)
    while nemesis.running():
        members = workload.members()
        action = rng.choice(["join", "leave", "crash", "pause", "cut-coordinator"])
        if action == "join" or not members:
            extra += 1
            name = f"m{3 + extra}"
            nemesis.fault("member-join", name, "a new member joins")
            workload.start_member(name)
        elif action == "leave":
            name = rng.choice(members)
            nemesis.fault("member-leave", name, "clean leave (SIGTERM)")
            workload.stop([name], timeout_s=10.0)
        elif action == "crash":
            name = rng.choice(members)
            nemesis.fault("member-crash", name, "SIGKILL")
            workload.kill(name)
        elif action == "pause":
            name = rng.choice(members)
            nemesis.fault("member-pause", name, "SIGSTOP past the session timeout")
            workload.pause(name)
            nemesis.sleep(session_s * rng.uniform(1.3, 1.8), allow_past_deadline=True)
        else:
            coordinator = cluster.metadata_leader()
            if coordinator is not None:
                nemesis.fault(
                    "cut", f"client->{coordinator}", "clients cut from the coordinator",
                    available=False,
                )  # fmt: skip
                cluster.control().cut(f"client->{coordinator}", "both", True)
                nemesis.sleep(rng.uniform(4.0, 8.0), allow_past_deadline=True)
        nemesis.heal()
        if len(workload.members()) < 2:
            extra += 1
            workload.start_member(f"m{3 + extra}")
        nemesis.sleep(_jitter(rng, 6, 2))


def s15_flaky_network(nemesis: Nemesis) -> None:
    rng, cluster, k = nemesis.rng, nemesis.cluster, _short(nemesis)
    control = cluster.control()
    nemesis.sleep(3.0 * k)
    while nemesis.running():
        native = [cluster.native_link(a, b) for a in cluster.ids for b in cluster.ids if a != b]
        meta = sorted(
            {cluster.metadata_link(a, b) for a in cluster.ids for b in cluster.ids if a != b}
        )
        for link in native:
            control.delay(link, rng.uniform(1, 10), rng.uniform(0, 5))
            control.drop(link, rng.uniform(0.005, 0.03))
            control.duplicate(link, rng.uniform(0.005, 0.03))
            control.reorder(link, rng.uniform(0.01, 0.05), 1, hold_ms=50)
        for link in meta:
            control.delay(link, rng.uniform(1, 10), rng.uniform(0, 5))
        slow = rng.choice(cluster.ids)
        for j in cluster.ids:
            if j != slow:
                control.throttle(cluster.native_link(j, slow), 200_000)
        nemesis.fault("flaky", "every peer link", f"delay, drop, duplicate, reorder; slow {slow}")
        for _ in range(3):
            nemesis.sleep(_jitter(rng, 5 * k, 1 * k), allow_past_deadline=True)
            link = rng.choice(native + meta)
            control.reset_connections(link)
        nemesis.heal()
        nemesis.sleep(_jitter(rng, 6 * k, 1 * k))


def s16_hostile_clients(nemesis: Nemesis) -> None:
    from raftlog.scenarios.hostile import HostileTargets, run_hostile

    cluster = nemesis.cluster
    nodes = [cluster.nodes[i] for i in cluster.ids]
    targets = HostileTargets(
        native=[(n.host, n.port) for n in nodes],
        metadata=[(n.host, n.port + 1) for n in nodes],
        admin=[(n.host, n.port + 2) for n in nodes],
    )
    nemesis.sleep(3.0)
    nemesis.fault("hostile", "every broker", "malformed frames, pickle, idle floods")
    report = run_hostile(
        targets, seed=nemesis.settings.seed, duration_s=max(5.0, nemesis.remaining()),
        log=nemesis.say,
    )  # fmt: skip
    nemesis.extra["hostile"] = report
    nemesis.heal()


def _skip(nemesis: Nemesis) -> None:  # pragma: no cover - never run
    raise AssertionError("a skipped scenario has no nemesis")


SCENARIOS: list[Scenario] = [
    Scenario("S00", "smoke-baseline", "none (checks the checkers; calibrates U and R)", s00_smoke),
    Scenario("S01", "leader-kill-loop", "SIGKILL the busiest leader every 10±5 s, restart",
             s01_leader_kill_loop),
    Scenario("S02", "crash-minority", "kill a minority, again during recovery; kill all",
             s02_crash_minority),
    Scenario("S03", "isolate-leader", "cut the leader from its peers, clients stay",
             s03_isolate_leader),
    Scenario("S04", "partition-shapes", "one node, majority/minority, ring, bridge",
             s04_partition_shapes),
    Scenario("S05", "asymmetric", "one-way cuts: deaf leader, deaf follower, mute leader",
             s05_asymmetric),
    Scenario("S06", "pause-zombies", "SIGSTOP a leader and a group member past timeouts",
             s06_pause_zombies),
    Scenario("S07", "clock-skew", "one node's clock fast, slow, jumping, wall offset",
             s07_clock_skew, needs=("clock",)),
    Scenario("S08", "power-loss-minority", "power-fail one node (two of five), restart",
             s08_power_loss_minority),
    Scenario("S09", "power-loss-all", "power-fail every broker at once, restart all",
             s09_power_loss_all),
    Scenario("S10", "compound", "pause + power-fail + partition", _skip,
             skip_reason="needs partition reassignment (comes with membership changes)"),
    Scenario("S11", "disk-corruption", "bit flips and truncation in a stopped minority",
             s11_disk_corruption),
    Scenario("S12", "disk-full", "ENOSPC and EIO on fsync on one node", s12_disk_full,
             needs=("disk-faults",)),
    Scenario("S13", "membership", "add/move/remove brokers while killing leaders", _skip,
             skip_reason="needs partition reassignment (comes with membership changes)"),
    Scenario("S14", "group-churn", "members join, leave, crash, pause, lose the coordinator",
             s14_group_churn),
    Scenario("S15", "flaky-network", "latency, drops, duplicates, reordering, resets, slow node",
             s15_flaky_network),
    Scenario("S16", "hostile-clients", "malformed frames, pickle, idle connection floods",
             s16_hostile_clients),
]  # fmt: skip

BY_ID = {s.id: s for s in SCENARIOS}


def find(name: str) -> Scenario:
    """A scenario by id (``S03``, ``s3``) or name (``isolate-leader``)."""
    key = name.strip()
    if key.upper().startswith("S") and key[1:].isdigit():
        key = f"S{int(key[1:]):02d}"
        if key in BY_ID:
            return BY_ID[key]
    for s in SCENARIOS:
        if s.name == name.strip().lower():
            return s
    raise KeyError(name)
