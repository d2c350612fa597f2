"""The blocking consumer: ``Consumer`` runs an ``AsyncConsumer`` in its own loop thread.

Every method is the ``AsyncConsumer`` one of the same name, called in the loop thread (see
``raftlog.client.async_consumer`` for how the consumer works); rebalance listener and
``commit_async`` callbacks run in a worker thread, so they may call the consumer's other
methods.

This module also re-exports the consumer's public types (``AsyncConsumer``,
``ConsumerRecord``, ``TopicPartition``, ``OffsetAndTimestamp``, ``PartitionMetrics``,
``IllegalStateError``, ``ConsumerGroupsUnavailableError``), which live in the modules of
the consumer's parts, so that ``from raftlog.client.consumer import ...`` keeps working.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload

from raftlog.client._loop import ClosesOnExit, LoopThread

# Re-exported: the names in __all__, and the private helpers that were defined in this
# module before the consumer was split into its parts.
from raftlog.client.async_consumer import (
    ITERATION_POLL_MS,
    RESETS,
    UNKNOWN_TOPIC_RECHECK_S,
    AsyncConsumer,
)
from raftlog.client.cluster import ClientConfig, Cluster
from raftlog.client.consumer_types import (  # noqa: F401
    _REFRESH_CODES,
    ConsumerGroupsUnavailableError,
    ConsumerRecord,
    IllegalStateError,
    OffsetAndTimestamp,
    PartitionMetrics,
    _as_tp,
    _by_topic,
    _check_bytes,
    _PartitionState,
    _position_args,
    _seek_args,
    _tps_from_args,
    _unwrap,
    _what,
)
from raftlog.client.fetcher import _Planned  # noqa: F401
from raftlog.client.group import (
    STRATEGIES,
    CommitCallback,
    Listener,
    PartitionsCallback,
    TopicPartition,  # defined with the group code; exported here too
)
from raftlog.client.offsets_lookup import _scan_for_time  # noqa: F401
from raftlog.errors import RaftlogError

__all__ = [
    "ITERATION_POLL_MS",
    "RESETS",
    "UNKNOWN_TOPIC_RECHECK_S",
    "AsyncConsumer",
    "Consumer",
    "ConsumerGroupsUnavailableError",
    "ConsumerRecord",
    "IllegalStateError",
    "OffsetAndTimestamp",
    "PartitionMetrics",
    "TopicPartition",
]

log = logging.getLogger("raftlog.client")

T = TypeVar("T")


class Consumer(ClosesOnExit):
    """A blocking consumer: ``assign`` partitions or ``subscribe`` to topics, then ``poll``
    or iterate.

    - ``group_id``: None (the default) reads without a consumer group. With one,
      ``subscribe`` joins the group (the coordinator spreads the partitions of the
      subscribed topics over its members, and moves them when members come and go),
      partitions start at the group's committed offsets, and offsets are committed:
      ``commit``, ``commit_async``, or automatically.
    - ``enable_auto_commit`` (default True) / ``auto_commit_interval_ms`` (5000): every
      interval, ``poll`` commits the positions as of the previous poll (records the latest
      poll returned are committed at the next poll, a rebalance or ``close``), so a crash
      never skips a record; records after the last commit may be read again.
    - ``session_timeout_ms`` (10000): a member not heard of for this long is dropped;
      ``heartbeat_interval_ms`` (3000, below the session timeout) how often the background
      heartbeat goes (independent of ``poll``: slow processing does not expire the
      member). ``rebalance_timeout_ms`` (30000): how long a rebalance waits for every
      member to rejoin (a member rejoins in ``poll``: one that does not poll for longer is
      dropped from the group; Kafka's max.poll.interval.ms).
    - ``group_instance_id``: static membership: a restarted consumer with the same id
      gets its partitions back without a rebalance if it returns within the session
      timeout (``close`` then does not send LEAVE_GROUP).
    - ``partition_assignment_strategy``: the strategies this member accepts, preferred
      first, among "sticky", "range", "roundrobin" (all three by default; the coordinator
      computes the assignment).
    - ``auto_offset_reset``: where a partition without a position starts, and where one
      whose position fell out of the log goes: "latest" (Kafka's default), "earliest", or
      "none" (``poll`` raises ``OffsetOutOfRangeError``; ``seek`` first).
    - ``fetch_max_bytes`` / ``max_partition_fetch_bytes``: what one FETCH asks for, in
      all and per partition (``partition_max_bytes`` is the older name of the latter).
    - ``buffer_bytes``: no fetch is sent while the records buffered (fetched ahead, not yet
      returned) hold more than this; ``fetch_max_wait_ms``: how long one FETCH long-polls.
    - ``metadata_max_age_ms``: how often a subscription re-reads the topics' partitions.
    - ``consumer_timeout_ms``: iteration ends after this long without a record (None:
      only at ``close``).

    Fetches (and a group's heartbeats and rebalances) run in the consumer's loop thread,
    also between polls (prefetch). Methods may be called from any thread; ``poll`` by one
    thread at a time.

    Example::

        with Consumer("127.0.0.1:9092", auto_offset_reset="earliest") as consumer:
            consumer.subscribe(["orders"])
            for record in consumer:
                print(record.partition, record.offset, record.value)

    In a consumer group (run as many copies as you like; each reads its share)::

        class Flush:  # a rebalance listener: any of the three methods
            def on_partitions_revoked(self, partitions):
                print("losing", partitions)
            def on_partitions_assigned(self, partitions):
                print("reading", partitions)

        with Consumer("127.0.0.1:9092", group_id="billing",
                      auto_offset_reset="earliest") as consumer:
            consumer.subscribe(["orders"], listener=Flush())
            for record in consumer:
                handle(record)
        # close (the with block) commits and leaves the group: the others take over

    With ``enable_auto_commit=False``, commit what you processed: ``consumer.commit()``
    (everything polled so far) or ``consumer.commit({("orders", 0): record.offset + 1})``.
    """

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        group_id: str | None = None,
        auto_offset_reset: str = "latest",
        fetch_max_bytes: int = 50 * 1024 * 1024,
        max_partition_fetch_bytes: int = 1024 * 1024,
        buffer_bytes: int = 64 * 1024 * 1024,
        fetch_max_wait_ms: int = 500,
        metadata_max_age_ms: int = 30_000,
        request_timeout_ms: int = 30_000,
        connect_timeout_ms: int = 10_000,
        retry_backoff_ms: int = 100,
        consumer_timeout_ms: int | None = None,
        client_id: str = "raftlog-consumer",
        partition_max_bytes: int | None = None,
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5_000,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        rebalance_timeout_ms: int = 30_000,
        group_instance_id: str | None = None,
        partition_assignment_strategy: Sequence[str] = STRATEGIES,
    ) -> None:
        """Starts the consumer's loop thread (no broker is contacted yet). Raises
        ``ValueError`` for a bad bootstrap list or a setting out of range."""
        config = ClientConfig(
            client_id=client_id,
            connect_timeout_ms=connect_timeout_ms,
            request_timeout_ms=request_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
        )
        settings: dict[str, Any] = {
            "group_id": group_id,
            "auto_offset_reset": auto_offset_reset,
            "fetch_max_bytes": fetch_max_bytes,
            "max_partition_fetch_bytes": max_partition_fetch_bytes,
            "buffer_bytes": buffer_bytes,
            "fetch_max_wait_ms": fetch_max_wait_ms,
            "metadata_max_age_ms": metadata_max_age_ms,
            "consumer_timeout_ms": consumer_timeout_ms,
            "partition_max_bytes": partition_max_bytes,
            "enable_auto_commit": enable_auto_commit,
            "auto_commit_interval_ms": auto_commit_interval_ms,
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
            "rebalance_timeout_ms": rebalance_timeout_ms,
            "group_instance_id": group_instance_id,
            "partition_assignment_strategy": partition_assignment_strategy,
        }
        self._consumer_timeout_ms = consumer_timeout_ms
        self._closed = False
        self._loop = LoopThread("raftlog-consumer")
        try:
            self._core: AsyncConsumer = self._loop.run(self._start, bootstrap, config, settings)
        except BaseException:
            self._loop.close()
            raise

    async def _start(
        self, bootstrap: str | Sequence[str], config: ClientConfig, settings: dict[str, Any]
    ) -> AsyncConsumer:
        cluster = Cluster(bootstrap, self._loop.nursery, config)
        return AsyncConsumer(cluster, nursery=self._loop.nursery, **settings)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the loop thread (the consumer's state lives there)."""

        async def call() -> T:
            return fn(*args)

        return self._loop.run(call)

    # ------------------------------------------------------------------ assignment

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Read exactly these (topic, partition) pairs; see ``AsyncConsumer.assign``.
        Raises ``IllegalStateError`` while subscribed."""
        self._call(self._core.assign, list(partitions))

    def assignment(self) -> list[TopicPartition]:
        """The partitions read (assigned, or those of the subscribed topics)."""
        return self._call(self._core.assignment)

    def subscribe(
        self,
        topics: str | Iterable[str] | None = None,
        listener: object | None = None,
        *,
        pattern: str | re.Pattern[str] | None = None,
        on_assigned: PartitionsCallback | None = None,
        on_revoked: PartitionsCallback | None = None,
        on_lost: PartitionsCallback | None = None,
    ) -> None:
        """Read ``topics`` (or every topic whose whole name matches the regex ``pattern``):
        without a ``group_id`` all their partitions, including partitions added later;
        with one, the partitions the group assigns this member. See
        ``AsyncConsumer.subscribe`` for the rebalance listener (an object with
        ``on_partitions_revoked`` / ``on_partitions_assigned`` / ``on_partitions_lost``,
        or the callables ``on_revoked=``, ``on_assigned=``, ``on_lost=``); here each
        callback runs in a worker thread while ``poll`` waits for it, so it may call this
        consumer's methods (``commit``, ``seek``, ``position``; not ``poll``).

        Raises ``ConsumerGroupsUnavailableError`` when the brokers do not serve the group
        protocol, ``IllegalStateError`` after ``assign``, ``ValueError`` for a bad
        name or pattern.
        Examples: ``consumer.subscribe(["orders", "payments"])``,
        ``consumer.subscribe(pattern=r"orders-.*", on_revoked=lambda tps: db.flush())``."""
        names = None if topics is None else topics if isinstance(topics, str) else list(topics)
        built: Listener | None = None
        if listener is not None or on_assigned or on_revoked or on_lost:
            built = Listener(
                listener,
                on_revoked=on_revoked,
                on_assigned=on_assigned,
                on_lost=on_lost,
                in_thread=True,
            )

        async def call() -> None:
            await self._core.subscribe(names, built, pattern=pattern)

        self._loop.run(call)

    def subscription(self) -> set[str]:
        """The subscribed topics (empty when not subscribed)."""
        return self._call(self._core.subscription)

    def unsubscribe(self) -> None:
        """Stop reading anything (forget the subscription or assignment, and positions)."""
        self._call(self._core.unsubscribe)

    # ------------------------------------------------------------------ positions

    @overload
    def seek(self, partition: tuple[str, int], offset: int, /) -> None: ...
    @overload
    def seek(self, topic: str, partition: int, offset: int, /) -> None: ...
    def seek(self, *args: object) -> None:
        """The next poll returns this partition's records from ``offset``:
        ``seek(("orders", 0), 42)`` or ``seek("orders", 0, 42)``. Raises ``ValueError``
        for a partition not assigned or a negative offset."""
        _seek_args(args)  # argument errors in the caller's thread
        self._call(self._core.seek, *args)

    def seek_to_beginning(self, *partitions: object) -> None:
        """Seek these partitions (every assigned one when none is given) to their log
        start: ``seek_to_beginning(("orders", 0))``, ``seek_to_beginning()`` or
        ``seek_to_beginning("orders", 0)``. Raises ``ValueError`` for a partition not
        assigned, a ``RaftlogError`` when a leader cannot answer."""
        self._loop.run(self._core.seek_to_beginning, *partitions)

    def seek_to_end(self, *partitions: object) -> None:
        """Seek these partitions (every assigned one when none is given) to their high
        watermark; arguments and errors as ``seek_to_beginning``."""
        self._loop.run(self._core.seek_to_end, *partitions)

    @overload
    def position(self, partition: tuple[str, int], /) -> int: ...
    @overload
    def position(self, topic: str, partition: int, /) -> int: ...
    def position(self, *args: object) -> int:
        """The offset of the next record poll returns for this partition (set per
        ``auto_offset_reset`` first when it has none): ``position(("orders", 0))`` or
        ``position("orders", 0)``. Raises ``ValueError`` when not assigned,
        ``OffsetOutOfRangeError`` without a position when ``auto_offset_reset`` is
        "none"."""
        return self._loop.run(self._core.position, *args)

    def offsets_for_times(
        self, timestamps: Mapping[tuple[str, int], int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """Per partition, the offset and timestamp of the first record whose timestamp is
        at or after the given ms, or None when there is none; see
        ``AsyncConsumer.offsets_for_times``. Seek there with
        ``consumer.seek(tp, found.offset)``."""
        return self._loop.run(self._core.offsets_for_times, dict(timestamps))

    def beginning_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[TopicPartition, int]:
        """The log start offset of each partition. Raises a ``RaftlogError`` when a leader
        cannot answer."""
        return self._loop.run(self._core.beginning_offsets, list(partitions))

    def end_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[TopicPartition, int]:
        """The high watermark of each partition. Raises a ``RaftlogError`` when a leader
        cannot answer."""
        return self._loop.run(self._core.end_offsets, list(partitions))

    # ------------------------------------------------------------------ commits

    def commit(self, offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        """Commit offsets to the group and wait: ``offsets`` maps (topic, partition) to
        the offset of the next record to read; None (the default) commits the position of
        every assigned partition (everything ``poll`` returned). Raises
        ``CommitFailedError`` when a rebalance took the partitions (nothing committed),
        ``IllegalStateError`` without a ``group_id``; see ``AsyncConsumer.commit``.
        Example: ``consumer.commit({("orders", 0): record.offset + 1})``."""
        todo = None if offsets is None else dict(offsets)
        self._loop.run(self._core.commit, todo)

    def commit_async(
        self,
        offsets: Mapping[tuple[str, int], int] | None = None,
        callback: CommitCallback | None = None,
    ) -> None:
        """Commit in the background (by default the positions as of now), in order with
        other commits; ``callback(offsets, error)`` runs in a worker thread once answered
        (``error`` None on success). Raises ``IllegalStateError`` without a ``group_id``."""
        todo = None if offsets is None else dict(offsets)

        def start() -> None:
            self._core._commit_async(todo, callback, in_thread=True)

        self._call(start)

    @overload
    def committed(self, partition: tuple[str, int], /) -> int | None: ...
    @overload
    def committed(self, topic: str, partition: int, /) -> int | None: ...
    def committed(self, *args: object) -> int | None:
        """The group's committed offset of a partition (None when none is committed):
        ``committed(("orders", 0))`` or ``committed("orders", 0)``. Raises
        ``IllegalStateError`` without a ``group_id``."""
        _position_args(args)  # argument errors in the caller's thread
        return self._loop.run(self._core.committed, *args)

    # ------------------------------------------------------------------ pause, lag

    def pause(self, *partitions: object) -> None:
        """Stop fetching these partitions (their buffered records are dropped, their
        positions kept) until ``resume``. Raises ``ValueError`` for one not assigned."""
        self._call(self._core.pause, *partitions)

    def resume(self, *partitions: object) -> None:
        """Fetch these paused partitions again from their positions."""
        self._call(self._core.resume, *partitions)

    def paused(self) -> set[TopicPartition]:
        """The paused partitions."""
        return self._call(self._core.paused)

    @overload
    def lag(self, partition: tuple[str, int], /) -> int | None: ...
    @overload
    def lag(self, topic: str, partition: int, /) -> int | None: ...
    def lag(self, *args: object) -> int | None:
        """``high_watermark - position`` of this partition, the high watermark as of the
        last fetch answer; None before the first one. Raises ``ValueError`` when it is not
        assigned."""
        return self._call(self._core.lag, *args)

    def lags(self) -> dict[TopicPartition, int | None]:
        """``lag`` of every assigned partition."""
        return self._call(self._core.lags)

    def metrics(self) -> dict[TopicPartition, PartitionMetrics]:
        """Per assigned partition: position, high watermark, log start offset, lag,
        buffered records and bytes, paused (see ``PartitionMetrics``)."""
        return self._call(self._core.metrics)

    # ------------------------------------------------------------------ poll

    def poll(self, timeout_ms: int = 1000, max_records: int = 500) -> list[ConsumerRecord]:
        """At most ``max_records`` records, waiting up to ``timeout_ms`` for some; see
        ``AsyncConsumer.poll`` for what it raises."""
        return self._loop.run(self._core.poll, timeout_ms, max_records)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """``for record in consumer``: records until ``close``, or until
        ``consumer_timeout_ms`` passes without any."""
        idle_since = time.monotonic()
        while not self._closed:
            records = self.poll(timeout_ms=ITERATION_POLL_MS)
            if records:
                idle_since = time.monotonic()
                yield from records
            elif self._consumer_timeout_ms is not None and (
                time.monotonic() - idle_since >= self._consumer_timeout_ms / 1000
            ):
                return

    def close(self, timeout_ms: int = 30_000) -> None:
        """Leave the group cleanly (in a group: commit with auto-commit, the listener's
        revoked callback, LEAVE_GROUP; see ``AsyncConsumer.aclose``, at most
        ``timeout_ms``), then stop fetching, close the connections and the loop thread.
        Idempotent; later calls raise ``ClientClosedError``."""
        if self._closed:
            return
        self._closed = True
        core = self._core

        def stop() -> None:
            core.close()
            core.cluster.close()

        async def leave() -> None:
            await core.aclose(timeout_ms)

        try:
            if core.group_id is not None:
                self._loop.run(leave)
        except RaftlogError as exc:  # the loop is gone already: nothing to leave
            log.info("event=consumer_close_failed error=%r", exc)
        finally:
            try:
                self._loop.run_sync_soon(stop)
            finally:
                self._loop.close()
