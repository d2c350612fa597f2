"""A deterministic simulator for the partition Raft: N cores, one seed, one history.

The simulator is the driver the production runtime will be, run on simulated time: a
single-threaded scheduler pops events from a queue ordered by ``(time, sequence)`` (never
by anything else, so one seed replays one history exactly; trio's scheduler is not
deterministic, so it is not used). Events are node ticks (each node with its own tick
length, i.e. clock rate), message deliveries, the end of a disk write, client proposals,
and faults.

It plays the driver as ``Ready`` documents: ``messages`` go out at once; the persist step
takes a random delay during which the node is busy (its inputs queue up, as they would
behind a real fsync); then ``messages_after_persist`` go out, the commit offset is
published, and ``advance`` is called.

A run has a fault phase (partitions of every shape, one-way links, loss, duplication,
reordering, crashes and quick restarts, power loss of a minority (mostly in the middle of
a write), retention moving log starts, leadership transfers, clock-rate changes, client
proposals to random nodes, and in some seeds membership changes), then heals everything
and checks liveness: once every transfer started before healing has played out, a leader
that every member follows must accept proposals, and every one must commit on every
member within ``liveness_ticks``. ``checkers.Checker`` checks safety as the history
unfolds. Timeouts, window sizes, append sizes, pre-vote and check-quorum vary per seed.

The simulator keeps, per disk, the membership in effect at each log start it had (as a
production driver must, since retention can remove the membership entries themselves), so
that a restarted core is given the membership at its log start.

Deliberate bugs (``BUGS``) prove the checkers can fail: a core committing without a
majority or voting for a stale log, a driver forgetting the vote on restart, sending
``messages_after_persist`` before persisting, or never fsyncing.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftlog.raft.config import Membership, RaftConfig
from raftlog.raft.errors import MembershipChangeError, NotLeaderError
from raftlog.raft.log_store import HardState
from raftlog.raft.messages import ZERO_OFFSET, Message, VoteRequest, VoteResponse, describe
from raftlog.raft.node import RaftNode
from raftlog.raft.ready import Ready, Role
from raftlog.testing.checkers import Checker, SafetyViolation
from raftlog.testing.mem_log import MemLog
from raftlog.testing.network import LinkFaults, Network
from raftlog.types import NO_TERM, NodeId, Offset, Term

FAULTS = (
    "network",
    "crash",
    "power",
    "restart",
    "clock",
    "retention",
    "bounce",
    "transfer",
    "membership",
)
FAULT_WEIGHTS = (40, 12, 10, 20, 6, 12, 12, 8)  # membership: 40 in seeds that change it

BUGS = (
    "commit-without-majority",
    "vote-for-stale-log",
    "forget-vote-on-restart",
    "send-before-persist",
    "skip-fsync",
)


class _MajorityOfOneNode(RaftNode):
    """A core with a wrong quorum: it commits what it alone holds."""

    def _commit_quorum(self) -> int:
        return 1


class _StaleVoteNode(RaftNode):
    """A core that votes without checking that the candidate's log is up to date."""

    def _is_up_to_date(self, last_term: Term, log_end_offset: Offset) -> bool:
        return True


class LivenessViolation(AssertionError):
    """After healing, the cluster did not elect a leader or commit within the bound."""


@dataclass(frozen=True, slots=True)
class SimOptions:
    nodes: int = 3
    fault_phase_units: int = 2500
    tick_units: int = 10
    liveness_ticks: int = 150
    liveness_proposals: int = 3
    persist_delay_max_units: int = 8
    # Membership changes (learners added, promoted, voters removed) in some seeds.
    membership_changes: bool = True
    # Quiescence (with a simulated failure detector) in some seeds.
    quiesce: bool = True
    fault_interval_units: tuple[int, int] = (30, 300)
    bug: str | None = None
    verbose: bool = False


@dataclass(frozen=True, slots=True)
class SimResult:
    seed: int
    nodes: int
    ok: bool
    error: str | None
    events: int
    committed_end: Offset
    elections: int


@dataclass(slots=True)
class _Node:
    id: NodeId
    disk: MemLog
    tick_units: int
    core: RaftNode | None = None
    busy: bool = False
    inbox: deque[tuple[str, Any]] = field(default_factory=deque)
    incarnation: int = 0
    published_commit: Offset = ZERO_OFFSET
    down: str | None = None  # "crash" or "power" while down
    # The membership in effect before each log start this disk had: what a driver keeps
    # so that a restart can give the core the membership at its log start.
    bases: dict[Offset, Membership] = field(default_factory=dict)


class Simulation:
    def __init__(self, seed: int, options: SimOptions = SimOptions()) -> None:
        self.seed = seed
        self.opt = options
        self.rng = random.Random(seed)
        self.ids = tuple(NodeId(i) for i in range(1, options.nodes + 1))
        faults = LinkFaults(
            loss_rate=self.rng.choice([0.0, 0.02, 0.1, 0.2]),
            duplicate_rate=self.rng.choice([0.0, 0.05, 0.1]),
            delay_min_units=1,
            delay_max_units=self.rng.randint(3, 20),
        )
        self.net = Network(random.Random(self.rng.getrandbits(64)), self.ids, faults)
        self.checker = Checker(self.ids)
        # Safety must hold with or without the optional features; liveness is checked too.
        self.pre_vote = self.rng.random() < 0.8
        self.check_quorum = self.rng.random() < 0.8
        # Limits vary per seed too, so that windows fill and appends split.
        self.election_timeout_ticks = self.rng.randint(6, 14)
        self.heartbeat_interval_ticks = self.rng.randint(1, 3)
        self.max_inflight_msgs = self.rng.choice([1, 2, 4, 64])
        self.max_append_bytes = self.rng.choice([1, 48, 1024])
        self.membership_changes = self.opt.membership_changes and self.rng.random() < 0.3
        # Quiescence and the failure detector it needs draw from their own generator, so
        # that the seeds without it replay the histories they had before it existed.
        self.detector_rng = random.Random(seed * 7919 + 17)
        self.quiesce = self.opt.quiesce and self.detector_rng.random() < 0.5
        # a detector that misses a down peer at some ticks, and calls a live one down
        self.detector_miss = self.detector_rng.choice([0.0, 0.0, 0.3, 0.8])
        self.detector_false = self.detector_rng.choice([0.0, 0.0, 0.01, 0.05])
        self.nodes = {i: _Node(i, MemLog(), self._tick_length()) for i in self.ids}
        for n in self.nodes.values():
            n.bases[Offset(0)] = Membership(self.ids)
        self.disks = {i: n.disk for i, n in self.nodes.items()}
        for n in self.nodes.values():
            n.disk.on_append = self._append_hook(n.id)
        self.now = 0
        self._seq = 0
        self._queue: list[tuple[int, int, str, Any]] = []
        self._events = 0
        self._proposals = 0
        self._elections = 0
        self._healed_at: int | None = None
        self._live_accepted: list[tuple[Offset, bytes]] = []
        self._live_done = False

    # -- running ----------------------------------------------------------------------------

    def run(self) -> SimResult:
        error: str | None = None
        try:
            self._run()
        except (SafetyViolation, LivenessViolation, AssertionError) as e:
            error = f"{type(e).__name__}: {e}"
            self._trace(f"FAILED {error}")
        return SimResult(
            self.seed,
            self.opt.nodes,
            error is None,
            error,
            self._events,
            self.checker.committed_end,
            self._elections,
        )

    def _run(self) -> None:
        self._trace(
            f"seed={self.seed} nodes={self.opt.nodes} bug={self.opt.bug} faults={self.net.faults}"
            f" pre_vote={self.pre_vote} check_quorum={self.check_quorum}"
            f" election={self.election_timeout_ticks} heartbeat={self.heartbeat_interval_ticks}"
            f" inflight={self.max_inflight_msgs} append_bytes={self.max_append_bytes}"
            f" membership_changes={self.membership_changes} quiesce={self.quiesce}"
            f" detector_miss={self.detector_miss} detector_false={self.detector_false}"
        )
        for node in self.nodes.values():
            self._start(node)
        self._schedule(self.rng.randint(1, 40), "propose", None)
        self._schedule(self.rng.randint(50, 300), "fault", None)
        self._schedule(self.opt.fault_phase_units, "heal", None)
        deadline = self.opt.fault_phase_units + self.opt.liveness_ticks * self.opt.tick_units
        while self._queue and not self._live_done:
            time, _, kind, arg = heapq.heappop(self._queue)
            if time > deadline:
                break
            self.now = time
            self._events += 1
            getattr(self, f"_on_{kind}")(arg)
        if not self._live_done:
            raise LivenessViolation(
                f"no stable leader committing proposals within {self.opt.liveness_ticks} "
                f"ticks after healing (accepted {len(self._live_accepted)})"
            )

    def _schedule(self, delay: int, kind: str, arg: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, kind, arg))

    def _trace(self, line: str) -> None:
        if self.opt.verbose:
            print(f"{self.now:7d} {line}")

    def _tick_length(self) -> int:
        # Clocks run at different rates: up to 20% apart.
        base = self.opt.tick_units
        return self.rng.randint(base - base // 5, base + base // 5)

    # -- node lifecycle -----------------------------------------------------------------------

    def _start(self, node: _Node) -> None:
        config = RaftConfig(
            node_id=node.id,
            group="sim",
            membership=node.bases[node.disk.log_start_offset()],
            election_timeout_ticks=self.election_timeout_ticks,
            heartbeat_interval_ticks=self.heartbeat_interval_ticks,
            max_inflight_msgs=self.max_inflight_msgs,
            max_append_bytes=self.max_append_bytes,
            noop_data=b"noop",
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            quiesce=self.quiesce,
        )
        if self.opt.bug != "skip-fsync":
            # Recovery makes what a crashed process left in the page cache durable before the
            # core sees it: the core takes what the store holds as written, and may
            # acknowledge it without writing it again.
            node.disk.fsync()
        make: Callable[[RaftConfig, MemLog, random.Random], RaftNode] = RaftNode
        if self.opt.bug == "commit-without-majority":
            make = _MajorityOfOneNode
        if self.opt.bug == "vote-for-stale-log":
            make = _StaleVoteNode
        if self.opt.bug == "forget-vote-on-restart" and node.incarnation > 0:
            hs = node.disk.hard_state()
            node.disk.set_hard_state(HardState(hs.term, None))
        self.checker.on_restart(node.id, node.disk.hard_state())
        node.core = make(config, node.disk, random.Random(self.rng.getrandbits(64)))
        node.down = None
        node.busy = False
        node.inbox.clear()
        node.published_commit = node.core.commit_offset
        self._schedule(node.tick_units, "tick", (node.id, node.incarnation))
        self._trace(f"node {node.id} starts term={node.core.term} vote={node.core.vote}")

    def _stop(self, node: _Node, why: str) -> None:
        node.core = None
        node.down = why
        node.busy = False
        node.inbox.clear()
        node.incarnation += 1

    # -- events ------------------------------------------------------------------------------

    def _on_tick(self, arg: tuple[NodeId, int]) -> None:
        node = self.nodes[arg[0]]
        if node.core is None or node.incarnation != arg[1]:
            return
        self._schedule(node.tick_units, "tick", arg)
        if self.quiesce:
            self._detect_failures(node)
        self._input(node, "tick", None)

    def _detect_failures(self, node: _Node) -> None:
        """The driver's failure detector (``raftlog.raft.quiesce``): a peer that is down or
        cannot reach this node is reported, at each tick, unless the detector misses it;
        a live peer is sometimes reported down too."""
        rng = self.detector_rng
        for peer in self.ids:
            if peer == node.id:
                continue
            down = self.nodes[peer].core is None or not self.net.connected(peer, node.id)
            if (down and rng.random() >= self.detector_miss) or (
                not down and rng.random() < self.detector_false
            ):
                self._input(node, "peer_down", peer)

    def _on_deliver(self, msg: Message) -> None:
        if not self.net.connected(msg.src, msg.dst):
            return
        node = self.nodes[msg.dst]
        if node.core is not None:
            self._trace(f"deliver {describe(msg)}")
        self._input(node, "msg", msg)

    def _on_persisted(self, arg: tuple[NodeId, int, Ready]) -> None:
        node = self.nodes[arg[0]]
        if node.core is None or node.incarnation != arg[1]:
            return  # crashed before the fsync completed: nothing after it happened
        self._complete(node, arg[2])
        self._pump(node)

    def _on_propose(self, _: None) -> None:
        if self._healed_at is None:
            self._schedule(self.rng.randint(5, 60), "propose", None)
        node = self.nodes[self.rng.choice(self.ids)]
        self._proposals += 1
        data = f"s{self.seed}-p{self._proposals}".encode()
        self._input(node, "propose", (data, self.rng.randint(1, 3)))

    def _on_fault(self, _: None) -> None:
        if self._healed_at is not None:
            return
        self._schedule(self.rng.randint(*self.opt.fault_interval_units), "fault", None)
        down = [n for n in self.nodes.values() if n.down is not None]
        up = [n for n in self.nodes.values() if n.down is None]
        # Power fails a minority at most, of the smallest voter set the seed can have.
        smallest = len(self.ids) - 1 if self.membership_changes else len(self.ids)
        minority = (smallest - 1) // 2
        kind = self.rng.choices(FAULTS, weights=[*FAULT_WEIGHTS, 40 * self.membership_changes])[0]
        if kind == "network":
            self._trace(f"FAULT network {self.net.random_fault(self.rng)}")
        elif kind == "crash" and len(up) > 1:
            node = self.rng.choice(up)
            self._trace(f"FAULT crash {node.id}")
            self._stop(node, "crash")
        elif kind == "power" and sum(1 for n in down if n.down == "power") < minority and up:
            # Mostly strike a node in the middle of a write: that is where power loss bites.
            busy = [n for n in up if n.busy]
            node = self.rng.choice(busy if busy and self.rng.random() < 0.7 else up)
            self._stop(node, "power")
            what = node.disk.power_loss(self.rng)
            self._trace(f"FAULT power loss {node.id}: {what}")
            self.checker.check_durable(self.disks)
        elif kind == "restart" and down:
            node = self.rng.choice(down)
            self._trace(f"FAULT restart {node.id} (was down: {node.down})")
            self._start(node)
        elif kind == "clock":
            node = self.rng.choice(list(self.nodes.values()))
            node.tick_units = self._tick_length()
            self._trace(f"FAULT clock {node.id} tick={node.tick_units}")
        elif kind == "retention":
            # Mostly on a leader, close to its commit offset: that is what sends lagging
            # followers an InstallLogStart.
            leaders = [n for n in up if n.core and n.core.role is Role.LEADER]
            pick = leaders if leaders and self.rng.random() < 0.7 else list(self.nodes.values())
            self._retention(self.rng.choice(pick))
        elif kind == "bounce" and len(up) > 1:
            # A crash and a quick restart: the node comes back into the same election.
            node = self.rng.choice(up)
            self._trace(f"FAULT bounce {node.id}")
            self._stop(node, "crash")
            self._schedule(self.rng.randint(1, 30), "restart", node.id)
        elif kind == "transfer":
            leaders = [n for n in up if n.core and n.core.role is Role.LEADER and not n.busy]
            if leaders:
                node = leaders[0]
                assert node.core is not None
                voters = [i for i in node.core.membership.voters if i != node.id]
                if voters:
                    to = self.rng.choice(voters)
                    self._trace(f"FAULT transfer leadership {node.id} -> {to}")
                    node.core.transfer_leadership(to)
                    self._pump(node)
        elif kind == "membership":
            leaders = [n for n in up if n.core and n.core.role is Role.LEADER and not n.busy]
            if leaders:
                self._change_membership(leaders[0])

    def _change_membership(self, node: _Node) -> None:
        """One change at a time, as a reassignment would: add a missing node as a learner,
        promote a learner, or remove a voter (possibly the leader itself)."""
        core = node.core
        assert core is not None
        m = core.membership
        missing = [i for i in self.ids if i not in m.members]
        try:
            if missing:
                target, entry = missing[0], core.add_learner(missing[0])
                what = "add learner"
            elif m.learners:
                target, entry = m.learners[0], core.promote(m.learners[0])
                what = "promote"
            elif len(m.voters) >= len(self.ids):
                target = self.rng.choice(m.voters)
                entry, what = core.remove(target), "remove"
            else:
                return
        except (MembershipChangeError, NotLeaderError) as e:
            self._trace(f"FAULT membership refused at {node.id}: {e}")
            return
        self._trace(f"FAULT membership {what} {target} by {node.id} at {entry.offset}")
        self._pump(node)

    def _on_restart(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        if node.down is not None and self._healed_at is None:
            self._trace(f"restart {node.id}")
            self._start(node)

    def _retention(self, node: _Node) -> None:
        disk = node.disk
        if node.core is None or node.busy or node.published_commit <= disk.log_start_offset():
            return
        start, commit = disk.log_start_offset(), node.published_commit
        e = disk.entry_at(Offset(self.rng.randrange((start + commit) // 2, commit)))
        assert e is not None
        if e.offset > disk.log_start_offset():
            node.bases[e.offset] = node.core.membership_at(Offset(e.offset - 1))
            disk.truncate_prefix(e.offset)
            self._trace(f"FAULT retention {node.id} log start -> {e.offset}")

    def _on_heal(self, _: None) -> None:
        self._healed_at = self.now
        self.net.heal()
        self.net.faults = LinkFaults(0.0, 0.0, 1, min(self.net.faults.delay_max_units, 8))
        self._trace("HEAL network, restart every node")
        for node in self.nodes.values():
            if node.down is not None:
                self._start(node)
        self._schedule(self.opt.tick_units, "live", None)

    def _on_live(self, _: None) -> None:
        self._schedule(self.opt.tick_units, "live", None)
        if self._live_accepted:
            if self._live_committed():
                self._trace("LIVE every proposal after healing committed everywhere")
                self._live_done = True
            return
        assert self._healed_at is not None
        # A transfer started before healing may still fire: its TimeoutNow can arrive after
        # the transfer was abandoned and start a legitimate election that drops what the old
        # leader accepted. Wait until every such transfer timed out and its messages landed.
        tick_max = self.opt.tick_units + self.opt.tick_units // 5
        settle = (self.election_timeout_ticks + 1) * tick_max + 2 * self.net.delay_max_seen
        if self.now < self._healed_at + settle:
            return
        leader = self._stable_leader()
        if leader is None or leader.busy or leader.core is None:
            return
        for i in range(self.opt.liveness_proposals):
            entry = leader.core.propose(f"live-{i}".encode(), 1)
            self._live_accepted.append((entry.offset, entry.data))
        self._trace(f"LIVE proposed to stable leader {leader.id}")
        self._pump(leader)

    def _stable_leader(self) -> _Node | None:
        """The leader every member follows in its term, its no-op committed; removed nodes
        (outside the leader's membership) are ignored."""
        leaders = [n for n in self.nodes.values() if n.core and n.core.role is Role.LEADER]
        if not leaders:
            return None
        leader = max(leaders, key=lambda n: n.core.term if n.core else -1)
        core = leader.core
        assert core is not None
        members = [self.nodes[i].core for i in core.membership.members]
        if any(c is None or c.term != core.term or c.leader != core.id for c in members):
            return None
        if core.commit_offset == 0:
            return None
        if core.status.transferee is not None:
            return None
        if core.term_at(Offset(core.commit_offset - 1)) != core.term:
            return None
        return leader

    def _live_committed(self) -> bool:
        for offset, data in self._live_accepted:
            e = self.checker.committed.get(offset)
            if e is None or e.data != data:
                return False
        end = max(offset for offset, _ in self._live_accepted) + 1
        leader = self._stable_leader()
        if leader is None or leader.core is None:
            return False
        members = leader.core.membership.members
        return all(self.nodes[i].published_commit >= end for i in members)

    # -- the driver ---------------------------------------------------------------------------

    def _input(self, node: _Node, kind: str, arg: Any) -> None:
        if node.core is None:
            return
        if node.busy:
            node.inbox.append((kind, arg))
            return
        self._apply(node, kind, arg)
        self._pump(node)

    def _apply(self, node: _Node, kind: str, arg: Any) -> None:
        core = node.core
        assert core is not None
        if kind == "tick":
            core.tick()
        elif kind == "msg":
            core.step(arg)
        elif kind == "peer_down":
            core.peer_down(arg)
        elif kind == "propose":
            try:
                entry = core.propose(arg[0], arg[1])
                self._trace(f"propose at {node.id}: {entry.offset}..{entry.last_offset}")
            except NotLeaderError:
                pass

    def _pump(self, node: _Node) -> None:
        while node.core is not None and not node.busy:
            if node.core.has_ready():
                rd = node.core.ready()
                assert rd is not None
                self._on_ready(node, rd)
            elif node.inbox:
                kind, arg = node.inbox.popleft()
                self._apply(node, kind, arg)
            else:
                return

    def _on_ready(self, node: _Node, rd: Ready) -> None:
        core = node.core
        assert core is not None
        if rd.soft_state is not None:
            s = rd.soft_state
            self._trace(f"node {node.id} is {s.role.value} term={s.term} leader={s.leader}")
            if s.role is Role.LEADER:
                self._elections += 1
                last = self.checker.last_committed
                term_at: dict[Offset, Term | None] = {}
                if last is not None:
                    # None only when retention removed it; missing past the end is NO_TERM.
                    term = core.term_at(last.last_offset)
                    if term is None and last.last_offset >= core.status.log_start_offset:
                        term = NO_TERM
                    term_at[last.last_offset] = term
                self.checker.on_leader(node.id, s.term, term_at)
        for msg in rd.messages:
            self._send(msg)
        if self.opt.bug == "send-before-persist":
            for msg in rd.messages_after_persist:
                self._send(msg)
        if rd.must_persist():
            # The writes reach the page cache now; the fsync completes after a delay, during
            # which a power loss may keep any prefix of them and a crash keeps them all.
            disk = node.disk
            if rd.reset_log_start is not None:
                start = rd.reset_log_start[0]
                node.bases[start] = core.membership_at(Offset(start - 1))
                disk.reset_log_start(*rd.reset_log_start)
            if rd.truncate_from is not None:
                disk.truncate_suffix(rd.truncate_from)
            disk.append(rd.entries)
            if rd.hard_state is not None:
                disk.set_hard_state(rd.hard_state)
            delay = self.rng.randint(0, self.opt.persist_delay_max_units)
            if delay > 0:
                node.busy = True
                self._schedule(delay, "persisted", (node.id, node.incarnation, rd))
                return
        self._complete(node, rd)

    def _complete(self, node: _Node, rd: Ready) -> None:
        """The fsync of ``rd``'s writes is done: finish the Ready."""
        disk, core = node.disk, node.core
        assert core is not None
        if rd.must_persist() and self.opt.bug != "skip-fsync":
            disk.fsync()
        node.busy = False
        if self.opt.bug != "send-before-persist":
            for msg in rd.messages_after_persist:
                self._send(msg)
        if rd.commit_offset is not None:
            self._trace(f"node {node.id} commit {node.published_commit} -> {rd.commit_offset}")
            old, node.published_commit = node.published_commit, rd.commit_offset
            voters: tuple[NodeId, ...] | None = self.ids
            if self.membership_changes:
                # Only the leader knows which voters' majority committed the entries.
                voters = core.membership.voters if core.role is Role.LEADER else None
            self.checker.on_commit(
                node.id, core.term, disk, old, rd.commit_offset, self.disks, voters
            )
        core.advance(rd)

    def _send(self, msg: Message) -> None:
        if isinstance(msg, VoteResponse) and msg.granted:
            self.checker.on_vote(msg.src, msg.term, msg.dst)
        elif isinstance(msg, VoteRequest):
            self.checker.on_vote(msg.src, msg.term, msg.src)
        for delay in self.net.delays(msg.src, msg.dst):
            self._schedule(delay, "deliver", msg)

    def _append_hook(self, node: NodeId) -> Callable[..., None]:
        def hook(entry: Any, prev: Any) -> None:
            self.checker.on_append(node, entry, prev)

        return hook


def run_seed(seed: int, nodes: int = 3, bug: str | None = None, verbose: bool = False) -> SimResult:
    """Run one seed with the default options."""
    return Simulation(seed, SimOptions(nodes=nodes, bug=bug, verbose=verbose)).run()
