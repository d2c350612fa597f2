"""Who votes: the membership, its entries in the log, and its history.

Membership (the voters and the learners) changes through log entries, one server at a time
(Raft thesis section 4.1), and a change takes effect as soon as its entry is in a log,
committed or not. So a node's membership is a function of its log: ``MembershipHistory``
follows the log (appends, suffix truncation, log-start reset) and answers which membership
is in effect now or at an offset.

Membership entries are record batches like every other; their bytes are made and
recognised by a ``MembershipCodec`` so that the core never knows the batch format. The
default codec writes a short text with a magic prefix, which the simulator and the
transcript tests use; the broker passes a codec that builds a control batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from raftlog.raft.errors import MembershipChangeError
from raftlog.raft.log_store import LogStore
from raftlog.types import NodeId, Offset


@dataclass(frozen=True, slots=True)
class Membership:
    """Who votes and who only receives entries. Both tuples are sorted and disjoint."""

    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...] = ()

    def __post_init__(self) -> None:
        assert list(self.voters) == sorted(set(self.voters)), self.voters
        assert list(self.learners) == sorted(set(self.learners)), self.learners
        assert not set(self.voters) & set(self.learners), (self.voters, self.learners)

    @property
    def members(self) -> tuple[NodeId, ...]:
        """Every voter and learner, sorted."""
        return tuple(sorted(self.voters + self.learners))

    def quorum(self) -> int:
        """How many voters make a majority."""
        return len(self.voters) // 2 + 1

    def with_learner(self, node: NodeId) -> Membership:
        if node in self.members:
            raise MembershipChangeError(f"node {node} is already a member")
        return Membership(self.voters, tuple(sorted((*self.learners, node))))

    def promoted(self, node: NodeId) -> Membership:
        if node not in self.learners:
            raise MembershipChangeError(f"node {node} is not a learner")
        learners = tuple(x for x in self.learners if x != node)
        return Membership(tuple(sorted((*self.voters, node))), learners)

    def without(self, node: NodeId) -> Membership:
        if node not in self.members:
            raise MembershipChangeError(f"node {node} is not a member")
        if self.voters == (node,):
            raise MembershipChangeError("cannot remove the last voter")
        voters = tuple(x for x in self.voters if x != node)
        return Membership(voters, tuple(x for x in self.learners if x != node))

    def describe(self) -> str:
        voters = ",".join(str(v) for v in self.voters)
        learners = ",".join(str(v) for v in self.learners)
        return f"voters=({voters}) learners=({learners})"


class MembershipCodec(Protocol):
    """Turns a membership into entry bytes and recognises such bytes among entries."""

    def encode(self, membership: Membership) -> bytes:
        """The data of an entry that switches the group to ``membership``."""
        ...

    def decode(self, data: bytes) -> Membership | None:
        """The membership an entry carries, or ``None`` for every other entry.

        Called on every entry the core appends, so it must be cheap for ordinary batches.
        """
        ...


_MAGIC = b"\x00raftlog-membership:"


class TextMembershipCodec:
    """``<magic>voters=1,2,3;learners=4``: readable in transcripts, never a valid batch."""

    def encode(self, membership: Membership) -> bytes:
        voters = ",".join(str(v) for v in membership.voters)
        learners = ",".join(str(v) for v in membership.learners)
        return _MAGIC + f"voters={voters};learners={learners}".encode()

    def decode(self, data: bytes) -> Membership | None:
        if not data.startswith(_MAGIC):
            return None
        fields = dict(part.split("=", 1) for part in data[len(_MAGIC) :].decode().split(";"))

        def ids(text: str) -> tuple[NodeId, ...]:
            return tuple(sorted(NodeId(int(x)) for x in text.split(",") if x))

        return Membership(voters=ids(fields["voters"]), learners=ids(fields["learners"]))


class MembershipHistory:
    """Memberships by the offset of the entry that set them, oldest first.

    The first element is the membership in effect before the log start (offset
    ``log_start - 1``); it comes from the configuration or from an ``InstallLogStart``.
    """

    def __init__(self, before_start: Offset, membership: Membership) -> None:
        self._history: list[tuple[Offset, Membership]] = [(before_start, membership)]

    @classmethod
    def replay(
        cls, store: LogStore, base: Membership, codec: MembershipCodec, batch_bytes: int
    ) -> MembershipHistory:
        """The history of a log: ``base`` in effect at its start, then every membership
        entry it holds (a restart reads them back; the scan reads the whole log)."""
        history = cls(Offset(store.log_start_offset() - 1), base)
        offset = store.log_start_offset()
        while offset < store.log_end_offset():
            batch = store.entries(offset, batch_bytes)
            assert batch and batch[0].offset == offset, (offset, batch)
            for e in batch:
                membership = codec.decode(e.data)
                if membership is not None:
                    history.appended(e.offset, membership)
            offset = Offset(batch[-1].last_offset + 1)
        return history

    @property
    def current(self) -> Membership:
        return self._history[-1][1]

    @property
    def last_change_offset(self) -> Offset:
        """The offset of the entry of the membership in effect (or the one before start)."""
        return self._history[-1][0]

    def at(self, offset: Offset) -> Membership:
        """The membership in effect after the entry at ``offset``."""
        found = self._history[0][1]
        for changed_at, membership in self._history:
            if changed_at <= offset:
                found = membership
        return found

    def appended(self, offset: Offset, membership: Membership) -> None:
        assert offset > self._history[-1][0], (offset, self._history[-1][0])
        self._history.append((offset, membership))

    def truncated(self, offset: Offset) -> None:
        """The log lost every entry from ``offset`` on."""
        assert offset > self._history[0][0], (offset, self._history[0][0])
        while self._history[-1][0] >= offset:
            self._history.pop()

    def reset(self, before_start: Offset, membership: Membership) -> None:
        self._history = [(before_start, membership)]
