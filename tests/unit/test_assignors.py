"""Consumer-group assignment strategies: the small pictures, exact outputs of range and
roundrobin (Kafka's documented examples), the sticky moves on join and leave, bad input."""

from __future__ import annotations

import pytest

from raftlog.broker.assignors import STRATEGIES, Assignment, assign


def _members(n: int) -> dict[str, list[str]]:
    return {f"m{i}": ["t"] for i in range(1, n + 1)}


def _owners(assignment: Assignment) -> dict[tuple[str, int], str]:
    return {
        (topic, p): member
        for member, topics in assignment.items()
        for topic, partitions in topics.items()
        for p in partitions
    }


# ------------------------------------------------------------------ one topic, 4 partitions

FOUR_PARTITIONS: dict[tuple[str, int], Assignment] = {
    ("range", 3): {"m1": {"t": [0, 1]}, "m2": {"t": [2]}, "m3": {"t": [3]}},
    ("roundrobin", 3): {"m1": {"t": [0, 3]}, "m2": {"t": [1]}, "m3": {"t": [2]}},
    ("sticky", 3): {"m1": {"t": [0, 3]}, "m2": {"t": [1]}, "m3": {"t": [2]}},
    **{
        (strategy, 4): {f"m{i + 1}": {"t": [i]} for i in range(4)}
        for strategy in ("range", "roundrobin", "sticky")
    },
    **{
        (strategy, 5): {**{f"m{i + 1}": {"t": [i]} for i in range(4)}, "m5": {}}
        for strategy in ("range", "roundrobin", "sticky")
    },
}


@pytest.mark.parametrize(("strategy", "members"), sorted(FOUR_PARTITIONS))
def test_four_partitions(strategy: str, members: int) -> None:
    result = assign(strategy, _members(members), {"t": 4})
    assert result == FOUR_PARTITIONS[strategy, members]
    sizes = sorted(len(topics.get("t", [])) for topics in result.values())
    assert sizes == {3: [1, 1, 2], 4: [1, 1, 1, 1], 5: [0, 1, 1, 1, 1]}[members]


def test_strategies_are_listed() -> None:
    assert set(STRATEGIES) == {"sticky", "range", "roundrobin"}


# ------------------------------------------------------------------ several topics


def test_range_two_topics_two_members() -> None:
    subs = {"m2": ["t1", "t0"], "m1": ["t0", "t1"]}
    assert assign("range", subs, {"t0": 3, "t1": 3}) == {
        "m1": {"t0": [0, 1], "t1": [0, 1]},
        "m2": {"t0": [2], "t1": [2]},
    }


def test_roundrobin_two_topics_two_members() -> None:
    subs = {"m2": ["t1", "t0"], "m1": ["t0", "t1"]}
    assert assign("roundrobin", subs, {"t0": 3, "t1": 3}) == {
        "m1": {"t0": [0, 2], "t1": [1]},
        "m2": {"t0": [1], "t1": [0, 2]},
    }


KAFKA_DOC_SUBS = {"C0": ["t0"], "C1": ["t0", "t1"], "C2": ["t0", "t1", "t2"]}
KAFKA_DOC_COUNTS = {"t0": 1, "t1": 2, "t2": 3}


def test_roundrobin_kafka_documented_example() -> None:
    # the RoundRobinAssignor javadoc's example with differing subscriptions
    assert assign("roundrobin", KAFKA_DOC_SUBS, KAFKA_DOC_COUNTS) == {
        "C0": {"t0": [0]},
        "C1": {"t1": [0]},
        "C2": {"t1": [1], "t2": [0, 1, 2]},
    }


def test_range_differing_subscriptions() -> None:
    assert assign("range", KAFKA_DOC_SUBS, KAFKA_DOC_COUNTS) == {
        "C0": {"t0": [0]},
        "C1": {"t1": [0]},
        "C2": {"t1": [1], "t2": [0, 1, 2]},
    }
    subs = {"m1": ["a"], "m2": ["a", "b"], "m3": ["b"]}
    assert assign("range", subs, {"a": 3, "b": 2}) == {
        "m1": {"a": [0, 1]},
        "m2": {"a": [2], "b": [0]},
        "m3": {"b": [1]},
    }


def test_sticky_balances_differing_subscriptions() -> None:
    # the partitions with fewer possible owners are placed first: C2 takes all of t2
    result = assign("sticky", KAFKA_DOC_SUBS, KAFKA_DOC_COUNTS)
    assert result == {"C0": {"t0": [0]}, "C1": {"t1": [0, 1]}, "C2": {"t2": [0, 1, 2]}}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_unknown_and_unsubscribed_topics_get_nothing(strategy: str) -> None:
    subs = {"m1": ["t", "ghost"], "m2": ["ghost"], "m3": []}
    result = assign(strategy, subs, {"t": 2, "unread": 5})
    assert result == {"m1": {"t": [0, 1]}, "m2": {}, "m3": {}}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_empty_group_and_empty_topics(strategy: str) -> None:
    assert assign(strategy, {}, {"t": 3}) == {}
    assert assign(strategy, {"m1": ["t"]}, {"t": 0}) == {"m1": {}}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_input_order_does_not_matter(strategy: str) -> None:
    subs = {"b": ["y", "x"], "a": ["x"], "c": ["y", "x"]}
    counts = {"y": 5, "x": 4}
    reordered = {m: list(reversed(subs[m])) for m in reversed(list(subs))}
    counts_reordered = dict(reversed(list(counts.items())))
    assert assign(strategy, subs, counts) == assign(strategy, reordered, counts_reordered)
    assert list(assign(strategy, subs, counts)) == ["a", "b", "c"]


def test_unknown_strategy_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="sticky, range, roundrobin"):
        assign("cooperative-sticky", {"m1": ["t"]}, {"t": 1})


def test_bare_topic_name_is_refused() -> None:
    with pytest.raises(TypeError, match="collection of topic names"):
        assign("range", {"m1": "topic"}, {"t": 1})


# ------------------------------------------------------------------ sticky movement


def test_sticky_without_current_is_roundrobin_for_equal_subscriptions() -> None:
    subs = {f"m{i}": ["a", "b", "c"] for i in range(5)}
    counts = {"a": 7, "b": 3, "c": 11}
    assert assign("sticky", subs, counts) == assign("roundrobin", subs, counts)
    assert assign("sticky", subs, counts, {}) == assign("roundrobin", subs, counts)


def test_sticky_join_moves_only_the_excess() -> None:
    before = assign("sticky", _members(3), {"t": 9})  # 3 each
    after = assign("sticky", _members(4), {"t": 9}, before)  # 3, 2, 2, 2
    moved = [tp for tp, owner in _owners(before).items() if _owners(after)[tp] != owner]
    assert len(moved) == 2
    assert all(_owners(after)[tp] == "m4" for tp in moved)
    assert sorted(len(t["t"]) for t in after.values()) == [2, 2, 2, 3]


def test_sticky_leave_moves_only_the_departed_partitions() -> None:
    before = assign("sticky", _members(4), {"t": 10})
    subs = _members(4)
    del subs["m2"]
    after = assign("sticky", subs, {"t": 10}, before)
    for tp, owner in _owners(before).items():
        if owner != "m2":
            assert _owners(after)[tp] == owner
    assert sorted(len(t["t"]) for t in after.values()) == [3, 3, 4]


def test_sticky_keeps_valid_ownerships_and_drops_the_rest() -> None:
    current = {
        "m1": {"t": [0, 1, 1, 9, -1], "u": [0]},  # duplicate, out of range, unsubscribed u
        "m2": {"t": [1, 2]},  # t1 also claimed by m1: the first member by id keeps it
        "gone": {"t": [3]},  # departed member
    }
    result = assign("sticky", {"m1": ["t"], "m2": ["t", "u"]}, {"t": 4, "u": 1}, current)
    # t3 (orphaned) goes to the least-loaded subscriber, ties to the lowest member id
    assert result == {"m1": {"t": [0, 1, 3]}, "m2": {"t": [2], "u": [0]}}


def test_sticky_moves_the_excess_of_an_overloaded_member() -> None:
    current = {"m1": {"t": [0, 1, 2, 3, 4, 5]}, "m2": {}}
    result = assign("sticky", {"m1": ["t"], "m2": ["t"]}, {"t": 6}, current)
    assert result == {"m1": {"t": [0, 1, 2]}, "m2": {"t": [3, 4, 5]}}


def test_sticky_best_effort_with_a_narrow_member() -> None:
    # m1 can only read a: it takes a's partitions from m2 until the two are level
    current = {"m2": {"a": [0, 1, 2, 3], "b": [0, 1]}}
    result = assign("sticky", {"m1": ["a"], "m2": ["a", "b"]}, {"a": 4, "b": 2}, current)
    assert result == {"m1": {"a": [1, 2, 3]}, "m2": {"a": [0], "b": [0, 1]}}
