"""What the client knows of the cluster: brokers, topics, partition leaders; and connections.

``Cluster`` starts from the bootstrap list ("host:port" strings), learns the brokers and the
topics from METADATA answers, and keeps one ``Connection`` per broker id, opened on first use
and reopened after it breaks. Leaders change: a NOT_LEADER answer with a ``leader_hint``
updates the cached leader at once, and anything else stale (no leader, unknown broker, a
broker that cannot be reached) marks the topic for a metadata refresh, which the next caller
pays for. Refreshes are rate-limited (``metadata_min_interval_ms``) so that a cluster in the
middle of an election is not hammered.

It lives in the client's trio loop; nothing here blocks a thread.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import trio

from raftlog.client.connection import Connection
from raftlog.client.errors import (
    BrokerUnreachableError,
    ClientClosedError,
    ConnectionLostError,
    RequestTimedOutError,
    broker_error,
)
from raftlog.errors import ErrorCode
from raftlog.types import NodeId
from raftlog.wire import (
    BrokerInfo,
    MetadataRequest,
    MetadataResponse,
    Request,
    Response,
    TopicMetadata,
)

log = logging.getLogger("raftlog.client")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Settings every client shares."""

    client_id: str = "raftlog-python"
    connect_timeout_ms: int = 10_000
    request_timeout_ms: int = 30_000
    metadata_min_interval_ms: int = 50
    retry_backoff_ms: int = 100


def parse_bootstrap(bootstrap: str | Sequence[str]) -> list[tuple[str, int]]:
    """``"h1:9092,h2:9092"`` or ``["h1:9092", ...]`` as (host, port) pairs.
    Raises ``ValueError`` with the offending entry."""
    items = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
    out: list[tuple[str, int]] = []
    for item in items:
        text = item.strip()
        host, sep, port = text.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bootstrap address {item!r} is not HOST:PORT (e.g. 127.0.0.1:9092)")
        out.append((host, int(port)))
    if not out:
        raise ValueError("bootstrap needs at least one HOST:PORT")
    return out


METADATA_TURN_S = 2.0
"""How long a METADATA asked of the broker whose turn it is may take before any other
connection is used instead."""


class Cluster:
    """Metadata cache and connection pool of one client; see the module docstring."""

    def __init__(
        self, bootstrap: str | Sequence[str], nursery: trio.Nursery, config: ClientConfig
    ) -> None:
        self.config = config
        self._bootstrap = parse_bootstrap(bootstrap)
        self._nursery = nursery
        self.brokers: dict[int, BrokerInfo] = {}
        self.topics: dict[str, TopicMetadata] = {}
        self._stale: set[str] = set()
        self._connections: dict[int, Connection] = {}
        self._connect_locks: dict[int, trio.Lock] = {}
        self._bootstrap_conn: Connection | None = None
        self._refresh_lock = trio.Lock()
        self._metadata_turn = -1
        self._last_refresh = -1e9
        self._closed = False

    # ------------------------------------------------------------------ connections

    async def connection(self, broker_id: int) -> Connection:
        """The open connection to ``broker_id``, connecting when needed.
        ``BrokerUnreachableError`` when it cannot be reached or is not known."""
        conn = self._connections.get(broker_id)
        if conn is not None and not conn.closed:
            return conn
        lock = self._connect_locks.setdefault(broker_id, trio.Lock())
        async with lock:
            conn = self._connections.get(broker_id)
            if conn is not None and not conn.closed:
                return conn
            info = self.brokers.get(broker_id)
            if info is None:
                await self.refresh(force=True)
                info = self.brokers.get(broker_id)
            if info is None:
                raise BrokerUnreachableError(
                    f"broker {broker_id} is not in the cluster metadata; known brokers: "
                    f"{sorted(self.brokers) or 'none'}"
                )
            conn = await self._open(info.host, info.port)
            self._connections[broker_id] = conn
            return conn

    async def _open(self, host: str, port: int) -> Connection:
        if self._closed:
            raise ClientClosedError("the client is closed")
        return await Connection.open(
            self._nursery,
            host,
            port,
            client_id=self.config.client_id,
            connect_timeout_ms=self.config.connect_timeout_ms,
        )

    async def any_connection(self) -> Connection:
        """A connection to any broker: an open one, else the known brokers, else the
        bootstrap list, in order. ``BrokerUnreachableError`` listing every failure."""
        for conn in [self._bootstrap_conn, *self._connections.values()]:
            if conn is not None and not conn.closed:
                return conn
        failures: list[str] = []
        seen: set[tuple[str, int]] = set()
        candidates = [(b.host, b.port) for b in self.brokers.values()] + self._bootstrap
        for host, port in candidates:
            if (host, port) in seen:
                continue
            seen.add((host, port))
            try:
                conn = await self._open(host, port)
            except BrokerUnreachableError as exc:
                failures.append(exc.message)
                continue
            self._bootstrap_conn = conn
            return conn
        if len(failures) == 1:
            raise BrokerUnreachableError(failures[0])
        raise BrokerUnreachableError("cannot reach any broker:\n  " + "\n  ".join(failures))

    async def request_any(self, msg: Request, timeout_ms: int | None = None) -> Response:
        """Send ``msg`` to any broker (admin and metadata requests)."""
        conn = await self.any_connection()
        return await conn.request(msg, timeout_ms=timeout_ms or self.config.request_timeout_ms)

    # ------------------------------------------------------------------ metadata

    async def refresh(self, topics: Iterable[str] | None = None, *, force: bool = False) -> None:
        """Fetch metadata (for ``topics``, or every topic when None) and update the cache.
        Without ``force``, at most one refresh per ``metadata_min_interval_ms``."""
        async with self._refresh_lock:
            now = time.monotonic()
            if not force and now - self._last_refresh < self.config.metadata_min_interval_ms / 1000:
                return
            names = None if topics is None else tuple(sorted(set(topics)))
            request = MetadataRequest(topics=names)
            timeout_ms = self.config.request_timeout_ms
            answer = await self._metadata_by_turns(request)
            if answer is None:
                conn = await self.any_connection()
                try:
                    answer = await conn.request(request, timeout_ms=timeout_ms)
                except (ConnectionLostError, RequestTimedOutError):
                    # METADATA is safe to repeat: once more, on another connection
                    conn.close()
                    conn = await self.any_connection()
                    answer = await conn.request(request, timeout_ms=timeout_ms)
            if not isinstance(answer, MetadataResponse):
                raise broker_error(ErrorCode.UNKNOWN, f"got {type(answer).__name__}", "METADATA")
            self._last_refresh = time.monotonic()
            self.apply(answer, full=names is None)

    async def _metadata_by_turns(self, request: MetadataRequest) -> Response | None:
        """METADATA from the next known broker in turn, or None (then any connection is
        used, with the full timeout). A broker cut off from the metadata quorum answers
        from its last image, which may name itself the leader of partitions that moved on;
        a client that always asked that broker would follow it until the cut heals. Taking
        turns, the refresh after its NOT_LEADER or timeout asks another broker. A turn gets
        ``METADATA_TURN_S`` at most, so a paused broker costs little."""
        ids = sorted(self.brokers)
        if len(ids) < 2:
            return None
        self._metadata_turn = (self._metadata_turn + 1) % len(ids)
        with trio.move_on_after(METADATA_TURN_S):
            try:
                conn = await self.connection(NodeId(ids[self._metadata_turn]))
                return await conn.request(request, timeout_ms=int(METADATA_TURN_S * 1000))
            except (BrokerUnreachableError, ConnectionLostError, RequestTimedOutError):
                return None
        return None

    def apply(self, answer: MetadataResponse, *, full: bool = False) -> None:
        """Take a METADATA answer into the cache."""
        self.brokers = {b.broker_id: b for b in answer.brokers} or self.brokers
        if full:
            self.topics = {}
        for topic in answer.topics:
            self._stale.discard(topic.name)
            if topic.error == ErrorCode.NONE:
                self.topics[topic.name] = topic
            else:
                self.topics.pop(topic.name, None)
        for broker_id in list(self._connections):
            if broker_id not in self.brokers:
                self._connections.pop(broker_id).close()

    async def topic(self, name: str, *, refresh: bool = False) -> TopicMetadata:
        """The metadata of ``name``; refreshed when stale or asked. ``BrokerError``
        (UNKNOWN_TOPIC_OR_PARTITION) when the cluster does not know it."""
        if refresh or name in self._stale or name not in self.topics:
            await self.refresh([name], force=refresh or name not in self.topics)
        topic = self.topics.get(name)
        if topic is None:
            raise broker_error(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None, f"topic {name!r}")
        return topic

    def leader(self, topic: str, partition: int) -> int | None:
        """The cached leader of a partition, None when unknown (or the topic is stale)."""
        meta = self.topics.get(topic)
        if meta is None or topic in self._stale:
            return None
        for p in meta.partitions:
            if p.partition == partition:
                return p.leader if p.error == ErrorCode.NONE or p.leader is not None else None
        return None

    async def leader_of(self, topic: str, partition: int) -> int:
        """The leader of a partition, refreshing the metadata once when it is unknown.
        Raises a retriable ``BrokerError`` (LEADER_NOT_AVAILABLE) when there is none."""
        leader = self.leader(topic, partition)
        if leader is None:
            meta = await self.topic(topic, refresh=True)
            if partition >= len(meta.partitions):
                raise broker_error(
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    f"the topic has {len(meta.partitions)} partitions",
                    f"topic {topic!r} partition {partition}",
                )
            leader = self.leader(topic, partition)
        if leader is None:
            raise broker_error(
                ErrorCode.LEADER_NOT_AVAILABLE, None, f"topic {topic!r} partition {partition}"
            )
        return leader

    def on_not_leader(self, topic: str, partition: int, hint: int | None) -> None:
        """A broker said it does not lead the partition: take its hint when it names a
        known broker, else mark the topic for a refresh."""
        meta = self.topics.get(topic)
        if hint is not None and hint in self.brokers and meta is not None:
            parts = tuple(
                p if p.partition != partition else dataclasses.replace(p, leader=NodeId(hint))
                for p in meta.partitions
            )
            self.topics[topic] = dataclasses.replace(meta, partitions=parts)
        else:
            self._stale.add(topic)

    def mark_stale(self, topic: str) -> None:
        self._stale.add(topic)

    def drop_connection(self, broker_id: int) -> None:
        conn = self._connections.pop(broker_id, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self._closed = True
        for conn in [self._bootstrap_conn, *self._connections.values()]:
            if conn is not None:
                conn.close()
        self._connections.clear()
        self._bootstrap_conn = None
