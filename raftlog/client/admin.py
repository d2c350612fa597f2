"""Topics: create, delete, list, describe.

``AsyncAdmin`` is the trio implementation over a ``Cluster``; ``Admin`` is the blocking API
that runs it in its own loop thread. CREATE_TOPICS and DELETE_TOPICS go to any broker (it
forwards them to the metadata group). Creating a topic returns once the metadata group has
accepted it; with ``wait=True`` (the default) ``create_topic`` then polls METADATA until
every partition has a leader, so that a producer started right after can write at once, and
``delete_topic`` until the topic is gone. Both waits have a deadline (``timeout_ms``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import trio

from raftlog.client._loop import ClosesOnExit, LoopThread
from raftlog.client.cluster import ClientConfig, Cluster
from raftlog.client.errors import ProtocolError, RequestTimedOutError, broker_error
from raftlog.errors import ErrorCode
from raftlog.wire import (
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    MetadataRequest,
    MetadataResponse,
    NewTopic,
    TopicMetadata,
    TopicResult,
)

WAIT_POLL_MS = 50


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


def _describe(meta: TopicMetadata) -> TopicDescription:
    parts = tuple(
        PartitionInfo(p.partition, p.leader, tuple(p.replicas), p.high_watermark)
        for p in sorted(meta.partitions, key=lambda p: p.partition)
    )
    return TopicDescription(meta.name, parts)


def _check(results: Sequence[TopicResult], name: str, what: str) -> None:
    for r in results:
        if r.name == name and r.error != ErrorCode.NONE:
            raise broker_error(r.error, r.message, f"{what} topic {name!r}")


class AsyncAdmin:
    """Topic administration in a trio program (over a ``Cluster``)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

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
        topic = NewTopic(name, partitions, replication_factor, dict(configs or {}))
        with trio.move_on_after(timeout_ms / 1000):
            answer = await self.cluster.request_any(
                CreateTopicsRequest(topics=(topic,), timeout_ms=timeout_ms), timeout_ms
            )
            if not isinstance(answer, CreateTopicsResponse):
                raise ProtocolError(f"CREATE_TOPICS answered with {type(answer).__name__}")
            _check(answer.topics, name, "create")
            if not wait:
                return
            while True:
                meta = await self._metadata(name)
                if self._ready(meta, partitions):
                    assert meta is not None
                    self.cluster.apply(MetadataResponse((), None, (meta,)))
                    return
                await trio.sleep(WAIT_POLL_MS / 1000)
        raise RequestTimedOutError(
            f"topic {name!r} was not ready within {timeout_ms} ms (some partitions have no "
            "leader yet); it may still become ready: check with describe_topic"
        )

    @staticmethod
    def _ready(meta: TopicMetadata | None, partitions: int) -> bool:
        """Every partition of the new topic is there and has a leader."""
        if meta is None or len(meta.partitions) != partitions:
            return False
        return all(p.leader is not None for p in meta.partitions)

    async def delete_topic(self, name: str, *, wait: bool = True, timeout_ms: int = 30_000) -> None:
        with trio.move_on_after(timeout_ms / 1000):
            answer = await self.cluster.request_any(
                DeleteTopicsRequest(topics=(name,), timeout_ms=timeout_ms), timeout_ms
            )
            if not isinstance(answer, DeleteTopicsResponse):
                raise ProtocolError(f"DELETE_TOPICS answered with {type(answer).__name__}")
            _check(answer.topics, name, "delete")
            self.cluster.topics.pop(name, None)
            while wait and await self._metadata(name) is not None:
                await trio.sleep(WAIT_POLL_MS / 1000)
            return
        raise RequestTimedOutError(
            f"topic {name!r} was still listed {timeout_ms} ms after its deletion was accepted"
        )

    async def _metadata(self, name: str) -> TopicMetadata | None:
        """The topic's metadata, None when the cluster does not know it."""
        answer = await self.cluster.request_any(MetadataRequest(topics=(name,)))
        if not isinstance(answer, MetadataResponse):
            raise ProtocolError(f"METADATA answered with {type(answer).__name__}")
        for t in answer.topics:
            if t.name == name:
                if t.error == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                    return None
                if t.error != ErrorCode.NONE and not t.retriable:
                    raise broker_error(t.error, t.message, f"topic {name!r}")
                return t if t.error == ErrorCode.NONE else None
        return None

    async def list_topics(self) -> list[str]:
        await self.cluster.refresh(force=True)
        return sorted(self.cluster.topics)

    async def describe_topic(self, name: str) -> TopicDescription:
        meta = await self._metadata(name)
        if meta is None:
            raise broker_error(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None, f"topic {name!r}")
        return _describe(meta)


class Admin(ClosesOnExit):
    """Blocking topic administration: ``Admin("127.0.0.1:9092")``; see ``AsyncAdmin``."""

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
        ``BrokerError`` (TOPIC_ALREADY_EXISTS, INVALID_CONFIG...) or
        ``RequestTimedOutError``."""

        async def call() -> None:
            await self._core.create_topic(
                name, partitions, replication_factor, configs, wait=wait, timeout_ms=timeout_ms
            )

        self._loop.run(call)

    def delete_topic(self, name: str, *, wait: bool = True, timeout_ms: int = 30_000) -> None:
        """Delete a topic; with ``wait``, return once the metadata no longer lists it."""

        async def call() -> None:
            await self._core.delete_topic(name, wait=wait, timeout_ms=timeout_ms)

        self._loop.run(call)

    def list_topics(self) -> list[str]:
        """The names of every topic, sorted."""
        return self._loop.run(self._core.list_topics)

    def describe_topic(self, name: str) -> TopicDescription:
        """Partitions of a topic with their leader and replicas."""
        return self._loop.run(self._core.describe_topic, name)

    def close(self) -> None:
        try:
            self._loop.run_sync_soon(self._core.cluster.close)
        finally:
            self._loop.close()


__all__ = ["Admin", "AsyncAdmin", "PartitionInfo", "TopicDescription"]
