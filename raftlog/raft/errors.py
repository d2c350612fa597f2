"""Why the core refuses a proposal or a membership change."""

from __future__ import annotations

from raftlog.errors import ErrorCode, RaftlogError
from raftlog.types import NodeId


class NotLeaderError(RaftlogError):
    """This replica does not lead (or is handing leadership over); ``leader_hint`` is the
    leader it knows of, if any. Retriable: ask the hinted leader."""

    code = ErrorCode.NOT_LEADER

    def __init__(self, message: str, leader_hint: NodeId | None) -> None:
        super().__init__(message)
        self.leader_hint = leader_hint


class MembershipChangeError(RaftlogError):
    """A membership change that is not allowed now: another one is still uncommitted, the
    node is not where the change expects it, or a learner is not caught up yet."""

    code = ErrorCode.INVALID_REQUEST
