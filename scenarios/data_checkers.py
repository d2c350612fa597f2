"""The checkers' common ground, and the data checkers: what the log holds.

:class:`CheckResult` is every checker's verdict; ``_Findings`` collects one checker's counts
and examples (at most :data:`MAX_EXAMPLES`); the shared helpers read the sends, polls and
final reads of a history. The data checkers (lost-write, inconsistent-offsets, duplicate,
unexpected, aborted-read, replicas-identical, realtime-order) judge what was written and
what the final reads and replica dumps hold. :mod:`raftlog.scenarios.checkers` has the
consumer, group and broker checkers, runs them all and re-exports everything here; the
conventions every checker keeps are in its docstring.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from raftlog.scenarios.history import (
    Event,
    FinalRead,
    Poll,
    ReplicaDump,
    Send,
)

MAX_EXAMPLES = 8


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One checker's verdict: ``counts`` maps what was counted (things looked at, and each
    kind of violation) to how many; ``examples`` holds at most :data:`MAX_EXAMPLES`
    violations in words."""

    name: str
    passed: bool
    counts: dict[str, int]
    examples: list[str]


T = TypeVar("T")


@dataclass
class _Findings:
    """Collects one checker's counts and examples; passes iff every violation count is 0.

    The result's counts list what was looked at first, then every violation kind (zeros
    included, so a report always shows what the checker could have found).
    """

    name: str
    violation_kinds: tuple[str, ...]
    looked_at: dict[str, int] = field(default_factory=dict)
    violations: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.violations = dict.fromkeys(self.violation_kinds, 0)

    def note(self, what: str, n: int = 1) -> None:
        """Count something looked at (not a violation)."""
        self.looked_at[what] = self.looked_at.get(what, 0) + n

    def violation(self, kind: str, example: str) -> None:
        self.violations[kind] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)

    def result(self) -> CheckResult:
        passed = all(n == 0 for n in self.violations.values())
        counts = {**self.looked_at, **self.violations}
        return CheckResult(self.name, passed, counts, list(self.examples))


# ------------------------------------------------------------------ shared helpers


def _events(history: Iterable[Event], cls: type[T]) -> list[T]:
    """The events of one type, in history order."""
    return [event for event in history if isinstance(event, cls)]


def _ok_sends(history: Iterable[Event]) -> list[Send]:
    return [send for send in _events(history, Send) if send.phase == "ok"]


def _final_records(history: Iterable[Event]) -> dict[int, dict[int, str]]:
    """partition -> offset -> value of the final reads (several reads of one partition are
    merged, the first read of an offset winning)."""
    final: dict[int, dict[int, str]] = {}
    for read in _events(history, FinalRead):
        records = final.setdefault(read.partition, {})
        for offset, value in read.records:
            records.setdefault(offset, value)
    return final


def _user_offsets_in(final_offsets: Sequence[int], low: int, high: int) -> list[int]:
    """The offsets of ``final_offsets`` (sorted) in ``[low, high)``."""
    start = bisect.bisect_left(final_offsets, low)
    end = bisect.bisect_left(final_offsets, high)
    return list(final_offsets[start:end])


def _sorted_final_offsets(history: Iterable[Event]) -> dict[int, list[int]]:
    return {p: sorted(records) for p, records in _final_records(history).items()}


def _describe_gap(offsets: list[int] | None) -> str:
    if offsets is None:
        return "no final read of the partition to show the gap holds no user record"
    shown = ", ".join(str(offset) for offset in offsets[:5])
    more = f" and {len(offsets) - 5} more" if len(offsets) > 5 else ""
    return f"the final read holds user records at {shown}{more}"


def _gap_user_offsets(
    final_offsets: dict[int, list[int]], partition: int, low: int, high: int
) -> list[int] | None:
    """The user records the final read holds in ``[low, high)`` of ``partition``; ``None``
    when the partition has no final read (nothing proves the gap empty)."""
    offsets = final_offsets.get(partition)
    if offsets is None:
        return None
    return _user_offsets_in(offsets, low, high)


def _read_records(history: Iterable[Event]) -> Iterable[tuple[int, int, str, str]]:
    """Every record read by a client: ``(partition, offset, value, where)`` of the polls and
    final reads."""
    for event in history:
        if isinstance(event, Poll):
            where = f"poll by {event.member} generation {event.generation} at t={event.t:.2f}"
            for offset, value in event.records:
                yield event.partition, offset, value, where
        elif isinstance(event, FinalRead):
            for offset, value in event.records:
                yield event.partition, offset, value, "final read"


def _partitions_not_read(
    findings: _Findings, sends: Sequence[Send], final: dict[int, dict[int, str]]
) -> set[int]:
    """Record a violation per partition with ok sends and no final read; return them."""
    unread = sorted({send.partition for send in sends} - set(final))
    for partition in unread:
        acked = sum(1 for send in sends if send.partition == partition)
        findings.violation(
            "partition-not-read",
            f"partition {partition}: {acked} acknowledged sends but no final read",
        )
    return set(unread)


def _end(send: Send) -> float:
    """The end of a completed send (callers keep only sends with an outcome)."""
    assert send.t_end is not None, send
    return send.t_end


def _completed_at(send: Send) -> float:
    """When a send's outcome came; its start for an invoke."""
    return send.t_end if send.t_end is not None else send.t_start


# ------------------------------------------------------------------ data checkers


def check_lost_write(history: Sequence[Event]) -> CheckResult:
    """lost-write: an ok Send whose ``(partition, offset)`` in the final read is missing
    (``lost``) or holds another value (``wrong-value``).

    Ok sends without an offset cannot be placed (counted ``ok-without-offset``; unseen still
    looks for their values). A partition with ok sends and no final read is
    ``partition-not-read``.
    """
    findings = _Findings("lost-write", ("lost", "wrong-value", "partition-not-read"))
    final = _final_records(history)
    sends = _ok_sends(history)
    unread = _partitions_not_read(findings, sends, final)
    for send in sends:
        findings.note("acknowledged")
        if send.offset is None:
            findings.note("ok-without-offset")
        elif send.partition not in unread:
            _check_acked_offset(findings, send, send.offset, final[send.partition])
    return findings.result()


def _check_acked_offset(
    findings: _Findings, send: Send, offset: int, final: dict[int, str]
) -> None:
    where = (
        f"partition {send.partition} offset {offset}: acknowledged {send.value!r} "
        f"(t={_completed_at(send):.2f})"
    )
    held = final.get(offset)
    if held is None:
        findings.violation("lost", f"{where}, the final read has no record there")
    elif held != send.value:
        findings.violation("wrong-value", f"{where}, the final read holds {held!r}")


def check_inconsistent_offsets(history: Sequence[Event]) -> CheckResult:
    """inconsistent-offsets: one ``(partition, offset)`` holds two different values anywhere:
    ok Send acknowledgements, polls, final reads, and the committed range of every replica
    dump (offsets below its ``committed_end``; an uncommitted tail may legitimately differ).

    Counts one violation per ``(partition, offset)`` that holds more than one value.
    """
    findings = _Findings("inconsistent-offsets", ("offsets-with-two-values",))
    seen: dict[tuple[int, int], dict[str, str]] = defaultdict(dict)  # value -> first source
    for partition, offset, value, where in _located_values(history):
        seen[(partition, offset)].setdefault(value, where)
    findings.note("offsets-seen", len(seen))
    for (partition, offset), sources in sorted(seen.items()):
        if len(sources) > 1:
            held = ", ".join(f"{value!r} ({where})" for value, where in sources.items())
            findings.violation(
                "offsets-with-two-values", f"partition {partition} offset {offset} holds {held}"
            )
    return findings.result()


def _located_values(history: Iterable[Event]) -> Iterable[tuple[int, int, str, str]]:
    """``(partition, offset, value, where)`` of every acknowledgement, record read and
    committed replica record."""
    for send in _ok_sends(history):
        if send.offset is not None:
            where = f"ack to {send.process} at t={_completed_at(send):.2f}"
            yield send.partition, send.offset, send.value, where
    yield from _read_records(history)
    for dump in _events(history, ReplicaDump):
        for offset, value in dump.records:
            if offset < dump.committed_end:
                yield dump.partition, offset, value, f"replica on broker {dump.broker}"


def check_duplicate(history: Sequence[Event]) -> CheckResult:
    """duplicate: one value appears at two different ``(partition, offset)`` positions in
    the final reads and polls together (the idempotent producer must never write a value
    twice; re-reading the same offset is not a duplicate).

    Counts one violation per value found at more than one position.
    """
    findings = _Findings("duplicate", ("duplicated-values",))
    positions: dict[str, dict[tuple[int, int], str]] = defaultdict(dict)
    for partition, offset, value, where in _read_records(history):
        positions[value].setdefault((partition, offset), where)
    findings.note("values-read", len(positions))
    for value, where_found in positions.items():
        if len(where_found) > 1:
            found = ", ".join(
                f"partition {p} offset {o} ({where})"
                for (p, o), where in sorted(where_found.items())
            )
            findings.violation("duplicated-values", f"value {value!r} at {found}")
    return findings.result()


def check_unexpected(history: Sequence[Event]) -> CheckResult:
    """unexpected: a value read by a poll or final read, or held by any replica dump (its
    whole log), that no Send of any phase ever carried.

    Counts one violation per such value.
    """
    findings = _Findings("unexpected", ("unexpected-values",))
    sent = {send.value for send in _events(history, Send)}
    reported: set[str] = set()
    for partition, offset, value, where in _stored_values(history):
        findings.note("records-looked-at")
        if value not in sent and value not in reported:
            reported.add(value)
            findings.violation(
                "unexpected-values",
                f"value {value!r} at partition {partition} offset {offset} ({where}) "
                "was never sent",
            )
    return findings.result()


def _stored_values(history: Iterable[Event]) -> Iterable[tuple[int, int, str, str]]:
    yield from _read_records(history)
    for dump in _events(history, ReplicaDump):
        for offset, value in dump.records:
            yield dump.partition, offset, value, f"replica on broker {dump.broker}"


def check_aborted_read(history: Sequence[Event]) -> CheckResult:
    """aborted-read: a value whose sends were all reported ``fail`` (at least one ``fail``,
    no ``ok`` and no ``info``) is returned by a poll or a final read.

    Counts one violation per such value read.
    """
    findings = _Findings("aborted-read", ("aborted-values-read",))
    failed = _failed_values(history)
    findings.note("failed-values", len(failed))
    reported: set[str] = set()
    for partition, offset, value, where in _read_records(history):
        if value in failed and value not in reported:
            reported.add(value)
            findings.violation(
                "aborted-values-read",
                f"value {value!r} (send failed at t={failed[value]:.2f}) read at partition "
                f"{partition} offset {offset} ({where})",
            )
    return findings.result()


def _failed_values(history: Iterable[Event]) -> dict[str, float]:
    """value -> time of its failure, for the values whose only outcomes are ``fail``."""
    failed: dict[str, float] = {}
    maybe_written: set[str] = set()
    for send in _events(history, Send):
        if send.phase == "fail":
            failed.setdefault(send.value, _completed_at(send))
        elif send.phase in ("ok", "info"):
            maybe_written.add(send.value)
    return {value: t for value, t in failed.items() if value not in maybe_written}


def check_replicas_identical(history: Sequence[Event]) -> CheckResult:
    """replicas-identical: the replica dumps of one partition differ in its committed range.

    The committed range of a partition is ``[0, E)`` with ``E`` the largest ``committed_end``
    of its dumps (what any replica knew committed); after quiescence every replica must hold
    exactly the same records there. An offset some replica holds in that range and another
    lacks is ``missing``; one held by all with different values is ``differing``. Counts one
    violation per ``(partition, offset)``.
    """
    findings = _Findings("replicas-identical", ("missing", "differing"))
    dumps_of: dict[int, list[ReplicaDump]] = defaultdict(list)
    for dump in _events(history, ReplicaDump):
        dumps_of[dump.partition].append(dump)
    for partition in sorted(dumps_of):
        findings.note("partitions")
        findings.note("replicas", len(dumps_of[partition]))
        _compare_replicas(findings, partition, dumps_of[partition])
    return findings.result()


def _compare_replicas(findings: _Findings, partition: int, dumps: list[ReplicaDump]) -> None:
    end = max(dump.committed_end for dump in dumps)
    held = {dump.broker: {o: v for o, v in dump.records if o < end} for dump in dumps}
    offsets = sorted({offset for records in held.values() for offset in records})
    for offset in offsets:
        values = {broker: records.get(offset) for broker, records in held.items()}
        if len(set(values.values())) == 1:
            continue
        kind = "missing" if None in values.values() else "differing"
        described = ", ".join(
            f"broker {broker} holds {'nothing' if value is None else repr(value)}"
            for broker, value in sorted(values.items())
        )
        findings.violation(
            kind,
            f"partition {partition} offset {offset} (committed range ends at {end}): {described}",
        )


def check_realtime_order(history: Sequence[Event]) -> CheckResult:
    """realtime-order: two ok Sends A and B to one partition, A ended (``t_end``) before B
    started (``t_start``), and A's offset is not below B's (``A.offset >= B.offset``).

    Counts one violation per such B (named with the A of highest offset).
    """
    findings = _Findings("realtime-order", ("out-of-order",))
    by_partition: dict[int, list[Send]] = defaultdict(list)
    for send in _ok_sends(history):
        if send.offset is not None and send.t_end is not None:
            by_partition[send.partition].append(send)
    for partition in sorted(by_partition):
        findings.note("acknowledged", len(by_partition[partition]))
        _check_partition_order(findings, by_partition[partition])
    return findings.result()


def _check_partition_order(findings: _Findings, sends: list[Send]) -> None:
    """Sweep: B in order of start; every A that ended before B started is folded into the
    highest offset seen so far."""
    by_end = sorted(sends, key=_end)
    next_ended = 0
    highest: Send | None = None
    for later in sorted(sends, key=lambda send: send.t_start):
        while next_ended < len(by_end) and _end(by_end[next_ended]) < later.t_start:
            earlier = by_end[next_ended]
            if highest is None or _offset(earlier) > _offset(highest):
                highest = earlier
            next_ended += 1
        if highest is not None and _offset(highest) >= _offset(later):
            findings.violation(
                "out-of-order",
                f"partition {later.partition}: {highest.value!r} got offset "
                f"{_offset(highest)} and ended at t={_end(highest):.2f}, before "
                f"{later.value!r} started at t={later.t_start:.2f}, which got offset "
                f"{_offset(later)}",
            )


def _offset(send: Send) -> int:
    assert send.offset is not None, send
    return send.offset
