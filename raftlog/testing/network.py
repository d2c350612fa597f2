"""The simulator's network: per-link delay, loss, duplication, reordering and partitions.

Links are directional: ``blocked`` holds the ``(src, dst)`` pairs that cannot pass, so a
one-way link is one pair and a partition is every pair across its groups. Reordering comes
from drawing each message's delay independently. The network only decides *when* (if ever)
a message arrives; the simulator's event queue delivers it. A message is checked against
the partitions when it is sent and again when it arrives.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from raftlog.types import NodeId


@dataclass(slots=True)
class LinkFaults:
    loss_rate: float = 0.0
    duplicate_rate: float = 0.0
    delay_min_units: int = 1
    delay_max_units: int = 10


@dataclass(slots=True)
class Network:
    rng: random.Random
    nodes: tuple[NodeId, ...]
    faults: LinkFaults = field(default_factory=LinkFaults)
    blocked: set[tuple[NodeId, NodeId]] = field(default_factory=set)
    shape: str = "healed"
    delay_max_seen: int = 0

    def connected(self, src: NodeId, dst: NodeId) -> bool:
        return (src, dst) not in self.blocked

    def delays(self, src: NodeId, dst: NodeId) -> list[int]:
        """The delays (in time units) after which copies of one message arrive: none if it
        is lost or the link is cut, two if it is duplicated."""
        if not self.connected(src, dst) or self.rng.random() < self.faults.loss_rate:
            return []
        f = self.faults
        out = [self.rng.randint(f.delay_min_units, f.delay_max_units)]
        if self.rng.random() < f.duplicate_rate:
            out.append(self.rng.randint(f.delay_min_units, f.delay_max_units * 2))
        self.delay_max_seen = max(self.delay_max_seen, *out)
        return out

    def heal(self) -> None:
        self.blocked = set()
        self.shape = "healed"

    def partition(self, groups: list[list[NodeId]]) -> None:
        """Nodes talk only within their group."""
        where = {n: i for i, g in enumerate(groups) for n in g}
        self.blocked = {
            (a, b) for a in self.nodes for b in self.nodes if a != b and where[a] != where[b]
        }
        self.shape = " | ".join(" ".join(str(n) for n in sorted(g)) for g in groups)

    def bridge(self, left: list[NodeId], bridge: NodeId, right: list[NodeId]) -> None:
        """``left`` and ``right`` cannot talk to each other; ``bridge`` talks to both."""
        self.partition([[*left, bridge], right])
        for n in right:
            self.blocked.discard((n, bridge))
            self.blocked.discard((bridge, n))
        self.shape = f"bridge {bridge}: {sorted(left)} / {sorted(right)}"

    def cut_one_way(self, src: NodeId, dst: NodeId) -> None:
        self.blocked.add((src, dst))
        self.shape += f" +cut {src}->{dst}"

    def random_fault(self, rng: random.Random) -> str:
        """Switch to a random partition shape; returns its description."""
        nodes = list(self.nodes)
        rng.shuffle(nodes)
        kind = rng.choice(["alone", "split", "bridge", "one-way", "heal"])
        if kind == "alone":
            self.partition([[nodes[0]], nodes[1:]])
        elif kind == "split":
            k = rng.randint(1, len(nodes) // 2)
            self.partition([nodes[:k], nodes[k:]])
        elif kind == "bridge" and len(nodes) >= 3:
            k = rng.randint(1, (len(nodes) - 1) // 2)
            self.bridge(nodes[1 : 1 + k], nodes[0], nodes[1 + k :])
        elif kind == "one-way":
            self.heal()
            for _ in range(rng.randint(1, len(nodes))):
                a, b = rng.sample(nodes, 2)
                self.cut_one_way(a, b)
        else:
            self.heal()
        return self.shape
