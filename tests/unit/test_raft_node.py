"""Unit tests of the Raft core (``raftlog.raft.node``) through its public API."""

from __future__ import annotations

import dataclasses
import random

import pytest

from raftlog.raft.config import Membership, RaftConfig, TextMembershipCodec
from raftlog.raft.errors import MembershipChangeError, NotLeaderError
from raftlog.raft.log_store import Entry, HardState
from raftlog.raft.messages import (
    AppendEntriesRequest,
    AppendEntriesResponse,
    Message,
    PreVoteRequest,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from raftlog.raft.node import STALLED_HEARTBEATS_MAX, RaftNode
from raftlog.raft.ready import Ready, Role
from raftlog.testing.mem_log import MemLog
from raftlog.types import NO_TERM, NodeId, Offset, Term

N1, N2, N3, N4 = NodeId(1), NodeId(2), NodeId(3), NodeId(4)


def config(node: NodeId, voters: tuple[NodeId, ...] = (N1, N2, N3), **kw: object) -> RaftConfig:
    base = RaftConfig(node_id=node, group="g", membership=Membership(voters), noop_data=b"noop")
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


class Cluster:
    """Nodes on disks that persist at once; messages wait in a list until delivered."""

    def __init__(self, n: int = 3, **kw: object) -> None:
        ids = tuple(NodeId(i) for i in range(1, n + 1))
        self.disks = {i: MemLog() for i in ids}
        self.configs = {i: config(i, ids, **kw) for i in ids}
        self.nodes = {i: RaftNode(self.configs[i], self.disks[i], random.Random(i)) for i in ids}
        self.inflight: list[Message] = []
        self.readies: dict[NodeId, list[Ready]] = {i: [] for i in ids}

    def process(self) -> None:
        for i, node in sorted(self.nodes.items()):
            while (rd := node.ready()) is not None:
                self.readies[i].append(rd)
                persist(self.disks[i], rd)
                self.inflight.extend(rd.messages)
                self.inflight.extend(rd.messages_after_persist)
                node.advance(rd)

    def stabilize(self, drop_to: tuple[NodeId, ...] = ()) -> None:
        self.process()
        while self.inflight:
            msgs, self.inflight = self.inflight, []
            for m in msgs:
                if m.dst not in drop_to and m.src not in drop_to:
                    self.nodes[m.dst].step(m)
            self.process()

    def elect(self, node: NodeId) -> RaftNode:
        self.nodes[node].campaign()
        self.stabilize()
        assert self.nodes[node].role is Role.LEADER
        return self.nodes[node]


def persist(disk: MemLog, rd: Ready) -> None:
    if rd.reset_log_start is not None:
        disk.reset_log_start(*rd.reset_log_start)
    if rd.truncate_from is not None:
        disk.truncate_suffix(rd.truncate_from)
    disk.append(rd.entries)
    if rd.hard_state is not None:
        disk.set_hard_state(rd.hard_state)
    disk.fsync()


def test_election_timeout_is_random_within_t_and_2t_and_replays_by_seed() -> None:
    def ticks_to_campaign(seed: int) -> int:
        node = RaftNode(config(N1, election_timeout_ticks=10), MemLog(), random.Random(seed))
        for t in range(1, 100):
            node.tick()
            if node.role is not Role.FOLLOWER:
                return t
        raise AssertionError("never campaigned")

    seen = [ticks_to_campaign(seed) for seed in range(40)]
    assert all(10 <= t < 20 for t in seen)
    assert len(set(seen)) > 3
    assert seen == [ticks_to_campaign(seed) for seed in range(40)]


def test_pre_vote_does_not_raise_the_term() -> None:
    node = RaftNode(config(N1), MemLog(), random.Random(1))
    node.campaign()
    assert node.role is Role.PRE_CANDIDATE and node.term == 0
    rd = node.ready()
    assert rd is not None and rd.hard_state is None
    assert [type(m) for m in rd.messages] == [PreVoteRequest, PreVoteRequest]
    assert all(m.term == 1 for m in rd.messages)


def test_vote_requests_and_votes_leave_only_after_persisting() -> None:
    c = Cluster(pre_vote=False)
    c.nodes[N1].campaign()
    rd = c.nodes[N1].ready()
    assert rd is not None
    assert rd.hard_state == HardState(Term(1), N1)
    assert rd.messages == ()
    assert [type(m) for m in rd.messages_after_persist] == [VoteRequest, VoteRequest]
    persist(c.disks[N1], rd)
    c.nodes[N1].advance(rd)
    c.nodes[N2].step(rd.messages_after_persist[0])
    rd2 = c.nodes[N2].ready()
    assert rd2 is not None and rd2.hard_state == HardState(Term(1), N1)
    assert rd2.messages == ()
    (vote,) = rd2.messages_after_persist
    assert isinstance(vote, VoteResponse) and vote.granted


def test_the_driver_must_advance_before_stepping_again() -> None:
    node = RaftNode(config(N1), MemLog(), random.Random(1))
    node.campaign()
    assert node.ready() is not None
    with pytest.raises(AssertionError, match="advance"):
        node.tick()


def test_leader_appends_noop_and_commits_it_with_a_majority() -> None:
    c = Cluster()
    leader = c.elect(N1)
    assert c.disks[N1].entry_at(Offset(0)) == Entry(Offset(0), Offset(0), Term(1), b"noop")
    assert leader.commit_offset == 1
    # Followers learn the commit offset from the next append or heartbeat.
    c.nodes[N1].tick()
    c.stabilize()
    assert c.nodes[N2].commit_offset == 1 and c.nodes[N3].commit_offset == 1


def test_noop_data_can_be_changed_by_the_driver() -> None:
    c = Cluster()
    c.nodes[N2].noop_data = b"control-batch"
    c.elect(N2)
    entry = c.disks[N2].entry_at(Offset(0))
    assert entry is not None and entry.data == b"control-batch"


def test_propose_assigns_offsets_from_the_log_end() -> None:
    c = Cluster()
    leader = c.elect(N1)
    a = leader.propose(b"a", 3)
    b = leader.propose(b"b", 2)
    assert (a.offset, a.last_offset, b.offset, b.last_offset) == (1, 3, 4, 5)
    assert a.term == b.term == 1
    c.stabilize()
    assert leader.commit_offset == 6


def test_propose_on_a_follower_raises_not_leader_with_hint() -> None:
    c = Cluster()
    c.elect(N1)
    with pytest.raises(NotLeaderError) as err:
        c.nodes[N2].propose(b"x", 1)
    assert err.value.leader_hint == N1
    assert err.value.retriable


def test_commit_needs_a_majority_and_a_learner_does_not_count() -> None:
    ids = (N1, N2, N3)
    disks = {i: MemLog() for i in (*ids, N4)}
    membership = Membership(ids, (N4,))
    nodes = {
        i: RaftNode(
            dataclasses.replace(config(i), membership=membership), disks[i], random.Random(i)
        )
        for i in (*ids, N4)
    }
    c = Cluster()
    c.disks, c.nodes = disks, nodes
    c.readies = {i: [] for i in disks}
    c.elect(N1)
    leader = nodes[N1]
    before = leader.commit_offset
    leader.propose(b"x", 1)
    # Only the learner and the leader get it: not a majority of voters.
    c.stabilize(drop_to=(N2, N3))
    assert nodes[N4].log_end_offset() == leader.log_end_offset()
    assert leader.commit_offset == before
    # Heartbeats find the lost appends (no progress for STALLED_HEARTBEATS_MAX) and resend.
    for _ in range(STALLED_HEARTBEATS_MAX + 1):
        leader.tick()
        c.stabilize()
    assert leader.commit_offset == leader.log_end_offset()


def test_acks_1_reports_the_local_durable_offset_apart_from_commit() -> None:
    c = Cluster()
    leader = c.elect(N1)
    entry = leader.propose(b"x", 2)
    rd = leader.ready()
    assert rd is not None
    assert rd.local_end_offset == entry.last_offset + 1
    assert rd.commit_offset is None
    assert leader.status.durable_end_offset == entry.offset  # not yet persisted
    persist(c.disks[N1], rd)
    leader.advance(rd)
    assert leader.status.durable_end_offset == entry.last_offset + 1
    assert leader.status.commit_offset == entry.offset


def test_only_current_term_entries_commit_by_counting() -> None:
    """Paper figure 8: an old-term entry on a majority is not committed by counting."""
    c = Cluster(pre_vote=False, check_quorum=False)
    leader = c.elect(N1)
    leader.propose(b"old", 1)
    c.process()
    c.inflight = []  # nobody receives it
    # Node 1 is re-elected in term 2 by node 2 alone... but first node 2 gets the entry.
    old = c.disks[N1].entry_at(Offset(1))
    assert old is not None and old.term == 1
    c.nodes[N1] = RaftNode(c.configs[N1], c.disks[N1], random.Random(5))  # restart
    c.nodes[N1].campaign()
    c.process()
    vote_reqs = [m for m in c.inflight if m.dst == N2]
    c.inflight = []
    for m in vote_reqs:
        c.nodes[N2].step(m)
    c.process()
    for m in [m for m in c.inflight if m.dst == N1]:
        c.nodes[N1].step(m)
    c.inflight = []
    new_leader = c.nodes[N1]
    assert new_leader.role is Role.LEADER and new_leader.term == 2
    c.process()
    appends = [m for m in c.inflight if isinstance(m, AppendEntriesRequest) and m.dst == N2]
    c.inflight = []
    # Node 2 acknowledges only the old-term entry (as if the no-op were still in flight).
    resp = AppendEntriesResponse("g", N2, N1, Term(2), True, match_offset=Offset(2))
    assert appends
    new_leader.step(resp)
    c.process()
    assert new_leader.commit_offset == 0, "an entry of term 1 must not commit by counting"
    resp = AppendEntriesResponse("g", N2, N1, Term(2), True, match_offset=Offset(3))
    new_leader.step(resp)
    assert new_leader.commit_offset == 3


def test_check_quorum_leader_steps_down_without_a_majority() -> None:
    c = Cluster()
    leader = c.elect(N1)
    for _ in range(leader.config.election_timeout_ticks * 2):
        leader.tick()
        c.process()
        c.inflight = []
    assert leader.role is Role.FOLLOWER and leader.leader is None
    with pytest.raises(NotLeaderError):
        leader.propose(b"x", 1)


def test_lease_makes_followers_ignore_disruptive_vote_requests() -> None:
    c = Cluster()
    c.elect(N1)
    follower = c.nodes[N2]
    follower.step(VoteRequest("g", N3, N2, Term(5), Term(1), Offset(10)))
    assert follower.term == 1 and not follower.has_ready()
    # A transfer's vote request is honoured.
    follower.step(VoteRequest("g", N3, N2, Term(5), Term(1), Offset(10), transfer=True))
    assert follower.term == 5 and follower.vote == N3


def test_inflight_window_bounds_appends_per_follower() -> None:
    c = Cluster(max_inflight_msgs=2, max_append_bytes=1)
    leader = c.elect(N1)
    for i in range(5):
        leader.propose(f"e{i}".encode(), 1)
    c.process()
    to_n2 = [m for m in c.inflight if m.dst == N2 and isinstance(m, AppendEntriesRequest)]
    assert len(to_n2) == 2 and all(len(m.entries) == 1 for m in to_n2)
    c.stabilize()
    assert leader.commit_offset == leader.log_end_offset() == 6


def test_transfer_refuses_proposals_then_hands_over() -> None:
    c = Cluster()
    leader = c.elect(N1)
    leader.transfer_leadership(N3)
    with pytest.raises(NotLeaderError) as err:
        leader.propose(b"x", 1)
    assert err.value.leader_hint == N3
    c.process()
    assert any(isinstance(m, TimeoutNow) and m.dst == N3 for m in c.inflight)
    c.stabilize()
    assert c.nodes[N3].role is Role.LEADER and c.nodes[N3].term == 2
    assert leader.role is Role.FOLLOWER


def test_transfer_is_abandoned_after_an_election_timeout() -> None:
    c = Cluster(check_quorum=False)
    leader = c.elect(N1)
    leader.transfer_leadership(N3)
    for _ in range(leader.config.election_timeout_ticks):
        leader.tick()
        c.process()
        c.inflight = [m for m in c.inflight if m.dst != N3]
    assert leader.status.transferee is None
    assert leader.propose(b"x", 1).offset == 1


def test_membership_one_change_at_a_time_and_learner_catches_up_before_promotion() -> None:
    c = Cluster()
    leader = c.elect(N1)
    disk4 = MemLog()
    c.disks[N4] = disk4
    c.nodes[N4] = RaftNode(config(N4), disk4, random.Random(4))
    c.readies[N4] = []
    leader.add_learner(N4)
    with pytest.raises(MembershipChangeError):
        leader.promote(N4)
    assert leader.membership == Membership((N1, N2, N3), (N4,))
    c.stabilize(drop_to=(N4,))
    with pytest.raises(MembershipChangeError, match="caught up"):
        leader.promote(N4)
    leader.tick()
    c.stabilize()
    leader.promote(N4)
    c.stabilize()
    assert leader.membership.voters == (N1, N2, N3, N4)
    assert c.nodes[N4].membership.voters == (N1, N2, N3, N4)
    with pytest.raises(MembershipChangeError):
        leader.remove(NodeId(9))


def test_restart_reads_term_vote_and_membership_from_the_store() -> None:
    c = Cluster()
    leader = c.elect(N1)
    c.nodes[N4] = RaftNode(config(N4), MemLog(), random.Random(4))
    c.disks[N4] = MemLog()
    c.nodes[N4] = RaftNode(config(N4), c.disks[N4], random.Random(4))
    c.readies[N4] = []
    leader.add_learner(N4)
    c.stabilize()
    again = RaftNode(c.configs[N2], c.disks[N2], random.Random(9))
    assert (again.term, again.vote) == (1, N1)
    assert again.membership == Membership((N1, N2, N3), (N4,))
    assert again.role is Role.FOLLOWER and again.leader is None


def test_restart_takes_the_term_of_a_newer_entry_than_the_hard_state() -> None:
    disk = MemLog()
    disk.append([Entry(Offset(0), Offset(0), Term(4), b"x")])
    disk.set_hard_state(HardState(Term(2), N3))
    node = RaftNode(config(N1), disk, random.Random(1))
    assert (node.term, node.vote) == (4, None)


def test_a_follower_rejects_a_gap_with_a_term_hint() -> None:
    c = Cluster()
    c.elect(N1)
    follower = c.nodes[N2]
    msg = AppendEntriesRequest("g", N1, N2, Term(1), Offset(7), Term(1), (), Offset(1))
    follower.step(msg)
    rd = follower.ready()
    assert rd is not None
    (resp,) = rd.messages_after_persist
    assert isinstance(resp, AppendEntriesResponse) and not resp.success
    assert (resp.reject_offset, resp.hint_term, resp.hint_end_offset) == (7, 1, 1)


def test_status_lists_followers_in_order() -> None:
    c = Cluster(5)
    leader = c.elect(N3)
    assert [f.node_id for f in leader.status.followers] == [1, 2, 4, 5]
    assert NO_TERM == -1


def test_text_membership_codec_round_trip() -> None:
    codec = TextMembershipCodec()
    m = Membership((N1, N3), (N4,))
    assert codec.decode(codec.encode(m)) == m
    assert codec.decode(b"ordinary batch") is None


def test_membership_at_offsets_for_a_driver_that_keeps_the_base_at_its_log_start() -> None:
    c = Cluster()
    leader = c.elect(N1)
    c.disks[N4] = MemLog()
    c.nodes[N4] = RaftNode(config(N4), c.disks[N4], random.Random(4))
    c.readies[N4] = []
    change = leader.add_learner(N4)
    leader.propose(b"after", 1)
    c.stabilize()
    assert leader.membership_at(Offset(change.offset - 1)) == Membership((N1, N2, N3))
    assert leader.membership_at(change.offset) == Membership((N1, N2, N3), (N4,))
    # Retention removes the membership entry itself; a restart given the base at the new
    # log start still knows the membership.
    disk = c.disks[N2]
    start = Offset(change.offset + 1)
    base = c.nodes[N2].membership_at(Offset(start - 1))
    disk.truncate_prefix(start)
    again = RaftNode(dataclasses.replace(c.configs[N2], membership=base), disk, random.Random(2))
    assert again.membership == Membership((N1, N2, N3), (N4,))
    assert again.commit_offset == start


def test_a_stale_vote_request_is_refused_with_our_term() -> None:
    c = Cluster(pre_vote=False, check_quorum=False)
    c.elect(N1)
    node = c.nodes[N2]
    node.step(VoteRequest("g", N3, N2, Term(5), Term(1), Offset(1)))  # raises 2's term to 5
    c.process()
    c.inflight = []
    node.step(VoteRequest("g", N1, N2, Term(3), Term(1), Offset(9)))
    rd = node.ready()
    assert rd is not None
    (resp,) = rd.messages_after_persist
    assert isinstance(resp, VoteResponse) and not resp.granted and resp.term == 5


def _n3_lost_its_entries() -> tuple[Cluster, RaftNode, Offset]:
    """Three nodes, four entries committed; N3 restarts with its log cut back to offset 1
    and holds its vote until the old end."""
    c = Cluster(pre_vote=False, check_quorum=False)
    leader = c.elect(N1)
    for i in range(4):
        leader.propose(b"e%d" % i, 1)
    c.stabilize()
    end = c.nodes[N2].log_end_offset()
    c.disks[N3].truncate_suffix(Offset(1))
    c.nodes[N3] = RaftNode(c.configs[N3], c.disks[N3], random.Random(9))
    c.nodes[N3].hold_votes_until(end)
    return c, leader, end


def test_a_node_that_lost_acknowledged_entries_holds_its_vote_until_caught_up() -> None:
    # found by S11: a replica that cut a corrupt suffix (entries it had acknowledged) and a
    # lagging one together elected a leader lacking committed entries
    c, _, end = _n3_lost_its_entries()
    assert end >= 5
    disk = c.disks[N3]
    assert c.nodes[N3].vote_barrier == end
    # it neither campaigns on its election timeouts ...
    for _ in range(100):
        c.nodes[N3].tick()
    assert c.nodes[N3].role is Role.FOLLOWER
    # ... nor grants a vote, even to a candidate as up to date as it is
    c.nodes[N3].step(VoteRequest("g", N2, N3, Term(7), Term(0), Offset(1)))
    c.nodes[N3].step(VoteRequest("g", N2, N3, Term(8), Term(9), Offset(99)))
    rd = c.nodes[N3].ready()
    assert rd is not None
    votes = [m for m in rd.messages_after_persist if isinstance(m, VoteResponse)]
    assert votes and not any(m.granted for m in votes)
    persist(disk, rd)
    c.nodes[N3].advance(rd)


def test_the_vote_barrier_lifts_once_a_leader_brought_the_log_back() -> None:
    c, leader, end = _n3_lost_its_entries()
    leader.propose(b"more", 1)  # the leader's appends repair N3's log
    for _ in range(5):
        leader.tick()
        c.stabilize()
    assert c.nodes[N3].log_end_offset() >= end
    c.nodes[N3].step(VoteRequest("g", N2, N3, Term(50), Term(49), Offset(999)))
    assert c.nodes[N3].vote_barrier is None
    rd = c.nodes[N3].ready()
    assert rd is not None
    assert any(isinstance(m, VoteResponse) and m.granted for m in rd.messages_after_persist)


def test_a_refused_better_candidate_gets_the_next_term_first() -> None:
    # simulator seed 100090: a node that could not win (its membership left the better
    # candidate out) took every term first, so the candidate's requests always came in a
    # term whose vote was taken; refusing it now holds its own campaign back [2T, 3T)
    t = 10
    disk = MemLog()
    node = RaftNode(config(N3, pre_vote=False, election_timeout_ticks=t), disk, random.Random(3))
    node.campaign()  # term 1, votes for itself
    rd = node.ready()
    assert rd is not None and node.role is Role.CANDIDATE
    persist(disk, rd)
    node.advance(rd)
    node.step(VoteRequest("g", N1, N3, Term(1), Term(0), Offset(0)))  # same term, refused
    rd = node.ready()
    assert rd is not None
    assert [m.granted for m in rd.messages_after_persist if isinstance(m, VoteResponse)] == [False]
    persist(disk, rd)
    node.advance(rd)
    for _ in range(2 * t - 1):
        node.tick()
        assert node.term == 1, "campaigned again before the candidate could"
    for _ in range(t + 1):
        node.tick()
    assert node.term == 2
