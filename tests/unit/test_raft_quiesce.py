"""Quiescence of idle partition groups (``raftlog.raft.quiesce``) through the core's API."""

from __future__ import annotations

from raftlog.raft.messages import AppendEntriesRequest, Message, PreVoteRequest
from raftlog.raft.node import RaftNode
from raftlog.raft.ready import Role
from tests.unit.test_raft_node import N1, N2, N3, Cluster

ELECTION = 10
HEARTBEAT = 2


def quiet_cluster(**kw: object) -> Cluster:
    c = Cluster(
        quiesce=True, election_timeout_ticks=ELECTION, heartbeat_interval_ticks=HEARTBEAT, **kw
    )
    c.elect(N1)
    return c


def tick_all(c: Cluster, ticks: int, drop: tuple = ()) -> list[Message]:
    """Tick every node ``ticks`` times, delivering as it goes; the messages sent."""
    sent: list[Message] = []
    for _ in range(ticks):
        for node in c.nodes.values():
            node.tick()
        c.process()
        sent.extend(c.inflight)
        c.stabilize(drop_to=drop)
    return sent


def test_an_idle_group_goes_quiet_and_sends_nothing() -> None:
    c = quiet_cluster()
    c.nodes[N1].propose(b"a", 1)
    c.stabilize()
    tick_all(c, 2 * HEARTBEAT)
    assert all(n.quiesced for n in c.nodes.values())
    # quiet for many election timeouts: no message, nobody campaigns, same term
    term = c.nodes[N1].term
    assert tick_all(c, 10 * ELECTION) == []
    assert c.nodes[N1].role is Role.LEADER and c.nodes[N1].term == term
    assert all(n.commit_offset == c.nodes[N1].commit_offset for n in c.nodes.values())


def test_a_proposal_wakes_the_group_and_it_commits() -> None:
    c = quiet_cluster()
    tick_all(c, 2 * HEARTBEAT)
    assert all(n.quiesced for n in c.nodes.values())
    entry = c.nodes[N1].propose(b"wake", 1)
    assert not c.nodes[N1].quiesced
    c.stabilize()
    assert c.nodes[N1].commit_offset > entry.last_offset
    assert not c.nodes[N2].quiesced and not c.nodes[N3].quiesced
    # the next heartbeat carries the commit offset, and quiets the group again
    tick_all(c, 2 * HEARTBEAT)
    assert all(n.quiesced for n in c.nodes.values())
    assert all(n.commit_offset > entry.last_offset for n in c.nodes.values())


def test_no_quiet_while_a_follower_lags() -> None:
    c = quiet_cluster()
    c.nodes[N1].propose(b"a", 1)
    c.process()
    # N3 never gets the entry: the leader keeps heartbeating it
    sent = tick_all(c, 5 * HEARTBEAT, drop=(N3,))
    assert not c.nodes[N1].quiesced
    assert any(m.dst == N3 for m in sent)


def test_a_quiet_followers_leader_down_is_replaced_within_two_election_timeouts() -> None:
    c = quiet_cluster()
    tick_all(c, 2 * HEARTBEAT)
    assert all(n.quiesced for n in c.nodes.values())
    # N1 dies; its peers' failure detector says so
    for n in (N2, N3):
        c.nodes[n].peer_down(N1)
        assert not c.nodes[n].quiesced
    ticks = 0
    while ticks < 2 * ELECTION and not any(c.nodes[n].role is Role.LEADER for n in (N2, N3)):
        tick_all(c, 1, drop=(N1,))
        ticks += 1
    assert any(c.nodes[n].role is Role.LEADER for n in (N2, N3)), "no new leader"
    assert ticks <= ELECTION + 1, ticks  # the silence before the report counted


def test_without_a_report_a_quiet_follower_never_campaigns() -> None:
    c = quiet_cluster()
    tick_all(c, 2 * HEARTBEAT)
    tick_all(c, 5 * ELECTION, drop=(N1,))
    assert c.nodes[N2].role is Role.FOLLOWER and c.nodes[N3].role is Role.FOLLOWER
    # a report about a broker that is not its leader changes nothing for a follower's
    # clock, but it does wake it
    c.nodes[N2].peer_down(N3)
    assert not c.nodes[N2].quiesced


def test_a_follower_that_missed_the_quiet_heartbeat_wakes_the_leader() -> None:
    c = quiet_cluster()
    leader = c.nodes[N1]
    # let the heartbeat tick come, and lose the quiescing heartbeat to N3
    for _ in range(HEARTBEAT):
        leader.tick()
    c.process()
    assert leader.quiesced
    quiet = [m for m in c.inflight if isinstance(m, AppendEntriesRequest) and m.quiesce]
    assert {m.dst for m in quiet} == {N2, N3}
    c.inflight = [m for m in c.inflight if m.dst != N3]
    c.stabilize()
    assert c.nodes[N2].quiesced and not c.nodes[N3].quiesced
    # N3 times out, asks for pre-votes; that wakes the leader, which heartbeats, and the
    # group is quiet again without an election
    term = leader.term
    tick_all(c, 3 * ELECTION)
    assert leader.role is Role.LEADER and leader.term == term
    assert all(n.quiesced for n in c.nodes.values())


def test_a_deposed_quiet_leaders_followers_grant_votes_after_a_timeout() -> None:
    # found by the simulator (seed 51257, 5 nodes): followers quiet under a leader that
    # stepped down refused every candidate forever, their lease frozen
    c = quiet_cluster(pre_vote=False)
    tick_all(c, 2 * HEARTBEAT)
    assert all(n.quiesced for n in c.nodes.values())
    # N3 campaigns (say its detector was wrong); N1 and N2 are in their lease
    c.nodes[N3].peer_down(N1)
    for _ in range(3 * ELECTION):
        tick_all(c, 1)
        if any(n.role is Role.LEADER and n.term > 1 for n in c.nodes.values()) or all(
            n.quiesced for n in c.nodes.values()
        ):
            break
    leaders = [n for n in c.nodes.values() if n.role is Role.LEADER]
    assert len(leaders) == 1
    # whoever leads, the group works: a proposal commits everywhere
    entry = leaders[0].propose(b"x", 1)
    c.stabilize()
    tick_all(c, 2 * HEARTBEAT)
    assert all(n.commit_offset > entry.last_offset for n in c.nodes.values())


def test_a_vote_request_of_a_higher_term_wakes_a_quiet_follower() -> None:
    c = quiet_cluster()
    tick_all(c, 2 * HEARTBEAT)
    f: RaftNode = c.nodes[N2]
    assert f.quiesced
    f.step(PreVoteRequest("g", N3, N2, f.term + 1, f.term, f.log_end_offset()))
    assert not f.quiesced
    rd = f.ready()
    # inside the lease the pre-vote is refused (or ignored)
    assert rd is None or not any(getattr(m, "granted", False) for m in rd.messages)


def test_an_isolated_quiet_leader_steps_down_once_told() -> None:
    c = quiet_cluster()
    tick_all(c, 2 * HEARTBEAT)
    leader = c.nodes[N1]
    assert leader.quiesced
    leader.peer_down(N2)
    leader.peer_down(N3)
    assert not leader.quiesced
    for _ in range(2 * ELECTION):
        tick_all(c, 1, drop=(N2, N3))
    assert leader.role is not Role.LEADER  # check-quorum: it heard from no majority
