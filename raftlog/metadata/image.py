"""The immutable read view of the cluster metadata at one version.

A ``MetadataImage`` is made of frozen dataclasses, tuples and read-only mappings, so that a
reader on another thread (the trio loop, a request handler) can keep one for as long as it
likes while the state machine moves on. The model builds a new image per version but reuses
the parts that did not change (a topic untouched by a command keeps its ``TopicImage``
object), so producing one is proportional to what changed plus the number of entries.

The ``*_image`` functions convert one entry of the model's plain-data state; they are the only
code that knows both layouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


def frozen_map(items: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """A read-only mapping of ``items`` with its keys in sorted order."""
    return MappingProxyType({k: items[k] for k in sorted(items)})


@dataclass(frozen=True, slots=True)
class BrokerImage:
    broker_id: int
    client_address: str
    internal_address: str
    rack: str | None
    alive: bool
    draining: bool
    last_heartbeat_ms: int


@dataclass(frozen=True, slots=True)
class PartitionImage:
    topic: str
    partition: int
    replicas: tuple[int, ...]
    """The preferred leader first."""
    leader: int | None
    """As last reported by the partition's Raft group; None when unknown."""
    leader_term: int
    """The Raft term of that report; -1 before any report."""

    @property
    def preferred_leader(self) -> int:
        return self.replicas[0]


@dataclass(frozen=True, slots=True)
class TopicImage:
    name: str
    topic_id: int
    """The metadata version that created the topic: a re-created topic gets a new id."""
    replication_factor: int
    configs: Mapping[str, str]
    """Only the topic's overrides; ``raftlog.config.topic_log_config`` gives the full set."""
    partitions: tuple[PartitionImage, ...]

    @property
    def partition_count(self) -> int:
        return len(self.partitions)


@dataclass(frozen=True, slots=True)
class MemberImage:
    member_id: str
    client_id: str
    host: str
    instance_id: str | None
    subscription: tuple[str, ...]
    assignment: Mapping[str, tuple[int, ...]]
    session_timeout_ms: int = 10_000


@dataclass(frozen=True, slots=True)
class GroupImage:
    group_id: str
    generation: int
    protocol_type: str
    protocol: str
    leader: str
    state: str
    members: Mapping[str, MemberImage]


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    offset: int
    metadata: str
    commit_ms: int


@dataclass(frozen=True, slots=True)
class MetadataImage:
    """Everything the metadata holds at ``version``; every mapping is sorted by key."""

    version: int
    brokers: Mapping[int, BrokerImage]
    topics: Mapping[str, TopicImage]
    groups: Mapping[str, GroupImage]
    offsets: Mapping[str, Mapping[tuple[str, int], CommittedOffset]]
    """group id -> (topic, partition) -> committed offset. A group may have offsets and no
    ``GroupImage`` (commits of assign()-mode consumers)."""

    def partition(self, topic: str, partition: int) -> PartitionImage | None:
        t = self.topics.get(topic)
        if t is None or not 0 <= partition < len(t.partitions):
            return None
        return t.partitions[partition]

    def partitions_of(self, broker_id: int) -> tuple[tuple[str, int], ...]:
        """Every (topic, partition) with a replica on ``broker_id``, sorted."""
        return tuple(
            (t.name, p.partition)
            for t in self.topics.values()
            for p in t.partitions
            if broker_id in p.replicas
        )

    def leaders_on(self, broker_id: int) -> tuple[tuple[str, int], ...]:
        """Every (topic, partition) whose reported leader is ``broker_id``, sorted."""
        return tuple(
            (t.name, p.partition)
            for t in self.topics.values()
            for p in t.partitions
            if p.leader == broker_id
        )

    def live_brokers(self) -> tuple[BrokerImage, ...]:
        return tuple(b for b in self.brokers.values() if b.alive)

    def committed(self, group_id: str, topic: str, partition: int) -> CommittedOffset | None:
        return self.offsets.get(group_id, {}).get((topic, partition))


EMPTY_IMAGE = MetadataImage(
    version=0,
    brokers=MappingProxyType({}),
    topics=MappingProxyType({}),
    groups=MappingProxyType({}),
    offsets=MappingProxyType({}),
)


def broker_image(broker_id: int, b: Mapping[str, Any]) -> BrokerImage:
    return BrokerImage(
        broker_id=broker_id,
        client_address=b["client_address"],
        internal_address=b["internal_address"],
        rack=b["rack"],
        alive=b["alive"],
        draining=b["draining"],
        last_heartbeat_ms=b["last_heartbeat_ms"],
    )


def topic_image(name: str, t: Mapping[str, Any]) -> TopicImage:
    parts = t["partitions"]
    return TopicImage(
        name=name,
        topic_id=t["topic_id"],
        replication_factor=t["replication_factor"],
        configs=frozen_map(t["configs"]),
        partitions=tuple(
            PartitionImage(
                topic=name,
                partition=p,
                replicas=tuple(parts[p]["replicas"]),
                leader=parts[p]["leader"],
                leader_term=parts[p]["leader_term"],
            )
            for p in sorted(parts)
        ),
    )


def group_image(group_id: str, g: Mapping[str, Any]) -> GroupImage:
    members = g["members"]
    assignment = g["assignment"]
    return GroupImage(
        group_id=group_id,
        generation=g["generation"],
        protocol_type=g["protocol_type"],
        protocol=g["protocol"],
        leader=g["leader"],
        state=g["state"],
        members=MappingProxyType(
            {
                m: MemberImage(
                    member_id=m,
                    client_id=members[m]["client_id"],
                    host=members[m]["host"],
                    instance_id=members[m]["instance_id"],
                    subscription=tuple(members[m]["subscription"]),
                    session_timeout_ms=members[m].get("session_timeout_ms", 10_000),
                    assignment=frozen_map(
                        {topic: tuple(parts) for topic, parts in assignment.get(m, {}).items()}
                    ),
                )
                for m in sorted(members)
            }
        ),
    )


def offsets_image(
    by_topic: Mapping[str, Mapping[int, Mapping[str, Any]]],
) -> Mapping[tuple[str, int], CommittedOffset]:
    return MappingProxyType(
        {
            (topic, p): CommittedOffset(
                offset=by_topic[topic][p]["offset"],
                metadata=by_topic[topic][p]["metadata"],
                commit_ms=by_topic[topic][p]["commit_ms"],
            )
            for topic in sorted(by_topic)
            for p in sorted(by_topic[topic])
        }
    )
