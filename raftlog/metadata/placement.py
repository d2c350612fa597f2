"""Where a new partition's replicas go: deterministic, even, rack-aware.

How it works: partitions are placed one at a time, greedily, against running counts of the
replicas and preferred leaders (the first replica) that every eligible broker already holds,
across all topics. For each partition the replica set is picked broker by broker, each time
taking the candidate that minimizes, in order:

1. how many replicas of this partition its rack already has (so no two replicas share a rack
   while unused racks remain; a broker without a rack is a rack of its own);
2. how many replicas it holds (water-filling keeps replica counts within one of each other);
3. how many preferred leaderships it holds (ties go to brokers that can take a leader);
4. its id (a total order: the same inputs give the same placement in every process).

The preferred leader is then the member of the set with the fewest preferred leaderships.

Rules it keeps: pure (no clock, no randomness, no I/O); iterates only over sorted ids; never
places two replicas of one partition on one broker; only the brokers it is given are used
(the model passes the live, non-draining ones).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    """A broker that may receive new replicas."""

    broker_id: int
    rack: str | None


def place_partitions(
    candidates: Sequence[Candidate],
    replica_counts: Mapping[int, int],
    leader_counts: Mapping[int, int],
    partitions: int,
    replication_factor: int,
) -> list[list[int]]:
    """Replica lists (preferred leader first) for ``partitions`` new partitions.

    ``replica_counts`` and ``leader_counts`` say what each broker already holds (missing ids
    hold nothing); they are not modified. Raises ``ValueError`` when the replication factor
    is below 1 or above the number of distinct candidates: the caller checks that first and
    reports it as a user error.
    """
    ids = sorted({c.broker_id for c in candidates})
    if not 1 <= replication_factor <= len(ids):
        raise ValueError(
            f"replication factor {replication_factor} needs as many brokers; {len(ids)} given"
        )
    rack_of: dict[int, str] = {}
    for c in candidates:
        # a broker without a rack counts as a rack of its own; "\0" cannot start a real rack
        rack_of[c.broker_id] = c.rack if c.rack is not None else f"\0{c.broker_id}"
    replicas = {b: replica_counts.get(b, 0) for b in ids}
    leaders = {b: leader_counts.get(b, 0) for b in ids}

    def followers_of(leader: int) -> list[int]:
        chosen = [leader]
        rack_use = {rack_of[leader]: 1}
        for _slot in range(replication_factor - 1):
            best = min(
                (b for b in ids if b not in chosen),
                key=lambda b: (rack_use.get(rack_of[b], 0), replicas[b], -leaders[b], b),
            )
            chosen.append(best)
            rack_use[rack_of[best]] = rack_use.get(rack_of[best], 0) + 1
        return chosen

    def spread_after(chosen: list[int]) -> int:
        counts = [replicas[b] + (b in chosen) for b in ids]
        return max(counts) - min(counts)

    out: list[list[int]] = []
    for _ in range(partitions):
        # The leader is one of the brokers with the fewest leaderships; among those, the one
        # whose replica set leaves replica counts most even, then the one holding more
        # replicas (keeps leaderships in step with replicas), then the lowest id.
        fewest = min(leaders.values())
        options = sorted((b for b in ids if leaders[b] == fewest), key=lambda b: (-replicas[b], b))
        best_key: tuple[int, int, int] | None = None
        best_set: list[int] = []
        for b in options:
            chosen = followers_of(b)
            key = (spread_after(chosen), -replicas[b], b)
            if best_key is None or key < best_key:
                best_key, best_set = key, chosen
            if key[0] <= 1:
                break  # as even as water-filling gets; later options hold fewer replicas
        for b in best_set:
            replicas[b] += 1
        leaders[best_set[0]] += 1
        out.append(best_set)
    return out
