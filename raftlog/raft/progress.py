"""What a leader knows about each follower's log, and the flow control of its appends.

A follower is in one of three states (as in etcd-io/raft):

- ``PROBE``: the leader does not know where the logs diverge. It sends one append at
  ``next_offset`` and waits for the answer (or the next heartbeat) before sending again.
- ``REPLICATE``: the logs match up to ``match_offset``; the leader streams appends
  optimistically, advancing ``next_offset`` as it sends, with at most ``max_inflight_msgs``
  unanswered (pipelining, thesis 10.2.1).
- ``LOG_START``: the follower needs entries the leader no longer holds (below its log start
  offset); the leader has sent ``InstallLogStart`` and waits for the answer.

Rules kept: ``match_offset <= next_offset``; offsets are entry boundaries; the window only
ever holds increasing end offsets.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from raftlog.raft.messages import AppendEntriesResponse
from raftlog.raft.raft_log import RaftLog
from raftlog.types import NO_TERM, Offset, Term

ZERO_OFFSET = Offset(0)


class ProgressState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    LOG_START = "log-start"


@dataclass(slots=True)
class Inflights:
    """End offsets of appends sent and not yet acknowledged, oldest first, bounded."""

    capacity: int
    ends: deque[Offset] = field(default_factory=deque)

    def full(self) -> bool:
        return len(self.ends) >= self.capacity

    def add(self, end_offset: Offset) -> None:
        assert not self.full(), "append sent with a full window"
        assert not self.ends or self.ends[-1] <= end_offset, (self.ends[-1], end_offset)
        self.ends.append(end_offset)

    def free_to(self, match_offset: Offset) -> None:
        """Forget every append the follower has acknowledged up to ``match_offset``."""
        while self.ends and self.ends[0] <= match_offset:
            self.ends.popleft()

    def free_first(self) -> None:
        if self.ends:
            self.ends.popleft()

    def reset(self) -> None:
        self.ends.clear()


@dataclass(slots=True)
class Progress:
    """The leader's view of one follower (or of itself, where only ``match_offset`` is used)."""

    match_offset: Offset
    next_offset: Offset
    inflights: Inflights
    state: ProgressState = ProgressState.PROBE
    # In PROBE and LOG_START: a message is out, wait for its answer or the next heartbeat.
    paused: bool = False
    # Heard from since the last quorum check (check-quorum, thesis 6.2).
    recent_active: bool = False
    # match_offset at the previous heartbeat: no move over a whole interval means loss.
    match_at_heartbeat: Offset = ZERO_OFFSET
    stalled_heartbeats: int = 0

    def become_probe(self) -> None:
        # Resume right after what is known to match: that append cannot be refused for a gap.
        self.state = ProgressState.PROBE
        self.next_offset = self.match_offset
        self.paused = False
        self.stalled_heartbeats = 0
        self.inflights.reset()

    def forget_match(self, match_offset: Offset) -> None:
        """The follower's log shrank below what it acknowledged: match no more than
        ``match_offset`` (never more than before) and probe from there."""
        self.match_offset = Offset(min(self.match_offset, match_offset))
        self.become_probe()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next_offset = self.match_offset
        self.paused = False
        self.inflights.reset()

    def become_log_start(self) -> None:
        self.state = ProgressState.LOG_START
        self.paused = True
        self.inflights.reset()

    def can_send(self) -> bool:
        if self.state is ProgressState.REPLICATE:
            return not self.inflights.full()
        return not self.paused

    def on_sent(self, end_offset: Offset, carried_entries: bool) -> None:
        """An append ending at ``end_offset`` went out."""
        if self.state is ProgressState.REPLICATE:
            if carried_entries:
                self.next_offset = end_offset
                self.inflights.add(end_offset)
        else:
            self.paused = True

    def on_match(self, match_offset: Offset) -> bool:
        """The follower's log equals ours up to ``match_offset``; True if that is news."""
        assert match_offset >= 0, match_offset
        moved = match_offset > self.match_offset
        if moved:
            self.match_offset = match_offset
        self.next_offset = max(self.next_offset, match_offset)
        self.paused = False
        self.inflights.free_to(match_offset)
        assert self.match_offset <= self.next_offset, (self.match_offset, self.next_offset)
        return moved

    def describe(self) -> str:
        return (
            f"{self.state.value} match={self.match_offset} next={self.next_offset}"
            f"{' paused' if self.paused else ''} inflight={len(self.inflights.ends)}"
        )


def next_probe_offset(log: RaftLog, rejection: AppendEntriesResponse, match: Offset) -> Offset:
    """Where a leader probes next after ``rejection``: an entry boundary of its ``log``,
    below the refused probe and not below ``match`` (what is known to match).

    If the leader holds the follower's hint term too, the entries of that term are the same
    on both sides (one leader made them), so the logs agree up to where the shorter run of
    it ends. If not, the leader's largest term below it ends where the logs could agree at
    best; the next probe narrows it further, one term per round trip.
    """
    next_offset = match
    if rejection.hint_term != NO_TERM:
        term, end = log.end_offset_for_term(rejection.hint_term)
        if term == rejection.hint_term:
            next_offset = Offset(min(rejection.hint_end_offset, end))
        elif term != NO_TERM:
            next_offset = end
    if next_offset > rejection.reject_offset:
        # Not below the refused probe: go back to where the refused prev term starts.
        prev_term = log.term_at(rejection.reject_offset)
        assert prev_term is not None and prev_term != NO_TERM, rejection
        next_offset = log.end_offset_for_term(Term(prev_term - 1))[1]
    return Offset(max(match, next_offset))
