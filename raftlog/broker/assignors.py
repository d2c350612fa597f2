"""Consumer-group partition assignment strategies: which member reads which partitions.

The group coordinator calls :func:`assign` once per generation. Pure functions: no I/O, no
clocks, no randomness; the output depends only on the input's contents (member ids and topic
names are sorted, never taken in the order of the mappings passed in).

Common guarantees, for every strategy:

- every member of ``subscriptions`` appears in the result, possibly with ``{}``; a member's
  dict lists only topics it got partitions of, each with its partitions sorted;
- every partition of every topic that at least one member subscribes to goes to exactly one
  member, and that member subscribes to the topic; topics missing from ``partition_counts``
  do not exist and get nothing.

The strategies:

- ``range`` (Kafka's RangeAssignor): topic by topic, the subscribed members sorted by id
  split the partitions into contiguous ranges; the first ``count % n`` members get one extra
  partition (4 partitions, 3 members: ``[0, 1]``, ``[2]``, ``[3]``). Per topic the members
  differ by at most one partition, but the extras of every topic land on the same members.
- ``roundrobin`` (Kafka's RoundRobinAssignor): all (topic, partition) pairs sorted by topic
  then partition are dealt in turn to the members sorted by id, one circular cursor for all
  topics, skipping the members not subscribed to the pair's topic. When every member
  subscribes to the same topics, the members' totals differ by at most one.
- ``sticky`` (in the spirit of Kafka's StickyAssignor): balance first, then as little
  movement as possible from ``current``, the previous generation's assignment. A partition
  stays with its current owner while the owner is still in the group, still subscribes and
  keeping it does not break the balance. Whatever the subscriptions, a member never holds two
  partitions more than a member subscribing to all its topics (so members with the same
  subscriptions end within one partition of each other). When every member subscribes
  to the same topics the number of partitions that change owner is the minimum any balanced
  assignment needs: when a member joins a balanced group only the excess of the members above
  the new quota moves, when one leaves only its partitions move. Without ``current`` the
  result is exactly ``roundrobin``'s when all subscriptions are the same. With differing
  subscriptions the balance is a best effort (single moves, no chains of moves).

  The sticky algorithm: (1) keep every valid current ownership (member present and
  subscribed, partition exists, first claim by member id wins); (2) give each unowned
  partition, those with the fewest possible owners first, to its least-loaded subscriber;
  (3) while some member holds two partitions more than a member that could take one of them,
  move one from the most loaded such member to the least loaded such taker. Each move lowers
  the sum of squared loads, so step 3 ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

STRATEGIES: tuple[str, ...] = ("sticky", "range", "roundrobin")  # coordinator-computed ones

Assignment = dict[str, dict[str, list[int]]]  # member id -> topic -> sorted partitions

TopicPartition = tuple[str, int]
Subscriptions = Mapping[str, Collection[str]]
Current = Mapping[str, Mapping[str, Sequence[int]]]


def assign(
    strategy: str,
    subscriptions: Subscriptions,
    partition_counts: Mapping[str, int],
    current: Current | None = None,
) -> Assignment:
    """Assign the partitions of the subscribed topics to the members (see the module doc).

    ``subscriptions``: member id -> subscribed topic names; ``partition_counts``: topic ->
    partition count; ``current``: the previous generation's assignment (``sticky`` only).
    Raises ``ValueError`` for an unknown strategy name.
    """
    if strategy not in _STRATEGY_FUNCTIONS:
        raise ValueError(
            f"unknown assignment strategy {strategy!r}; valid: {', '.join(STRATEGIES)}"
        )
    topics_of = _existing_topics(subscriptions, partition_counts)
    owned = _STRATEGY_FUNCTIONS[strategy](topics_of, partition_counts, current or {})
    return _to_assignment(owned)


# ------------------------------------------------------------------ shared helpers


def _existing_topics(
    subscriptions: Subscriptions, partition_counts: Mapping[str, int]
) -> dict[str, frozenset[str]]:
    """Member id (sorted) -> the subscribed topics that exist."""
    topics_of: dict[str, frozenset[str]] = {}
    for member in sorted(subscriptions):
        topics = subscriptions[member]
        if isinstance(topics, str):  # a bare name would otherwise read as one topic per letter
            raise TypeError(f"subscriptions of {member!r} must be a collection of topic names")
        topics_of[member] = frozenset(t for t in topics if t in partition_counts)
    return topics_of


def _subscribers(topics_of: Mapping[str, frozenset[str]]) -> dict[str, list[str]]:
    """Subscribed topic (sorted) -> its subscribers sorted by member id."""
    subscribers: dict[str, list[str]] = {}
    for topic in sorted(set().union(*topics_of.values())):
        subscribers[topic] = [m for m in sorted(topics_of) if topic in topics_of[m]]
    return subscribers


def _all_partitions(
    subscribers: Mapping[str, list[str]], partition_counts: Mapping[str, int]
) -> list[TopicPartition]:
    """Every partition of the subscribed topics, sorted by topic then partition."""
    return [(t, p) for t in sorted(subscribers) for p in range(partition_counts[t])]


def _to_assignment(owned: Mapping[str, Iterable[TopicPartition]]) -> Assignment:
    result: Assignment = {}
    for member in sorted(owned):
        topics: dict[str, list[int]] = {}
        for topic, partition in sorted(owned[member]):
            topics.setdefault(topic, []).append(partition)
        result[member] = topics
    return result


# ------------------------------------------------------------------ range


def _range(
    topics_of: Mapping[str, frozenset[str]], partition_counts: Mapping[str, int], _: Current
) -> dict[str, list[TopicPartition]]:
    owned: dict[str, list[TopicPartition]] = {m: [] for m in topics_of}
    for topic, members in _subscribers(topics_of).items():
        share, extra = divmod(max(partition_counts[topic], 0), len(members))
        start = 0
        for index, member in enumerate(members):
            size = share + (1 if index < extra else 0)
            owned[member].extend((topic, p) for p in range(start, start + size))
            start += size
    return owned


# ------------------------------------------------------------------ roundrobin


def _roundrobin(
    topics_of: Mapping[str, frozenset[str]], partition_counts: Mapping[str, int], _: Current
) -> dict[str, list[TopicPartition]]:
    owned: dict[str, list[TopicPartition]] = {m: [] for m in topics_of}
    members = sorted(topics_of)
    cursor = 0
    for topic, partition in _all_partitions(_subscribers(topics_of), partition_counts):
        while topic not in topics_of[members[cursor]]:  # a subscriber exists: this ends
            cursor = (cursor + 1) % len(members)
        owned[members[cursor]].append((topic, partition))
        cursor = (cursor + 1) % len(members)
    return owned


# ------------------------------------------------------------------ sticky


def _sticky(
    topics_of: Mapping[str, frozenset[str]],
    partition_counts: Mapping[str, int],
    current: Current,
) -> dict[str, set[TopicPartition]]:
    subscribers = _subscribers(topics_of)
    owned = _kept_partitions(topics_of, partition_counts, current)
    taken = set().union(*owned.values())
    orphans = [tp for tp in _all_partitions(subscribers, partition_counts) if tp not in taken]
    _place_orphans(orphans, owned, subscribers)
    _rebalance(owned, topics_of)
    return owned


def _kept_partitions(
    topics_of: Mapping[str, frozenset[str]],
    partition_counts: Mapping[str, int],
    current: Current,
) -> dict[str, set[TopicPartition]]:
    """The current ownerships still valid; a partition claimed twice stays with the first
    claimant by member id."""
    owned: dict[str, set[TopicPartition]] = {m: set() for m in topics_of}
    taken: set[TopicPartition] = set()
    for member in sorted(topics_of):
        for topic, partitions in sorted(current.get(member, {}).items()):
            if topic not in topics_of[member]:
                continue
            for partition in sorted(set(partitions)):
                tp = (topic, partition)
                if 0 <= partition < partition_counts[topic] and tp not in taken:
                    owned[member].add(tp)
                    taken.add(tp)
    return owned


def _place_orphans(
    orphans: list[TopicPartition],
    owned: dict[str, set[TopicPartition]],
    subscribers: Mapping[str, list[str]],
) -> None:
    """Each unowned partition to its least-loaded subscriber (ties: lowest member id); the
    partitions with the fewest possible owners go first."""
    for topic, partition in sorted(orphans, key=lambda tp: (len(subscribers[tp[0]]), tp)):
        receiver = min(subscribers[topic], key=_load_then_id(owned))
        owned[receiver].add((topic, partition))


def _rebalance(
    owned: dict[str, set[TopicPartition]], topics_of: Mapping[str, frozenset[str]]
) -> None:
    """Single moves from the most loaded member to the least loaded one that can take one of
    its partitions, while the two differ by two or more."""
    while (move := _best_move(owned, topics_of)) is not None:
        donor, receiver, tp = move
        owned[donor].remove(tp)
        owned[receiver].add(tp)


def _best_move(
    owned: Mapping[str, set[TopicPartition]], topics_of: Mapping[str, frozenset[str]]
) -> tuple[str, str, TopicPartition] | None:
    lightest = min((len(p) for p in owned.values()), default=0)
    for donor in sorted(owned, key=lambda m: (-len(owned[m]), m)):
        if len(owned[donor]) - lightest < 2:
            return None  # donors come heaviest first: no later one can give either
        held = {topic for topic, _ in owned[donor]}
        takers = [
            m
            for m in owned
            if len(owned[m]) <= len(owned[donor]) - 2 and not held.isdisjoint(topics_of[m])
        ]
        if takers:
            receiver = min(takers, key=_load_then_id(owned))
            return donor, receiver, _partition_to_give(owned[donor], topics_of[receiver])
    return None


def _partition_to_give(held: set[TopicPartition], takeable: frozenset[str]) -> TopicPartition:
    """Of the topic the donor holds most of (that the receiver takes), the last partition."""
    per_topic = Counter(topic for topic, _ in held)
    candidates = [tp for tp in held if tp[0] in takeable]
    return max(candidates, key=lambda tp: (per_topic[tp[0]], tp))


def _load_then_id(owned: Mapping[str, set[TopicPartition]]) -> Callable[[str], tuple[int, str]]:
    return lambda member: (len(owned[member]), member)


_STRATEGY_FUNCTIONS: dict[
    str,
    Callable[
        [Mapping[str, frozenset[str]], Mapping[str, int], Current],
        Mapping[str, Iterable[TopicPartition]],
    ],
] = {"sticky": _sticky, "range": _range, "roundrobin": _roundrobin}
