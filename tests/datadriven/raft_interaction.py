"""A tiny datadriven runner and the Raft interaction environment the transcripts drive.

A transcript (``testdata/*.txt``) is a list of blocks, in etcd-io/raft's style::

    # a comment
    command arg key=value
    ----
    expected output, one or more lines, no blank line

Blocks are separated by blank lines. ``RAFTLOG_REWRITE=1`` rewrites every file with the
output the code produces now, so a protocol change is reviewed as a diff.

The environment is a driver of its own: after every command it processes the ``Ready`` of
each node the command touched, in the documented order (persist to an in-memory disk and
fsync at once, queue ``messages``, queue ``messages_after_persist``, publish the commit,
advance), and prints what the Ready held. Messages wait in one queue until
``deliver-msgs`` or ``stabilize`` delivers them; ``partition`` and ``crash`` make deliveries
fail, ``drop`` throws queued messages away.

Commands: ``add-nodes N [voters=1,2,3] [learners=4] [pre-vote=bool] [check-quorum=bool]
[election=T] [heartbeat=H] [inflight=N] [append-bytes=N]``, ``campaign ID``,
``propose ID DATA [records=N]``, ``tick ID|all [xN]``, ``deliver-msgs [ID...]``, ``drop
[ID...]`` (messages to those nodes, or all), ``partition 1 | 2 3``, ``cut SRC DST`` (one
way), ``heal``, ``stabilize``, ``crash ID``, ``restart ID``, ``status [ID...]``, ``log ID``,
``transfer-leadership FROM TO``, ``add-learner LEADER ID``, ``promote LEADER ID``,
``remove LEADER ID``, ``truncate-prefix ID OFFSET``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from raftlog.errors import RaftlogError
from raftlog.raft.config import Membership, RaftConfig
from raftlog.raft.messages import Message, describe, describe_entry
from raftlog.raft.node import RaftNode
from raftlog.raft.ready import Ready, Role
from raftlog.testing.mem_log import MemLog
from raftlog.types import NodeId, Offset


@dataclass
class Block:
    command: str
    expected: list[str]
    line: int


def parse(text: str) -> list[tuple[list[str], Block | None]]:
    """The file as (comment or blank lines before, block) pairs; the last block may be None."""
    out: list[tuple[list[str], Block | None]] = []
    lines = text.splitlines()
    i = 0
    before: list[str] = []
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            before.append(line)
            i += 1
            continue
        command, start = line, i + 1
        assert lines[i + 1] == "----", f"line {i + 2}: expected ---- after {command!r}"
        i += 2
        expected = []
        while i < len(lines) and lines[i].strip():
            expected.append(lines[i])
            i += 1
        out.append((before, Block(command, expected, start)))
        before = []
    if before:
        out.append((before, None))
    return out


def render(parsed: list[tuple[list[str], Block | None]], outputs: list[list[str]]) -> str:
    text: list[str] = []
    blocks = iter(outputs)
    for before, block in parsed:
        text.extend(before)
        if block is not None:
            text.extend([block.command, "----", *next(blocks)])
    return "\n".join(text).rstrip("\n") + "\n"


def run_file(path: Path, rewrite: bool) -> None:
    parsed = parse(path.read_text())
    env = Env()
    outputs = []
    for _, block in parsed:
        if block is None:
            continue
        try:
            got = env.run(block.command) or ["ok"]
        except Exception as e:
            raise AssertionError(f"{path.name}:{block.line}: {block.command!r} raised {e!r}") from e
        outputs.append(got)
        if not rewrite and got != block.expected:
            raise AssertionError(
                f"{path.name}:{block.line}: {block.command}\n--- expected\n"
                + "\n".join(block.expected)
                + "\n--- got\n"
                + "\n".join(got)
            )
    if rewrite:
        path.write_text(render(parsed, outputs))


@dataclass
class EnvNode:
    config: RaftConfig
    disk: MemLog
    core: RaftNode | None
    restarts: int = 0


@dataclass
class Env:
    nodes: dict[NodeId, EnvNode] = field(default_factory=dict)
    queue: list[tuple[Message, bool]] = field(default_factory=list)
    blocked: set[tuple[NodeId, NodeId]] = field(default_factory=set)
    out: list[str] = field(default_factory=list)

    def run(self, line: str) -> list[str]:
        self.out = []
        words = line.split()
        name, args = words[0], words[1:]
        kwargs = dict(a.split("=", 1) for a in args if "=" in a)
        pos = [a for a in args if "=" not in a]
        getattr(self, "cmd_" + name.replace("-", "_"))(pos, kwargs)
        return self.out

    # -- plumbing --------------------------------------------------------------------------

    def core(self, node: str | int) -> RaftNode:
        core = self.nodes[NodeId(int(node))].core
        assert core is not None, f"node {node} is down"
        return core

    def ids(self, pos: list[str]) -> list[NodeId]:
        if not pos or pos == ["all"]:
            return sorted(self.nodes)
        return [NodeId(int(x)) for x in pos]

    def process_ready(self, node_id: NodeId) -> None:
        core = self.nodes[node_id].core
        while core is not None and core.has_ready():
            rd = core.ready()
            assert rd is not None
            self.print_ready(node_id, rd)
            self.persist(self.nodes[node_id].disk, rd)
            self.queue.extend((m, False) for m in rd.messages)
            self.queue.extend((m, True) for m in rd.messages_after_persist)
            core.advance(rd)

    @staticmethod
    def persist(disk: MemLog, rd: Ready) -> None:
        if rd.reset_log_start is not None:
            disk.reset_log_start(*rd.reset_log_start)
        if rd.truncate_from is not None:
            disk.truncate_suffix(rd.truncate_from)
        disk.append(rd.entries)
        if rd.hard_state is not None:
            disk.set_hard_state(rd.hard_state)
        disk.fsync()

    def print_ready(self, n: NodeId, rd: Ready) -> None:
        p = self.out.append
        if rd.soft_state is not None:
            s = rd.soft_state
            p(f"{n}: became {s.role.value} term={s.term} leader={s.leader}")
        if rd.reset_log_start is not None:
            start, term = rd.reset_log_start
            p(f"{n}: persist reset log start={start} prev_term={term}")
        if rd.truncate_from is not None:
            p(f"{n}: persist truncate from {rd.truncate_from}")
        for e in rd.entries:
            p(f"{n}: persist append {describe_entry(e)}")
        if rd.hard_state is not None:
            p(f"{n}: persist hard state term={rd.hard_state.term} vote={rd.hard_state.vote}")
        for m in rd.messages:
            p(f"{n}: send {describe(m)}")
        for m in rd.messages_after_persist:
            p(f"{n}: send after persist {describe(m)}")
        if rd.commit_offset is not None:
            p(f"{n}: commit {rd.commit_offset}")

    def process_all(self) -> None:
        for n in sorted(self.nodes):
            self.process_ready(n)

    def deliver(self, to: list[NodeId]) -> int:
        todo = [(m, a) for m, a in self.queue if m.dst in to]
        self.queue = [(m, a) for m, a in self.queue if m.dst not in to]
        for m, _ in todo:
            node = self.nodes.get(m.dst)
            if node is None or node.core is None:
                self.out.append(f"dropped {describe(m)} (node down)")
            elif (m.src, m.dst) in self.blocked:
                self.out.append(f"dropped {describe(m)} (partition)")
            else:
                self.out.append(f"deliver {describe(m)}")
                node.core.step(m)
        self.process_all()
        return len(todo)

    # -- commands ----------------------------------------------------------------------------

    def cmd_add_nodes(self, pos: list[str], kw: dict[str, str]) -> None:
        count = int(pos[0])
        first = max(self.nodes, default=0) + 1
        new = [NodeId(i) for i in range(first, first + count)]

        def id_list(key: str, default: list[NodeId]) -> tuple[NodeId, ...]:
            if key not in kw:
                return tuple(default)
            return tuple(NodeId(int(x)) for x in kw[key].split(",") if x)

        voters = id_list("voters", [*sorted(self.nodes), *new])
        learners = id_list("learners", [])

        def flag(key: str) -> bool:
            return kw.get(key, "true") == "true"

        for i in new:
            config = RaftConfig(
                node_id=i,
                group="t",
                membership=Membership(voters, learners),
                election_timeout_ticks=int(kw.get("election", "10")),
                heartbeat_interval_ticks=int(kw.get("heartbeat", "1")),
                max_inflight_msgs=int(kw.get("inflight", "256")),
                max_append_bytes=int(kw.get("append-bytes", "1048576")),
                pre_vote=flag("pre-vote"),
                check_quorum=flag("check-quorum"),
                noop_data=b"noop",
            )
            disk = MemLog()
            self.nodes[i] = EnvNode(config, disk, RaftNode(config, disk, random.Random(i)))
            self.out.append(f"{i}: added {config.membership.describe()}")

    def cmd_campaign(self, pos: list[str], kw: dict[str, str]) -> None:
        self.core(pos[0]).campaign()
        self.process_all()

    def cmd_propose(self, pos: list[str], kw: dict[str, str]) -> None:
        try:
            e = self.core(pos[0]).propose(pos[1].encode(), int(kw.get("records", "1")))
            self.out.append(f"{pos[0]}: proposed {describe_entry(e)}")
        except RaftlogError as err:
            self.out.append(f"{pos[0]}: refused: {type(err).__name__}: {err} {_hint(err)}")
        self.process_all()

    def cmd_tick(self, pos: list[str], kw: dict[str, str]) -> None:
        times = 1
        if pos and pos[-1].startswith("x"):
            times = int(pos.pop()[1:])
        for _ in range(times):
            for n in self.ids(pos):
                if self.nodes[n].core is not None:
                    self.core(n).tick()
            self.process_all()

    def cmd_deliver_msgs(self, pos: list[str], kw: dict[str, str]) -> None:
        if not self.deliver(self.ids(pos)):
            self.out.append("no messages")

    def cmd_drop(self, pos: list[str], kw: dict[str, str]) -> None:
        to = self.ids(pos)
        for m, _ in self.queue:
            if m.dst in to:
                self.out.append(f"dropped {describe(m)}")
        self.queue = [(m, a) for m, a in self.queue if m.dst not in to]

    def cmd_partition(self, pos: list[str], kw: dict[str, str]) -> None:
        groups: list[list[NodeId]] = [[]]
        for word in pos:
            if word == "|":
                groups.append([])
            else:
                groups[-1].append(NodeId(int(word)))
        where = {n: i for i, g in enumerate(groups) for n in g}
        self.blocked = {
            (a, b)
            for a in self.nodes
            for b in self.nodes
            if a != b and where.get(a, -1) != where.get(b, -1)
        }
        self.out.append("partitioned " + " | ".join(" ".join(map(str, g)) for g in groups))

    def cmd_cut(self, pos: list[str], kw: dict[str, str]) -> None:
        self.blocked.add((NodeId(int(pos[0])), NodeId(int(pos[1]))))

    def cmd_heal(self, pos: list[str], kw: dict[str, str]) -> None:
        self.blocked = set()

    def cmd_stabilize(self, pos: list[str], kw: dict[str, str]) -> None:
        self.process_all()
        for _ in range(1000):
            if not self.queue:
                return
            self.deliver(sorted(self.nodes))
        raise AssertionError("no stable state after 1000 rounds")

    def cmd_crash(self, pos: list[str], kw: dict[str, str]) -> None:
        self.nodes[NodeId(int(pos[0]))].core = None

    def cmd_restart(self, pos: list[str], kw: dict[str, str]) -> None:
        node = self.nodes[NodeId(int(pos[0]))]
        node.restarts += 1
        rng = random.Random(node.config.node_id + 1000 * node.restarts)
        node.core = RaftNode(node.config, node.disk, rng)
        self.cmd_status(pos[:1], {})

    def cmd_status(self, pos: list[str], kw: dict[str, str]) -> None:
        for n in self.ids(pos):
            core = self.nodes[n].core
            if core is None:
                self.out.append(f"{n}: down")
                continue
            s = core.status
            self.out.append(
                f"{n}: {s.role.value} term={s.term} vote={s.vote} leader={s.leader}"
                f" log=[{s.log_start_offset},{s.log_end_offset}) commit={s.commit_offset}"
                f" durable={s.durable_end_offset} {s.membership.describe()}"
                + (f" transferee={s.transferee}" if s.transferee is not None else "")
            )
            if s.role is Role.LEADER:
                for f in s.followers:
                    learner = " learner" if f.is_learner else ""
                    self.out.append(
                        f"   {f.node_id}{learner}: {f.state} match={f.match_offset}"
                        f" next={f.next_offset}"
                    )

    def cmd_log(self, pos: list[str], kw: dict[str, str]) -> None:
        disk = self.nodes[NodeId(int(pos[0]))].disk
        self.out.append(f"log start={disk.log_start_offset()} end={disk.log_end_offset()}")
        for e in disk.entries(disk.log_start_offset(), 1 << 30):
            self.out.append(describe_entry(e))

    def cmd_transfer_leadership(self, pos: list[str], kw: dict[str, str]) -> None:
        try:
            self.core(pos[0]).transfer_leadership(NodeId(int(pos[1])))
        except RaftlogError as err:
            self.out.append(f"{pos[0]}: refused: {type(err).__name__}: {err}")
        self.process_all()

    def _membership(self, pos: list[str], what: str) -> None:
        core = self.core(pos[0])
        try:
            e = getattr(core, what)(NodeId(int(pos[1])))
            self.out.append(f"{pos[0]}: proposed {describe_entry(e, 64)}")
        except RaftlogError as err:
            self.out.append(f"{pos[0]}: refused: {type(err).__name__}: {err}")
        self.process_all()

    def cmd_add_learner(self, pos: list[str], kw: dict[str, str]) -> None:
        self._membership(pos, "add_learner")

    def cmd_promote(self, pos: list[str], kw: dict[str, str]) -> None:
        self._membership(pos, "promote")

    def cmd_remove(self, pos: list[str], kw: dict[str, str]) -> None:
        self._membership(pos, "remove")

    def cmd_truncate_prefix(self, pos: list[str], kw: dict[str, str]) -> None:
        node = self.nodes[NodeId(int(pos[0]))]
        node.disk.truncate_prefix(Offset(int(pos[1])))
        self.out.append(f"{pos[0]}: log start={node.disk.log_start_offset()}")


def _hint(err: RaftlogError) -> str:
    hint = getattr(err, "leader_hint", None)
    return f"(leader hint {hint})"
