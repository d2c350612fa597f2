"""The configuration of one partition Raft replica, and the membership it starts from.

A ``RaftConfig`` is frozen: the driver builds one per replica when it creates the core.
Limits are named with their unit last (``election_timeout_ticks``, ``max_append_bytes``).
Time inside the core is counted in ticks; the driver decides how long a tick is.

The membership it starts from and the codec of membership entries are described in
``raftlog.raft.membership``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raftlog.raft.membership import Membership, MembershipCodec, TextMembershipCodec
from raftlog.types import NodeId

__all__ = ["Membership", "MembershipCodec", "RaftConfig", "TextMembershipCodec"]


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Settings of one replica of one partition Raft group.

    - ``node_id``: this replica's broker id.
    - ``group``: the partition-group id every message carries (opaque to the core).
    - ``membership``: the voters and learners in effect at the log start offset. The core
      then replays membership entries found in the log (restart) or received.
    - ``election_timeout_ticks`` (T): a follower campaigns after a random timeout in
      [T, 2T) ticks without hearing from a leader; a leader checks its quorum and aborts a
      leadership transfer every T ticks.
    - ``heartbeat_interval_ticks``: how often a leader sends appends (or empty ones).
    - ``max_inflight_msgs``: appends in flight per follower before the leader waits.
    - ``max_append_bytes``: the data bytes one append carries (at least one entry).
    - ``pre_vote``: ask before campaigning (thesis 9.6), so a partitioned node does not
      inflate terms.
    - ``check_quorum``: a leader that heard from no majority within an election timeout
      steps down, and a follower that hears from a leader ignores vote requests (thesis 6.2).
    - ``quiesce``: an idle group stops heartbeating and counting time until something
      happens (``raftlog.raft.quiesce``); the driver must then report brokers that stop
      answering with ``RaftNode.peer_down``.
    - ``noop_data``: the data of the entry a new leader appends (a control batch).
    - ``codec``: makes and recognises membership entries.
    """

    node_id: NodeId
    group: str | int
    membership: Membership
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 1
    max_inflight_msgs: int = 64
    max_append_bytes: int = 1024 * 1024
    pre_vote: bool = True
    check_quorum: bool = True
    quiesce: bool = False
    noop_data: bytes = b""
    codec: MembershipCodec = field(default_factory=TextMembershipCodec)

    def __post_init__(self) -> None:
        assert self.election_timeout_ticks > self.heartbeat_interval_ticks > 0, (
            self.election_timeout_ticks,
            self.heartbeat_interval_ticks,
        )
        assert self.max_inflight_msgs >= 1, self.max_inflight_msgs
        assert self.max_append_bytes >= 1, self.max_append_bytes
