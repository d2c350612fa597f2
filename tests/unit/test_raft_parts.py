"""Messages, progress and membership of the Raft core, and the package's exports."""

from __future__ import annotations

import dataclasses

import pytest

import raftlog.raft
from raftlog.raft import messages
from raftlog.raft.errors import MembershipChangeError
from raftlog.raft.log_store import Entry
from raftlog.raft.membership import Membership, MembershipHistory
from raftlog.raft.progress import Inflights, Progress, ProgressState, next_probe_offset
from raftlog.raft.raft_log import RaftLog
from raftlog.testing.mem_log import MemLog
from raftlog.types import NodeId, Offset, Term

N1, N2, N3, N4 = NodeId(1), NodeId(2), NodeId(3), NodeId(4)
MESSAGE_TYPES = [
    messages.PreVoteRequest,
    messages.PreVoteResponse,
    messages.VoteRequest,
    messages.VoteResponse,
    messages.AppendEntriesRequest,
    messages.AppendEntriesResponse,
    messages.TimeoutNow,
    messages.InstallLogStart,
]


@pytest.mark.parametrize("cls", MESSAGE_TYPES)
def test_messages_are_frozen_slotted_and_carry_the_routing_fields(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert hasattr(cls, "__slots__")
    names = [f.name for f in dataclasses.fields(cls)]
    assert names[:4] == ["group", "src", "dst", "term"]


def test_the_core_docstring_lists_every_message() -> None:
    import raftlog.raft.node as node

    doc = node.__doc__ or ""
    for cls in MESSAGE_TYPES:
        assert cls.__name__ in doc, cls.__name__


def test_describe_is_one_stable_line() -> None:
    entry = Entry(Offset(3), Offset(4), Term(2), b"\x00hi")
    msg = messages.AppendEntriesRequest(
        "g", N1, N2, Term(2), Offset(2), Term(1), (entry,), Offset(3)
    )
    assert messages.describe(msg) == (
        '1->2 AppendEntriesRequest term=2 prev=(2@1) commit=3 entries=[3..4@2 "\\x00hi"]'
    )


def test_inflights_are_bounded_and_freed_by_acknowledgement() -> None:
    inf = Inflights(2)
    inf.add(Offset(3))
    inf.add(Offset(5))
    assert inf.full()
    with pytest.raises(AssertionError):
        inf.add(Offset(7))
    inf.free_to(Offset(4))
    assert list(inf.ends) == [5] and not inf.full()


def test_progress_states() -> None:
    pr = Progress(Offset(0), Offset(10), Inflights(2))
    assert pr.can_send()
    pr.on_sent(Offset(10), carried_entries=False)
    assert not pr.can_send()  # probing: one at a time
    assert pr.on_match(Offset(10))
    pr.become_replicate()
    for end in (12, 14):
        assert pr.can_send()
        pr.on_sent(Offset(end), carried_entries=True)
    assert not pr.can_send() and pr.next_offset == 14
    pr.on_match(Offset(12))
    assert pr.can_send() and pr.match_offset == 12
    pr.become_probe()
    assert pr.state is ProgressState.PROBE and pr.next_offset == 12


def _log(*entries: tuple[int, int, int]) -> RaftLog:
    disk = MemLog()
    disk.append([Entry(Offset(a), Offset(b), Term(t), b"x") for a, b, t in entries])
    return RaftLog(disk)


def test_next_probe_offset_uses_the_followers_term_hint() -> None:
    leader = _log((0, 0, 1), (1, 2, 1), (3, 3, 2), (4, 5, 3), (6, 6, 3))

    def reject(prev: int, hint_term: int, hint_end: int) -> messages.AppendEntriesResponse:
        return messages.AppendEntriesResponse(
            "g", N2, N1, Term(3), False, Offset(0), Offset(prev), Term(hint_term), Offset(hint_end)
        )

    # Follower holds term 1 up to 3 (as the leader): continue right after term 1.
    assert next_probe_offset(leader, reject(6, 1, 3), Offset(0)) == 3
    # Follower has term 2 entries we do not know past ours: min of both ends.
    assert next_probe_offset(leader, reject(6, 2, 9), Offset(0)) == 4
    # Follower's hint term is unknown here: our largest term below it ends at 3... (term 1).
    leader2 = _log((0, 0, 1), (1, 2, 1), (3, 5, 4))
    assert next_probe_offset(leader2, reject(5, 3, 5), Offset(0)) == 3
    # Never below what is known to match.
    assert next_probe_offset(leader, reject(6, 1, 3), Offset(4)) == 4
    # Nothing in common: from the match offset.
    assert next_probe_offset(leader, reject(6, -1, -1), Offset(0)) == 0


def test_membership_changes_one_server_at_a_time() -> None:
    m = Membership((N1, N2, N3))
    assert m.quorum() == 2
    m2 = m.with_learner(N4)
    assert m2.learners == (N4,) and m2.quorum() == 2
    assert m2.promoted(N4).voters == (N1, N2, N3, N4)
    assert m2.promoted(N4).quorum() == 3
    assert m.without(N2).voters == (N1, N3)
    with pytest.raises(MembershipChangeError):
        m.with_learner(N1)
    with pytest.raises(MembershipChangeError):
        m.promoted(N2)
    with pytest.raises(MembershipChangeError):
        Membership((N1,)).without(N1)


def test_membership_history_follows_the_log() -> None:
    base = Membership((N1, N2, N3))
    h = MembershipHistory(Offset(-1), base)
    h.appended(Offset(5), base.with_learner(N4))
    h.appended(Offset(9), base.with_learner(N4).promoted(N4))
    assert h.current.voters == (N1, N2, N3, N4)
    assert h.at(Offset(6)).learners == (N4,)
    assert h.at(Offset(4)) == base
    h.truncated(Offset(9))
    assert h.current.learners == (N4,) and h.last_change_offset == 5
    h.reset(Offset(19), base)
    assert h.current == base and h.last_change_offset == 19


def test_package_exports() -> None:
    for name in raftlog.raft.__all__:
        assert hasattr(raftlog.raft, name), name
    assert raftlog.raft.RaftNode.__module__ == "raftlog.raft.node"
