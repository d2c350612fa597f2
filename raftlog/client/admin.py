"""Administration: topics, their partitions and configs, and what the cluster looks like.

``AsyncAdmin`` is the trio implementation over a ``Cluster``; ``Admin`` is the blocking API
that runs it in its own loop thread. Every admin request goes to any broker (it forwards
changes to the metadata group):

- CREATE_TOPICS, DELETE_TOPICS and CREATE_PARTITIONS return once the metadata group has
  accepted the change; with ``wait=True`` (the default) the client then polls METADATA until
  the change is visible: every partition has a leader (so that a producer started right
  after can write at once), or the topic is gone. The request and the wait share one
  deadline (``timeout_ms``).
- DESCRIBE_CONFIGS and ALTER_CONFIGS read and change a topic's config overrides.
- METADATA (asking for no topic) and the HELLO answer describe the cluster: its brokers,
  the metadata leader and the cluster id.
- Consumer groups (``list_groups``, ``describe_group``, ``reset_offsets``,
  ``delete_group``) go to the group coordinator; ``raftlog.client.group_admin`` holds
  that part (and its result types, re-exported here).

Every error is a ``RaftlogError``: what a broker refused is a ``BrokerError`` carrying its
code and message (``INVALID_CONFIG``, ``INVALID_PARTITIONS``, ``TOPIC_ALREADY_EXISTS``...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import trio

from raftlog.client import group_admin
from raftlog.client._loop import ClosesOnExit, LoopThread
from raftlog.client.cluster import ClientConfig, Cluster
from raftlog.client.errors import ProtocolError, RequestTimedOutError, broker_error
from raftlog.client.group import TopicPartition

# Re-exported: the group result types (in __all__), and the names that were defined here
# before group administration moved to group_admin.
from raftlog.client.group_admin import (  # noqa: F401
    _FENCED_RESET,
    ANY_GROUP,
    ConsumerGroupDescription,
    GroupMemberDescription,
    GroupOverview,
    GroupPartitionOffsets,
)
from raftlog.errors import ErrorCode
from raftlog.types import NodeId
from raftlog.wire import (
    AlterConfigsRequest,
    AlterConfigsResponse,
    AlterTopicConfigs,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    MetadataRequest,
    MetadataResponse,
    NewPartitions,
    NewTopic,
    Request,
    Response,
    TopicMetadata,
    TopicResult,
)

log = logging.getLogger("raftlog.client")

WAIT_POLL_MS = 50

R = TypeVar("R", bound=Response)


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    partition: int
    leader: int | None
    replicas: tuple[int, ...]
    high_watermark: int | None


@dataclass(frozen=True, slots=True)
class TopicDescription:
    name: str
    partitions: tuple[PartitionInfo, ...]


@dataclass(frozen=True, slots=True)
class ConfigValue:
    """A topic config's effective value; ``is_default`` when the topic does not override it."""

    value: str
    is_default: bool


@dataclass(frozen=True, slots=True)
class BrokerDescription:
    id: int
    host: str
    port: int
    rack: str | None


@dataclass(frozen=True, slots=True)
class ClusterDescription:
    """The registered brokers (sorted by id), the metadata group's leader (None while it
    elects one) and the cluster id the answering broker gave (None when it gave none)."""

    brokers: tuple[BrokerDescription, ...]
    metadata_leader: int | None
    cluster_id: str | None


def _describe(meta: TopicMetadata) -> TopicDescription:
    parts = tuple(
        PartitionInfo(p.partition, p.leader, tuple(p.replicas), p.high_watermark)
        for p in sorted(meta.partitions, key=lambda p: p.partition)
    )
    return TopicDescription(meta.name, parts)


def _check(results: Sequence[TopicResult], name: str, what: str) -> None:
    """Raise the broker's error for topic ``name``; ``ProtocolError`` when it is missing."""
    for r in results:
        if r.name == name:
            if r.error != ErrorCode.NONE:
                raise broker_error(r.error, r.message, f"{what} topic {name!r}")
            return
    raise ProtocolError(f"the broker's answer to {what} topic {name!r} has no result for it")


def _led(count: int) -> Callable[[TopicMetadata | None], bool]:
    """Ready when the topic has (at least) ``count`` partitions, each with a leader."""

    def ready(meta: TopicMetadata | None) -> bool:
        if meta is None or len(meta.partitions) < count:
            return False
        return all(p.leader is not None for p in meta.partitions)

    return ready


def _gone(meta: TopicMetadata | None) -> bool:
    return meta is None


class AsyncAdmin:
    """Administration in a trio program (over a ``Cluster``); ``Admin`` documents each
    method (same arguments, same errors)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    # ------------------------------------------------------------------ shared

    async def _request(self, msg: Request, expected: type[R], timeout_ms: int | None = None) -> R:
        answer = await self.cluster.request_any(msg, timeout_ms)
        if not isinstance(answer, expected):
            raise ProtocolError(f"{msg.API_KEY.name} answered with {type(answer).__name__}")
        return answer

    async def _metadata(self, name: str) -> TopicMetadata | None:
        """The topic's metadata, None when the cluster does not know it."""
        answer = await self._request(MetadataRequest(topics=(name,)), MetadataResponse)
        for t in answer.topics:
            if t.name == name:
                if t.error == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                    return None
                if t.error != ErrorCode.NONE and not t.retriable:
                    raise broker_error(t.error, t.message, f"topic {name!r}")
                return t if t.error == ErrorCode.NONE else None
        return None

    async def _wait_for(
        self,
        name: str,
        ready: Callable[[TopicMetadata | None], bool],
        deadline: float,
        not_ready: str,
    ) -> TopicMetadata | None:
        """Poll METADATA for ``name`` until ``ready`` says so, and return that metadata
        (taken into the cluster cache). ``RequestTimedOutError(not_ready)`` at ``deadline``
        (``trio.current_time()`` based)."""
        with trio.move_on_at(deadline):
            while True:
                meta = await self._metadata(name)
                if ready(meta):
                    if meta is None:
                        self.cluster.topics.pop(name, None)
                    else:
                        self.cluster.apply(MetadataResponse((), None, (meta,)))
                    return meta
                await trio.sleep(WAIT_POLL_MS / 1000)
        raise RequestTimedOutError(not_ready)

    # ------------------------------------------------------------------ topics

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = 1,
        configs: Mapping[str, str] | None = None,
        *,
        wait: bool = True,
        timeout_ms: int = 30_000,
    ) -> None:
        """Create a topic; see ``Admin.create_topic``."""
        deadline = trio.current_time() + timeout_ms / 1000
        topic = NewTopic(name, partitions, replication_factor, dict(configs or {}))
        request = CreateTopicsRequest(topics=(topic,), timeout_ms=timeout_ms)
        answer = await self._request(request, CreateTopicsResponse, timeout_ms)
        _check(answer.topics, name, "create")
        if wait:
            await self._wait_for(
                name,
                _led(partitions),
                deadline,
                f"topic {name!r} was not ready within {timeout_ms} ms (some partitions have no "
                "leader yet); it may still become ready: check with describe_topic",
            )

    async def delete_topic(self, name: str, *, wait: bool = True, timeout_ms: int = 30_000) -> None:
        """Delete a topic; see ``Admin.delete_topic``."""
        deadline = trio.current_time() + timeout_ms / 1000
        request = DeleteTopicsRequest(topics=(name,), timeout_ms=timeout_ms)
        answer = await self._request(request, DeleteTopicsResponse, timeout_ms)
        _check(answer.topics, name, "delete")
        self.cluster.topics.pop(name, None)
        if wait:
            await self._wait_for(
                name,
                _gone,
                deadline,
                f"topic {name!r} was still listed {timeout_ms} ms after its deletion was accepted",
            )

    async def create_partitions(
        self,
        topic: str,
        total_count: int,
        *,
        assignments: Sequence[Sequence[int]] | None = None,
        validate_only: bool = False,
        wait: bool = True,
        timeout_ms: int = 30_000,
    ) -> None:
        """Grow a topic's partition count; see ``Admin.create_partitions``."""
        deadline = trio.current_time() + timeout_ms / 1000
        replicas = (
            None if assignments is None else tuple(tuple(NodeId(b) for b in r) for r in assignments)
        )
        request = CreatePartitionsRequest(
            topics=(NewPartitions(topic, total_count, replicas),),
            timeout_ms=timeout_ms,
            validate_only=validate_only,
        )
        answer = await self._request(request, CreatePartitionsResponse, timeout_ms)
        _check(answer.topics, topic, "add partitions to")
        if wait and not validate_only:
            await self._wait_for(
                topic,
                _led(total_count),
                deadline,
                f"the new partitions of topic {topic!r} were not ready within {timeout_ms} ms "
                "(some have no leader yet); they may still become ready: check with "
                "describe_topic",
            )

    async def list_topics(self) -> list[str]:
        """The names of every topic, sorted."""
        await self.cluster.refresh(force=True)
        return sorted(self.cluster.topics)

    async def describe_topic(self, name: str) -> TopicDescription:
        """A topic's partitions; see ``Admin.describe_topic``."""
        meta = await self._metadata(name)
        if meta is None:
            raise broker_error(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None, f"topic {name!r}")
        return _describe(meta)

    # ------------------------------------------------------------------ configs

    async def describe_configs(self, topic: str) -> dict[str, ConfigValue]:
        """Every config of a topic; see ``Admin.describe_configs``."""
        request = DescribeConfigsRequest(topics=(topic,))
        answer = await self._request(request, DescribeConfigsResponse)
        for t in answer.topics:
            if t.name == topic:
                if t.error != ErrorCode.NONE:
                    raise broker_error(t.error, t.message, f"describe configs of topic {topic!r}")
                entries = sorted(t.configs, key=lambda c: c.name)
                return {c.name: ConfigValue(c.value, c.is_default) for c in entries}
        raise ProtocolError(f"DESCRIBE_CONFIGS answered without topic {topic!r}")

    async def alter_configs(
        self,
        topic: str,
        set: Mapping[str, str] | None = None,
        delete: Sequence[str] = (),
        *,
        validate_only: bool = False,
    ) -> None:
        """Set or reset configs of a topic; see ``Admin.alter_configs``."""
        sets = dict(set or {})
        deletes = tuple(dict.fromkeys(delete))  # repeats dropped, order kept
        both = sorted(k for k in deletes if k in sets)
        if both:
            raise ValueError(f"config key(s) {both} are both set and deleted; pick one")
        if not sets and not deletes:
            raise ValueError("alter_configs needs keys to set or keys to delete")
        request = AlterConfigsRequest(
            topics=(AlterTopicConfigs(topic, sets, deletes),), validate_only=validate_only
        )
        answer = await self._request(request, AlterConfigsResponse)
        _check(answer.topics, topic, "alter configs of")

    # ------------------------------------------------------------------ groups

    async def list_groups(self) -> list[GroupOverview]:
        """Every group with its state and member count; see ``Admin.list_groups``."""
        return await group_admin.list_groups(self.cluster)

    async def describe_group(self, group_id: str) -> ConsumerGroupDescription:
        """A group's members, state, offsets and lag; see ``Admin.describe_group``."""
        return await group_admin.describe_group(self.cluster, group_id)

    async def reset_offsets(
        self,
        group_id: str,
        topic: str,
        to: str | None = None,
        *,
        timestamp_ms: int | None = None,
        shift: int | None = None,
        partitions: Sequence[int] | None = None,
        dry_run: bool = False,
    ) -> dict[TopicPartition, int]:
        """Move a group's committed offsets; see ``Admin.reset_offsets``."""
        return await group_admin.reset_offsets(
            self.cluster,
            group_id,
            topic,
            to,
            timestamp_ms=timestamp_ms,
            shift=shift,
            partitions=partitions,
            dry_run=dry_run,
        )

    async def delete_group(self, group_id: str) -> None:
        """Delete a group and its offsets; see ``Admin.delete_group``."""
        await group_admin.delete_group(self.cluster, group_id)

    # ------------------------------------------------------------------ cluster

    async def describe_cluster(self) -> ClusterDescription:
        """Brokers, metadata leader, cluster id; see ``Admin.describe_cluster``."""
        conn = await self.cluster.any_connection()
        timeout_ms = self.cluster.config.request_timeout_ms
        answer = await conn.request(MetadataRequest(topics=()), timeout_ms=timeout_ms)
        if not isinstance(answer, MetadataResponse):
            raise ProtocolError(f"METADATA answered with {type(answer).__name__}")
        self.cluster.apply(answer)
        brokers = tuple(
            BrokerDescription(int(b.broker_id), b.host, b.port, b.rack)
            for b in sorted(answer.brokers, key=lambda b: b.broker_id)
        )
        leader = answer.metadata_leader_id
        return ClusterDescription(brokers, None if leader is None else int(leader), conn.cluster_id)


class Admin(ClosesOnExit):
    """Blocking administration: ``with Admin("127.0.0.1:9092") as admin: ...``.

    Every method raises ``BrokerError`` (a ``RaftlogError``) with the broker's code and
    message when the broker refuses, ``BrokerUnreachableError`` when no broker can be
    reached, ``RequestTimedOutError`` when no answer comes in time, and
    ``ClientClosedError`` after ``close``.
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        request_timeout_ms: int = 30_000,
        connect_timeout_ms: int = 10_000,
        client_id: str = "raftlog-admin",
    ) -> None:
        config = ClientConfig(
            client_id=client_id,
            connect_timeout_ms=connect_timeout_ms,
            request_timeout_ms=request_timeout_ms,
        )
        self._loop = LoopThread("raftlog-admin")
        try:
            self._core: AsyncAdmin = self._loop.run(self._start, bootstrap, config)
        except BaseException:
            self._loop.close()
            raise

    async def _start(self, bootstrap: str | Sequence[str], config: ClientConfig) -> AsyncAdmin:
        return AsyncAdmin(Cluster(bootstrap, self._loop.nursery, config))

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = 1,
        configs: Mapping[str, str] | None = None,
        *,
        wait: bool = True,
        timeout_ms: int = 30_000,
    ) -> None:
        """Create a topic; with ``wait``, return once every partition has a leader.

        ``configs`` are topic config overrides (``{"retention.ms": "3600000"}``).
        Raises ``BrokerError`` (TOPIC_ALREADY_EXISTS, INVALID_CONFIG,
        INVALID_REPLICATION_FACTOR...), or ``RequestTimedOutError`` when the topic is not
        ready within ``timeout_ms`` (it may still become ready).
        Example: ``admin.create_topic("orders", partitions=6, replication_factor=3)``."""

        async def call() -> None:
            await self._core.create_topic(
                name, partitions, replication_factor, configs, wait=wait, timeout_ms=timeout_ms
            )

        self._loop.run(call)

    def delete_topic(self, name: str, *, wait: bool = True, timeout_ms: int = 30_000) -> None:
        """Delete a topic; with ``wait``, return once the metadata no longer lists it.

        Raises ``BrokerError`` (UNKNOWN_TOPIC_OR_PARTITION when there is no such topic), or
        ``RequestTimedOutError`` when it is still listed after ``timeout_ms``."""

        async def call() -> None:
            await self._core.delete_topic(name, wait=wait, timeout_ms=timeout_ms)

        self._loop.run(call)

    def create_partitions(
        self,
        topic: str,
        total_count: int,
        *,
        assignments: Sequence[Sequence[int]] | None = None,
        validate_only: bool = False,
        wait: bool = True,
        timeout_ms: int = 30_000,
    ) -> None:
        """Grow ``topic`` to ``total_count`` partitions in all; with ``wait``, return once
        every partition (old and new) has a leader.

        Partitions are never removed: a ``total_count`` not larger than the current count
        is refused (``BrokerError`` INVALID_PARTITIONS, saying the current count) and
        changes nothing. Keys keep mapping to the same partition only while the count
        stays the same: records of one key written after the change may land elsewhere.
        ``assignments`` lists the replica broker ids of each new partition (preferred
        leader first), one list per new partition; by default the cluster places them.
        ``validate_only`` checks without adding. Raises ``BrokerError``
        (UNKNOWN_TOPIC_OR_PARTITION, INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR,
        UNKNOWN_BROKER...), ``RequestTimedOutError`` when the new partitions have no
        leader within ``timeout_ms`` (they may still get one), or ``ValueError`` (nothing
        sent) for a count outside 1..10,000 or a malformed ``assignments``.
        Example: ``admin.create_partitions("orders", 12)``."""

        async def call() -> None:
            await self._core.create_partitions(
                topic,
                total_count,
                assignments=assignments,
                validate_only=validate_only,
                wait=wait,
                timeout_ms=timeout_ms,
            )

        self._loop.run(call)

    def list_topics(self) -> list[str]:
        """The names of every topic, sorted."""
        return self._loop.run(self._core.list_topics)

    def describe_topic(self, name: str) -> TopicDescription:
        """Partitions of a topic with their leader, replicas and high watermark.

        Raises ``BrokerError`` (UNKNOWN_TOPIC_OR_PARTITION) when there is no such topic."""
        return self._loop.run(self._core.describe_topic, name)

    def describe_configs(self, topic: str) -> dict[str, ConfigValue]:
        """Every config key of ``topic`` with its effective value and whether it is the
        default (not overridden by the topic), keys sorted.

        Raises ``BrokerError`` (UNKNOWN_TOPIC_OR_PARTITION) when there is no such topic.
        Example: ``admin.describe_configs("orders")["retention.ms"].value``."""
        return self._loop.run(self._core.describe_configs, topic)

    def alter_configs(
        self,
        topic: str,
        set: Mapping[str, str] | None = None,
        delete: Sequence[str] = (),
        *,
        validate_only: bool = False,
    ) -> None:
        """Change config overrides of ``topic``: keys in ``set`` take the given values, keys
        in ``delete`` go back to their defaults; other overrides stay (incremental).
        ``validate_only`` checks the values without changing anything.

        Raises ``ValueError`` when a key is both set and deleted or nothing is to change,
        ``BrokerError`` with the broker's message: INVALID_CONFIG (an unknown key or a
        value out of range; nothing changes), UNKNOWN_TOPIC_OR_PARTITION.
        Example: ``admin.alter_configs("orders", set={"retention.ms": "3600000"})``."""

        async def call() -> None:
            await self._core.alter_configs(topic, set, delete, validate_only=validate_only)

        self._loop.run(call)

    def describe_cluster(self) -> ClusterDescription:
        """The brokers the metadata registers (id, host, port, rack), the metadata group's
        leader (None while it elects one) and the cluster id.

        Example: ``[b.id for b in admin.describe_cluster().brokers]``."""
        return self._loop.run(self._core.describe_cluster)

    # ------------------------------------------------------------------ groups

    def list_groups(self) -> list[GroupOverview]:
        """Every consumer group (sorted by id) with its state ("Empty", "Stable",
        "PreparingRebalance", "CompletingRebalance", "Dead") and member count. A group
        that only has committed offsets (assign()-mode consumers, admin resets) is listed
        as "Empty".
        Example: ``[g.group_id for g in admin.list_groups() if g.state == "Empty"]``."""
        return self._loop.run(self._core.list_groups)

    def describe_group(self, group_id: str) -> ConsumerGroupDescription:
        """A group's state, generation, strategy, leader, its members (id, instance id,
        client id, host, assigned partitions), and per partition (assigned, or with a
        committed offset) the committed offset, the log end (high watermark) and the lag.

        Raises ``BrokerError`` with the coordinator's code when it refuses.
        Example::

            d = admin.describe_group("billing")
            print(d.state, len(d.members), d.lag)
            for p in d.partitions:
                print(p.topic, p.partition, p.committed, p.log_end, p.lag, p.member_id)
        """
        return self._loop.run(self._core.describe_group, group_id)

    def reset_offsets(
        self,
        group_id: str,
        topic: str,
        to: str | None = None,
        *,
        timestamp_ms: int | None = None,
        shift: int | None = None,
        partitions: Sequence[int] | None = None,
        dry_run: bool = False,
    ) -> dict[TopicPartition, int]:
        """Set the committed offsets of ``group_id`` for ``topic`` (``partitions``, or
        every partition), and return them: exactly one of

        - ``to="earliest"`` (the log start) or ``to="latest"`` (the log end: skip
          everything written so far);
        - ``timestamp_ms=``: the first record at or after that time (the log end when
          there is none);
        - ``shift=N``: the committed offset plus N (negative: back), kept within the log.

        ``dry_run`` computes the offsets without committing them. The group must have no
        active members (stop its consumers first): ``BrokerError`` NON_EMPTY_GROUP
        otherwise, and nothing is changed. Also raises ``ValueError`` for arguments that
        do not fit (or a ``shift`` of a partition without a committed offset),
        ``BrokerError`` UNKNOWN_TOPIC_OR_PARTITION.
        Example: ``admin.reset_offsets("billing", "orders", to="earliest")``."""

        async def call() -> dict[TopicPartition, int]:
            return await self._core.reset_offsets(
                group_id,
                topic,
                to,
                timestamp_ms=timestamp_ms,
                shift=shift,
                partitions=partitions,
                dry_run=dry_run,
            )

        return self._loop.run(call)

    def delete_group(self, group_id: str) -> None:
        """Delete a group with no active members, and its committed offsets. Raises
        ``BrokerError`` NON_EMPTY_GROUP while it has members, GROUP_ID_NOT_FOUND when
        there is no such group."""
        self._loop.run(self._core.delete_group, group_id)

    def close(self) -> None:
        """Close the connections and stop the client's loop thread."""
        try:
            self._loop.run_sync_soon(self._core.cluster.close)
        finally:
            self._loop.close()


__all__ = [
    "Admin",
    "AsyncAdmin",
    "BrokerDescription",
    "ClusterDescription",
    "ConfigValue",
    "ConsumerGroupDescription",
    "GroupMemberDescription",
    "GroupOverview",
    "GroupPartitionOffsets",
    "PartitionInfo",
    "TopicDescription",
]
