"""RAFT (api key 9): partition-Raft messages between brokers, many groups in one frame.

A ``RaftRequest`` carries the messages of ``raftlog.raft.messages`` in order. On the wire they
are grouped in runs of consecutive messages of the same group, so that a frame of heartbeats
for thousands of partitions names each partition once::

    {"messages": [{"topic": "orders", "partition": 3,
                   "messages": [{"type": 5, "src": 1, "dst": 2, "term": 7, ...}, ...]},
                  ...]}

A partition's group id is the string ``"<topic>/<partition>"`` (``partition_group``; a topic
name never holds ``/``): the runtime builds its ``RaftConfig.group`` with it, and the decoder
gives every message back that exact group, so a message round-trips equal to itself.

``Entry.data`` (a record batch) travels in the frame payload, never in CBOR; decoded, it is
copied once into ``bytes`` because ``Entry.data`` is ``bytes`` (the Raft core and the storage
may keep it past the frame). Every field is range-checked before a message is built, so the
assertions of ``Entry`` and ``Membership`` never fire on a peer's input.

RAFT is one way: the receiver never answers a RaftRequest (Raft's responses are themselves
messages in a RaftRequest going back), except with an ``ErrorResponse`` to a frame it could
not decode.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from raftlog.raft.log_store import Entry
from raftlog.raft.membership import Membership
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
)
from raftlog.wire.messages import NODE, OFFSET_OR_NONE, PARTITION, TERM_OR_NONE, ApiKey
from raftlog.wire.schema import (
    BUDGETS,
    INT32_MAX,
    INT64_MAX,
    Bool,
    Bytes,
    Int,
    ListOf,
    PayloadReader,
    PayloadWriter,
    SchemaError,
    Spec,
    StructCodec,
    Topic,
    WireMessage,
    show,
    wire,
)

ENTRIES_PER_APPEND_MAX = 10_000
MEMBERS_MAX = 256
RAFT_MESSAGE_TYPES: tuple[type[Any], ...] = (
    PreVoteRequest,
    PreVoteResponse,
    VoteRequest,
    VoteResponse,
    AppendEntriesRequest,
    AppendEntriesResponse,
    TimeoutNow,
    InstallLogStart,
)
"""Position + 1 is the ``type`` number on the wire: append only, never reorder."""


def partition_group(topic: str, partition: int) -> str:
    """The Raft group id of a partition: ``"<topic>/<partition>"``."""
    return f"{topic}/{partition}"


def parse_partition_group(group: object) -> tuple[str, int]:
    """``(topic, partition)`` of a group id made by ``partition_group``; ``ValueError``
    for anything else."""
    if not isinstance(group, str) or "/" not in group:
        raise ValueError(f"group {group!r} is not '<topic>/<partition>'")
    topic, _, number = group.rpartition("/")
    if not number.isdigit() or str(int(number)) != number:
        raise ValueError(f"group {group!r} is not '<topic>/<partition>'")
    return topic, int(number)


class _EntryData(Bytes):
    __slots__ = ()

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        return bytes(super().decode(raw, payload))


def _entry_check(v: dict[str, Any]) -> str | None:
    if v["offset"] > v["last_offset"]:
        return f"entry offset {v['offset']} is past its last offset {v['last_offset']}"
    return None


def _membership_check(v: dict[str, Any]) -> str | None:
    voters, learners = v["voters"], v["learners"]
    if list(voters) != sorted(set(voters)) or list(learners) != sorted(set(learners)):
        return "voters and learners must be sorted without repeats"
    if set(voters) & set(learners):
        return "a node cannot be both a voter and a learner"
    return None


class _Nested(Spec):
    __slots__ = ("codec",)

    def __init__(self, codec: StructCodec) -> None:
        self.codec = codec

    def encode(self, value: Any, out: PayloadWriter) -> Any:
        return self.codec.encode(value, out)

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        return self.codec.decode(raw, payload)


_OFFSET = Int(0, INT64_MAX)
_TOPIC = Topic()
_ENTRY = StructCodec(
    Entry,
    (
        ("offset", _OFFSET),
        ("last_offset", _OFFSET),
        ("term", Int(0, INT32_MAX)),
        ("data", _EntryData()),
    ),
    check=_entry_check,
)
_MEMBERSHIP = StructCodec(
    Membership,
    (("voters", ListOf(NODE, MEMBERS_MAX)), ("learners", ListOf(NODE, MEMBERS_MAX))),
    check=_membership_check,
)
# every field name of every Raft message -> its spec; a new field without a spec here fails
# at import, not on the wire
_FIELD_SPECS: dict[str, Spec] = {
    "src": NODE,
    "dst": NODE,
    "term": Int(0, INT32_MAX),
    "last_term": TERM_OR_NONE,
    "prev_term": TERM_OR_NONE,
    "hint_term": TERM_OR_NONE,
    "log_end_offset": OFFSET_OR_NONE,
    "prev_offset": OFFSET_OR_NONE,
    "commit_offset": OFFSET_OR_NONE,
    "match_offset": OFFSET_OR_NONE,
    "reject_offset": OFFSET_OR_NONE,
    "hint_end_offset": OFFSET_OR_NONE,
    "log_start_offset": OFFSET_OR_NONE,
    "granted": Bool(),
    "transfer": Bool(),
    "success": Bool(),
    "quiesce": Bool(),
    "entries": ListOf(_Nested(_ENTRY), ENTRIES_PER_APPEND_MAX),
    "membership": _Nested(_MEMBERSHIP),
}
_CODECS: dict[type[Any], tuple[int, StructCodec]] = {
    cls: (
        number,
        StructCodec(
            cls,
            tuple(
                (f.name, _FIELD_SPECS[f.name]) for f in dataclasses.fields(cls) if f.name != "group"
            ),
        ),
    )
    for number, cls in enumerate(RAFT_MESSAGE_TYPES, start=1)
}
_BY_NUMBER = {number: codec for number, codec in _CODECS.values()}
_TYPE_KEY = frozenset({"type"})


class _GroupRuns(Spec):
    """Raft messages as runs of one group each (see the module docstring)."""

    __slots__ = ()

    def encode(self, value: Any, out: PayloadWriter) -> Any:
        if not isinstance(value, tuple | list):
            raise SchemaError(f"expected a tuple of Raft messages, got {show(value)}")
        if len(value) > BUDGETS["raft_messages"]:
            raise SchemaError(f"more than {BUDGETS['raft_messages']} Raft messages")
        runs: list[dict[str, Any]] = []
        group: object = None
        for i, msg in enumerate(value):
            try:
                entry = _CODECS.get(type(msg))
                if entry is None:
                    raise SchemaError(f"not a Raft message: {show(msg)}")
                number, codec = entry
                if not runs or msg.group != group:
                    group = msg.group
                    try:
                        topic, partition = parse_partition_group(group)
                    except ValueError as exc:
                        raise SchemaError(str(exc)) from None
                    _TOPIC.decode(topic, None)
                    PARTITION.decode(partition, None)
                    runs.append({"topic": topic, "partition": partition, "messages": []})
                body: dict[str, Any] = {"type": number}
                codec.encode_fields(msg, out, body)
                runs[-1]["messages"].append(body)
            except SchemaError as exc:
                exc.path.append(f"[{i}]")
                raise
        return runs

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        if type(raw) is not list:
            raise SchemaError(f"expected a list of group runs, got {show(raw)}")
        if len(raw) > BUDGETS["raft_messages"]:
            raise SchemaError(f"more than {BUDGETS['raft_messages']} group runs")
        messages: list[Message] = []
        for i, run in enumerate(raw):
            try:
                messages.extend(self._decode_run(run, payload))
            except SchemaError as exc:
                exc.path.append(f"[{i}]")
                raise
        return tuple(messages)

    def _decode_run(self, run: Any, payload: PayloadReader | None) -> list[Message]:
        if type(run) is not dict or run.keys() != {"topic", "partition", "messages"}:
            raise SchemaError("a group run is a map of exactly topic, partition, messages")
        try:
            topic = _TOPIC.decode(run["topic"], None)
        except SchemaError as exc:
            exc.path.append("topic")
            raise
        try:
            partition = PARTITION.decode(run["partition"], None)
        except SchemaError as exc:
            exc.path.append("partition")
            raise
        raw_messages = run["messages"]
        if type(raw_messages) is not list or not raw_messages:
            raise SchemaError(f"messages: expected a non-empty list, got {show(raw_messages)}")
        if payload is not None:
            payload.spend("raft_messages", len(raw_messages))
        group = partition_group(topic, partition)
        out: list[Message] = []
        for j, item in enumerate(raw_messages):
            try:
                if type(item) is not dict:
                    raise SchemaError(f"expected a map, got {show(item)}")
                number = item.get("type")
                codec = _BY_NUMBER.get(number) if type(number) is int else None
                if codec is None:
                    raise SchemaError(f"unknown Raft message type {show(number)}")
                values = codec.decode_fields(item, payload, _TYPE_KEY)
                out.append(codec.cls(group=group, **values))
            except SchemaError as exc:
                exc.path.append(f"messages[{j}]")
                raise
        return out


@dataclass(frozen=True, slots=True)
class RaftRequest(WireMessage):
    """Partition-Raft messages from one broker to another, in the order they were sent.
    Every message's ``group`` must come from ``partition_group``."""

    API_KEY: ClassVar[ApiKey] = ApiKey.RAFT
    messages: tuple[Message, ...] = wire(_GroupRuns())
