"""The partition Raft: a sans-io core (``RaftNode``) and what it exchanges with its driver.

See ``raftlog.raft.node`` for how it works and the list of messages.
"""

from raftlog.raft.config import RaftConfig
from raftlog.raft.errors import MembershipChangeError, NotLeaderError
from raftlog.raft.log_store import Entry, HardState, LogStore
from raftlog.raft.membership import Membership, MembershipCodec, TextMembershipCodec
from raftlog.raft.messages import (
    AppendEntriesRequest,
    AppendEntriesResponse,
    InstallLogStart,
    Message,
    PreVoteRequest,
    PreVoteResponse,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
    describe,
)
from raftlog.raft.node import RaftNode
from raftlog.raft.ready import FollowerStatus, Ready, Role, SoftState, Status

__all__ = [
    "AppendEntriesRequest",
    "AppendEntriesResponse",
    "Entry",
    "FollowerStatus",
    "HardState",
    "InstallLogStart",
    "LogStore",
    "Membership",
    "MembershipChangeError",
    "MembershipCodec",
    "Message",
    "NotLeaderError",
    "PreVoteRequest",
    "PreVoteResponse",
    "RaftConfig",
    "RaftNode",
    "Ready",
    "Role",
    "SoftState",
    "Status",
    "TextMembershipCodec",
    "TimeoutNow",
    "VoteRequest",
    "VoteResponse",
    "describe",
]
