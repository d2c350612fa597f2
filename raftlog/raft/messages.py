"""The messages partition Raft replicas exchange: one frozen dataclass per RPC.

Every message names its group (the partition), its sender ``src``, its receiver ``dst`` and
the sender's ``term``. The list of messages, why each exists and which part of the Raft
design it implements is in the docstring of ``raftlog.raft.node``. Offsets follow Kafka:
an *end offset* is one past the last offset it covers.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftlog.raft.config import Membership
from raftlog.raft.log_store import Entry
from raftlog.types import NO_TERM, NodeId, Offset, Term

ZERO_OFFSET = Offset(0)
NO_OFFSET = Offset(-1)


@dataclass(frozen=True, slots=True)
class PreVoteRequest:
    """Would you vote for me in ``term`` (my term + 1)? Changes no state anywhere."""

    group: str | int
    src: NodeId
    dst: NodeId
    term: Term
    last_term: Term
    log_end_offset: Offset


@dataclass(frozen=True, slots=True)
class PreVoteResponse:
    group: str | int
    src: NodeId
    dst: NodeId
    term: Term
    granted: bool


@dataclass(frozen=True, slots=True)
class VoteRequest:
    """Vote for me in ``term``. ``transfer`` is set when the leader asked for this election
    (TimeoutNow), so that voters set aside their leader lease."""

    group: str | int
    src: NodeId
    dst: NodeId
    term: Term
    last_term: Term
    log_end_offset: Offset
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse:
    group: str | int
    src: NodeId
    dst: NodeId
    term: Term
    granted: bool


@dataclass(frozen=True, slots=True)
class AppendEntriesRequest:
    """Entries following ``(prev_offset, prev_term)``; no entries makes it a heartbeat.

    ``prev_offset`` is the last offset of the entry before ``entries[0]`` (``-1`` at the
    start of the log). ``commit_offset`` is the leader's high watermark. ``entries`` is a
    tuple so that the message stays immutable. ``quiesce``: the leader stops heartbeating
    after this heartbeat, and a follower that holds the whole committed log stops counting
    time (``raftlog.raft.quiesce``).
    """

    group: str | int
    src: NodeId
    dst: NodeId
    term: Term
    prev_offset: Offset
    prev_term: Term
    entries: tuple[Entry, ...]
    commit_offset: Offset
    quiesce: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    """The answer to an append, a heartbeat or an InstallLogStart.

    On success ``match_offset`` is the end offset up to which the follower's log now equals
    the leader's. On rejection ``reject_offset`` is the ``prev_offset`` that did not match and
    ``(hint_term, hint_end_offset)`` is the follower's largest term not above the leader's
    ``prev_term`` with that term's end offset (Kafka's OffsetsForLeaderEpoch), so that the
    leader skips a whole term per round trip instead of one entry.
    """

    group: str | int
    src: NodeId
    dst: NodeId
    term: Term
    success: bool
    match_offset: Offset = ZERO_OFFSET
    reject_offset: Offset = NO_OFFSET
    hint_term: Term = NO_TERM
    hint_end_offset: Offset = NO_OFFSET


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """From a leader transferring leadership: campaign now, without pre-vote."""

    group: str | int
    src: NodeId
    dst: NodeId
    term: Term


@dataclass(frozen=True, slots=True)
class InstallLogStart:
    """Restart your log at my log start: the entries you miss are gone from mine.

    The follower drops its whole log, sets its log start to ``log_start_offset`` with
    ``prev_term`` as the term of the offset before it, takes ``membership`` as the one in
    effect there and answers with an ``AppendEntriesResponse`` once that is durable. Every
    offset below the leader's log start is committed, so nothing is lost.
    """

    group: str | int
    src: NodeId
    dst: NodeId
    term: Term
    log_start_offset: Offset
    prev_term: Term
    commit_offset: Offset
    membership: Membership


Message = (
    PreVoteRequest
    | PreVoteResponse
    | VoteRequest
    | VoteResponse
    | AppendEntriesRequest
    | AppendEntriesResponse
    | TimeoutNow
    | InstallLogStart
)


def describe_entry(entry: Entry, data_bytes_max: int = 24) -> str:
    """``offset..last_offset@term "data"`` with the data cut to ``data_bytes_max``."""
    text = entry.data[:data_bytes_max].decode("utf-8", "backslashreplace")
    data = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    cut = "..." if len(entry.data) > data_bytes_max else ""
    return f'{entry.offset}..{entry.last_offset}@{entry.term} "{data}{cut}"'


def describe(msg: Message) -> str:
    """One line per message, stable across runs: transcripts and traces print this."""
    head = f"{msg.src}->{msg.dst} {type(msg).__name__} term={msg.term}"
    match msg:
        case PreVoteRequest() | VoteRequest():
            extra = " transfer" if isinstance(msg, VoteRequest) and msg.transfer else ""
            return f"{head} last=(term={msg.last_term} end={msg.log_end_offset}){extra}"
        case PreVoteResponse() | VoteResponse():
            return f"{head} {'granted' if msg.granted else 'rejected'}"
        case AppendEntriesRequest():
            entries = ", ".join(describe_entry(e) for e in msg.entries)
            return (
                f"{head} prev=({msg.prev_offset}@{msg.prev_term}) commit={msg.commit_offset}"
                f" entries=[{entries}]"
            )
        case AppendEntriesResponse():
            if msg.success:
                return f"{head} ok match={msg.match_offset}"
            return (
                f"{head} reject prev={msg.reject_offset}"
                f" hint=(term={msg.hint_term} end={msg.hint_end_offset})"
            )
        case TimeoutNow():
            return head
        case InstallLogStart():
            return (
                f"{head} log_start={msg.log_start_offset} prev_term={msg.prev_term}"
                f" commit={msg.commit_offset} {msg.membership.describe()}"
            )
