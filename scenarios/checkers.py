"""The checkers of a scenario run: pure functions from a history to a verdict.

Each checker of SCENARIOS.md's table is one function ``check_<name>(history, **params)``
returning a :class:`CheckResult`: whether it passed, counts (what it looked at and how many
violations of each kind it found) and up to :data:`MAX_EXAMPLES` human-readable examples that
name the partition, offset, value, member, generation or time involved. A checker passes
exactly when every one of its violation counts is zero. Each function's docstring states the
exact property it checks; the history's conventions are in :mod:`raftlog.scenarios.history`.

Where a checker relies on the end-of-run read (:class:`FinalRead`), a partition that has
acknowledged sends but no final read is a violation, never a silent pass: the checker could
not look. Several final reads of one partition are merged; their disagreements are the
business of inconsistent-offsets.

A consumer skips control records, so a gap in the offsets it polls is not by itself a
violation: a gap is a skip only if the final read holds a user record inside it (or the
partition has no final read to prove the gap empty).

:func:`run_all` runs every checker in the table's order; :func:`format_results` renders the
results as the report lines of SCENARIOS.md's "Output" section.

This module holds the consumer, group and broker checkers; :class:`CheckResult`, the history
helpers every checker shares and the data checkers (lost-write to realtime-order) are in
:mod:`raftlog.scenarios.data_checkers`, and importable from here too.
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Re-exported: the names in __all__, and the private helpers that were defined in this
# module before the data checkers moved out.
from raftlog.scenarios.data_checkers import (  # noqa: F401
    MAX_EXAMPLES,
    CheckResult,
    T,
    _check_acked_offset,
    _check_partition_order,
    _compare_replicas,
    _completed_at,
    _describe_gap,
    _end,
    _events,
    _failed_values,
    _final_records,
    _Findings,
    _gap_user_offsets,
    _located_values,
    _offset,
    _ok_sends,
    _partitions_not_read,
    _read_records,
    _sorted_final_offsets,
    _stored_values,
    _user_offsets_in,
    check_aborted_read,
    check_duplicate,
    check_inconsistent_offsets,
    check_lost_write,
    check_realtime_order,
    check_replicas_identical,
    check_unexpected,
)
from raftlog.scenarios.history import (
    Assign,
    BecameLeader,
    Commit,
    CommittedRead,
    Event,
    Fault,
    Heal,
    MemorySample,
    Poll,
    ProcessExit,
    Seek,
    Send,
    TermOnRestart,
    Traceback,
    Vote,
)

__all__ = [
    "CHECK_NAMES",
    "MAX_EXAMPLES",
    "NAME_WIDTH",
    "CheckParams",
    "CheckResult",
    "check_aborted_read",
    "check_availability",
    "check_committed_monotonic",
    "check_duplicate",
    "check_election_safety",
    "check_exclusive_assignment",
    "check_fenced_commits",
    "check_group_start",
    "check_inconsistent_offsets",
    "check_lost_write",
    "check_poll_continuity",
    "check_process_health",
    "check_realtime_order",
    "check_replicas_identical",
    "check_unexpected",
    "check_unseen",
    "format_results",
    "run_all",
]


CHECK_NAMES: tuple[str, ...] = (
    "lost-write",
    "inconsistent-offsets",
    "duplicate",
    "unexpected",
    "aborted-read",
    "replicas-identical",
    "realtime-order",
    "poll-continuity",
    "group-start",
    "exclusive-assignment",
    "fenced-commits",
    "committed-monotonic",
    "unseen",
    "election-safety",
    "availability",
    "process-health",
)
"""Every checker, in the order of SCENARIOS.md's table (and of :func:`run_all`)."""


@dataclass(frozen=True, slots=True)
class CheckParams:
    """The tunable limits of the checkers that need them (S00 calibrates U and R)."""

    max_unavailable_s: float = 10.0
    """U: the longest a partition may go without an ok send while no fault is active."""
    max_recovery_s: float = 30.0
    """R: the longest after a heal until a partition acknowledges a send again."""
    max_rss_growth: float = 4.0
    """The largest allowed last/first ratio of a broker process's resident set size."""


# ------------------------------------------------------------------ consumer and group checkers


def check_poll_continuity(history: Sequence[Event]) -> CheckResult:
    """poll-continuity: within one ``(member, generation, partition)``, with no Seek of that
    member and partition in between (in history order), the offsets polled must go up one
    by one: each record's offset, the first of a poll included, must be the previous record's
    offset + 1.

    A smaller or equal offset is a ``rewind``. A larger one is a ``skip`` only if the final
    read holds a user record strictly between the two (the consumer steps over control
    records), or if the partition has no final read. Empty polls change nothing. An Assign
    of the partition to the member starts it afresh like a Seek (a member may be given its
    partitions again in the same generation, e.g. after its coordinator restarted; where
    it starts then is group-start's to judge).
    """
    findings = _Findings("poll-continuity", ("rewind", "skip"))
    final_offsets = _sorted_final_offsets(history)
    last_offset: dict[tuple[str, int, int], int] = {}
    for event in history:
        if isinstance(event, Seek):
            _forget_position(last_offset, event.member, event.partition)
        elif isinstance(event, Assign):
            for partition in event.partitions:
                _forget_position(last_offset, event.member, partition)
        elif isinstance(event, Poll):
            findings.note("polls")
            _check_poll(findings, event, last_offset, final_offsets)
    return findings.result()


def _forget_position(
    last_offset: dict[tuple[str, int, int], int], member: str, partition: int
) -> None:
    for key in [k for k in last_offset if k[0] == member and k[2] == partition]:
        del last_offset[key]


def _check_poll(
    findings: _Findings,
    poll: Poll,
    last_offset: dict[tuple[str, int, int], int],
    final_offsets: dict[int, list[int]],
) -> None:
    key = (poll.member, poll.generation, poll.partition)
    for offset, _value in poll.records:
        previous = last_offset.get(key)
        last_offset[key] = offset
        if previous is None or offset == previous + 1:
            continue
        where = (
            f"member {poll.member} generation {poll.generation} partition {poll.partition}: "
            f"poll at t={poll.t:.2f} went from offset {previous} to {offset}"
        )
        if offset <= previous:
            findings.violation("rewind", where)
            continue
        skipped = _gap_user_offsets(final_offsets, poll.partition, previous + 1, offset)
        if skipped is None or skipped:
            findings.violation("skip", f"{where}; {_describe_gap(skipped)}")


def check_group_start(history: Sequence[Event]) -> CheckResult:
    """group-start: after an Assign of ``partition`` to ``member`` in ``generation``, the
    member's first record polled of the partition in that generation after the Assign (by
    ``t``; a member may be assigned again in the same generation) must be at the group's
    committed offset at the time of the assignment: the offset of the latest (by ``t``)
    accepted Commit of the partition sent before the Assign, or 0 when there is none. A
    commit without an answer (``accepted is None``) sent after that one and before the
    Assign may have been taken too, so its offset is also a possible start.

    A first offset that fits no possible start is ``rewound`` when it is below all of them,
    else ``skipped``. A first offset fits a start ``c`` when it equals ``c``, or is above it
    and the final read holds no user record in ``[c, first)`` (the consumer steps over
    control records; without a final read of the partition, only equality fits). An
    assignment whose partition the member never polled a record of is not judged
    (``not-polled``). The workload's members never seek.
    """
    findings = _Findings("group-start", ("rewound", "skipped"))
    final_offsets = _sorted_final_offsets(history)
    commits = _commits_by_partition(history)
    polls = _polls_with_records(history)
    for assign in _events(history, Assign):
        for partition in assign.partitions:
            first = _first_polled_after(polls, assign, partition)
            if first is None:
                findings.note("not-polled")
                continue
            findings.note("assignments-checked")
            starts = _possible_starts(commits.get(partition, []), assign.t)
            _check_start(findings, assign, partition, starts, first, final_offsets)
    return findings.result()


def _polls_with_records(
    history: Iterable[Event],
) -> dict[tuple[str, int, int], list[tuple[float, int]]]:
    """(member, generation, partition) -> (t, first offset) of each poll with records, in
    time order."""
    polls: dict[tuple[str, int, int], list[tuple[float, int]]] = defaultdict(list)
    for poll in _events(history, Poll):
        if poll.records:
            polls[(poll.member, poll.generation, poll.partition)].append(
                (poll.t, poll.records[0][0])
            )
    for found in polls.values():
        found.sort()
    return polls


def _first_polled_after(
    polls: dict[tuple[str, int, int], list[tuple[float, int]]], assign: Assign, partition: int
) -> int | None:
    """The first offset the member polled of the partition in the assignment's generation
    at or after the assignment."""
    found = polls.get((assign.member, assign.generation, partition), [])
    i = bisect.bisect_left(found, (assign.t, -1))
    return found[i][1] if i < len(found) else None


def _commits_by_partition(history: Iterable[Event]) -> dict[int, list[Commit]]:
    """partition -> its commits that may have been taken (accepted or unanswered), in time
    order. A member records each commit as unanswered before sending it and again with
    the broker's answer (same member, generation, partition, offset and ``t``); the
    unanswered record of a commit that got an answer is left out."""
    all_commits = _events(history, Commit)
    answered = {
        (c.member, c.generation, c.partition, c.offset, c.t)
        for c in all_commits
        if c.accepted is not None
    }
    commits: dict[int, list[Commit]] = defaultdict(list)
    for commit in sorted(all_commits, key=lambda commit: commit.t):
        if commit.accepted is None and (
            (commit.member, commit.generation, commit.partition, commit.offset, commit.t)
            in answered
        ):
            continue
        if commit.accepted is not False:
            commits[commit.partition].append(commit)
    return commits


@dataclass(frozen=True, slots=True)
class _Start:
    """A possible committed offset at an assignment, and where it came from."""

    offset: int
    origin: str


def _possible_starts(commits: Sequence[Commit], t: float) -> list[_Start]:
    """The committed offsets the group may have had at ``t``: the latest accepted commit
    sent before ``t`` (or the partition start), then every unanswered commit after it."""
    starts = [_Start(0, "the partition start: no commit before")]
    for commit in commits:
        if commit.t >= t:
            break
        origin = f"{commit.member} generation {commit.generation} at t={commit.t:.2f}"
        if commit.accepted:
            starts = [_Start(commit.offset, f"committed by {origin}")]
        else:
            starts.append(_Start(commit.offset, f"sent without an answer by {origin}"))
    return starts


def _check_start(
    findings: _Findings,
    assign: Assign,
    partition: int,
    starts: list[_Start],
    first: int,
    final_offsets: dict[int, list[int]],
) -> None:
    gaps = [_gap_user_offsets(final_offsets, partition, s.offset, first) for s in starts]
    fits = [
        first == start.offset or (first > start.offset and gap == [])
        for start, gap in zip(starts, gaps, strict=True)
    ]
    if any(fits):
        return
    possible = " or ".join(f"{start.offset} ({start.origin})" for start in starts)
    where = (
        f"member {assign.member} generation {assign.generation} partition {partition} "
        f"(assigned at t={assign.t:.2f}) first polled offset {first}, the group's committed "
        f"offset was {possible}"
    )
    if first < min(start.offset for start in starts):
        findings.violation("rewound", where)
    else:
        findings.violation("skipped", f"{where}; {_describe_gap(gaps[0])}")


def check_exclusive_assignment(history: Sequence[Event]) -> CheckResult:
    """exclusive-assignment: the Assigns of one generation give one partition to two or
    more different members. Counts one violation per ``(generation, partition)``."""
    findings = _Findings("exclusive-assignment", ("shared-partitions",))
    owners: dict[tuple[int, int], set[str]] = defaultdict(set)
    for assign in _events(history, Assign):
        findings.note("assignments")
        for partition in assign.partitions:
            owners[(assign.generation, partition)].add(assign.member)
    for (generation, partition), members in sorted(owners.items()):
        if len(members) > 1:
            findings.violation(
                "shared-partitions",
                f"generation {generation} partition {partition} assigned to "
                f"{', '.join(sorted(members))}",
            )
    return findings.result()


def check_fenced_commits(history: Sequence[Event]) -> CheckResult:
    """fenced-commits: an accepted Commit (``accepted is True``) whose generation is older
    than the latest generation any member was assigned before the commit was sent
    (``stale-generation``), or whose member was not assigned the partition in the commit's
    generation (no Assign of that member and generation, or one without the partition:
    ``non-owner``).

    A commit can count as both.
    """
    findings = _Findings("fenced-commits", ("stale-generation", "non-owner"))
    assigns = sorted(_events(history, Assign), key=lambda assign: assign.t)
    times = [assign.t for assign in assigns]
    newest_so_far = _running_max([assign.generation for assign in assigns])
    owned = {(a.member, a.generation): set(a.partitions) for a in assigns}
    for commit in _events(history, Commit):
        if not commit.accepted:
            continue
        findings.note("accepted-commits")
        where = (
            f"commit of offset {commit.offset} for partition {commit.partition} by "
            f"{commit.member} generation {commit.generation} at t={commit.t:.2f} was accepted"
        )
        assigned_before = bisect.bisect_left(times, commit.t)
        if assigned_before and newest_so_far[assigned_before - 1] > commit.generation:
            newest = newest_so_far[assigned_before - 1]
            findings.violation("stale-generation", f"{where}; generation {newest} existed")
        if commit.partition not in owned.get((commit.member, commit.generation), set()):
            findings.violation("non-owner", f"{where}; the member did not own the partition")
    return findings.result()


def _running_max(values: Sequence[int]) -> list[int]:
    highest: list[int] = []
    for value in values:
        highest.append(value if not highest else max(highest[-1], value))
    return highest


def check_committed_monotonic(history: Sequence[Event]) -> CheckResult:
    """committed-monotonic: the group's committed offset of a partition went backwards.

    The observations of a partition's committed offset are the accepted Commits
    (``accepted is True``, at the time they were sent; unanswered ones may never have been
    taken) and the CommittedReads (at the time the answer came), in time
    order; each must be at least the highest one before it. Counts one violation per
    observation below an earlier one.
    """
    findings = _Findings("committed-monotonic", ("went-backwards",))
    observations: dict[int, list[tuple[float, int, str]]] = defaultdict(list)
    for event in history:
        if isinstance(event, Commit) and event.accepted:
            what = f"commit by {event.member} generation {event.generation} at t={event.t:.2f}"
            observations[event.partition].append((event.t, event.offset, what))
        elif isinstance(event, CommittedRead):
            what = f"read back for group {event.group} at t={event.t:.2f}"
            observations[event.partition].append((event.t, event.offset, what))
    for partition in sorted(observations):
        in_time_order = sorted(observations[partition], key=lambda seen: seen[0])
        findings.note("observations", len(in_time_order))
        _check_never_lower(findings, partition, in_time_order)
    return findings.result()


def _check_never_lower(
    findings: _Findings, partition: int, observations: list[tuple[float, int, str]]
) -> None:
    highest: tuple[float, int, str] | None = None
    for seen in observations:
        if highest is not None and seen[1] < highest[1]:
            findings.violation(
                "went-backwards",
                f"partition {partition}: committed offset {seen[1]} ({seen[2]}) after "
                f"{highest[1]} ({highest[2]})",
            )
        if highest is None or seen[1] > highest[1]:
            highest = seen


def check_unseen(history: Sequence[Event]) -> CheckResult:
    """unseen: an ok Send whose value is in no final read at all (any partition, any
    offset). A partition with ok sends and no final read is ``partition-not-read``."""
    findings = _Findings("unseen", ("unseen", "partition-not-read"))
    final = _final_records(history)
    sends = _ok_sends(history)
    unread = _partitions_not_read(findings, sends, final)
    readable = {value for records in final.values() for value in records.values()}
    for send in sends:
        findings.note("acknowledged")
        if send.partition not in unread and send.value not in readable:
            findings.violation(
                "unseen",
                f"{send.value!r} acknowledged at partition {send.partition} offset "
                f"{send.offset} (t={_completed_at(send):.2f}) is in no final read",
            )
    return findings.result()


# ------------------------------------------------------------------ broker checkers


def check_election_safety(history: Sequence[Event]) -> CheckResult:
    """election-safety: two BecameLeader of one Raft group and term naming different
    brokers (``two-leaders``); a TermOnRestart with ``term_after < term_before``
    (``term-went-backwards``); two Votes of one broker in one group and term for different
    candidates (``double-vote``). One violation per group and term, per restart, per
    broker, group and term."""
    findings = _Findings("election-safety", ("two-leaders", "term-went-backwards", "double-vote"))
    leaders: dict[tuple[str, int], set[int]] = defaultdict(set)
    votes: dict[tuple[str, int, int], set[int]] = defaultdict(set)
    for event in history:
        if isinstance(event, BecameLeader):
            leaders[(event.group, event.term)].add(event.broker)
        elif isinstance(event, Vote):
            votes[(event.group, event.term, event.broker)].add(event.candidate)
        elif isinstance(event, TermOnRestart) and event.term_after < event.term_before:
            findings.violation(
                "term-went-backwards",
                f"group {event.group}: broker {event.broker} restarted in term "
                f"{event.term_after} after term {event.term_before}",
            )
    findings.note("elections", len(leaders))
    findings.note("votes", len(votes))
    for (group, term), brokers in sorted(leaders.items()):
        if len(brokers) > 1:
            findings.violation(
                "two-leaders", f"group {group} term {term}: brokers {sorted(brokers)} all led"
            )
    for (group, term, broker), candidates in sorted(votes.items()):
        if len(candidates) > 1:
            findings.violation(
                "double-vote",
                f"group {group} term {term}: broker {broker} voted for {sorted(candidates)}",
            )
    return findings.result()


def check_availability(
    history: Sequence[Event], *, max_unavailable_s: float, max_recovery_s: float
) -> CheckResult:
    """availability, with U = ``max_unavailable_s`` and R = ``max_recovery_s``:

    (a) ``quiet-gap``: while the cluster is expected to serve, a partition waits more than U
    seconds for an ok Send while sends to it are pending. It is expected to serve from R
    seconds after the history's first timed event (start-up, as a heal) until the first
    Fault that takes the service away (``available=False``: every broker killed, a
    majority down, clients cut off), and from R seconds after each Heal until the next
    such Fault (a Heal ends every active fault); the last such window ends at the
    history's last timed event. Faults that leave a connected majority (``available``,
    the default: a leader killed, paused or isolated, a minority power-failed, a flaky or
    one-way link) do not end a window: SCENARIOS.md's "a partition with a connected
    majority acked nothing for longer than U". In a window, the gaps run
    between the window's start, the ``t_end`` of each ok send to the partition, and the
    window's end; a gap's wait is from the start of the first completed send (of any
    outcome) pending in it to the end of the last one, clipped to the gap.

    (b) ``slow-recovery``: after the last Heal, a partition that had sends pending later
    acknowledges its first send (``t_end``) more than R seconds after the heal, or never.
    Without any Heal, (b) has nothing to judge.
    """
    findings = _Findings("availability", ("quiet-gap", "slow-recovery"))
    windows = _fault_free_windows(history, grace=max_recovery_s)
    findings.note("fault-free-windows", len(windows))
    sends = [send for send in _events(history, Send) if send.t_end is not None]
    for partition in sorted({send.partition for send in sends}):
        of_partition = [send for send in sends if send.partition == partition]
        for start, end in windows:
            _check_quiet_gaps(findings, partition, of_partition, start, end, max_unavailable_s)
        _check_recovery(findings, partition, of_partition, history, max_recovery_s)
    return findings.result()


def _timed(event: Event) -> float | None:
    """An event's time, if it has one."""
    if isinstance(event, Send):
        return _completed_at(event)
    t = getattr(event, "t", None)
    return float(t) if isinstance(t, int | float) else None


def _fault_free_windows(history: Sequence[Event], grace: float) -> list[tuple[float, float]]:
    """The ``[start, end)`` intervals in which no fault that takes the service away is
    active, each starting ``grace`` seconds after the start of the history or a Heal."""
    times = [t for t in map(_timed, history) if t is not None]
    if not times:
        return []
    nemesis = sorted(
        (
            event
            for event in history
            if isinstance(event, Heal) or (isinstance(event, Fault) and not event.available)
        ),
        key=lambda e: e.t,
    )
    windows: list[tuple[float, float]] = []
    clean_since: float | None = min(times) + grace
    for event in nemesis:
        if isinstance(event, Fault) and clean_since is not None:
            windows.append((clean_since, event.t))
            clean_since = None
        elif isinstance(event, Heal) and clean_since is None:
            clean_since = event.t + grace
    if clean_since is not None:
        windows.append((clean_since, max(times)))
    return [(start, end) for start, end in windows if start < end]


def _check_quiet_gaps(
    findings: _Findings,
    partition: int,
    sends: Sequence[Send],
    start: float,
    end: float,
    limit: float,
) -> None:
    oks = sorted(_end(s) for s in sends if s.phase == "ok" and start < _end(s) < end)
    bounds = [start, *oks, end]
    for gap_start, gap_end in itertools.pairwise(bounds):
        if gap_end - gap_start <= limit:
            continue  # a wait is never longer than its gap
        pending = [s for s in sends if s.t_start < gap_end and _end(s) > gap_start]
        if not pending:
            continue
        wait_start = max(gap_start, min(s.t_start for s in pending))
        wait_end = min(gap_end, max(_end(s) for s in pending))
        if wait_end - wait_start > limit:
            findings.violation(
                "quiet-gap",
                f"partition {partition}: no ok send from t={wait_start:.2f} to "
                f"t={wait_end:.2f} ({wait_end - wait_start:.1f} s > U={limit:.1f} s) "
                "with sends pending while the cluster was expected to serve",
            )


def _check_recovery(
    findings: _Findings,
    partition: int,
    sends: Sequence[Send],
    history: Sequence[Event],
    limit: float,
) -> None:
    heals = [heal.t for heal in _events(history, Heal)]
    if not heals:
        return
    healed_at = max(heals)
    if not any(_end(s) > healed_at for s in sends):
        return  # nothing pending after the heal: nothing to judge
    first_ok = min(
        (_end(s) for s in sends if s.phase == "ok" and _end(s) > healed_at), default=None
    )
    if first_ok is None:
        findings.violation(
            "slow-recovery",
            f"partition {partition}: no ok send after the last heal at t={healed_at:.2f}",
        )
    elif first_ok - healed_at > limit:
        findings.violation(
            "slow-recovery",
            f"partition {partition}: first ok send at t={first_ok:.2f}, "
            f"{first_ok - healed_at:.1f} s after the last heal at t={healed_at:.2f} "
            f"(R={limit:.1f} s)",
        )


def check_process_health(history: Sequence[Event], *, max_rss_growth: float) -> CheckResult:
    """process-health: a broker process exited without the scenario killing or stopping it
    (``unexpected-exit``); a broker logged an unhandled traceback (``traceback``); or within
    one life of a broker process (its MemorySamples between two of its ProcessExits, in time
    order) the last sample's RSS exceeds ``max_rss_growth`` times the first's
    (``memory-growth``)."""
    findings = _Findings("process-health", ("unexpected-exit", "traceback", "memory-growth"))
    for event in history:
        if isinstance(event, ProcessExit):
            findings.note("exits")
            if not event.killed_by_us:
                findings.violation(
                    "unexpected-exit",
                    f"broker {event.broker} exited with code {event.code} at t={event.t:.2f} "
                    "without being killed",
                )
        elif isinstance(event, Traceback):
            last_line = event.text.strip().splitlines()[-1] if event.text.strip() else ""
            findings.violation("traceback", f"broker {event.broker} logged: {last_line}")
    for life in _process_lives(history):
        findings.note("process-lives")
        _check_memory(findings, life, max_rss_growth)
    return findings.result()


def _process_lives(history: Sequence[Event]) -> list[list[MemorySample]]:
    """Each broker's memory samples in time order, split where the process exited."""
    timeline = sorted(
        (e for e in history if isinstance(e, MemorySample | ProcessExit)), key=lambda e: e.t
    )
    current: dict[int, list[MemorySample]] = defaultdict(list)
    lives: list[list[MemorySample]] = []
    for event in timeline:
        if isinstance(event, ProcessExit):
            lives.append(current.pop(event.broker, []))
        else:
            current[event.broker].append(event)
    lives.extend(current.values())
    return [life for life in lives if life]


def _check_memory(findings: _Findings, life: list[MemorySample], limit: float) -> None:
    first, last = life[0], life[-1]
    if first.rss_bytes > 0 and last.rss_bytes > limit * first.rss_bytes:
        findings.violation(
            "memory-growth",
            f"broker {first.broker} grew from {first.rss_bytes / 1e6:.1f} MB at "
            f"t={first.t:.2f} to {last.rss_bytes / 1e6:.1f} MB at t={last.t:.2f} "
            f"({last.rss_bytes / first.rss_bytes:.1f}x > {limit:.1f}x)",
        )


# ------------------------------------------------------------------ all of them


def run_all(history: Sequence[Event], params: CheckParams | None = None) -> list[CheckResult]:
    """Every checker of the table, in its order (:data:`CHECK_NAMES`)."""
    limits = params or CheckParams()
    return [
        check_lost_write(history),
        check_inconsistent_offsets(history),
        check_duplicate(history),
        check_unexpected(history),
        check_aborted_read(history),
        check_replicas_identical(history),
        check_realtime_order(history),
        check_poll_continuity(history),
        check_group_start(history),
        check_exclusive_assignment(history),
        check_fenced_commits(history),
        check_committed_monotonic(history),
        check_unseen(history),
        check_election_safety(history),
        check_availability(
            history,
            max_unavailable_s=limits.max_unavailable_s,
            max_recovery_s=limits.max_recovery_s,
        ),
        check_process_health(history, max_rss_growth=limits.max_rss_growth),
    ]


NAME_WIDTH = 26
"""The column where PASS/FAIL starts in :func:`format_results` (names are dot-padded)."""


def format_results(results: Iterable[CheckResult]) -> str:
    """The report of SCENARIOS.md's "Output" section: per check a line
    ``name .... PASS|FAIL  count=n ...``, then its examples indented, one per line."""
    lines: list[str] = []
    for result in results:
        dots = "." * max(3, NAME_WIDTH - len(result.name) - 2)
        verdict = "PASS" if result.passed else "FAIL"
        counts = " ".join(f"{what}={n}" for what, n in result.counts.items())
        lines.append(f"{result.name} {dots} {verdict}  {counts}".rstrip())
        lines.extend(f"    {example}" for example in result.examples)
    return "\n".join(lines)
