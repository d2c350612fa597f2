"""What the core hands to its driver: ``Ready`` (work to do, in order) and ``Status``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from raftlog.raft.config import Membership
from raftlog.raft.log_store import Entry, HardState
from raftlog.raft.messages import Message
from raftlog.types import NodeId, Offset, Term


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    """Who leads as this node sees it; in a ``Ready`` only when it changed."""

    role: Role
    leader: NodeId | None
    term: Term


@dataclass(frozen=True, slots=True)
class Ready:
    """Work the driver must do, in this order, then ``advance(ready)``:

    1. Persist, in this order: if ``reset_log_start`` is set, drop the whole log and start
       it empty at that offset, with that term for the offset before it; if
       ``truncate_from`` is set, drop every entry from that offset on; append ``entries``;
       write ``hard_state`` if set; fsync all of it (per the topic's fsync policy).
    2. Send ``messages_after_persist``; they vouch for what step 1 made durable (votes,
       append acknowledgements) and must never leave before it. ``messages`` may be sent at
       any time, even before step 1 (a leader's appends go out while it writes its own
       copy, thesis 10.2.1).
    3. Publish ``commit_offset`` (the high watermark: every offset below it is committed)
       when it is set. ``local_end_offset`` is, once step 1 is done, how far this node's
       own log is durable: ``acks=1`` producers can be answered up to it when
       ``soft_state``/``status`` says this node leads.
    4. Call ``advance(ready)``. Until then the driver must not call ``step``, ``tick``,
       ``propose`` or any other method that changes the core (queue them instead).
    """

    hard_state: HardState | None
    reset_log_start: tuple[Offset, Term] | None
    truncate_from: Offset | None
    entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    messages_after_persist: tuple[Message, ...]
    commit_offset: Offset | None
    local_end_offset: Offset | None
    soft_state: SoftState | None

    def must_persist(self) -> bool:
        """Whether step 1 has anything to write."""
        return (
            self.hard_state is not None
            or self.reset_log_start is not None
            or self.truncate_from is not None
            or bool(self.entries)
        )


@dataclass(frozen=True, slots=True)
class FollowerStatus:
    node_id: NodeId
    is_learner: bool
    state: str
    match_offset: Offset
    next_offset: Offset
    recent_active: bool


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of the core's state for the driver, metrics and tests."""

    node_id: NodeId
    role: Role
    term: Term
    vote: NodeId | None
    leader: NodeId | None
    commit_offset: Offset
    log_start_offset: Offset
    log_end_offset: Offset
    # How far this node's own log is durable (acks=1); distinct from commit_offset.
    durable_end_offset: Offset
    membership: Membership
    transferee: NodeId | None
    followers: tuple[FollowerStatus, ...]
