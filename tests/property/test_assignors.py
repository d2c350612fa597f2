"""Properties of the consumer-group assignment strategies under Hypothesis.

- Every strategy, any group: every member appears; every partition of a subscribed topic has
  exactly one owner, who subscribes to it; nothing else is assigned; lists are sorted and
  non-empty; the output does not depend on the order of the input mappings.
- Equal subscriptions: sticky and roundrobin totals differ by at most one; range does per topic.
- Sticky, any group: a member whose subscriptions are contained in another's never holds two
  more than it; re-running on its own output changes nothing.
- Sticky, equal subscriptions: from any previous assignment, the partitions that change owner
  are the fewest any balanced assignment needs; a member joining moves only the excess of the
  members above the new quota; a member leaving moves only its partitions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from raftlog.broker.assignors import STRATEGIES, Assignment, assign

FAST = settings(max_examples=200, deadline=None)

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class Group:
    subscriptions: dict[str, list[str]]
    partition_counts: dict[str, int]


# member ids whose sorted order differs from their order here and from numeric order
MEMBER_IDS = ["m2", "m10", "m1", "b", "consumer-7", "a", "zz", "m3", "c-1", "m11", "x", "aa", "q"]


@st.composite
def groups(draw: st.DrawFn, *, same_subscriptions: bool = False) -> Group:
    counts = draw(st.lists(st.integers(1, 30), min_size=1, max_size=4))
    partition_counts = {f"t{i}": c for i, c in enumerate(counts)}
    members = draw(st.lists(st.sampled_from(MEMBER_IDS), min_size=1, max_size=12, unique=True))
    if same_subscriptions:
        return Group({m: list(partition_counts) for m in members}, partition_counts)
    topic_names = [*partition_counts, "ghost"]  # "ghost" does not exist
    # one byte per member, one bit per topic: a single draw keeps generation fast
    masks = draw(st.binary(min_size=len(members), max_size=len(members)))
    subscriptions = {
        m: [t for bit, t in enumerate(topic_names) if mask >> bit & 1]
        for m, mask in zip(members, masks, strict=True)
    }
    return Group(subscriptions, partition_counts)


@st.composite
def previous_assignments(draw: st.DrawFn, group: Group) -> dict[str, dict[str, list[int]]]:
    """A random previous generation: each partition owned by a member, a departed member or
    nobody (one byte per partition picks which)."""
    owners = [*group.subscriptions, "departed", None]
    partitions = [(t, p) for t, count in group.partition_counts.items() for p in range(count)]
    picks = draw(st.binary(min_size=len(partitions), max_size=len(partitions)))
    current: dict[str, dict[str, list[int]]] = {}
    for (topic, p), pick in zip(partitions, picks, strict=True):
        owner = owners[pick % len(owners)]
        if owner is not None:
            current.setdefault(owner, {}).setdefault(topic, []).append(p)
    return current


def _owners(assignment: Mapping[str, Mapping[str, list[int]]]) -> dict[TopicPartition, str]:
    return {
        (t, p): member
        for member, topics in assignment.items()
        for t, partitions in topics.items()
        for p in partitions
    }


def _loads(assignment: Assignment) -> dict[str, int]:
    return {m: sum(len(ps) for ps in topics.values()) for m, topics in assignment.items()}


def _moved(before: Mapping[str, Mapping[str, list[int]]], after: Assignment) -> set[TopicPartition]:
    now = _owners(after)
    return {tp for tp, owner in _owners(before).items() if now.get(tp) != owner}


def _fewest_moves(kept: Mapping[str, int], members: list[str], total: int, orphans: int) -> int:
    """Equal subscriptions: the fewest partitions that change owner in any balanced
    assignment, given what each member validly holds now (``kept``)."""
    quota, extra = divmod(total, len(members))
    over = [kept.get(m, 0) for m in members if kept.get(m, 0) > quota]
    return orphans + sum(k - quota for k in over) - min(extra, len(over))


# ------------------------------------------------------------------ every strategy


@FAST
@given(group=groups(), strategy=st.sampled_from(STRATEGIES))
def test_every_subscribed_partition_has_one_subscribed_owner(group: Group, strategy: str) -> None:
    result = assign(strategy, group.subscriptions, group.partition_counts)
    assert list(result) == sorted(group.subscriptions)
    subscribed = {t for topics in group.subscriptions.values() for t in topics}
    expected = {
        (t, p)
        for t, count in group.partition_counts.items()
        if t in subscribed
        for p in range(count)
    }
    seen: list[TopicPartition] = []
    for member, topics in result.items():
        for topic, partitions in topics.items():
            assert topic in group.subscriptions[member]
            assert partitions == sorted(partitions) and partitions
            seen.extend((topic, p) for p in partitions)
    assert sorted(seen) == sorted(expected)  # each exactly once, nothing else


@FAST
@given(group=groups(), strategy=st.sampled_from(STRATEGIES), data=st.data())
def test_output_does_not_depend_on_input_order(
    group: Group, strategy: str, data: st.DataObject
) -> None:
    members = data.draw(st.permutations(list(group.subscriptions)))
    shuffled = {m: data.draw(st.permutations(group.subscriptions[m])) for m in members}
    counts = dict(data.draw(st.permutations(list(group.partition_counts.items()))))
    current = data.draw(previous_assignments(group))
    first = assign(strategy, group.subscriptions, group.partition_counts, current)
    assert assign(strategy, shuffled, counts, current) == first
    assert assign(strategy, group.subscriptions, group.partition_counts, current) == first


@FAST
@given(group=groups(same_subscriptions=True), strategy=st.sampled_from(STRATEGIES))
def test_equal_subscriptions_are_balanced(group: Group, strategy: str) -> None:
    result = assign(strategy, group.subscriptions, group.partition_counts)
    if strategy == "range":  # balanced per topic only
        for topic in group.partition_counts:
            per_member = [len(topics.get(topic, [])) for topics in result.values()]
            assert max(per_member) - min(per_member) <= 1
    else:
        loads = _loads(result).values()
        assert max(loads) - min(loads) <= 1


# ------------------------------------------------------------------ sticky, any group


@FAST
@given(group=groups(), data=st.data())
def test_sticky_contained_subscriptions_hold_no_more_than_one_extra(
    group: Group, data: st.DataObject
) -> None:
    current = data.draw(previous_assignments(group))
    result = assign("sticky", group.subscriptions, group.partition_counts, current)
    loads = _loads(result)
    existing = {m: set(ts) & set(group.partition_counts) for m, ts in group.subscriptions.items()}
    for a in existing:
        for b in existing:
            if existing[a] <= existing[b]:
                assert loads[a] <= loads[b] + 1, (a, b, loads)


@FAST
@given(group=groups(), data=st.data())
def test_sticky_is_a_fixpoint_of_itself(group: Group, data: st.DataObject) -> None:
    current = data.draw(previous_assignments(group))
    first = assign("sticky", group.subscriptions, group.partition_counts, current)
    assert assign("sticky", group.subscriptions, group.partition_counts, first) == first


# ------------------------------------------------------------------ sticky, equal subscriptions


@FAST
@given(group=groups(same_subscriptions=True), data=st.data())
def test_sticky_moves_the_fewest_partitions(group: Group, data: st.DataObject) -> None:
    current = data.draw(previous_assignments(group))
    result = assign("sticky", group.subscriptions, group.partition_counts, current)
    members = sorted(group.subscriptions)
    kept = _loads({m: current.get(m, {}) for m in members})
    total = sum(group.partition_counts.values())
    orphans = total - sum(kept.values())
    assert len(_moved(current, result) | _unowned(current, group)) == _fewest_moves(
        kept, members, total, orphans
    )
    loads = _loads(result).values()
    assert max(loads) - min(loads) <= 1


def _unowned(current: Mapping[str, Mapping[str, list[int]]], group: Group) -> set[TopicPartition]:
    owned = _owners(current)
    return {
        (t, p)
        for t, count in group.partition_counts.items()
        for p in range(count)
        if (t, p) not in owned
    }


@FAST
@given(
    group=groups(same_subscriptions=True),
    newcomer=st.sampled_from(["", "b-new", "zzzz"]),
    data=st.data(),
)
def test_sticky_join_moves_only_the_excess(
    group: Group, newcomer: str, data: st.DataObject
) -> None:
    before = assign(
        "sticky",
        group.subscriptions,
        group.partition_counts,
        data.draw(previous_assignments(group)),
    )
    subscriptions = {**group.subscriptions, newcomer: list(group.partition_counts)}
    after = assign("sticky", subscriptions, group.partition_counts, before)
    moved = _moved(before, after)
    total = sum(group.partition_counts.values())
    assert len(moved) == _fewest_moves(_loads(before), sorted(subscriptions), total, 0)
    assert all(_owners(after)[tp] == newcomer for tp in moved)


@FAST
@given(group=groups(same_subscriptions=True), data=st.data())
def test_sticky_leave_moves_only_the_leavers_partitions(group: Group, data: st.DataObject) -> None:
    before = assign(
        "sticky",
        group.subscriptions,
        group.partition_counts,
        data.draw(previous_assignments(group)),
    )
    leaver = data.draw(st.sampled_from(sorted(group.subscriptions)))
    subscriptions = {m: ts for m, ts in group.subscriptions.items() if m != leaver}
    after = assign("sticky", subscriptions, group.partition_counts, before)
    moved = _moved(before, after)
    assert moved == set(_owners({leaver: before[leaver]}))
    if subscriptions:
        loads = _loads(after).values()
        assert max(loads) - min(loads) <= 1
