"""Quiescence: an idle group stops heartbeating, and its replicas stop counting time.

Why: a broker holds hundreds or thousands of partition replicas, nearly all idle at any
moment. Heartbeats every 200 ms cost every idle group a message, an answer and a wake-up
of two drivers per follower, ten times a second; with 1,000 partitions (RF=3) that was
21-48 % of a core per broker doing nothing. CockroachDB quiesces idle ranges for the same
reason; this follows its design, in the small.

When (``RaftConfig.quiesce``): at a heartbeat tick, a leader of a group without learners
whose whole log is committed
and durable, with no transfer going on, every follower and learner replicating and
matching the whole log, and every voter heard from since the last check-quorum, sends one
last heartbeat with ``quiesce=True`` and stops ticking. A follower that gets that heartbeat
from its leader of the current term, and after it holds the whole log committed (its
commit offset = its log end = the leader's commit offset), stops ticking too. Nothing else
changes: terms, votes, logs and commits are untouched, so safety does not depend on any of
this; only liveness does, and the rules below keep it.

What wakes a quiesced replica (it then counts time again, from zero):

- the driver calling ``propose``, ``transfer_leadership``, ``campaign`` or a membership
  change;
- a leader: any message but a successful append answer of its term (a follower that
  missed the quiescing heartbeat times out and asks for votes: that wakes the leader,
  which heartbeats at its next tick, so the follower learns of it again);
- a follower: an append, log-start install or ``TimeoutNow`` that is not a quiescing
  heartbeat of its leader, and a vote request (or pre-vote) of a higher term. The vote
  request is answered as before (inside the leader lease it is refused), but the clock
  runs again: the lease of a quiet follower is frozen with its clock, and a leader that
  stepped down tells its followers nothing, so without waking they would refuse every
  candidate forever (the simulator found this: seed 51257, 5 nodes). Woken, they grant
  votes once an election timeout passes without a word from a leader, as without
  quiescence; a leader that is alive hears from them, or from the candidate, and wakes;
- any change of term or role;
- ``peer_down(node)``: the driver's failure detector says a broker stopped answering.
  This is what stands in for heartbeats while a group is quiet: a quiesced follower
  whose leader is down wakes with its election clock already at one election timeout
  (the silence it did not count), so it campaigns within another election timeout at
  most, as if it had been counting; a quiesced leader wakes when any voter is down, and
  cannot quiesce again until every voter answers, so check-quorum still deposes a leader
  that lost its majority.

The failure detector is the driver's (``raftlog/runtime``: brokers exchange a small frame
every tick when they have nothing else to say, and a broker silent for an election timeout
is down). A detector that is wrong costs liveness, never safety: a false "down" wakes a
group (it quiesces again at the next heartbeat), a missed one is covered by a restarted
replica's own election clock (it starts awake and asks for votes, which wakes the leader).
"""

from __future__ import annotations

from raftlog.raft.config import RaftConfig
from raftlog.raft.membership import Membership
from raftlog.raft.messages import (
    AppendEntriesRequest,
    AppendEntriesResponse,
    InstallLogStart,
    Message,
    PreVoteRequest,
    TimeoutNow,
    VoteRequest,
)
from raftlog.raft.progress import Progress, ProgressState
from raftlog.raft.raft_log import RaftLog
from raftlog.raft.ready import Role
from raftlog.types import NodeId, Offset, Term


class Quiescence:
    # Provided by RaftNode.
    config: RaftConfig
    id: NodeId
    term: Term
    role: Role
    leader: NodeId | None
    quiesced: bool
    _log: RaftLog
    _commit: Offset
    _durable_end: Offset
    _progress: dict[NodeId, Progress]
    _transferee: NodeId | None
    _election_elapsed: int
    _heartbeat_elapsed: int

    @property
    def membership(self) -> Membership:
        raise NotImplementedError

    def _votes_held(self) -> bool:
        raise NotImplementedError

    def peer_down(self, node: NodeId) -> None:
        """The driver's failure detector says broker ``node`` stopped answering (see the
        module docstring). Changes nothing unless this replica is quiesced."""
        if not self.quiesced:
            return  # a replica counting time finds out by itself
        members = self.membership
        if node not in members.voters and node not in members.learners:
            return
        self._wake_up()
        pr = self._progress.get(node)
        if pr is not None:
            pr.recent_active = False  # no quiescing again until it answers
        if self.role is Role.FOLLOWER and self.leader == node:
            # the silence counted as if this replica had been ticking through it
            self._election_elapsed = self.config.election_timeout_ticks

    def _can_quiesce(self) -> bool:
        if not self.config.quiesce or self.role is not Role.LEADER or self._transferee:
            return False
        if self.membership.learners:
            # a learner that restarts does not campaign, so nothing it does would wake a
            # quiet leader: it would not hear of one until the next proposal (simulator
            # seed 114285: a learner bounced while the group was quiet)
            return False
        end = self._log.log_end_offset()
        if self._commit != end or self._durable_end != end:
            return False
        voters = self.membership.voters
        for node, pr in self._progress.items():
            if pr.state is not ProgressState.REPLICATE or pr.match_offset != end:
                return False
            if node in voters and not pr.recent_active:
                return False
        return True

    def _quiesce_follower(self, msg: AppendEntriesRequest) -> None:
        """After a quiescing heartbeat was applied: stop counting time if this replica
        now holds the leader's whole committed log."""
        end = self._log.log_end_offset()
        if (
            self.role is Role.FOLLOWER
            and self.leader == msg.src
            and msg.term == self.term
            and self._commit == end == msg.commit_offset
            and not self._votes_held()
        ):
            self.quiesced = True

    def _wakes(self, msg: Message) -> bool:
        """Whether ``msg`` wakes this quiesced replica."""
        if self.role is Role.LEADER:
            return not (
                isinstance(msg, AppendEntriesResponse) and msg.term == self.term and msg.success
            )
        if isinstance(msg, AppendEntriesRequest):
            return not (msg.quiesce and msg.term == self.term and msg.src == self.leader)
        if isinstance(msg, PreVoteRequest | VoteRequest):
            return msg.term > self.term
        return isinstance(msg, InstallLogStart | TimeoutNow)

    def _wake_up(self) -> None:
        """If quiesced, count time again, from zero (a leader gets a whole election
        timeout before its next quorum check, and heartbeats at its next tick)."""
        if not self.quiesced:
            return
        self.quiesced = False
        self._election_elapsed = 0
        self._heartbeat_elapsed = self.config.heartbeat_interval_ticks
