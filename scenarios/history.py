"""The history of a fault-injection scenario run: its events, and how they are stored.

A scenario run records everything the checkers need as a list of events: what the workload's
producers sent and were told, what the consumers polled and committed, what the group
assigned, what the end-of-run reads found, what the brokers said about their Raft groups, and
what the nemesis did to the cluster. The checkers (:mod:`raftlog.scenarios.checkers`) read
only this list; they never talk to a broker.

Conventions every event follows:

- times (``t``, ``t_start``, ``t_end``) are ``time.monotonic()`` seconds of the machine that
  runs the scenario; every process runs on that machine, so times of different processes
  compare. History order is append order; checkers that relate events of different
  processes use the times, not the order;
- the workload writes one topic and runs one consumer group, so a partition is named by its
  number alone and the members' events (polls, commits, assignments) belong to that group;
- offsets are Kafka offsets; a committed offset is the offset of the next record to read;
- ``records`` lists are user records only, as ``(offset, value)`` pairs in offset order:
  control records (for instance the entry a new Raft leader appends) hold no user value and
  are left out, so their offsets are simply missing;
- a value is the unique string the workload sent (``"<proc>-<seq>"``); no value is sent twice;
- brokers are named by their node id; a Raft ``group`` by the broker's name for it (for
  instance ``"metadata"`` or ``"t-3"``).

Storage is JSON lines: one event per line, a JSON object with a ``"type"`` field (the event's
name in snake case, e.g. ``"send"``, ``"committed_read"``) and one field per dataclass field;
``(offset, value)`` pairs are two-element arrays. :class:`HistoryWriter` appends and flushes
each line, so a run that dies keeps every event written before; :func:`read_history` reads a
file back and names the line of anything it cannot read (:class:`HistoryFormatError`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TextIO, get_args, get_type_hints

Phase = Literal["invoke", "ok", "fail", "info"]
"""A send's phase: ``invoke`` when it starts; then ``ok`` (acknowledged, with its offset),
``fail`` (certainly not written) or ``info`` (outcome unknown, e.g. a timeout)."""

Record = tuple[int, str]
"""A user record as read: ``(offset, value)``."""

NO_GENERATION = -1
"""The generation of a reader outside the consumer group (it polls, never joins)."""


# ------------------------------------------------------------------ the workload's events


@dataclass(frozen=True, slots=True)
class Send:
    """One phase of a producer's send of ``value`` to ``partition`` (acks=all).

    ``invoke`` is recorded when the send starts (``t_end`` is ``None``); exactly one of
    ``ok``/``fail``/``info`` follows with the same value and ``t_start`` and the time the
    outcome came (``t_end``). ``offset`` is the acknowledged offset of an ``ok``, else ``None``.
    An invoke with no outcome (the run ended first) counts as ``info``.
    """

    process: str
    key: str | None
    value: str
    partition: int
    phase: Phase
    offset: int | None
    t_start: float
    t_end: float | None


@dataclass(frozen=True, slots=True)
class Poll:
    """The records one poll returned to ``member`` for ``partition`` (possibly none).

    ``generation`` is the member's group generation when it polled; a reader outside the
    group uses :data:`NO_GENERATION`. Treat ``records`` as read-only.
    """

    member: str
    generation: int
    partition: int
    records: list[Record]
    t: float


@dataclass(frozen=True, slots=True)
class Seek:
    """``member`` moved its position in ``partition`` to ``offset``: its next poll of the
    partition need not continue from the previous one."""

    member: str
    partition: int
    offset: int
    t: float


@dataclass(frozen=True, slots=True)
class Commit:
    """``member`` of ``generation`` committed ``offset`` for ``partition``; ``accepted`` is
    the broker's answer as the client saw it: ``True`` (taken), ``False`` (refused, e.g.
    ILLEGAL_GENERATION) or ``None`` when no answer came (a timeout, a lost connection: the
    broker may or may not have taken it).

    ``t`` is when the request was *sent*: the broker decided after that, so an assignment
    seen before ``t`` was in force when the broker judged the commit.
    """

    member: str
    generation: int
    partition: int
    offset: int
    accepted: bool | None
    t: float


@dataclass(frozen=True, slots=True)
class CommittedRead:
    """The committed offset of ``partition`` for ``group`` as the workload read it back from
    the cluster (OFFSET_FETCH); ``t`` is when the answer came."""

    group: str
    partition: int
    offset: int
    t: float


@dataclass(frozen=True, slots=True)
class Assign:
    """``member`` learned its ``partitions`` for ``generation`` (the SYNC_GROUP answer of a
    rebalance) at ``t``. A member with no partitions has an empty list."""

    member: str
    generation: int
    partitions: list[int]
    t: float


@dataclass(frozen=True, slots=True)
class FinalRead:
    """The end-of-run read of ``partition`` from offset 0 to its end, after every fault was
    healed and the cluster recovered."""

    partition: int
    records: list[Record]


@dataclass(frozen=True, slots=True)
class ReplicaDump:
    """The whole log of ``broker``'s replica of ``partition`` after the run stopped, and the
    end of its committed range (the offset after its last committed record; records at or
    above it may be an uncommitted tail)."""

    partition: int
    broker: int
    records: list[Record]
    committed_end: int


# ------------------------------------------------------------------ the brokers' events


@dataclass(frozen=True, slots=True)
class BecameLeader:
    """``broker`` became the leader of Raft ``group`` in ``term``."""

    group: str
    broker: int
    term: int
    t: float


@dataclass(frozen=True, slots=True)
class Vote:
    """``broker`` granted its vote in Raft ``group``'s ``term`` to ``candidate``."""

    group: str
    broker: int
    term: int
    candidate: int
    t: float


@dataclass(frozen=True, slots=True)
class TermOnRestart:
    """``broker``'s term in Raft ``group`` before it stopped and after it restarted."""

    group: str
    broker: int
    term_before: int
    term_after: int


# ------------------------------------------------------------------ the nemesis and the processes


@dataclass(frozen=True, slots=True)
class Fault:
    """The nemesis started a fault: ``kind`` (e.g. ``"kill"``, ``"partition"``), on
    ``target`` (a broker, a link, a set of nodes), with free-form ``detail``. A fault stays
    active until the next :class:`Heal`. ``available``: while it lasts a majority of the
    brokers stays up and connected, and clients can reach them, so every partition is
    expected to keep acknowledging (SCENARIOS.md's "a partition with a connected
    majority"); False for faults that take that away (every broker killed, a majority
    down, clients cut from a broker). Absent in a stored line: True."""

    kind: str
    target: str
    detail: str
    t: float
    available: bool = True


@dataclass(frozen=True, slots=True)
class Heal:
    """The nemesis ended every active fault (links restored, paused processes resumed,
    killed ones restarted)."""

    t: float


@dataclass(frozen=True, slots=True)
class ProcessExit:
    """``broker``'s process ended with exit ``code`` (negative: killed by that signal);
    ``killed_by_us`` when the scenario stopped or killed it."""

    broker: int
    killed_by_us: bool
    code: int
    t: float


@dataclass(frozen=True, slots=True)
class Traceback:
    """An unhandled traceback found in ``broker``'s log."""

    broker: int
    text: str


@dataclass(frozen=True, slots=True)
class MemorySample:
    """``broker``'s resident set size at ``t``."""

    broker: int
    rss_bytes: int
    t: float


Event = (
    Send
    | Poll
    | Seek
    | Commit
    | CommittedRead
    | Assign
    | FinalRead
    | ReplicaDump
    | BecameLeader
    | Vote
    | TermOnRestart
    | Fault
    | Heal
    | ProcessExit
    | Traceback
    | MemorySample
)

EVENT_TYPES: dict[str, type[Event]] = {
    "send": Send,
    "poll": Poll,
    "seek": Seek,
    "commit": Commit,
    "committed_read": CommittedRead,
    "assign": Assign,
    "final_read": FinalRead,
    "replica_dump": ReplicaDump,
    "became_leader": BecameLeader,
    "vote": Vote,
    "term_on_restart": TermOnRestart,
    "fault": Fault,
    "heal": Heal,
    "process_exit": ProcessExit,
    "traceback": Traceback,
    "memory_sample": MemorySample,
}
"""The ``"type"`` of each event in the JSON lines format."""

_TYPE_NAMES: dict[type[Event], str] = {cls: name for name, cls in EVENT_TYPES.items()}


# ------------------------------------------------------------------ JSON lines


class HistoryFormatError(ValueError):
    """A history line that is not a valid event; ``line_number`` counts from 1."""

    def __init__(self, line_number: int, reason: str) -> None:
        super().__init__(f"history line {line_number}: {reason}")
        self.line_number = line_number
        self.reason = reason


def to_json_line(event: Event) -> str:
    """One event as a line of JSON (without the newline)."""
    fields: dict[str, Any] = {"type": _TYPE_NAMES[type(event)]}
    for field in dataclasses.fields(event):
        fields[field.name] = getattr(event, field.name)
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def from_json_line(line: str) -> Event:
    """The event of one line of JSON; ``ValueError`` saying what is wrong with it."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    type_name = obj.pop("type", None)
    cls = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise ValueError(f"unknown event type {type_name!r}")
    return cls(**_decode_fields(cls, obj))


def _decode_fields(cls: type[Event], obj: dict[str, Any]) -> dict[str, Any]:
    hints = get_type_hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    fields = {field.name: field for field in dataclasses.fields(cls)}
    missing = [
        name
        for name in names
        if name not in obj
        and fields[name].default is dataclasses.MISSING
        and fields[name].default_factory is dataclasses.MISSING
    ]
    extra = sorted(set(obj) - set(names))
    if missing or extra:
        raise ValueError(f"{_TYPE_NAMES[cls]}: missing fields {missing}, unexpected fields {extra}")
    decoded: dict[str, Any] = {}
    for name in names:
        if name not in obj:
            continue  # a field with a default, absent from an older line
        try:
            decoded[name] = _DECODERS[hints[name]](obj[name])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{_TYPE_NAMES[cls]}.{name}: {exc}") from None
    return decoded


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _optional(decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def decode_optional(value: Any) -> Any:
        return None if value is None else decode(value)

    return decode_optional


def _int_list(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {value!r}")
    return [_int(item) for item in value]


def _record_list(value: Any) -> list[Record]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {value!r}")
    return [_record(item) for item in value]


def _record(value: Any) -> Record:
    if not isinstance(value, list) or len(value) != 2:
        raise TypeError(f"expected an [offset, value] pair, got {value!r}")
    return (_int(value[0]), _str(value[1]))


def _phase(value: Any) -> Phase:
    if value not in get_args(Phase):
        raise ValueError(f"expected one of {list(get_args(Phase))}, got {value!r}")
    phase: Phase = value
    return phase


_DECODERS: dict[Any, Callable[[Any], Any]] = {
    int: _int,
    float: _float,
    str: _str,
    bool: _bool,
    bool | None: _optional(_bool),
    int | None: _optional(_int),
    float | None: _optional(_float),
    str | None: _optional(_str),
    list[int]: _int_list,
    list[Record]: _record_list,
    Phase: _phase,
}


def read_history(path: Path | str) -> list[Event]:
    """Every event of a JSON lines history file, in file order; blank lines are skipped.

    Raises :class:`HistoryFormatError` naming the first line that is not a valid event
    (including a torn last line of a run that died mid-write).
    """
    with open(path, encoding="utf-8") as file:
        return list(parse_lines(file))


def parse_lines(lines: Iterable[str]) -> Iterator[Event]:
    """The events of JSON lines, one per non-blank line (see :func:`read_history`)."""
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield from_json_line(line)
        except ValueError as exc:
            raise HistoryFormatError(line_number, str(exc)) from None


def write_history(path: Path | str, events: Iterable[Event]) -> None:
    """Write ``events`` to a new history file at ``path`` (replacing any)."""
    with open(path, "w", encoding="utf-8") as file:
        for event in events:
            file.write(to_json_line(event) + "\n")


class HistoryWriter:
    """Appends events to a history file, one flushed line each, from any thread.

    Opens ``path`` for appending (a history is never rewritten); use it as a context
    manager or call :meth:`close`. Each line is flushed to the operating system before
    :meth:`append` returns, so a writer process that dies loses nothing it appended.
    """

    def __init__(self, path: Path | str) -> None:
        self._file: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close)
        self._lock = threading.Lock()

    def append(self, event: Event) -> None:
        line = to_json_line(event) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
