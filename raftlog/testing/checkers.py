"""Safety properties the simulator checks as the history unfolds.

Each check runs at the moment the state it is about changes (a leader appears, a commit
offset is published, an entry is appended, a vote is sent, a disk loses power), which is
after every event that could break it:

- **election safety**: at most one leader per term (Raft paper figure 3);
- **log matching**: two entries with the same (offset, term) anywhere, at any time, hold
  the same data, range and predecessor, so the logs up to them are equal; checked on
  every append to any disk with a map from (offset, term) to what it was first seen as;
- **leader completeness**: a new leader holds the last committed entry;
- **committed entries are permanent**: a node publishing a commit offset holds exactly the
  entries committed before at those offsets; and every committed entry is on the durable
  disk of a majority (or below its log start), at commit and after every power loss;
- **commit offsets never go backwards** on a running node;
- **one vote per term**, across restarts: two granted votes from one node in one term
  for different candidates is a double vote; and a node restarting must find in its hard
  state every vote it sent (the term not older, the vote in that term the same).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raftlog.raft.log_store import Entry, HardState
from raftlog.raft.messages import ZERO_OFFSET
from raftlog.testing.mem_log import MemLog
from raftlog.types import NO_TERM, NodeId, Offset, Term


class SafetyViolation(AssertionError):
    """A Raft safety property failed: the message says which and where."""


@dataclass(slots=True)
class Checker:
    voters: tuple[NodeId, ...]
    commit_voters: dict[Offset, tuple[NodeId, ...]] = field(default_factory=dict)
    leaders: dict[Term, NodeId] = field(default_factory=dict)
    votes: dict[tuple[NodeId, Term], NodeId] = field(default_factory=dict)
    seen: dict[tuple[Offset, Term], tuple[Offset, bytes, tuple[Offset, Term]]] = field(
        default_factory=dict
    )
    # The committed log as far as anyone published it: offset -> entry, and its end.
    committed: dict[Offset, Entry] = field(default_factory=dict)
    committed_end: Offset = ZERO_OFFSET
    last_committed: Entry | None = None
    # A term no smaller than the one in which last_committed was committed.
    last_commit_term: Term = NO_TERM

    def fail(self, what: str) -> None:
        raise SafetyViolation(what)

    def on_leader(
        self, node: NodeId, term: Term, leader_term_at: dict[Offset, Term | None]
    ) -> None:
        """``leader_term_at`` maps the last committed entry's last offset to the new
        leader's term there (leader completeness): ``None`` if retention removed it from
        the leader's log, ``NO_TERM`` if the leader's log does not reach it."""
        other = self.leaders.setdefault(term, node)
        if other != node:
            self.fail(f"election safety: nodes {other} and {node} both lead term {term}")
        e = self.last_committed
        if e is None or term <= self.last_commit_term:
            return  # the property is about leaders of later terms than the commit (paper 5.4)
        if leader_term_at.get(e.last_offset) not in (e.term, None):
            self.fail(
                f"leader completeness: leader {node} of term {term} lacks committed entry "
                f"{e.offset}..{e.last_offset}@{e.term}"
            )

    def on_vote(self, node: NodeId, term: Term, candidate: NodeId) -> None:
        other = self.votes.setdefault((node, term), candidate)
        if other != candidate:
            self.fail(f"double vote: node {node} voted for {other} and {candidate} in term {term}")

    def on_restart(self, node: NodeId, hard_state: HardState) -> None:
        """A node restarts from ``hard_state``: it must remember every vote it sent."""
        voted = [term for (n, term) in self.votes if n == node]
        if voted and hard_state.term < max(voted):
            self.fail(f"node {node} restarts in term {hard_state.term}, voted in {max(voted)}")
        sent = self.votes.get((node, hard_state.term))
        if sent is not None and hard_state.vote != sent:
            self.fail(
                f"node {node} forgot its vote: restarts in term {hard_state.term} with vote "
                f"{hard_state.vote}, voted for {sent}"
            )

    def on_append(self, node: NodeId, entry: Entry, prev: tuple[Offset, Term]) -> None:
        key = (entry.offset, entry.term)
        value = (entry.last_offset, entry.data, prev)
        first = self.seen.setdefault(key, value)
        if first != value:
            self.fail(
                f"log matching: node {node} holds {entry.offset}@{entry.term} as {value!r}, "
                f"seen before as {first!r}"
            )

    def on_commit(
        self,
        node: NodeId,
        term: Term,
        store: MemLog,
        old: Offset,
        new: Offset,
        disks: dict[NodeId, MemLog],
        voters: tuple[NodeId, ...] | None,
    ) -> None:
        """Node ``node``, in ``term``, published commit offset ``new`` (was ``old``).

        ``voters`` are those whose majority made the new entries committed, when the
        publisher knows (the leader that counted them); ``None`` from a follower.
        """
        if new < old:
            self.fail(f"commit went backwards on node {node}: {old} -> {new}")
        offset = max(old, store.log_start_offset())
        while offset < new:
            e = store.entry_at(offset)
            if e is None:
                self.fail(f"node {node} published commit {new} without holding offset {offset}")
                return
            known = self.committed.get(e.offset)
            if known is None and e.offset < self.committed_end:
                self.fail(f"node {node} commits {e}, which straddles committed entries")
            elif known is not None and known != e:
                self.fail(f"committed entry changed on node {node}: was {known}, now {e}")
            elif known is None:
                assert e.offset == self.committed_end, (e, self.committed_end)
                self.committed[e.offset] = e
                self.committed_end = Offset(e.last_offset + 1)
                self.last_committed = e
                self.last_commit_term = term
            if voters is not None and e.offset not in self.commit_voters:
                self.commit_voters[e.offset] = voters
                self.check_durable(disks, [e])
            offset = Offset(e.last_offset + 1)

    def check_durable(
        self, disks: dict[NodeId, MemLog], entries: list[Entry] | None = None
    ) -> None:
        """Every committed entry (or the given ones) is durable on a majority of the voters
        that committed it. Durable committed entries never leave a disk (only a log start
        moving past them, which counts as holding), so this holds forever after."""
        todo = entries if entries is not None else list(self.committed.values())
        for e in todo:
            voters = self.commit_voters.get(e.offset)
            if voters is None:
                continue
            holders = 0
            for node in voters:
                disk = disks[node]
                if (
                    disk.durable_log_start_offset() > e.last_offset
                    or disk.durable_term_at(e.last_offset) == e.term
                ):
                    holders += 1
            if holders < len(voters) // 2 + 1:
                self.fail(
                    f"committed entry {e.offset}..{e.last_offset}@{e.term} is durable on only "
                    f"{holders} of {len(voters)} nodes"
                )
