"""The partition Raft core: a replica of one partition's log as a pure state machine.

How it works
------------
``RaftNode`` never reads a clock, never does I/O and never draws from global randomness. The
driver (``raftlog/runtime`` in production, ``raftlog/testing`` in the simulator) feeds it
``tick()`` (time), ``step(message)`` (the network) and ``propose(data, record_count)``
(clients), then collects the work those produced with ``ready()``: entries and hard state
to persist, messages to send before or only after persisting, and the new commit offset.
It performs that work in the order ``Ready`` documents and calls ``advance(ready)``. The
core reads its log through the ``LogStore`` protocol and never writes it; pending writes
live in ``RaftLog`` until advanced. Everything is iterated in sorted order and the only
randomness is the ``random.Random`` passed in, so one seed replays one history.

One log (the KRaft model): an entry is one record batch covering ``offset..last_offset``;
log positions are record offsets; the batch's leader epoch is the term. Offsets that end a
range are exclusive, as Kafka's: the commit offset is the high watermark (every offset
below it is committed), a follower's ``match_offset`` is the end of what matches.

Messages (``raftlog.raft.messages``), why each exists, and what they implement
--------------------------------------------------------------------------------
- ``PreVoteRequest`` / ``PreVoteResponse``: before a real election a node asks whether it
  could win, without raising any term, so that a node cut off from the cluster does not
  come back with an inflated term and depose a working leader (thesis 9.6).
- ``VoteRequest`` / ``VoteResponse``: leader election with the up-to-date check on
  (last term, log end offset) (Raft paper 5.2 and 5.4.1). A vote is durable before the
  response leaves (it travels in ``messages_after_persist``), so a restart never votes twice.
- ``AppendEntriesRequest`` / ``AppendEntriesResponse``: log replication with the
  consistency check on (prev offset, prev term) (paper 5.3); without entries it is the
  heartbeat (paper 5.2). Rejections carry the follower's largest term not above the
  leader's prev term and its end offset (Kafka's OffsetsForLeaderEpoch) so the leader
  backs up a term per round trip (paper 5.3, last paragraphs). Appends are pipelined with a
  bounded window per follower (thesis 10.2.1; ``progress.py``). An acknowledgement leaves
  only after the acknowledged entries are durable.
- ``TimeoutNow``: leadership transfer; the leader brings the target up to date, stops
  taking proposals and tells it to campaign at once, skipping pre-vote and the voters'
  leader lease (thesis 3.10). The transfer is abandoned after an election timeout.
- ``InstallLogStart``: the log is its own snapshot. When a follower needs entries below
  the leader's log start offset (retention removed them), it drops its log and restarts it
  empty at the leader's log start (thesis chapter 5, log compaction, in the Kafka way).

Also implemented: randomized election timeouts in [T, 2T) ticks (paper 5.2); check-quorum,
a leader steps down when it has not heard from a majority within an election timeout, and
followers that hear from a leader ignore vote requests for that long (thesis 6.2 and 4.2.3);
a no-op entry (``noop_data``) when a leader starts, so that entries of earlier terms commit
(paper 5.4.2, thesis 6.4); commit only of current-term entries by majority match (paper
5.4.2); membership changes one server at a time, taking effect when appended, with
learners that receive entries without voting until promoted (thesis 4.1, 4.2.1, 4.2.2).

What the driver must do
-----------------------
- Handle one ``Ready`` at a time, in its documented order, and ``advance`` it before the
  next ``step``/``tick``/``propose`` (queue inputs meanwhile).
- Build the core on a store whose content is durable: a process that crashed may leave
  written but unsynced data in the page cache, and the core may acknowledge entries it
  finds in the store without writing them again. Recovery must fsync what it keeps (the
  simulator caught exactly this).
- Give ``config.membership`` as the membership in effect at the log start offset; the core
  replays membership entries from the log start on.

Files: ``node.py`` (roles, elections, the message switch, the follower side, commit),
``replication.py`` (what the leader sends each follower), ``progress.py`` (per-follower
state and flow control), ``raft_log.py`` (the log view with pending writes),
``membership.py``, ``messages.py``, ``ready.py``, ``config.py``, ``errors.py``.

Rules kept (asserted on the write and the read paths)
-----------------------------------------------------
- the commit offset never decreases, never passes the log end, never covers an entry of a
  term the log does not agree on, and nothing below it is ever truncated;
- one vote per term; a leader never sees another leader's append of its own term;
- appended entries are contiguous with non-decreasing terms no larger than the current term;
- the driver must ``advance`` a ``Ready`` before changing the core again, and after it the
  store must hold exactly what the core expects.
"""

from __future__ import annotations

import random

from raftlog.raft.config import RaftConfig
from raftlog.raft.errors import MembershipChangeError, NotLeaderError
from raftlog.raft.log_store import Entry, HardState, LogStore
from raftlog.raft.membership import Membership, MembershipHistory
from raftlog.raft.messages import (
    ZERO_OFFSET,
    AppendEntriesRequest,
    AppendEntriesResponse,
    InstallLogStart,
    Message,
    PreVoteRequest,
    PreVoteResponse,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from raftlog.raft.progress import Inflights, Progress, ProgressState, next_probe_offset
from raftlog.raft.quiesce import Quiescence
from raftlog.raft.raft_log import RaftLog
from raftlog.raft.ready import FollowerStatus, Ready, Role, SoftState, Status
from raftlog.raft.replication import STALLED_HEARTBEATS_MAX, LeaderReplication
from raftlog.types import NodeId, Offset, Term

__all__ = ["STALLED_HEARTBEATS_MAX", "RaftNode"]


class RaftNode(LeaderReplication, Quiescence):
    """One replica of one partition Raft group. See the module docstring."""

    def __init__(self, config: RaftConfig, store: LogStore, rng: random.Random) -> None:
        self.config = config
        self.id = config.node_id
        # The data of the entry a new leader appends; the driver may replace it at any time
        # (for instance with a control batch stamped with the current time).
        self.noop_data = config.noop_data
        self._rng = rng
        self._log = RaftLog(store)
        hard_state = store.hard_state()
        self.term: Term = hard_state.term
        self.vote: NodeId | None = hard_state.vote
        self._persisted_hard_state = hard_state
        if store.last_term() > self.term:
            # Entries of a newer term survived a power loss that took the hard state with
            # it: that term existed, and no vote in it was ever sent (votes leave only after
            # the hard state is durable), so take the term with no vote.
            self.term = store.last_term()
            self.vote = None
        self.role = Role.FOLLOWER
        self.leader: NodeId | None = None
        # Everything below the log start was committed before it could be removed.
        self._commit: Offset = store.log_start_offset()
        self._published_commit: Offset = self._commit
        self._durable_end: Offset = store.log_end_offset()
        self._soft_state = SoftState(self.role, self.leader, self.term)
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_election_timeout = 0
        self._votes: dict[NodeId, bool] = {}
        self._progress: dict[NodeId, Progress] = {}
        self._transferee: NodeId | None = None
        self.quiesced = False
        """Not counting time: an idle group's leader stopped heartbeating (``quiesce.py``)."""
        self.vote_barrier: Offset | None = None
        """While set, this node lost entries it may have acknowledged (its storage cut a
        corrupt suffix): it grants no vote and stands in no election until its log reaches
        this offset again, copied from a leader. See ``hold_votes_until``."""
        self._pending_conf_offset: Offset = Offset(-1)
        self._messages: list[Message] = []
        self._messages_after_persist: list[Message] = []
        self._ready_out: Ready | None = None
        self._memberships = MembershipHistory.replay(
            store, config.membership, config.codec, config.max_append_bytes
        )
        self._reset_timers()

    # -- public API ------------------------------------------------------------------------

    @property
    def membership(self) -> Membership:
        """The membership in effect: the last one appended to the log (thesis 4.1)."""
        return self._memberships.current

    @property
    def commit_offset(self) -> Offset:
        return self._commit

    def tick(self) -> None:
        """One unit of logical time passed (nothing happens while quiesced)."""
        self._assert_not_in_ready()
        if self.quiesced:
            return
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_follower()
        self._assert_invariants()

    def hold_votes_until(self, offset: Offset) -> None:
        """This node's log once reached ``offset`` and lost what follows its current end
        (a corrupt suffix cut at start-up): entries it acknowledged may be gone, so its vote
        could help elect a leader that lacks committed entries, and its own log may lack
        them. Until a leader has brought its log back to ``offset`` it grants no vote (nor
        pre-vote) and does not campaign; it still follows, replicates and counts towards
        commits of what it stores."""
        self._assert_not_in_ready()
        if offset > self._log.log_end_offset():
            self.vote_barrier = Offset(offset)

    def _votes_held(self) -> bool:
        if self.vote_barrier is None:
            return False
        if self._log.log_end_offset() >= self.vote_barrier:
            self.vote_barrier = None
            return False
        return True

    def campaign(self) -> None:
        """Start an election now (with pre-vote if configured), as an election timeout would."""
        self._assert_not_in_ready()
        self._wake_up()
        self._hup(transfer=False)
        self._assert_invariants()

    def step(self, msg: Message) -> None:
        """Take in one message addressed to this node."""
        self._assert_not_in_ready()
        assert msg.dst == self.id and msg.group == self.config.group, msg
        if self.quiesced and self._wakes(msg):
            self._wake_up()
        self._step(msg)
        self._assert_invariants()

    def propose(self, data: bytes, record_count: int) -> Entry:
        """Append a batch of ``record_count`` records at the log end; the returned entry says
        which offsets it got. Raises ``NotLeaderError`` (with the leader hint) unless this
        node leads and is not handing leadership over. The entry is committed once the
        published commit offset passes ``entry.last_offset``; it may still be lost if this
        node stops leading before that."""
        self._assert_not_in_ready()
        self._check_can_propose()
        assert record_count >= 1, record_count
        self._wake_up()
        entry = self._append_new(data, record_count)
        self._broadcast_append()
        self._assert_invariants()
        return entry

    def check_can_propose(self) -> None:
        """Raise ``NotLeaderError`` when ``propose`` would (changes nothing)."""
        self._check_can_propose()

    def pending_entries(self) -> list[Entry] | None:
        """The log's entries that are not durable yet, oldest first: the durable log plus
        these is the log. ``None`` while a truncation or reset of the durable log is
        pending (the durable log is then not a prefix of the log)."""
        if self._log.pending_truncate() is not None or self._log.pending_reset() is not None:
            return None
        return self._log.unstable_entries()

    def transfer_leadership(self, to: NodeId) -> None:
        """Hand leadership to voter ``to`` (thesis 3.10): proposals are refused until it
        takes over or an election timeout passes."""
        self._assert_not_in_ready()
        if self.role is not Role.LEADER:
            raise NotLeaderError("only the leader can transfer leadership", self.leader)
        if to not in self.membership.voters:
            raise MembershipChangeError(f"node {to} is not a voter")
        if to == self.id or to == self._transferee:
            return
        self._wake_up()
        self._transferee = to
        # A full election timeout for the transfer, as etcd-io/raft does.
        self._election_elapsed = 0
        pr = self._progress[to]
        if pr.match_offset == self._log.log_end_offset():
            self._send_timeout_now(to)
        elif pr.state is not ProgressState.LOG_START:
            # Catch the target up now rather than at the next heartbeat: resend from what is
            # known to match (appends in flight may have been lost).
            pr.become_probe()
            self._send_append(to, pr)
        self._assert_invariants()

    def add_learner(self, node: NodeId) -> Entry:
        """Propose adding ``node`` as a learner: it receives entries and does not vote."""
        return self._propose_membership(self._check_membership_change().with_learner(node))

    def promote(self, node: NodeId) -> Entry:
        """Propose making learner ``node`` a voter; refused until it has caught up with the
        commit offset, so that it cannot stall commits (thesis 4.2.1)."""
        new = self._check_membership_change().promoted(node)
        if self._progress[node].match_offset < self._commit:
            raise MembershipChangeError(f"learner {node} has not caught up yet")
        return self._propose_membership(new)

    def remove(self, node: NodeId) -> Entry:
        """Propose removing voter or learner ``node``. A leader removing itself leads until
        the change commits and then steps down (thesis 4.2.2)."""
        return self._propose_membership(self._check_membership_change().without(node))

    def has_ready(self) -> bool:
        """Whether ``ready()`` would return work."""
        return bool(
            self._messages
            or self._messages_after_persist
            or self._log.has_pending_writes()
            or self._hard_state() != self._persisted_hard_state
            or self._commit != self._published_commit
            or self._current_soft_state() != self._soft_state
        )

    def ready(self) -> Ready | None:
        """The work to do now (see ``Ready``), or ``None``. Call ``advance`` after it."""
        self._assert_not_in_ready()
        if not self.has_ready():
            return None
        hard_state = self._hard_state()
        soft_state = self._current_soft_state()
        rd = Ready(
            hard_state=None if hard_state == self._persisted_hard_state else hard_state,
            reset_log_start=self._log.pending_reset(),
            truncate_from=self._log.pending_truncate(),
            entries=tuple(self._log.unstable_entries()),
            messages=tuple(self._messages),
            messages_after_persist=tuple(self._messages_after_persist),
            commit_offset=None if self._commit == self._published_commit else self._commit,
            local_end_offset=self._log.log_end_offset() if self._log.has_pending_writes() else None,
            soft_state=None if soft_state == self._soft_state else soft_state,
        )
        self._messages = []
        self._messages_after_persist = []
        self._ready_out = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver did everything ``rd`` asked, in order."""
        assert rd is self._ready_out, "advance of a Ready that is not the outstanding one"
        self._ready_out = None
        store = self._log.store
        if rd.local_end_offset is not None:
            self._log.persisted()
            assert self._log.log_end_offset() == rd.local_end_offset
            self._durable_end = rd.local_end_offset
        if rd.hard_state is not None:
            assert store.hard_state() == rd.hard_state, (store.hard_state(), rd.hard_state)
            self._persisted_hard_state = rd.hard_state
        if rd.commit_offset is not None:
            assert rd.commit_offset >= self._published_commit
            self._published_commit = rd.commit_offset
        if rd.soft_state is not None:
            self._soft_state = rd.soft_state
        if self.role is Role.LEADER and rd.local_end_offset is not None:
            # The leader's own copy became durable: it counts toward the majority now.
            self._maybe_commit()
        self._assert_invariants()

    @property
    def status(self) -> Status:
        followers = tuple(
            FollowerStatus(
                node_id=node,
                is_learner=node in self.membership.learners,
                state=pr.state.value,
                match_offset=pr.match_offset,
                next_offset=pr.next_offset,
                recent_active=pr.recent_active,
            )
            for node, pr in sorted(self._progress.items())
        )
        return Status(
            node_id=self.id,
            role=self.role,
            term=self.term,
            vote=self.vote,
            leader=self.leader,
            commit_offset=self._commit,
            log_start_offset=self._log.log_start_offset(),
            log_end_offset=self._log.log_end_offset(),
            durable_end_offset=self._durable_end,
            membership=self.membership,
            transferee=self._transferee,
            followers=followers,
        )

    def membership_at(self, offset: Offset) -> Membership:
        """The membership in effect after the entry at ``offset`` (at least the log start
        minus one). A driver keeps the one at its log start, to restart from (see
        ``RaftConfig.membership``), when retention or ``InstallLogStart`` moves that start."""
        return self._memberships.at(offset)

    def last_term(self) -> Term:
        return self._log.last_term()

    def term_at(self, offset: Offset) -> Term | None:
        """The term of the entry holding ``offset`` in this node's log, written or not."""
        return self._log.term_at(offset)

    def log_end_offset(self) -> Offset:
        return self._log.log_end_offset()

    # -- roles -----------------------------------------------------------------------------

    def _become_follower(self, term: Term, leader: NodeId | None) -> None:
        if term != self.term:
            assert term > self.term, (term, self.term)
            self.term = term
            self.vote = None
        self.role = Role.FOLLOWER
        self.leader = leader
        self._reset_role_state()

    def _become_pre_candidate(self) -> None:
        # Neither the term nor the vote change: a pre-vote is only a question.
        self.role = Role.PRE_CANDIDATE
        self.leader = None
        self._reset_role_state()

    def _become_candidate(self) -> None:
        self.term = Term(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self.leader = None
        self._reset_role_state()

    def _become_leader(self) -> None:
        assert self.role is Role.CANDIDATE and self.vote == self.id
        self.role = Role.LEADER
        self.leader = self.id
        self._reset_role_state()
        end = self._log.log_end_offset()
        for node in self.membership.members:
            if node != self.id:
                self._progress[node] = self._new_progress(end)
        # Membership changes wait until this term's first entry commits (thesis 4.1 bug fix).
        self._pending_conf_offset = end
        self._append_new(self.noop_data, 1)
        self._broadcast_append()

    def _reset_role_state(self) -> None:
        self._reset_timers()
        self._votes = {}
        self._progress = {}
        self._transferee = None

    def _reset_timers(self) -> None:
        self.quiesced = False
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        t = self.config.election_timeout_ticks
        self._randomized_election_timeout = t + self._rng.randrange(t)

    def _new_progress(self, next_offset: Offset) -> Progress:
        return Progress(
            match_offset=Offset(0),
            next_offset=next_offset,
            inflights=Inflights(self.config.max_inflight_msgs),
        )

    # -- time ------------------------------------------------------------------------------

    def _tick_follower(self) -> None:
        self._election_elapsed += 1
        if self._promotable() and self._election_elapsed >= self._randomized_election_timeout:
            self._on_election_timeout()

    def _on_election_timeout(self) -> None:
        self._election_elapsed = 0
        self._hup(transfer=False)

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self.config.election_timeout_ticks:
            self._election_elapsed = 0
            if self.config.check_quorum and not self._quorum_active():
                self._become_follower(self.term, None)
                return
            self._transferee = None  # a transfer that took a whole timeout is abandoned
        if self._heartbeat_elapsed >= self.config.heartbeat_interval_ticks:
            self._heartbeat_elapsed = 0
            if self._can_quiesce():
                self._broadcast_heartbeat(quiesce=True)
                self.quiesced = True
            else:
                self._broadcast_heartbeat()

    def _quorum_active(self) -> bool:
        active = 0
        for node in self.membership.voters:
            if node == self.id or self._progress[node].recent_active:
                active += 1
        for _, pr in sorted(self._progress.items()):
            pr.recent_active = False
        return active >= self.membership.quorum()

    # -- elections -------------------------------------------------------------------------

    def _promotable(self) -> bool:
        return self.id in self.membership.voters and not self._votes_held()

    def _hup(self, transfer: bool) -> None:
        if self.role is Role.LEADER or not self._promotable():
            return
        if self.config.pre_vote and not transfer:
            self._campaign(pre_vote=True, transfer=False)
        else:
            self._campaign(pre_vote=False, transfer=transfer)

    def _campaign(self, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self._become_pre_candidate()
            term = Term(self.term + 1)
        else:
            self._become_candidate()
            term = self.term
        self._votes[self.id] = True
        if self._poll() == "won":
            self._on_election_won(pre_vote)
            return
        last_term, end = self._log.last_term(), self._log.log_end_offset()
        for node in self.membership.voters:
            if node == self.id:
                continue
            if pre_vote:
                self._send(PreVoteRequest(self.config.group, self.id, node, term, last_term, end))
            else:
                # After persisting: the vote for itself must be durable first.
                req = VoteRequest(self.config.group, self.id, node, term, last_term, end, transfer)
                self._send(req, after_persist=True)

    def _poll(self) -> str:
        granted = sum(1 for n in self.membership.voters if self._votes.get(n) is True)
        rejected = sum(1 for n in self.membership.voters if self._votes.get(n) is False)
        quorum = self.membership.quorum()
        if granted >= quorum:
            return "won"
        if len(self.membership.voters) - rejected < quorum:
            return "lost"
        return "pending"

    def _on_election_won(self, pre_vote: bool) -> None:
        if pre_vote:
            self._campaign(pre_vote=False, transfer=False)
        else:
            self._become_leader()

    def _on_vote_request(self, msg: PreVoteRequest | VoteRequest) -> None:
        pre_vote = isinstance(msg, PreVoteRequest)
        up_to_date = self._is_up_to_date(msg.last_term, msg.log_end_offset)
        can_vote = (
            self.vote == msg.src
            or (self.vote is None and self.leader is None)
            or (pre_vote and msg.term > self.term)
        ) and not self._votes_held()
        group = self.config.group
        if can_vote and up_to_date:
            if pre_vote:
                self._send(PreVoteResponse(group, self.id, msg.src, msg.term, True))
            else:
                assert self.vote in (None, msg.src), "a second vote in one term"
                self._election_elapsed = 0
                self.vote = msg.src
                self._send(VoteResponse(group, self.id, msg.src, self.term, True), True)
        elif pre_vote:
            self._send(PreVoteResponse(group, self.id, msg.src, self.term, False))
        else:
            if up_to_date and self.leader is None and self.role is not Role.LEADER:
                # refused only because this term's vote is taken (by us, campaigning):
                # give the better candidate the next term (see ``_yield_to_candidate``)
                self._yield_to_candidate()
            self._send(VoteResponse(group, self.id, msg.src, self.term, False), True)

    def _yield_to_candidate(self) -> None:
        """A candidate with a log at least as good as ours was refused: hold our own next
        campaign back a whole timeout more than it waits ([2T, 3T) against [T, 2T)), so
        that it campaigns first, in a term we can still vote in. Restarting our timer alone
        was not enough: both timers restart about together, and a node whose clock ran
        faster (its membership leaving the candidate out, so it could not win) took every
        term first (simulator seed 100090, 3 nodes, no pre-vote)."""
        self._election_elapsed = 0
        t = self.config.election_timeout_ticks
        self._randomized_election_timeout = 2 * t + self._rng.randrange(t)

    def _is_up_to_date(self, last_term: Term, log_end_offset: Offset) -> bool:
        """Whether a candidate's log is at least as up to date as ours (paper 5.4.1); the
        simulator overrides this to prove it catches a vote for a stale log."""
        return (last_term, log_end_offset) >= (self._log.last_term(), self._log.log_end_offset())

    def _on_vote_response(self, msg: PreVoteResponse | VoteResponse) -> None:
        self._votes[msg.src] = msg.granted
        result = self._poll()
        if result == "won":
            self._on_election_won(isinstance(msg, PreVoteResponse))
        elif result == "lost":
            self._become_follower(self.term, None)

    # -- the message switch ----------------------------------------------------------------

    def _step(self, msg: Message) -> None:
        if msg.term > self.term:
            if isinstance(msg, PreVoteRequest | VoteRequest):
                forced = isinstance(msg, VoteRequest) and msg.transfer
                in_lease = (
                    self.config.check_quorum
                    and self.leader is not None
                    and self._election_elapsed < self.config.election_timeout_ticks
                )
                if in_lease and not forced:
                    return  # a leader is alive: a disruptive candidate is ignored (thesis 4.2.3)
            if isinstance(msg, PreVoteRequest):
                pass  # a pre-vote raises no term
            elif isinstance(msg, PreVoteResponse) and msg.granted:
                pass  # granted for the term we would campaign in
            else:
                leader_msg = isinstance(msg, AppendEntriesRequest | InstallLogStart | TimeoutNow)
                elapsed = self._election_elapsed
                self._become_follower(msg.term, msg.src if leader_msg else None)
                if isinstance(msg, VoteRequest):
                    # Only a granted vote restarts the election timer (paper figure 2): else
                    # a node with a stale log, campaigning again and again, would keep the
                    # nodes that could win from ever timing out.
                    self._election_elapsed = elapsed
        elif msg.term < self.term:
            if isinstance(msg, AppendEntriesRequest | InstallLogStart):
                # Tell a stale leader about the newer term so it steps down; without this a
                # leader cut off by check-quorum or pre-vote would never learn it.
                self._send(self._append_response(msg.src, success=False), True)
            elif isinstance(msg, PreVoteRequest):
                self._send(PreVoteResponse(self.config.group, self.id, msg.src, self.term, False))
            elif isinstance(msg, VoteRequest):
                # Refuse with our term (paper figure 2) so that the candidate catches up; and
                # if its log is better than ours, hold our own next campaign back to give it
                # a chance. Without both, a node whose stale membership leaves that
                # candidate out keeps raising its term, and the candidate trails it forever
                # (the simulator found this, without pre-vote).
                if self.role is not Role.LEADER and self._is_up_to_date(
                    msg.last_term, msg.log_end_offset
                ):
                    self._yield_to_candidate()
                resp = VoteResponse(self.config.group, self.id, msg.src, self.term, False)
                self._send(resp, after_persist=True)
            return
        if isinstance(msg, PreVoteRequest | VoteRequest):
            self._on_vote_request(msg)
        elif self.role is Role.LEADER:
            self._step_leader(msg)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(msg)
        else:
            self._step_follower(msg)

    def _step_leader(self, msg: Message) -> None:
        assert not isinstance(msg, AppendEntriesRequest | InstallLogStart), (
            "two leaders in one term",
            msg,
        )
        if isinstance(msg, AppendEntriesResponse):
            self._on_append_response(msg)

    def _step_candidate(self, msg: Message) -> None:
        if isinstance(msg, AppendEntriesRequest | InstallLogStart):
            # A leader of this term exists (paper 5.2): follow it.
            self._become_follower(self.term, msg.src)
            self._step_follower(msg)
        elif isinstance(msg, PreVoteResponse) and self.role is Role.PRE_CANDIDATE:
            if msg.granted and msg.term != self.term + 1:
                return
            self._on_vote_response(msg)
        elif isinstance(msg, VoteResponse) and self.role is Role.CANDIDATE:
            self._on_vote_response(msg)

    def _step_follower(self, msg: Message) -> None:
        if isinstance(msg, AppendEntriesRequest):
            self._election_elapsed = 0
            self.leader = msg.src
            self._on_append_entries(msg)
            if msg.quiesce:
                self._quiesce_follower(msg)
        elif isinstance(msg, InstallLogStart):
            self._election_elapsed = 0
            self.leader = msg.src
            self._on_install_log_start(msg)
        elif isinstance(msg, TimeoutNow):
            self._hup(transfer=True)

    # -- replication: follower side ---------------------------------------------------------

    def _on_append_entries(self, msg: AppendEntriesRequest) -> None:
        if msg.prev_offset + 1 < self._commit:
            # Everything below our commit offset matches any leader's log (paper 5.4): answer
            # with it, the leader continues from there.
            self._send(self._append_response(msg.src, True, self._commit), True)
            return
        if not self._log.matches(msg.prev_offset, msg.prev_term):
            hint_term, hint_end = self._log.end_offset_for_term(msg.prev_term)
            resp = AppendEntriesResponse(
                self.config.group,
                self.id,
                msg.src,
                self.term,
                success=False,
                reject_offset=msg.prev_offset,
                hint_term=hint_term,
                hint_end_offset=hint_end,
            )
            self._send(resp, True)
            return
        last_new = Offset(msg.prev_offset + 1)
        for i, e in enumerate(msg.entries):
            assert e.offset == last_new and e.term <= msg.term, (e, last_new, msg.term)
            held = self._log.term_at(e.offset)
            if held == e.term:
                # The same (offset, term) is the same entry (log matching, paper 5.3).
                assert self._log.term_at(e.last_offset) == e.term, e
                last_new = Offset(e.last_offset + 1)
                continue
            if held is not None:
                assert e.offset >= self._commit, ("truncating a committed entry", e, self._commit)
                self._log.truncate_from(e.offset)
                self._memberships.truncated(e.offset)
            for new in msg.entries[i:]:
                self._log.append([new])
                self._note_membership(new)
            last_new = Offset(msg.entries[-1].last_offset + 1)
            break
        self._raise_commit(Offset(min(msg.commit_offset, last_new)))
        self._send(self._append_response(msg.src, True, last_new), True)

    def _on_install_log_start(self, msg: InstallLogStart) -> None:
        start = msg.log_start_offset
        assert start <= msg.commit_offset, ("leader removed uncommitted entries", msg)
        if start <= self._commit:
            self._send(self._append_response(msg.src, True, self._commit), True)
            return
        if not self._log.matches(Offset(start - 1), msg.prev_term):
            self._log.reset(start, msg.prev_term)
            self._memberships.reset(Offset(start - 1), msg.membership)
        self._raise_commit(start)
        self._send(self._append_response(msg.src, True, start), True)

    def _raise_commit(self, offset: Offset) -> None:
        if offset <= self._commit:
            return
        assert offset <= self._log.log_end_offset(), (offset, self._log.log_end_offset())
        self._commit = offset

    def _append_response(
        self, to: NodeId, success: bool, match_offset: Offset = ZERO_OFFSET
    ) -> AppendEntriesResponse:
        return AppendEntriesResponse(
            self.config.group, self.id, to, self.term, success, match_offset=match_offset
        )

    # -- replication: leader side ------------------------------------------------------------

    def _check_can_propose(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeaderError(f"node {self.id} is not the leader", self.leader)
        if self._transferee is not None:
            raise NotLeaderError(
                f"node {self.id} is handing leadership to {self._transferee}", self._transferee
            )

    def _append_new(self, data: bytes, record_count: int) -> Entry:
        offset = self._log.log_end_offset()
        entry = Entry(offset, Offset(offset + record_count - 1), self.term, data)
        self._log.append([entry])
        self._note_membership(entry)
        return entry

    def _on_append_response(self, msg: AppendEntriesResponse) -> None:
        pr = self._progress.get(msg.src)
        if pr is None:
            return
        pr.recent_active = True
        if msg.success:
            assert msg.match_offset <= self._log.log_end_offset(), (msg, self._log.log_end_offset())
            moved = pr.on_match(msg.match_offset)
            if pr.state is not ProgressState.REPLICATE:
                pr.become_replicate()
            if moved:
                self._maybe_commit()
                if self.role is not Role.LEADER:
                    return
            if msg.src == self._transferee and pr.match_offset == self._log.log_end_offset():
                self._send_timeout_now(msg.src)
            self._send_appends_to(msg.src)
            return
        if pr.state is ProgressState.LOG_START:
            return
        if msg.hint_end_offset < pr.match_offset and msg.reject_offset >= pr.match_offset - 1:
            # The follower's log ends below what it acknowledged: it may have lost entries
            # (it cut a corrupt suffix at start-up), or this is an old refusal, delayed or
            # duplicated past later successes. Either way forget the match (a commit
            # already made stays: the commit offset never goes back; later commits count
            # what it holds now) and probe from its hint, or a follower that lost entries
            # would stay behind as long as we lead. Forgotten to 0, not to the hint: the
            # hint is an offset of the follower's log, maybe inside one of our entries,
            # and the match is where probes start (simulator seed 106248: a delayed
            # refusal made the leader probe in the middle of an entry). An old refusal
            # costs one probe; the next success brings the match back.
            pr.forget_match(Offset(0))
            pr.next_offset = next_probe_offset(self._log, msg, pr.match_offset)
            self._send_append(msg.src, pr)
            return
        if pr.state is ProgressState.REPLICATE and msg.reject_offset < pr.match_offset:
            return  # stale: we know it matches further than that
        if pr.state is ProgressState.PROBE and msg.reject_offset != pr.next_offset - 1:
            return  # stale: not the probe we are waiting for
        next_offset = next_probe_offset(self._log, msg, pr.match_offset)
        pr.become_probe()
        pr.next_offset = next_offset
        self._send_append(msg.src, pr)

    def _commit_quorum(self) -> int:
        """How many voters must hold an entry for it to commit (the simulator overrides this
        to prove it catches a wrong quorum)."""
        return self.membership.quorum()

    def _maybe_commit(self) -> None:
        """Commit the largest end offset a majority of voters hold durably, if it is in the
        current term (paper 5.4.2)."""
        matches = sorted(
            (
                self._durable_end if node == self.id else self._progress[node].match_offset
                for node in self.membership.voters
            ),
            reverse=True,
        )
        candidate = matches[self._commit_quorum() - 1]
        if candidate <= self._commit:
            return
        if self._log.term_at(Offset(candidate - 1)) != self.term:
            return
        self._raise_commit(candidate)
        if self.id not in self.membership.voters and (
            self._memberships.last_change_offset < self._commit
        ):
            # Our own removal committed: stop leading (thesis 4.2.2).
            self._become_follower(self.term, None)

    def _send_timeout_now(self, node: NodeId) -> None:
        self._send(TimeoutNow(self.config.group, self.id, node, self.term))

    # -- membership ---------------------------------------------------------------------------

    def _check_membership_change(self) -> Membership:
        self._assert_not_in_ready()
        self._check_can_propose()
        pending = max(self._memberships.last_change_offset, self._pending_conf_offset)
        if pending >= self._commit:
            raise MembershipChangeError("a membership change is still uncommitted")
        return self.membership

    def _propose_membership(self, membership: Membership) -> Entry:
        self._wake_up()
        entry = self._append_new(self.config.codec.encode(membership), 1)
        self._broadcast_append()
        self._assert_invariants()
        return entry

    def _note_membership(self, entry: Entry) -> None:
        """A membership entry takes effect as soon as it is in the log (thesis 4.1)."""
        membership = self.config.codec.decode(entry.data)
        if membership is None:
            return
        self._memberships.appended(entry.offset, membership)
        if self.role is not Role.LEADER:
            return
        for node in membership.members:
            if node != self.id and node not in self._progress:
                self._progress[node] = self._new_progress(entry.offset)
        for node in sorted(self._progress):
            if node not in membership.members:
                del self._progress[node]

    # -- plumbing ----------------------------------------------------------------------------

    def _send(self, msg: Message, after_persist: bool = False) -> None:
        if after_persist:
            self._messages_after_persist.append(msg)
        else:
            self._messages.append(msg)

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote)

    def _current_soft_state(self) -> SoftState:
        return SoftState(self.role, self.leader, self.term)

    def _assert_not_in_ready(self) -> None:
        assert self._ready_out is None, "the driver must advance the outstanding Ready first"

    def _assert_invariants(self) -> None:
        log = self._log
        assert self._published_commit <= self._commit <= log.log_end_offset(), (
            self._published_commit,
            self._commit,
            log.log_end_offset(),
        )
        assert log.log_start_offset() <= self._commit, (log.log_start_offset(), self._commit)
        assert log.last_term() <= self.term, (log.last_term(), self.term)
        if self.role in (Role.LEADER, Role.CANDIDATE):
            assert self.vote == self.id, (self.role, self.vote)
        if self.role is Role.LEADER:
            assert self.leader == self.id
            assert self._durable_end <= log.log_end_offset()
            for node, pr in sorted(self._progress.items()):
                assert pr.match_offset <= pr.next_offset <= log.log_end_offset(), (node, pr)
