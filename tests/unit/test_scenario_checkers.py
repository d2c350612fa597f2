"""The scenario history format and checkers: every event type survives JSON lines, a bad line
is named by number, and every checker passes a hand-made good history and fails a bad one for
the intended reason (asserted on its counts, with an example naming what went wrong)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftlog.scenarios.checkers import (
    CHECK_NAMES,
    MAX_EXAMPLES,
    CheckParams,
    CheckResult,
    check_aborted_read,
    check_availability,
    check_committed_monotonic,
    check_duplicate,
    check_election_safety,
    check_exclusive_assignment,
    check_fenced_commits,
    check_group_start,
    check_inconsistent_offsets,
    check_lost_write,
    check_poll_continuity,
    check_process_health,
    check_realtime_order,
    check_replicas_identical,
    check_unexpected,
    check_unseen,
    format_results,
    run_all,
)
from raftlog.scenarios.history import (
    EVENT_TYPES,
    NO_GENERATION,
    Assign,
    BecameLeader,
    Commit,
    CommittedRead,
    Event,
    Fault,
    FinalRead,
    Heal,
    HistoryFormatError,
    HistoryWriter,
    MemorySample,
    Phase,
    Poll,
    ProcessExit,
    Record,
    ReplicaDump,
    Seek,
    Send,
    TermOnRestart,
    Traceback,
    Vote,
    parse_lines,
    read_history,
    to_json_line,
    write_history,
)

MB = 1_000_000


def send(
    value: str,
    partition: int,
    offset: int | None = None,
    start: float = 1.0,
    end: float = 1.1,
    phase: Phase = "ok",
) -> Send:
    return Send("p0", "k", value, partition, phase, offset, start, end)


def failed(value: str, partition: int, start: float = 1.0, end: float = 1.1) -> Send:
    return send(value, partition, None, start, end, phase="fail")


def final(partition: int, *records: Record) -> FinalRead:
    return FinalRead(partition, list(records))


def poll(member: str, generation: int, partition: int, t: float, *records: Record) -> Poll:
    return Poll(member, generation, partition, list(records), t)


def fails(result: CheckResult, **violations: int) -> None:
    """The result failed with exactly these violation counts (others named must be 0)."""
    assert not result.passed, result
    for kind, n in violations.items():
        assert result.counts[kind] == n, (kind, result)
    assert 0 < len(result.examples) <= MAX_EXAMPLES


def passes(result: CheckResult) -> None:
    assert result.passed, result
    assert result.examples == []


# ------------------------------------------------------------------ the history format

EVERY_EVENT: list[Event] = [
    Send("p1", None, "p1-0", 0, "invoke", None, 1.0, None),
    Send("p1", "k1", "p1-0", 0, "ok", 7, 1.0, 1.25),
    Send("p1", "k1", "p1-1", 2, "fail", None, 1.5, 2.0),
    Send("p1", "k1", "p1-2", 2, "info", None, 2.5, 7.5),
    Poll("m1", 3, 0, [(7, "p1-0"), (8, "é ünïcode")], 2.0),
    Poll("reader-1", NO_GENERATION, 1, [], 2.5),
    Seek("m1", 0, 5, 3.0),
    Commit("m1", 3, 0, 9, True, 3.5),
    Commit("m1", 3, 0, 10, None, 3.6),
    CommittedRead("group-a", 0, 9, 4.0),
    Assign("m2", 4, [0, 2], 4.5),
    Assign("m3", 4, [], 4.5),
    FinalRead(0, [(7, "p1-0"), (9, "x")]),
    ReplicaDump(0, 2, [(7, "p1-0")], 8),
    BecameLeader("t-0", 2, 5, 5.0),
    Vote("t-0", 3, 5, 2, 4.9),
    TermOnRestart("metadata", 1, 4, 6),
    Fault("partition", "1|2,3", "both ways", 6.0),
    Heal(9.0),
    ProcessExit(1, True, -9, 6.5),
    Traceback(2, 'Traceback (most recent call last):\n  File "x"\nValueError: "boom"'),
    MemorySample(3, 52 * MB, 7.0),
]


def test_every_event_type_is_covered() -> None:
    assert {type(event) for event in EVERY_EVENT} == set(EVENT_TYPES.values())


def test_round_trip_through_the_appending_writer(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    half = len(EVERY_EVENT) // 2
    with HistoryWriter(path) as writer:
        for event in EVERY_EVENT[:half]:
            writer.append(event)
        # every line is flushed as it is appended: a reader sees it at once
        assert len(path.read_text(encoding="utf-8").splitlines()) == half
    with HistoryWriter(path) as writer:  # a writer appends, it never truncates
        for event in EVERY_EVENT[half:]:
            writer.append(event)
    assert read_history(path) == EVERY_EVENT


def test_round_trip_of_a_whole_file_and_the_line_shape(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    write_history(path, EVERY_EVENT)
    assert read_history(path) == EVERY_EVENT
    first = path.read_text(encoding="utf-8").splitlines()[1]
    assert first == to_json_line(EVERY_EVENT[1])
    assert first.startswith('{"type":"send",')


def test_blank_lines_are_skipped() -> None:
    lines = ["", to_json_line(Heal(1.0)), "   ", to_json_line(Heal(2.0))]
    assert list(parse_lines(lines)) == [Heal(1.0), Heal(2.0)]


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ('{"type":"heal","t":', "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"type":"nap","t":1}', "unknown event type 'nap'"),
        ('{"t":1}', "unknown event type None"),
        ('{"type":"heal"}', "missing fields ['t']"),
        ('{"type":"heal","t":1,"why":"x"}', "unexpected fields ['why']"),
        ('{"type":"seek","member":"m","partition":0,"offset":"5","t":1}', "seek.offset"),
        ('{"type":"seek","member":"m","partition":true,"offset":5,"t":1}', "seek.partition"),
        (
            '{"type":"send","process":"p","key":null,"value":"v","partition":0,'
            '"phase":"done","offset":null,"t_start":1,"t_end":null}',
            "send.phase",
        ),
        ('{"type":"final_read","partition":0,"records":[[1]]}', "final_read.records"),
    ],
)
def test_a_malformed_line_is_reported_with_its_number(
    tmp_path: Path, bad_line: str, reason: str
) -> None:
    path = tmp_path / "history.jsonl"
    good = to_json_line(Heal(1.0))
    path.write_text(f"{good}\n\n{bad_line}\n{good}\n", encoding="utf-8")
    with pytest.raises(HistoryFormatError) as caught:
        read_history(path)
    assert caught.value.line_number == 3
    assert "line 3" in str(caught.value)
    assert reason in caught.value.reason


def test_integer_times_are_read_as_floats() -> None:
    (event,) = parse_lines(['{"type":"heal","t":3}'])
    assert event == Heal(3.0)
    assert isinstance(event, Heal)
    assert isinstance(event.t, float)


# ------------------------------------------------------------------ lost-write


def test_lost_write_passes_when_every_ack_is_in_the_final_read() -> None:
    history: list[Event] = [
        send("a", 0, 0),
        send("b", 0, 2),
        failed("c", 0),
        final(0, (0, "a"), (2, "b")),
    ]
    result = check_lost_write(history)
    passes(result)
    assert result.counts["acknowledged"] == 2


def test_lost_write_fails_on_a_missing_offset() -> None:
    history: list[Event] = [send("a", 0, 0), send("b", 0, 1), final(0, (0, "a"))]
    result = check_lost_write(history)
    fails(result, lost=1, **{"wrong-value": 0})
    assert "partition 0 offset 1" in result.examples[0]
    assert "'b'" in result.examples[0]


def test_lost_write_fails_on_another_value_at_the_offset() -> None:
    history: list[Event] = [send("a", 1, 4), final(1, (4, "z"))]
    result = check_lost_write(history)
    fails(result, lost=0, **{"wrong-value": 1})
    assert "partition 1 offset 4" in result.examples[0]
    assert "'a'" in result.examples[0] and "'z'" in result.examples[0]


def test_lost_write_fails_when_a_partition_was_never_read() -> None:
    result = check_lost_write([send("a", 0, 0), send("b", 3, 0), final(0, (0, "a"))])
    fails(result, lost=0, **{"partition-not-read": 1})
    assert "partition 3" in result.examples[0]


# ------------------------------------------------------------------ inconsistent-offsets


def test_inconsistent_offsets_passes_when_every_source_agrees() -> None:
    history: list[Event] = [
        send("a", 0, 0),
        poll("m1", 1, 0, 2.0, (0, "a")),
        final(0, (0, "a")),
        ReplicaDump(0, 1, [(0, "a")], 1),
        ReplicaDump(0, 2, [(0, "a"), (1, "stale")], 1),  # an uncommitted tail may differ
        final(1, (1, "stale-free")),  # the same offset in another partition
    ]
    passes(check_inconsistent_offsets(history))


def test_inconsistent_offsets_fails_when_a_poll_and_the_final_read_disagree() -> None:
    history: list[Event] = [poll("m1", 1, 0, 2.0, (5, "a")), final(0, (5, "b"))]
    result = check_inconsistent_offsets(history)
    fails(result, **{"offsets-with-two-values": 1})
    assert "partition 0 offset 5" in result.examples[0]
    assert "'a'" in result.examples[0] and "'b'" in result.examples[0]
    assert "poll by m1 generation 1" in result.examples[0]


def test_inconsistent_offsets_fails_on_two_acks_of_one_offset() -> None:
    history: list[Event] = [send("a", 0, 3), send("b", 0, 3)]
    fails(check_inconsistent_offsets(history), **{"offsets-with-two-values": 1})


def test_inconsistent_offsets_fails_on_a_replicas_committed_record() -> None:
    history: list[Event] = [final(0, (0, "a")), ReplicaDump(0, 3, [(0, "flipped")], 1)]
    result = check_inconsistent_offsets(history)
    fails(result, **{"offsets-with-two-values": 1})
    assert "replica on broker 3" in result.examples[0]


# ------------------------------------------------------------------ duplicate


def test_duplicate_passes_when_an_offset_is_read_twice() -> None:
    history: list[Event] = [
        poll("m1", 1, 0, 1.0, (0, "a")),
        poll("m2", 2, 0, 2.0, (0, "a")),  # redelivery after a rebalance: same offset
        final(0, (0, "a"), (1, "b")),
    ]
    passes(check_duplicate(history))


def test_duplicate_fails_on_a_value_at_two_offsets() -> None:
    history: list[Event] = [final(0, (0, "a"), (1, "b"), (3, "a"))]
    result = check_duplicate(history)
    fails(result, **{"duplicated-values": 1})
    assert "'a'" in result.examples[0]
    assert "partition 0 offset 0" in result.examples[0]
    assert "partition 0 offset 3" in result.examples[0]


def test_duplicate_fails_on_a_value_polled_at_another_offset() -> None:
    history: list[Event] = [poll("m1", 1, 2, 1.0, (7, "a")), final(2, (4, "a"))]
    fails(check_duplicate(history), **{"duplicated-values": 1})


# ------------------------------------------------------------------ unexpected


def test_unexpected_passes_when_everything_read_was_sent() -> None:
    history: list[Event] = [
        send("a", 0, 0),
        send("b", 0, None, phase="info"),  # unknown outcome: may be read
        final(0, (0, "a"), (1, "b")),
        ReplicaDump(0, 1, [(0, "a"), (1, "b")], 2),
    ]
    passes(check_unexpected(history))


def test_unexpected_fails_on_a_value_nobody_sent() -> None:
    history: list[Event] = [
        send("a", 0, 0),
        final(0, (0, "a"), (1, "ghost")),
        ReplicaDump(0, 2, [(0, "a"), (1, "ghost"), (2, "tail-ghost")], 2),
    ]
    result = check_unexpected(history)
    fails(result, **{"unexpected-values": 2})  # each value once, wherever it was found
    assert "'ghost' at partition 0 offset 1" in result.examples[0]
    assert "'tail-ghost' at partition 0 offset 2" in result.examples[1]


# ------------------------------------------------------------------ aborted-read


def test_aborted_read_passes_when_failed_values_stay_unread() -> None:
    history: list[Event] = [
        failed("f", 0),
        send("u", 0, None, phase="info"),
        send("a", 0, 0),
        final(0, (0, "a"), (1, "u")),
    ]
    result = check_aborted_read(history)
    passes(result)
    assert result.counts["failed-values"] == 1


def test_aborted_read_fails_when_a_failed_value_is_polled() -> None:
    history: list[Event] = [
        failed("f", 1, end=2.5),
        poll("m2", 4, 1, 3.0, (6, "f")),
        final(1, (6, "f")),
    ]
    result = check_aborted_read(history)
    fails(result, **{"aborted-values-read": 1})
    assert "'f'" in result.examples[0]
    assert "partition 1 offset 6" in result.examples[0]
    assert "m2 generation 4" in result.examples[0]


# ------------------------------------------------------------------ replicas-identical


def test_replicas_identical_passes_on_equal_committed_ranges() -> None:
    history: list[Event] = [
        ReplicaDump(0, 1, [(0, "a"), (2, "b")], 3),
        ReplicaDump(0, 2, [(0, "a"), (2, "b"), (3, "tail")], 3),
        ReplicaDump(0, 3, [(0, "a"), (2, "b")], 1),  # lags in what it knows committed
        ReplicaDump(1, 1, [(0, "c")], 1),
    ]
    result = check_replicas_identical(history)
    passes(result)
    assert result.counts["replicas"] == 4


def test_replicas_identical_fails_on_a_differing_record() -> None:
    history: list[Event] = [
        ReplicaDump(0, 1, [(0, "a"), (1, "b")], 2),
        ReplicaDump(0, 2, [(0, "a"), (1, "x")], 2),
    ]
    result = check_replicas_identical(history)
    fails(result, differing=1, missing=0)
    assert "partition 0 offset 1" in result.examples[0]
    assert "broker 1 holds 'b'" in result.examples[0]
    assert "broker 2 holds 'x'" in result.examples[0]


def test_replicas_identical_fails_on_a_missing_committed_record() -> None:
    history: list[Event] = [
        ReplicaDump(2, 1, [(0, "a"), (1, "b")], 2),
        ReplicaDump(2, 2, [(0, "a")], 1),  # truncated below what broker 1 knows committed
    ]
    result = check_replicas_identical(history)
    fails(result, differing=0, missing=1)
    assert "partition 2 offset 1" in result.examples[0]
    assert "broker 2 holds nothing" in result.examples[0]


# ------------------------------------------------------------------ realtime-order


def test_realtime_order_passes_on_ordered_and_on_concurrent_sends() -> None:
    history: list[Event] = [
        send("a", 0, 0, start=1.0, end=2.0),
        send("b", 0, 2, start=3.0, end=4.0),
        send("c", 0, 1, start=1.5, end=3.5),  # concurrent with a and b: any order
        send("d", 1, 0, start=5.0, end=6.0),  # another partition
        failed("e", 0, start=0.0, end=0.5),
    ]
    passes(check_realtime_order(history))


def test_realtime_order_fails_when_a_later_send_gets_a_lower_offset() -> None:
    history: list[Event] = [
        send("a", 0, 5, start=1.0, end=2.0),
        send("b", 0, 6, start=1.5, end=2.5),
        send("c", 0, 3, start=3.0, end=4.0),
    ]
    result = check_realtime_order(history)
    fails(result, **{"out-of-order": 1})
    assert "partition 0" in result.examples[0]
    assert "'b' got offset 6" in result.examples[0]
    assert "'c' started at t=3.00, which got offset 3" in result.examples[0]


# ------------------------------------------------------------------ poll-continuity


def test_poll_continuity_passes_on_steps_gaps_of_control_records_and_seeks() -> None:
    history: list[Event] = [
        poll("m1", 1, 0, 1.0, (0, "a"), (1, "b")),
        poll("m1", 1, 0, 1.5),  # empty
        poll("m1", 1, 0, 2.0, (3, "c")),  # offset 2 is a control record
        Seek("m1", 0, 0, 2.5),
        poll("m1", 1, 0, 3.0, (0, "a")),  # after a seek anything goes
        poll("m2", 2, 0, 3.5, (1, "b")),  # another member, another generation
        poll("m1", 2, 0, 4.0, (0, "a")),  # m1 in a new generation starts afresh
        final(0, (0, "a"), (1, "b"), (3, "c")),
    ]
    result = check_poll_continuity(history)
    passes(result)
    assert result.counts["polls"] == 6


def test_poll_continuity_fails_on_a_skipped_user_record() -> None:
    history: list[Event] = [
        poll("m1", 1, 0, 1.0, (0, "a"), (1, "b")),
        poll("m1", 1, 0, 2.0, (3, "d")),
        final(0, (0, "a"), (1, "b"), (2, "c"), (3, "d")),
    ]
    result = check_poll_continuity(history)
    fails(result, skip=1, rewind=0)
    assert "member m1 generation 1 partition 0" in result.examples[0]
    assert "from offset 1 to 3" in result.examples[0]
    assert "user records at 2" in result.examples[0]


def test_poll_continuity_fails_on_a_skip_inside_one_poll() -> None:
    history: list[Event] = [
        poll("m1", 1, 0, 1.0, (0, "a"), (2, "c")),
        final(0, (0, "a"), (1, "b"), (2, "c")),
    ]
    fails(check_poll_continuity(history), skip=1, rewind=0)


def test_poll_continuity_fails_on_a_gap_no_final_read_can_explain() -> None:
    history: list[Event] = [poll("m1", 1, 4, 1.0, (0, "a")), poll("m1", 1, 4, 2.0, (2, "c"))]
    result = check_poll_continuity(history)
    fails(result, skip=1)
    assert "no final read" in result.examples[0]


def test_poll_continuity_fails_on_a_rewind() -> None:
    history: list[Event] = [
        poll("m3", 2, 1, 1.0, (4, "a"), (5, "b")),
        poll("m3", 2, 1, 2.0, (5, "b"), (6, "c")),
        final(1, (4, "a"), (5, "b"), (6, "c")),
    ]
    result = check_poll_continuity(history)
    fails(result, skip=0, rewind=1)
    assert "member m3 generation 2 partition 1" in result.examples[0]
    assert "from offset 5 to 5" in result.examples[0]


# ------------------------------------------------------------------ group-start


def test_group_start_passes_at_the_committed_offset() -> None:
    history: list[Event] = [
        Assign("m1", 1, [0, 1], 0.5),
        poll("m1", 1, 0, 1.0, (0, "a"), (1, "b")),  # no commit yet: the partition start
        Commit("m1", 1, 0, 2, True, 1.1),
        Commit("m1", 1, 0, 9, False, 1.2),  # rejected: not the committed offset
        Assign("m2", 2, [0], 3.0),
        poll("m2", 2, 0, 3.5, (3, "c")),  # offset 2, where the commit points, is control
        Commit("m2", 2, 0, 4, True, 3.6),  # after the assignment: not its starting point
        final(0, (0, "a"), (1, "b"), (3, "c")),
    ]
    result = check_group_start(history)
    passes(result)
    assert result.counts["assignments-checked"] == 2
    assert result.counts["not-polled"] == 1  # m1's partition 1


def test_group_start_accepts_the_offset_of_a_commit_whose_answer_was_lost() -> None:
    history: list[Event] = [
        Assign("m1", 1, [0], 0.5),
        Commit("m1", 1, 0, 2, True, 1.0),
        Commit("m1", 1, 0, 4, None, 1.5),  # timed out: the broker may have taken it
        Assign("m2", 2, [0], 2.0),
        poll("m2", 2, 0, 2.5, (4, "e")),
        Assign("m1", 3, [0], 3.0),
        poll("m1", 3, 0, 3.5, (2, "c")),  # ... or not
        final(0, *[(offset, f"v{offset}") for offset in range(6)]),
    ]
    passes(check_group_start(history))


def test_group_start_judges_a_same_generation_reassignment_from_its_own_time() -> None:
    # found by S02: after every broker was killed the restarted coordinator gave m1 its
    # partitions again in generation 2; its first poll after that is at the commit
    history: list[Event] = [
        Assign("m1", 2, [0], 0.5),
        poll("m1", 2, 0, 1.0, (0, "a"), (1, "b")),
        Commit("m1", 2, 0, 2, True, 1.1),
        Assign("m1", 2, [0], 5.0),
        poll("m1", 2, 0, 5.5, (2, "c")),
        final(0, (0, "a"), (1, "b"), (2, "c")),
    ]
    result = check_group_start(history)
    passes(result)
    assert result.counts["assignments-checked"] == 2
    passes(check_poll_continuity(history))


def test_group_start_fails_a_same_generation_reassignment_that_rewinds() -> None:
    history: list[Event] = [
        Assign("m1", 2, [0], 0.5),
        poll("m1", 2, 0, 1.0, (0, "a"), (1, "b"), (2, "c")),
        Commit("m1", 2, 0, 3, True, 1.1),
        Assign("m1", 2, [0], 5.0),
        poll("m1", 2, 0, 5.5, (1, "b")),  # back below the commit
        final(0, (0, "a"), (1, "b"), (2, "c")),
    ]
    fails(check_group_start(history), rewound=1, skipped=0)


def test_group_start_counts_the_commit_of_a_member_killed_while_it_was_in_flight() -> None:
    # found by S14: m2 sent its commit of 4 and was SIGKILLed before the answer; the broker
    # had taken it and the next owner rightly started at 4
    history: list[Event] = [
        Assign("m2", 4, [0], 0.5),
        Commit("m2", 4, 0, 3, None, 1.0),
        Commit("m2", 4, 0, 3, True, 1.0),
        Commit("m2", 4, 0, 4, None, 1.5),  # the intent; no answer was ever recorded
        Assign("m4", 5, [0], 3.0),
        poll("m4", 5, 0, 3.5, (4, "e")),
        final(0, *[(offset, f"v{offset}") for offset in range(6)]),
    ]
    passes(check_group_start(history))


def test_group_start_ignores_the_intent_of_a_commit_that_was_refused() -> None:
    history: list[Event] = [
        Commit("m2", 4, 0, 3, None, 1.0),
        Commit("m2", 4, 0, 3, True, 1.0),
        Commit("m2", 4, 0, 5, None, 1.5),
        Commit("m2", 4, 0, 5, False, 1.5),  # refused: its intent is no possible start
        Assign("m4", 5, [0], 3.0),
        poll("m4", 5, 0, 3.5, (5, "f")),
        final(0, *[(offset, f"v{offset}") for offset in range(6)]),
    ]
    fails(check_group_start(history), rewound=0, skipped=1)


def test_group_start_fails_on_a_start_between_the_possible_offsets() -> None:
    history: list[Event] = [
        Commit("m1", 1, 0, 2, True, 1.0),
        Commit("m1", 1, 0, 4, None, 1.5),
        Assign("m2", 2, [0], 2.0),
        poll("m2", 2, 0, 2.5, (3, "d")),
        final(0, *[(offset, f"v{offset}") for offset in range(6)]),
    ]
    result = check_group_start(history)
    fails(result, rewound=0, skipped=1)
    possible = "committed offset was 2 (committed by m1 generation 1 at t=1.00) or 4 (sent"
    assert possible in result.examples[0]


def test_group_start_fails_when_a_member_starts_before_the_commit() -> None:
    history: list[Event] = [
        Assign("m1", 1, [0], 0.5),
        Commit("m1", 1, 0, 5, True, 1.0),
        Assign("m2", 2, [0], 2.0),
        poll("m2", 2, 0, 2.5, (3, "d")),
        final(0, *[(offset, f"v{offset}") for offset in range(6)]),
    ]
    result = check_group_start(history)
    fails(result, rewound=1, skipped=0)
    assert "member m2 generation 2 partition 0" in result.examples[0]
    assert "first polled offset 3" in result.examples[0]
    assert "committed offset was 5" in result.examples[0]


def test_group_start_fails_when_a_member_skips_past_the_start() -> None:
    history: list[Event] = [
        Assign("m1", 1, [0], 0.5),
        poll("m1", 1, 0, 1.0, (2, "c")),
        final(0, (0, "a"), (1, "b"), (2, "c")),
    ]
    result = check_group_start(history)
    fails(result, rewound=0, skipped=1)
    assert "committed offset was 0" in result.examples[0]
    assert "user records at 0, 1" in result.examples[0]


# ------------------------------------------------------------------ exclusive-assignment


def test_exclusive_assignment_passes_when_owners_change_between_generations() -> None:
    history: list[Event] = [
        Assign("m1", 1, [0], 1.0),
        Assign("m2", 1, [1], 1.0),
        Assign("m1", 2, [1], 2.0),
        Assign("m2", 2, [0], 2.0),
    ]
    passes(check_exclusive_assignment(history))


def test_exclusive_assignment_fails_on_two_owners_in_one_generation() -> None:
    history: list[Event] = [
        Assign("m1", 2, [0, 1], 2.0),
        Assign("m2", 2, [1], 2.0),
        Assign("m3", 2, [], 2.0),
    ]
    result = check_exclusive_assignment(history)
    fails(result, **{"shared-partitions": 1})
    assert result.examples == ["generation 2 partition 1 assigned to m1, m2"]


# ------------------------------------------------------------------ fenced-commits


def test_fenced_commits_passes_on_owners_and_rejected_stale_commits() -> None:
    history: list[Event] = [
        Assign("m1", 1, [0], 1.0),
        Commit("m1", 1, 0, 3, True, 1.5),
        Assign("m2", 2, [0], 2.0),
        Commit("m1", 1, 0, 4, False, 2.5),  # stale and rejected: right
        Commit("m1", 1, 0, 4, None, 2.6),  # stale and unanswered: not known to be taken
        Commit("m2", 2, 0, 5, True, 3.0),
    ]
    result = check_fenced_commits(history)
    passes(result)
    assert result.counts["accepted-commits"] == 2


def test_fenced_commits_fails_on_an_accepted_stale_generation() -> None:
    history: list[Event] = [
        Assign("m1", 1, [0], 1.0),
        Assign("m2", 2, [1], 2.0),
        Commit("m1", 1, 0, 4, True, 2.5),
    ]
    result = check_fenced_commits(history)
    fails(result, **{"stale-generation": 1, "non-owner": 0})
    assert "partition 0 by m1 generation 1 at t=2.50" in result.examples[0]
    assert "generation 2 existed" in result.examples[0]


def test_fenced_commits_fails_on_an_accepted_commit_of_a_non_owner() -> None:
    history: list[Event] = [
        Assign("m1", 1, [0], 1.0),
        Assign("m2", 1, [1], 1.0),
        Commit("m2", 1, 0, 4, True, 1.5),
        Commit("m9", 1, 1, 4, True, 1.6),  # never assigned anything
    ]
    result = check_fenced_commits(history)
    fails(result, **{"stale-generation": 0, "non-owner": 2})
    assert "partition 0 by m2 generation 1" in result.examples[0]


# ------------------------------------------------------------------ committed-monotonic


def test_committed_monotonic_passes_when_offsets_only_grow() -> None:
    history: list[Event] = [
        Commit("m1", 1, 0, 2, True, 1.0),
        Commit("m1", 1, 0, 1, False, 1.5),  # rejected: never the committed offset
        Commit("m1", 1, 0, 1, None, 1.6),  # unanswered: not known to be
        CommittedRead("g", 0, 2, 2.0),
        Commit("m2", 2, 0, 4, True, 3.0),
        Commit("m2", 2, 1, 0, True, 3.0),  # another partition
        CommittedRead("g", 0, 4, 4.0),
    ]
    result = check_committed_monotonic(history)
    passes(result)
    assert result.counts["observations"] == 5


def test_committed_monotonic_fails_when_a_read_goes_backwards() -> None:
    history: list[Event] = [
        CommittedRead("g", 1, 7, 5.0),  # history order is not time order
        Commit("m1", 1, 1, 9, True, 2.0),
    ]
    result = check_committed_monotonic(history)
    fails(result, **{"went-backwards": 1})
    assert "partition 1: committed offset 7" in result.examples[0]
    assert "after 9 (commit by m1 generation 1 at t=2.00)" in result.examples[0]


# ------------------------------------------------------------------ unseen


def test_unseen_passes_when_the_value_is_readable_even_at_another_offset() -> None:
    history: list[Event] = [send("a", 0, 0), final(0, (1, "a"))]
    passes(check_unseen(history))
    assert not check_lost_write(history).passed  # the offset is lost-write's business


def test_unseen_fails_on_an_acknowledged_value_nowhere_in_the_final_read() -> None:
    history: list[Event] = [send("a", 0, 0), send("b", 0, 1), final(0, (0, "a"))]
    result = check_unseen(history)
    fails(result, unseen=1, **{"partition-not-read": 0})
    assert "'b' acknowledged at partition 0 offset 1" in result.examples[0]


def test_unseen_fails_when_a_partition_was_never_read() -> None:
    result = check_unseen([send("a", 5, 0)])
    fails(result, unseen=0, **{"partition-not-read": 1})
    assert "partition 5" in result.examples[0]


# ------------------------------------------------------------------ election-safety


def test_election_safety_passes_on_one_leader_and_one_vote_per_term() -> None:
    history: list[Event] = [
        BecameLeader("t-0", 1, 1, 1.0),
        BecameLeader("t-0", 1, 1, 1.1),  # reported twice
        BecameLeader("t-1", 2, 1, 1.0),  # another group
        BecameLeader("t-0", 2, 2, 5.0),
        Vote("t-0", 3, 2, 2, 4.9),
        Vote("t-0", 3, 2, 2, 4.95),  # the same vote again
        Vote("t-0", 3, 3, 1, 7.0),  # another term
        TermOnRestart("t-0", 1, 2, 2),
        TermOnRestart("t-0", 3, 2, 3),
    ]
    passes(check_election_safety(history))


def test_election_safety_fails_on_two_leaders_in_a_term() -> None:
    history: list[Event] = [BecameLeader("t-0", 1, 4, 1.0), BecameLeader("t-0", 3, 4, 2.0)]
    result = check_election_safety(history)
    fails(result, **{"two-leaders": 1, "term-went-backwards": 0, "double-vote": 0})
    assert result.examples == ["group t-0 term 4: brokers [1, 3] all led"]


def test_election_safety_fails_on_a_term_going_backwards_across_a_restart() -> None:
    result = check_election_safety([TermOnRestart("metadata", 2, 7, 6)])
    fails(result, **{"two-leaders": 0, "term-went-backwards": 1, "double-vote": 0})
    assert "broker 2 restarted in term 6 after term 7" in result.examples[0]


def test_election_safety_fails_on_a_double_vote() -> None:
    history: list[Event] = [Vote("t-2", 1, 3, 2, 1.0), Vote("t-2", 1, 3, 3, 1.5)]
    result = check_election_safety(history)
    fails(result, **{"two-leaders": 0, "term-went-backwards": 0, "double-vote": 1})
    assert result.examples == ["group t-2 term 3: broker 1 voted for [2, 3]"]


# ------------------------------------------------------------------ availability

U = 3.0
R = 5.0


def steady(partition: int, start: float, end: float, every: float = 0.5) -> list[Send]:
    """Ok sends to ``partition`` every ``every`` seconds, each taking 0.1 s."""
    sends = []
    t = start
    while t < end:
        sends.append(send(f"s{partition}-{t:.1f}", partition, None, t, t + 0.1))
        t += every
    return sends


def pending(partition: int, start: float, end: float) -> list[Send]:
    """Sends to ``partition`` that time out one after the other, 1 s each."""
    return [
        send(f"x{partition}-{t}", partition, None, float(t), t + 1.0, phase="info")
        for t in range(int(start), int(end))
    ]


def availability(history: list[Event]) -> CheckResult:
    return check_availability(history, max_unavailable_s=U, max_recovery_s=R)


def test_availability_passes_on_steady_sends_and_outages_during_faults() -> None:
    history: list[Event] = [
        *steady(0, 0.0, 10.0),
        *steady(1, 0.0, 10.0),
        Fault("kill", "all brokers", "SIGKILL", 10.0, available=False),
        *pending(0, 10.0, 30.0),  # unavailable while the fault lasts: allowed
        *steady(1, 10.0, 40.0),
        Heal(30.0),
        *pending(0, 30.0, 34.0),  # recovering within R after the heal: allowed
        *steady(0, 34.0, 40.0),
        # from 40 on the workload is idle: a gap without pending sends is no outage
        MemorySample(1, MB, 60.0),
    ]
    result = availability(history)
    passes(result)
    assert result.counts["fault-free-windows"] == 2


def test_availability_fails_on_an_outage_while_a_connected_majority_was_there() -> None:
    # found with S03: the partitions of an isolated leader acked nothing for the whole
    # isolation, although the other two brokers could elect a leader at once
    history: list[Event] = [
        *steady(0, 0.0, 10.0),
        *steady(1, 0.0, 30.0),
        Fault("isolate", "broker 1", "peer links cut, clients stay", 10.0),
        *pending(0, 10.0, 22.0),
        Heal(22.0),
        *steady(0, 22.0, 30.0),
    ]
    result = availability(history)
    fails(result, **{"quiet-gap": 1, "slow-recovery": 0})
    assert result.counts["fault-free-windows"] == 1


def test_availability_fails_on_an_outage_with_no_fault_active() -> None:
    history: list[Event] = [
        *steady(0, 0.0, 10.0),
        *pending(0, 10.0, 20.0),
        *steady(0, 20.0, 25.0),
    ]
    result = availability(history)
    fails(result, **{"quiet-gap": 1, "slow-recovery": 0})
    assert "partition 0: no ok send from t=10.00 to t=20.10" in result.examples[0]


def test_availability_fails_on_a_slow_recovery_after_the_last_heal() -> None:
    history: list[Event] = [
        *steady(0, 0.0, 10.0),
        *steady(1, 0.0, 10.0),
        Fault("partition", "1|2,3", "both ways", 10.0),
        Heal(20.0),
        *pending(0, 20.0, 29.0),
        *steady(0, 29.0, 32.0),  # first ok 9 s after the heal, R is 5
        *pending(1, 20.0, 32.0),  # never acknowledges anything again
    ]
    # U so large that the outages after the heal + R are not also quiet gaps
    result = check_availability(history, max_unavailable_s=100.0, max_recovery_s=R)
    fails(result, **{"quiet-gap": 0, "slow-recovery": 2})
    first_ok = "partition 0: first ok send at t=29.10, 9.1 s after the last heal at t=20.00"
    assert result.examples[0].startswith(first_ok)
    assert "partition 1: no ok send after the last heal at t=20.00" in result.examples[-1]


# ------------------------------------------------------------------ process-health


def test_process_health_passes_on_killed_processes_and_bounded_memory() -> None:
    history: list[Event] = [
        MemorySample(1, 50 * MB, 1.0),
        MemorySample(1, 150 * MB, 5.0),  # 3x, limit 4x
        ProcessExit(1, True, -9, 6.0),
        MemorySample(1, 30 * MB, 7.0),  # a new life: a new baseline
        MemorySample(1, 110 * MB, 9.0),
        MemorySample(2, 80 * MB, 1.0),
        ProcessExit(2, True, 0, 10.0),
    ]
    result = check_process_health(history, max_rss_growth=4.0)
    passes(result)
    assert result.counts["process-lives"] == 3


def test_process_health_fails_on_an_exit_nobody_caused() -> None:
    result = check_process_health([ProcessExit(3, False, 1, 12.0)], max_rss_growth=4.0)
    fails(result, **{"unexpected-exit": 1, "traceback": 0, "memory-growth": 0})
    assert result.examples == ["broker 3 exited with code 1 at t=12.00 without being killed"]


def test_process_health_fails_on_a_traceback() -> None:
    text = 'Traceback (most recent call last):\n  File "b.py"\nKeyError: 7\n'
    result = check_process_health([Traceback(2, text)], max_rss_growth=4.0)
    fails(result, **{"unexpected-exit": 0, "traceback": 1, "memory-growth": 0})
    assert result.examples == ["broker 2 logged: KeyError: 7"]


def test_process_health_fails_on_memory_growth() -> None:
    history: list[Event] = [MemorySample(2, 40 * MB, 1.0), MemorySample(2, 400 * MB, 90.0)]
    result = check_process_health(history, max_rss_growth=4.0)
    fails(result, **{"unexpected-exit": 0, "traceback": 0, "memory-growth": 1})
    assert "broker 2 grew from 40.0 MB at t=1.00 to 400.0 MB at t=90.00" in result.examples[0]


# ------------------------------------------------------------------ all checkers, the report


def healthy_run() -> list[Event]:
    """A small run that breaks no property: two partitions, a rebalance, a killed broker."""
    return [
        BecameLeader("t-0", 1, 1, 0.1),
        BecameLeader("t-1", 2, 1, 0.1),
        MemorySample(2, 50 * MB, 0.2),
        Assign("m1", 1, [0], 0.5),
        Assign("m2", 1, [1], 0.5),
        send("p0-0", 0, 0, 1.0, 1.1),
        send("p0-1", 0, 1, 1.2, 1.3),
        send("p1-0", 1, 0, 1.0, 1.2),
        poll("m1", 1, 0, 1.4, (0, "p0-0"), (1, "p0-1")),
        Commit("m1", 1, 0, 2, True, 1.45),
        send("p0-2", 0, 3, 1.4, 1.5),  # offset 2 is a control record
        poll("m2", 1, 1, 1.5, (0, "p1-0")),
        Commit("m2", 1, 1, 1, True, 1.55),
        failed("p0-9", 0, 1.6, 1.7),
        send("p1-1", 1, 1, 2.0, 2.1),
        Assign("m2", 2, [0], 3.0),
        Assign("m1", 2, [1], 3.0),
        CommittedRead("g", 0, 2, 3.05),
        poll("m2", 2, 0, 3.1, (3, "p0-2")),
        Commit("m2", 2, 0, 4, True, 3.15),
        poll("m1", 2, 1, 3.2, (1, "p1-1")),
        Commit("m1", 2, 1, 2, True, 3.25),
        Fault("kill", "all brokers", "SIGKILL", 4.0, available=False),
        ProcessExit(1, True, -9, 4.0),
        Vote("t-0", 2, 2, 2, 4.9),
        Vote("t-0", 3, 2, 2, 4.9),
        BecameLeader("t-0", 2, 2, 5.0),
        Heal(6.0),
        TermOnRestart("t-0", 1, 1, 2),
        send("p1-2", 1, 2, 6.2, 6.4),
        send("p0-3", 0, 4, 6.3, 6.5),
        poll("reader-1", NO_GENERATION, 0, 8.0, (0, "p0-0"), (1, "p0-1"), (3, "p0-2"), (4, "p0-3")),
        MemorySample(2, 60 * MB, 8.0),
        final(0, (0, "p0-0"), (1, "p0-1"), (3, "p0-2"), (4, "p0-3")),
        final(1, (0, "p1-0"), (1, "p1-1"), (2, "p1-2")),
        ReplicaDump(0, 1, [(0, "p0-0"), (1, "p0-1"), (3, "p0-2"), (4, "p0-3")], 5),
        ReplicaDump(0, 2, [(0, "p0-0"), (1, "p0-1"), (3, "p0-2"), (4, "p0-3"), (5, "p0-9")], 5),
        ReplicaDump(1, 2, [(0, "p1-0"), (1, "p1-1"), (2, "p1-2")], 3),
    ]


def test_run_all_passes_a_healthy_run_with_every_checker_in_order() -> None:
    params = CheckParams(max_unavailable_s=2.0, max_recovery_s=1.0, max_rss_growth=2.0)
    results = run_all(healthy_run(), params)
    assert [result.name for result in results] == list(CHECK_NAMES)
    assert [result.name for result in results if not result.passed] == []


def test_run_all_on_an_empty_history_passes_and_names_every_check() -> None:
    results = run_all([])
    assert [result.name for result in results] == list(CHECK_NAMES)
    assert all(result.passed for result in results)


def test_run_all_fails_only_the_broken_properties() -> None:
    history: list[Event] = [event for event in healthy_run() if not isinstance(event, FinalRead)]
    history.append(final(0, (0, "p0-0"), (1, "p0-1"), (3, "p0-2"), (4, "p0-3")))
    history.append(final(1, (0, "p1-0"), (1, "p1-1")))  # p1-2 lost
    failing = [result.name for result in run_all(history) if not result.passed]
    assert failing == ["lost-write", "unseen"]


def test_the_examples_stop_at_eight() -> None:
    history: list[Event] = [send(f"v{i}", 0, i) for i in range(20)]
    history.append(final(0))
    result = check_lost_write(history)
    assert result.counts["lost"] == 20
    assert len(result.examples) == MAX_EXAMPLES


def test_format_results() -> None:
    results = [
        CheckResult("lost-write", True, {"lost": 0, "acknowledged": 12}, []),
        CheckResult(
            "inconsistent-offsets",
            False,
            {"offsets-with-two-values": 1},
            ["partition 0 offset 5 holds 'a' (final read), 'b' (replica on broker 2)"],
        ),
    ]
    assert format_results(results).splitlines() == [
        "lost-write .............. PASS  lost=0 acknowledged=12",
        "inconsistent-offsets .... FAIL  offsets-with-two-values=1",
        "    partition 0 offset 5 holds 'a' (final read), 'b' (replica on broker 2)",
    ]


def test_format_results_aligns_the_verdicts_of_every_check() -> None:
    lines = format_results(run_all([])).splitlines()
    assert len(lines) == len(CHECK_NAMES)
    assert {line.index(" PASS") for line in lines} == {25}
