"""The consumer: read partitions from a position, with long-poll fetches and bounded prefetch.

``AsyncConsumer`` is the trio implementation; ``Consumer`` the blocking API over it (its own
loop thread). The two have the same methods (the trio ones that talk to a broker are
``async``).

Which partitions: ``assign`` names them; ``subscribe`` names topics and reads every partition
of them (without a consumer group: ``group_id=None``; groups arrive with the group
coordinator). The two are mutually exclusive (``IllegalStateError``). A subscription is
resolved from the metadata at ``subscribe`` time and re-checked every
``metadata_max_age_ms`` (every second while a subscribed topic is unknown), so partitions
added later, and topics created later, are picked up; they start per ``auto_offset_reset``.

Each partition has a *position*, the offset of the next record ``poll`` returns. A
partition without one gets it from ``auto_offset_reset`` ("earliest": the log start;
"latest": the high watermark; "none": ``OffsetOutOfRangeError`` from ``poll``) through
LIST_OFFSETS to its leader; so does one whose position fell out of the log.

Fetching: one FETCH per leader at a time, for that leader's partitions that are not paused
and have nothing buffered; each long-polls up to ``fetch_max_wait_ms`` (the broker answers
as soon as there is data). ``poll`` returns as soon as some partition has records. The
blocking ``Consumer`` (and an ``AsyncConsumer`` given a ``nursery``) runs fetches in the
background: when ``poll`` returns, the partitions it emptied are fetched again while the
caller works (prefetch), and a fetch still in flight when ``poll`` times out is kept and
its answer used. What prefetch may hold is bounded: a FETCH asks for at most
``fetch_max_bytes`` (and ``max_partition_fetch_bytes`` per partition), and no fetch is
sent while the records buffered across partitions hold more than ``buffer_bytes`` (keys,
values and headers; a soft cap: the broker always returns at least one whole batch per
partition, so a big batch is never stuck). The fetch answer's high watermark is kept per
partition for ``lag``.

Answers are checked and decoded here:

- every batch's CRC is checked by ``decode_batch`` (``CorruptRecordError`` from ``poll``;
  the records before the bad batch are still returned, the position stays at it);
- a partial batch at the end of a partition's records is cut off (fetched again next time);
- control batches (attribute bit 5) hold no user records: skipped, the position moves past
  them;
- a batch may start before the fetch offset (the broker sends whole batches): its records
  below the position are skipped;
- NOT_LEADER / LEADER_NOT_AVAILABLE / UNKNOWN_TOPIC_OR_PARTITION refresh the metadata and
  retry after ``retry_backoff_ms``; OFFSET_OUT_OF_RANGE resets the position per
  ``auto_offset_reset``;
- an answer to a fetch sent before a ``seek``, ``pause`` or ``assign`` of its partition is
  dropped.

Records beyond ``max_records`` stay buffered for the next ``poll``. ``pause`` drops what is
buffered for a partition (its position stays at the first record not returned, so
``resume`` skips nothing).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypedDict, TypeVar, overload

import trio

from raftlog.client._loop import ClosesOnExit, LoopThread, first_error
from raftlog.client.cluster import ClientConfig, Cluster
from raftlog.client.errors import ClientClosedError, ClientError, ProtocolError, broker_error
from raftlog.errors import ErrorCode, OffsetOutOfRangeError, RaftlogError
from raftlog.storage.record_batch import peek_size
from raftlog.storage.records import decode_batch
from raftlog.types import Offset, PartitionId
from raftlog.wire import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    FetchPartition,
    FetchPartitionResult,
    FetchRequest,
    FetchResponse,
    FetchTopic,
    ListOffsetsPartition,
    ListOffsetsPartitionResult,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopic,
    Request,
    Response,
)
from raftlog.wire.messages import FETCH_BYTES_MAX

log = logging.getLogger("raftlog.client")

T = TypeVar("T")

RESETS = ("earliest", "latest", "none")
_REFRESH_CODES = frozenset(
    {
        ErrorCode.NOT_LEADER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.BROKER_NOT_AVAILABLE,
    }
)
UNKNOWN_TOPIC_RECHECK_S = 1.0
"""How often a subscription with a topic the cluster does not know re-reads the metadata."""
ITERATION_POLL_MS = 500


# ---------------------------------------------------------------------- public types


class TopicPartition(NamedTuple):
    """A partition of a topic. A plain ``(topic, partition)`` tuple is accepted wherever one
    is asked for, and equals it (``TopicPartition("t", 0) == ("t", 0)``)."""

    topic: str
    partition: int


class OffsetAndTimestamp(NamedTuple):
    """What ``offsets_for_times`` found: the first record at or after the asked time."""

    offset: int
    timestamp: int


class PartitionMetrics(TypedDict):
    """What ``metrics()`` says of one assigned partition."""

    position: int | None
    """The offset of the next record ``poll`` returns (None until it is known)."""
    high_watermark: int | None
    """From the last fetch answer (None before the first)."""
    log_start_offset: int | None
    """From the last fetch answer (None before the first)."""
    lag: int | None
    """``high_watermark - position`` (None while either is unknown)."""
    buffered_records: int
    buffered_bytes: int
    paused: bool


@dataclass(frozen=True, slots=True)
class ConsumerRecord:
    """One record, as ``poll`` returns it. ``timestamp`` is in ms since the epoch (the
    producer's create time, or the broker's append time for a log-append-time topic)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


class IllegalStateError(ClientError):
    """A call that does not fit the consumer's state, e.g. ``subscribe`` after ``assign``
    (Kafka's IllegalStateException)."""

    code = ErrorCode.INVALID_REQUEST


class ConsumerGroupsUnavailableError(ClientError):
    """A consumer-group feature was asked for; groups arrive with the group coordinator."""

    code = ErrorCode.INVALID_REQUEST


def _record_bytes(r: ConsumerRecord) -> int:
    """What a buffered record counts against ``buffer_bytes``."""
    size = len(r.key or b"") + len(r.value or b"")
    for name, value in r.headers:
        size += len(name) + len(value or b"")
    return size


def _as_tp(obj: object) -> TopicPartition:
    if (
        isinstance(obj, tuple)
        and len(obj) == 2
        and isinstance(obj[0], str)
        and isinstance(obj[1], int)
        and not isinstance(obj[1], bool)
    ):
        return TopicPartition(obj[0], obj[1])
    raise TypeError(f"expected a (topic, partition) pair such as ('orders', 0), not {obj!r}")


def _tps_from_args(args: tuple[object, ...]) -> list[TopicPartition]:
    """``("t", 0)`` (the older topic, partition form) or any number of (topic, partition)
    pairs."""
    if len(args) == 2 and isinstance(args[0], str):
        return [_as_tp(args)]
    return list(dict.fromkeys(_as_tp(a) for a in args))


def _seek_args(args: tuple[object, ...]) -> tuple[TopicPartition, int]:
    if len(args) == 3:
        tp, offset = _as_tp(args[:2]), args[2]
    elif len(args) == 2:
        tp, offset = _as_tp(args[0]), args[1]
    else:
        raise TypeError("seek takes (partition, offset) or (topic, partition, offset)")
    if not isinstance(offset, int) or isinstance(offset, bool):
        raise TypeError(f"offset must be an int, not {offset!r}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset}")
    return tp, offset


def _position_args(args: tuple[object, ...]) -> TopicPartition:
    if len(args) == 2:
        return _as_tp(args)
    if len(args) == 1:
        return _as_tp(args[0])
    raise TypeError("position takes (partition) or (topic, partition)")


def _what(tp: TopicPartition) -> str:
    return f"topic {tp.topic!r} partition {tp.partition}"


def _by_topic(tps: Iterable[TopicPartition]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for tp in tps:
        out.setdefault(tp.topic, []).append(tp.partition)
    return out


def _check_bytes(name: str, value: int) -> None:
    if not 1 <= value <= FETCH_BYTES_MAX:
        raise ValueError(f"{name} must be 1..{FETCH_BYTES_MAX} bytes, not {value}")


# ---------------------------------------------------------------------- per-partition state


@dataclass(slots=True)
class _PartitionState:
    position: int | None = None
    """The offset of the next record poll returns."""
    fetch_offset: int | None = None
    """The offset the next fetch starts at (past what is buffered). Equals ``position``
    whenever nothing is buffered."""
    buffered: deque[ConsumerRecord] = field(default_factory=deque)
    buffered_bytes: int = 0
    paused: bool = False
    high_watermark: int | None = None
    log_start_offset: int | None = None
    reset_reason: str | None = None
    """Why the position is unknown, when it was lost (out of range)."""
    epoch: int = 0
    """Bumped whenever the position is set from outside a fetch: an answer to a fetch sent
    under an older epoch is dropped."""
    in_flight: bool = False
    retry_at: float = -math.inf

    def set_position(self, offset: int | None) -> None:
        self.position = self.fetch_offset = offset
        self.reset_reason = None
        self.drop_buffer()

    def drop_buffer(self) -> None:
        """Forget what is buffered (and what is in flight); the position stays."""
        self.buffered.clear()
        self.buffered_bytes = 0
        self.fetch_offset = self.position
        self.epoch += 1

    def lag(self) -> int | None:
        if self.high_watermark is None or self.position is None:
            return None
        return self.high_watermark - self.position


@dataclass(slots=True)
class _Planned:
    tp: TopicPartition
    state: _PartitionState
    epoch: int
    offset: int


class AsyncConsumer:
    """A consumer in a trio program; the blocking ``Consumer`` runs one in its own loop.

    ``nursery``: where fetches run in the background (prefetch between polls, a fetch that
    outlives a ``poll``); without one, fetches run only inside ``poll`` (so
    ``poll(timeout_ms=0)`` returns only what is already buffered). The other
    settings are ``Consumer``'s. ``close()`` stops background fetches (the ``Cluster`` is
    the caller's to close).

    Example::

        async with trio.open_nursery() as nursery:
            cluster = Cluster("127.0.0.1:9092", nursery, ClientConfig())
            consumer = AsyncConsumer(cluster, nursery=nursery, auto_offset_reset="earliest")
            await consumer.subscribe(["orders"])
            async for record in consumer:
                print(record.partition, record.offset, record.value)
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        nursery: trio.Nursery | None = None,
        group_id: str | None = None,
        auto_offset_reset: str = "latest",
        fetch_max_bytes: int = 50 * 1024 * 1024,
        max_partition_fetch_bytes: int = 1024 * 1024,
        buffer_bytes: int = 64 * 1024 * 1024,
        fetch_max_wait_ms: int = 500,
        metadata_max_age_ms: int = 30_000,
        consumer_timeout_ms: int | None = None,
        partition_max_bytes: int | None = None,
    ) -> None:
        """Raises ``ValueError`` for a setting out of range. ``partition_max_bytes`` is the
        older name of ``max_partition_fetch_bytes`` (give one of them)."""
        if auto_offset_reset not in RESETS:
            raise ValueError(
                f"auto_offset_reset must be one of {RESETS}, not {auto_offset_reset!r}"
            )
        if partition_max_bytes is not None:
            if max_partition_fetch_bytes not in (1024 * 1024, partition_max_bytes):
                raise ValueError(
                    "give max_partition_fetch_bytes or its older name partition_max_bytes, not both"
                )
            max_partition_fetch_bytes = partition_max_bytes
        _check_bytes("fetch_max_bytes", fetch_max_bytes)
        _check_bytes("max_partition_fetch_bytes", max_partition_fetch_bytes)
        if buffer_bytes < 1:
            raise ValueError(f"buffer_bytes must be positive, not {buffer_bytes}")
        if not 0 <= fetch_max_wait_ms <= 60_000:
            raise ValueError(f"fetch_max_wait_ms must be 0..60000, not {fetch_max_wait_ms}")
        if metadata_max_age_ms < 0:
            raise ValueError(f"metadata_max_age_ms must be >= 0, not {metadata_max_age_ms}")
        if group_id is not None and not group_id:
            raise ValueError("group_id must be a non-empty string or None")
        self.cluster = cluster
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.fetch_max_bytes = fetch_max_bytes
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.buffer_bytes = buffer_bytes
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.metadata_max_age_ms = metadata_max_age_ms
        self.consumer_timeout_ms = consumer_timeout_ms
        self._nursery = nursery
        self._state: dict[TopicPartition, _PartitionState] = {}
        self._subscription: tuple[str, ...] | None = None
        self._manual = False
        self._metadata_checked = -math.inf
        self._in_flight: dict[int, trio.CancelScope] = {}
        self._wakeup = trio.Event()
        self._error: BaseException | None = None
        self._polling = False
        self._closed = False

    @property
    def partition_max_bytes(self) -> int:
        """The older name of ``max_partition_fetch_bytes``."""
        return self.max_partition_fetch_bytes

    # ------------------------------------------------------------------ assignment

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Read exactly these partitions (the positions of partitions kept are kept).

        Args: ``partitions``, (topic, partition) pairs; an empty list is ``unsubscribe()``.
        Raises ``IllegalStateError`` while subscribed to topics, ``TypeError`` for
        something that is not a (topic, partition) pair."""
        wanted = list(dict.fromkeys(_as_tp(p) for p in partitions))
        if not wanted:
            self.unsubscribe()
            return
        if self._subscription is not None:
            raise IllegalStateError(
                "assign() while subscribed to topics "
                f"{sorted(self._subscription)}: subscription to topics and manual "
                "assignment of partitions are mutually exclusive; call unsubscribe() first"
            )
        self._manual = True
        self._set_assignment(wanted)

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads (assigned, or those of the subscribed
        topics), in order."""
        return list(self._state)

    async def subscribe(self, topics: str | Iterable[str]) -> None:
        """Read every partition of ``topics`` (without a consumer group).

        The partitions are resolved from the metadata now and re-checked every
        ``metadata_max_age_ms``, so partitions added later are read too; each starts per
        ``auto_offset_reset``. A topic the cluster does not know yet is read once it
        exists. Subscribing again replaces the topics; an empty list is ``unsubscribe()``.

        Raises ``ConsumerGroupsUnavailableError`` when the consumer has a ``group_id``
        (consumer groups arrive with the group coordinator), ``IllegalStateError`` after
        ``assign()``, ``ValueError`` for an empty topic name, and a non-retriable
        ``RaftlogError`` from the metadata request (a retriable one is retried by
        ``poll``)."""
        names = [topics] if isinstance(topics, str) else list(dict.fromkeys(topics))
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"topic names must be non-empty strings, not {name!r}")
        if self.group_id is not None:
            raise ConsumerGroupsUnavailableError(
                f"subscribe() with group_id={self.group_id!r} needs consumer groups, which "
                "arrive with the group coordinator (not built yet); use group_id=None to "
                "read every partition of the topics without a group, or assign() partitions"
            )
        if not names:
            self.unsubscribe()
            return
        if self._manual:
            raise IllegalStateError(
                "subscribe() after assign(): subscription to topics and manual assignment "
                "of partitions are mutually exclusive; call unsubscribe() first"
            )
        self._subscription = tuple(names)
        await self._sync_subscription(force=True)

    def subscription(self) -> set[str]:
        """The subscribed topics (empty when not subscribed)."""
        return set(self._subscription or ())

    def unsubscribe(self) -> None:
        """Stop reading: forget the subscription or the manual assignment (and positions)."""
        self._subscription = None
        self._manual = False
        self._set_assignment([])

    def _set_assignment(self, wanted: Sequence[TopicPartition]) -> None:
        old = self._state
        self._state = {tp: old.get(tp) or _PartitionState() for tp in wanted}
        for tp, state in old.items():
            if tp not in self._state:
                state.drop_buffer()  # an answer in flight for it is dropped
        self._notify()

    async def _sync_subscription(self, *, force: bool = False) -> None:
        """Bring the assignment in line with the subscribed topics' partitions."""
        if self._subscription is None:
            return
        names = self._subscription
        now = trio.current_time()
        unknown = any(t not in self.cluster.topics for t in names)
        due = (
            force
            or now >= self._metadata_checked + self.metadata_max_age_ms / 1000
            or (unknown and now >= self._metadata_checked + UNKNOWN_TOPIC_RECHECK_S)
        )
        fresh = False
        if due:
            self._metadata_checked = now
            try:
                await self.cluster.refresh(names, force=True)
                fresh = True
            except RaftlogError as exc:
                if not exc.retriable:
                    raise
                log.info("event=subscription_refresh_failed error=%r", exc)
        if self._subscription != names:
            return  # changed while we waited: that call synced
        wanted: list[TopicPartition] = []
        for name in names:
            meta = self.cluster.topics.get(name)
            if meta is None:
                if not fresh:  # not known to be gone: keep what we read of it
                    wanted.extend(tp for tp in self._state if tp.topic == name)
                elif force:
                    log.warning("event=subscribed_topic_unknown topic=%s", name)
                continue
            wanted.extend(
                TopicPartition(name, p) for p in sorted(p.partition for p in meta.partitions)
            )
        if wanted != list(self._state):
            added = set(wanted) - set(self._state)
            if added and not force:
                log.info("event=subscription_partitions_added partitions=%s", sorted(added))
            self._set_assignment(wanted)

    # ------------------------------------------------------------------ positions

    def _partition(self, tp: TopicPartition) -> _PartitionState:
        state = self._state.get(tp)
        if state is None:
            raise ValueError(f"{_what(tp)} is not assigned")
        return state

    def _assigned(self, args: tuple[object, ...]) -> list[TopicPartition]:
        """The partitions named (every assigned one when none is), each checked."""
        tps = _tps_from_args(args) if args else list(self._state)
        for tp in tps:
            self._partition(tp)
        return tps

    @overload
    def seek(self, partition: tuple[str, int], offset: int, /) -> None: ...
    @overload
    def seek(self, topic: str, partition: int, offset: int, /) -> None: ...
    def seek(self, *args: object) -> None:
        """The next poll returns records of this partition from ``offset``.

        Call as ``seek(("orders", 0), 42)`` or ``seek("orders", 0, 42)``. An offset
        outside the log is found out by the next fetch and handled per
        ``auto_offset_reset``. Raises ``ValueError`` for a partition that is not assigned
        or a negative offset."""
        tp, offset = _seek_args(args)
        self._partition(tp).set_position(offset)
        self._notify()

    async def seek_to_beginning(self, *partitions: object) -> None:
        """Seek to the log start of these partitions (every assigned one when none is
        given), asking their leaders now. Accepts (topic, partition) pairs, or the older
        ``seek_to_beginning("orders", 0)``. Raises ``ValueError`` for a partition that is
        not assigned, a ``RaftlogError`` when a leader cannot answer."""
        await self._seek_to(self._assigned(partitions), EARLIEST_TIMESTAMP)

    async def seek_to_end(self, *partitions: object) -> None:
        """Seek to the high watermark of these partitions (every assigned one when none is
        given): the next poll returns only records written from now on. Arguments and
        errors as ``seek_to_beginning``."""
        await self._seek_to(self._assigned(partitions), LATEST_TIMESTAMP)

    async def seek_to(self, topic: str, partition: int, where: str) -> None:
        """``where`` "earliest" or "latest": ``seek_to_beginning`` or ``seek_to_end`` of one
        partition (the older form)."""
        if where not in ("earliest", "latest"):
            raise ValueError(f"where must be 'earliest' or 'latest', not {where!r}")
        ts = EARLIEST_TIMESTAMP if where == "earliest" else LATEST_TIMESTAMP
        await self._seek_to(self._assigned((topic, partition)), ts)

    async def _seek_to(self, tps: list[TopicPartition], timestamp: int) -> None:
        if not tps:
            return
        found = await self._list_offsets(dict.fromkeys(tps, timestamp))
        for tp, result in found.items():
            state = self._state.get(tp)
            if state is not None:
                state.set_position(int(result.offset))
        self._notify()

    @overload
    async def position(self, partition: tuple[str, int], /) -> int: ...
    @overload
    async def position(self, topic: str, partition: int, /) -> int: ...
    async def position(self, *args: object) -> int:
        """The offset of the next record poll returns for this partition; when it has none
        yet, it is set per ``auto_offset_reset`` first. Call as ``position(("orders", 0))``
        or ``position("orders", 0)``. Raises ``ValueError`` when it is not assigned,
        ``OffsetOutOfRangeError`` when it has no position and ``auto_offset_reset`` is
        "none"."""
        tp = _position_args(args)
        state = self._partition(tp)
        if state.position is None:
            await self._reset([tp])
        position = self._partition(tp).position
        if position is None:  # reassigned or re-seeked meanwhile
            raise OffsetOutOfRangeError(f"{_what(tp)} lost its position; try again")
        return position

    async def _reset(self, tps: list[TopicPartition]) -> None:
        """Set the positions of ``tps`` (those still without one) per auto_offset_reset."""
        if self.auto_offset_reset == "none":
            tp = tps[0]
            why = self._state[tp].reset_reason or "no position yet (nothing was seeked)"
            raise OffsetOutOfRangeError(
                f"{_what(tp)}: {why} and auto_offset_reset is 'none'; seek() to an offset "
                "(or use auto_offset_reset 'earliest' or 'latest')"
            )
        ts = EARLIEST_TIMESTAMP if self.auto_offset_reset == "earliest" else LATEST_TIMESTAMP
        found = await self._list_offsets(dict.fromkeys(tps, ts))
        for tp, result in found.items():
            state = self._state.get(tp)
            if state is not None and state.position is None:
                state.set_position(int(result.offset))

    # ------------------------------------------------------------------ offsets by time

    async def offsets_for_times(
        self, timestamps: Mapping[tuple[str, int], int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """For each partition, the first record whose timestamp is at or after the given
        one (ms since the epoch): its offset and timestamp, or None when there is none (the
        time is past the last record). The partitions need not be assigned.

        Asks each partition's leader (LIST_OFFSETS), then reads the record found to learn
        its timestamp. Raises ``ValueError`` for a negative timestamp, a ``RaftlogError``
        when a leader cannot answer within ``request_timeout_ms``.

        Example: ``offsets_for_times({("orders", 0): 1_700_000_000_000})``."""
        queries: dict[TopicPartition, int] = {}
        for key, ts in timestamps.items():
            if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
                raise ValueError(f"timestamp of {key!r} must be ms since the epoch, not {ts!r}")
            queries[_as_tp(key)] = ts
        out: dict[TopicPartition, OffsetAndTimestamp | None] = dict.fromkeys(queries)
        if not queries:
            return out
        listed = await self._list_offsets(queries)

        async def find(tp: TopicPartition, offset: int) -> None:
            out[tp] = await self._first_at_or_after(tp, offset, queries[tp])

        try:
            async with trio.open_nursery() as nursery:
                for tp, result in listed.items():
                    if result.offset >= 0:
                        nursery.start_soon(find, tp, int(result.offset))
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None
        return out

    async def beginning_offsets(
        self, partitions: Iterable[tuple[str, int]]
    ) -> dict[TopicPartition, int]:
        """The log start offset of each partition (assigned or not), from its leader.
        Raises a ``RaftlogError`` when a leader cannot answer."""
        tps = [_as_tp(p) for p in partitions]
        found = await self._list_offsets(dict.fromkeys(tps, EARLIEST_TIMESTAMP))
        return {tp: int(r.offset) for tp, r in found.items()}

    async def end_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[TopicPartition, int]:
        """The high watermark of each partition (assigned or not: the offset the next
        committed record gets), from its leader. Raises a ``RaftlogError`` when a leader
        cannot answer."""
        tps = [_as_tp(p) for p in partitions]
        found = await self._list_offsets(dict.fromkeys(tps, LATEST_TIMESTAMP))
        return {tp: int(r.offset) for tp, r in found.items()}

    async def _send(
        self, leader: int, request: Request, timeout_ms: int, topics: Iterable[str]
    ) -> Response | RaftlogError:
        """``request`` to ``leader``; a retriable failure to get an answer is returned
        (the connection dropped, the topics marked for a metadata refresh)."""
        try:
            conn = await self.cluster.connection(leader)
            return await conn.request(request, timeout_ms=timeout_ms)
        except RaftlogError as exc:
            if not exc.retriable:
                raise
            self.cluster.drop_connection(leader)
            for topic in topics:
                self.cluster.mark_stale(topic)
            return exc

    async def _list_offsets(
        self, queries: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, ListOffsetsPartitionResult]:
        """LIST_OFFSETS for ``{partition: timestamp}``, one request per leader, retrying
        leader changes until ``request_timeout_ms``."""
        config = self.cluster.config
        deadline = trio.current_time() + config.request_timeout_ms / 1000
        out: dict[TopicPartition, ListOffsetsPartitionResult] = {}
        pending = dict(queries)
        while True:
            retry: dict[TopicPartition, RaftlogError] = {}
            by_leader: dict[int, list[TopicPartition]] = {}
            for tp in pending:
                try:
                    leader = await self.cluster.leader_of(tp.topic, tp.partition)
                except RaftlogError as exc:
                    if not exc.retriable:
                        raise
                    retry[tp] = exc
                    continue
                by_leader.setdefault(leader, []).append(tp)

            try:
                async with trio.open_nursery() as nursery:
                    for leader, tps in by_leader.items():
                        nursery.start_soon(
                            self._list_offsets_from, leader, tps, pending, out, retry
                        )
            except BaseExceptionGroup as group:
                raise _unwrap(group) from None
            if not retry:
                return out
            if trio.current_time() >= deadline:
                raise next(iter(retry.values()))
            pending = {tp: pending[tp] for tp in retry}
            await trio.sleep(config.retry_backoff_ms / 1000)

    async def _list_offsets_from(
        self,
        leader: int,
        tps: list[TopicPartition],
        pending: Mapping[TopicPartition, int],
        out: dict[TopicPartition, ListOffsetsPartitionResult],
        retry: dict[TopicPartition, RaftlogError],
    ) -> None:
        """One LIST_OFFSETS to ``leader``: found offsets go to ``out``, partitions to ask
        again (a leader change, a lost connection) to ``retry``."""
        config = self.cluster.config
        request = ListOffsetsRequest(
            topics=tuple(
                ListOffsetsTopic(
                    topic,
                    tuple(
                        ListOffsetsPartition(PartitionId(p), pending[TopicPartition(topic, p)])
                        for p in parts
                    ),
                )
                for topic, parts in _by_topic(tps).items()
            )
        )
        answer = await self._send(
            leader, request, config.request_timeout_ms, {tp.topic for tp in tps}
        )
        if isinstance(answer, RaftlogError):
            retry.update(dict.fromkeys(tps, answer))
            return
        if not isinstance(answer, ListOffsetsResponse):
            raise ProtocolError(f"LIST_OFFSETS answered with {type(answer).__name__}")
        results = {
            TopicPartition(t.name, int(p.partition)): p for t in answer.topics for p in t.partitions
        }
        for tp in tps:
            result = results.get(tp)
            if result is None:
                raise ProtocolError(f"the LIST_OFFSETS answer says nothing of {_what(tp)}")
            if result.error == ErrorCode.NONE:
                out[tp] = result
            elif result.error in _REFRESH_CODES:
                self.cluster.on_not_leader(tp.topic, tp.partition, result.leader_hint)
                retry[tp] = broker_error(result.error, result.message, _what(tp))
            else:
                raise broker_error(result.error, result.message, _what(tp))

    async def _first_at_or_after(
        self, tp: TopicPartition, offset: int, timestamp: int
    ) -> OffsetAndTimestamp | None:
        """The first user record at or after ``offset`` whose timestamp is at least
        ``timestamp``, read with FETCH (None when the log has none below its high
        watermark: the broker answers "not found" with the high watermark)."""
        config = self.cluster.config
        deadline = trio.current_time() + config.request_timeout_ms / 1000
        while True:
            request = FetchRequest(
                max_wait_ms=0,
                min_bytes=0,
                max_bytes=self.max_partition_fetch_bytes,
                topics=(
                    FetchTopic(
                        tp.topic,
                        (
                            FetchPartition(
                                PartitionId(tp.partition),
                                Offset(offset),
                                self.max_partition_fetch_bytes,
                            ),
                        ),
                    ),
                ),
            )
            failure: RaftlogError
            try:
                leader = await self.cluster.leader_of(tp.topic, tp.partition)
            except RaftlogError as exc:
                if not exc.retriable:
                    raise
                failure = exc
            else:
                answer = await self._send(leader, request, config.request_timeout_ms, [tp.topic])
                if isinstance(answer, RaftlogError):
                    failure = answer
                else:
                    if not isinstance(answer, FetchResponse):
                        raise ProtocolError(f"FETCH answered with {type(answer).__name__}")
                    p = next(
                        (
                            p
                            for t in answer.topics
                            if t.name == tp.topic
                            for p in t.partitions
                            if p.partition == tp.partition
                        ),
                        None,
                    )
                    if p is None:
                        raise ProtocolError(f"the FETCH answer says nothing of {_what(tp)}")
                    if p.error == ErrorCode.OFFSET_OUT_OF_RANGE:
                        if p.log_start_offset > offset:  # removed by retention meanwhile
                            offset = int(p.log_start_offset)
                            continue
                        return None
                    if p.error == ErrorCode.NONE:
                        found, next_offset = _scan_for_time(bytes(p.records), offset, timestamp)
                        if found is not None or next_offset <= offset:
                            return found
                        offset = next_offset
                        continue
                    if p.error not in _REFRESH_CODES:
                        raise broker_error(p.error, p.message, _what(tp))
                    self.cluster.on_not_leader(tp.topic, tp.partition, p.leader_hint)
                    failure = broker_error(p.error, p.message, _what(tp))
            if trio.current_time() >= deadline:
                raise failure
            await trio.sleep(config.retry_backoff_ms / 1000)

    # ------------------------------------------------------------------ pause, lag

    def pause(self, *partitions: object) -> None:
        """Stop fetching these partitions: ``poll`` returns none of their records (what is
        buffered for them is dropped) until ``resume``; their positions stay, so nothing is
        skipped. ``pause(*consumer.assignment())`` pauses all. Raises ``ValueError`` for a
        partition that is not assigned."""
        for tp in self._assigned_only(partitions):
            state = self._state[tp]
            state.paused = True
            state.drop_buffer()

    def resume(self, *partitions: object) -> None:
        """Fetch these paused partitions again, from their positions. Raises
        ``ValueError`` for a partition that is not assigned."""
        for tp in self._assigned_only(partitions):
            self._state[tp].paused = False
        self._notify()

    def paused(self) -> set[TopicPartition]:
        """The assigned partitions that are paused."""
        return {tp for tp, state in self._state.items() if state.paused}

    def _assigned_only(self, args: tuple[object, ...]) -> list[TopicPartition]:
        tps = _tps_from_args(args)
        for tp in tps:
            self._partition(tp)
        return tps

    @overload
    def lag(self, partition: tuple[str, int], /) -> int | None: ...
    @overload
    def lag(self, topic: str, partition: int, /) -> int | None: ...
    def lag(self, *args: object) -> int | None:
        """How many offsets this partition's position is behind its high watermark (as of
        the last fetch answer): ``high_watermark - position``; None before the first
        fetch answer or while the position is unknown. Raises ``ValueError`` when it is
        not assigned."""
        return self._partition(_position_args(args)).lag()

    def lags(self) -> dict[TopicPartition, int | None]:
        """``lag`` of every assigned partition."""
        return {tp: state.lag() for tp, state in self._state.items()}

    def metrics(self) -> dict[TopicPartition, PartitionMetrics]:
        """Per assigned partition: position, high watermark and log start offset (from the
        last fetch answer), lag, what is buffered (records and bytes), paused."""
        return {
            tp: PartitionMetrics(
                position=s.position,
                high_watermark=s.high_watermark,
                log_start_offset=s.log_start_offset,
                lag=s.lag(),
                buffered_records=len(s.buffered),
                buffered_bytes=s.buffered_bytes,
                paused=s.paused,
            )
            for tp, s in self._state.items()
        }

    # ------------------------------------------------------------------ poll

    async def poll(self, timeout_ms: int = 1000, max_records: int = 500) -> list[ConsumerRecord]:
        """Records from the assigned partitions that are not paused, in offset order per
        partition, at most ``max_records``.

        Returns as soon as some are there, else waits up to ``timeout_ms`` for some (an
        empty list when none came). Raises ``OffsetOutOfRangeError`` when a partition has
        no valid position and ``auto_offset_reset`` is "none", ``CorruptRecordError``
        for a batch that fails its CRC, ``IllegalStateError`` when another task is
        already polling, ``ClientClosedError`` after ``close``, and the ``RaftlogError``
        of a broker answer that retrying cannot fix."""
        if timeout_ms < 0:
            raise ValueError(f"timeout_ms must be >= 0, not {timeout_ms}")
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, not {max_records}")
        if self._closed:
            raise ClientClosedError("the consumer is closed")
        if self._polling:
            raise IllegalStateError(
                "poll() is already running in another task or thread; a consumer is "
                "polled by one at a time"
            )
        self._polling = True
        try:
            if self._nursery is not None:
                return await self._poll(self._nursery, timeout_ms, max_records)
            async with trio.open_nursery() as nursery:
                try:
                    return await self._poll(nursery, timeout_ms, max_records)
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None
        finally:
            self._polling = False

    async def _poll(
        self, nursery: trio.Nursery, timeout_ms: int, max_records: int
    ) -> list[ConsumerRecord]:
        background = nursery is self._nursery
        deadline = trio.current_time() + timeout_ms / 1000
        self._raise_pending()  # from a fetch after the last poll returned records
        while True:
            wakeup = self._wakeup
            await self._sync_subscription()
            unplaced = [tp for tp, s in self._state.items() if s.position is None and not s.paused]
            if unplaced:
                await self._reset(unplaced)
            out = self._drain(max_records)
            if not out:
                self._raise_pending()
            now = trio.current_time()
            if out or now >= deadline:
                if background:  # prefetch while the caller works through these
                    await self._start_fetches(nursery, self.fetch_max_wait_ms, look_up=False)
                return out
            wait_ms = self.fetch_max_wait_ms
            if not background:
                wait_ms = min(wait_ms, math.ceil((deadline - now) * 1000))
            await self._start_fetches(nursery, wait_ms, look_up=True)
            until = deadline
            if not self._in_flight:  # nothing can answer: wake for the next retry
                until = min(deadline, self._next_retry())
            with trio.move_on_at(until):
                await wakeup.wait()

    def _raise_pending(self) -> None:
        """Raise the error a fetch met (once). The records fetched before it are returned
        first: a poll that has records returns them and the next one raises."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = trio.Event()

    def _next_retry(self) -> float:
        now = trio.current_time()
        return min(
            (s.retry_at for s in self._state.values() if s.retry_at > now and not s.paused),
            default=math.inf,
        )

    def _drain(self, max_records: int) -> list[ConsumerRecord]:
        out: list[ConsumerRecord] = []
        for state in self._state.values():
            if len(out) >= max_records:
                break
            if state.paused:
                continue
            while state.buffered and len(out) < max_records:
                record = state.buffered.popleft()
                state.buffered_bytes -= _record_bytes(record)
                state.position = record.offset + 1
                out.append(record)
            if not state.buffered:
                state.buffered_bytes = 0
                state.position = state.fetch_offset
        return out

    async def _start_fetches(
        self, nursery: trio.Nursery, max_wait_ms: int, *, look_up: bool
    ) -> None:
        """Send a FETCH to each leader that has none in flight, for its partitions that
        are due one; unless the buffer is over ``buffer_bytes``."""
        if self._closed:
            return
        buffered = sum(s.buffered_bytes for s in self._state.values())
        if buffered > self.buffer_bytes:
            return
        now = trio.current_time()
        by_leader: dict[int, list[TopicPartition]] = {}
        for tp, state in list(self._state.items()):
            if (
                state.paused
                or state.in_flight
                or state.buffered
                or state.fetch_offset is None
                or state.retry_at > now
            ):
                continue
            leader = self.cluster.leader(tp.topic, tp.partition)
            if leader is None:
                if not look_up:
                    continue
                try:
                    leader = await self.cluster.leader_of(tp.topic, tp.partition)
                except RaftlogError as exc:
                    if not exc.retriable and exc.code != ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                        raise
                    log.debug("event=no_leader %s error=%r", _what(tp), exc)
                    state.retry_at = trio.current_time() + self._backoff_s()
                    continue
            if leader not in self._in_flight:
                by_leader.setdefault(leader, []).append(tp)
        if not by_leader:
            return
        room = self.buffer_bytes - buffered
        max_bytes = max(1, min(self.fetch_max_bytes, room // len(by_leader)))
        for leader, tps in by_leader.items():
            planned: list[_Planned] = []
            for tp in tps:
                now_state = self._state.get(tp)
                # things may have changed while a leader was looked up
                if (
                    now_state is None
                    or now_state.paused
                    or now_state.in_flight
                    or now_state.buffered
                    or now_state.fetch_offset is None
                ):
                    continue
                planned.append(_Planned(tp, now_state, now_state.epoch, now_state.fetch_offset))
            if not planned or leader in self._in_flight:
                continue
            for plan in planned:
                plan.state.in_flight = True
            scope = trio.CancelScope()
            self._in_flight[leader] = scope
            nursery.start_soon(self._fetch_task, leader, planned, max_wait_ms, max_bytes, scope)

    def _backoff_s(self) -> float:
        return self.cluster.config.retry_backoff_ms / 1000

    async def _fetch_task(
        self,
        leader: int,
        planned: list[_Planned],
        max_wait_ms: int,
        max_bytes: int,
        scope: trio.CancelScope,
    ) -> None:
        try:
            with scope:
                await self._fetch_from(leader, planned, max_wait_ms, max_bytes)
        except Exception as exc:  # handed to the next poll; never kills the loop
            if self._error is None:
                self._error = exc
        finally:
            if self._in_flight.get(leader) is scope:
                del self._in_flight[leader]
            for plan in planned:
                plan.state.in_flight = False
            self._notify()

    async def _fetch_from(
        self, leader: int, planned: list[_Planned], max_wait_ms: int, max_bytes: int
    ) -> None:
        topics: dict[str, list[FetchPartition]] = {}
        for plan in planned:
            topics.setdefault(plan.tp.topic, []).append(
                FetchPartition(
                    PartitionId(plan.tp.partition),
                    Offset(plan.offset),
                    self.max_partition_fetch_bytes,
                )
            )
        request = FetchRequest(
            max_wait_ms=max_wait_ms,
            min_bytes=1,
            max_bytes=max_bytes,
            topics=tuple(FetchTopic(t, tuple(ps)) for t, ps in topics.items()),
        )
        timeout_ms = max_wait_ms + self.cluster.config.request_timeout_ms
        answer = await self._send(leader, request, timeout_ms, topics)
        if isinstance(answer, RaftlogError):
            log.debug("event=fetch_failed broker=%d error=%r", leader, answer)
            retry_at = trio.current_time() + self._backoff_s()
            for plan in planned:
                plan.state.retry_at = retry_at
            return
        if not isinstance(answer, FetchResponse):
            raise ProtocolError(f"FETCH answered with {type(answer).__name__}")
        results = {
            TopicPartition(t.name, int(p.partition)): p for t in answer.topics for p in t.partitions
        }
        first: RaftlogError | None = None
        for plan in planned:
            result = results.get(plan.tp)
            if result is None:
                continue  # fetched again next time
            try:
                self._on_partition(plan, result)
            except RaftlogError as exc:
                first = first or exc
        if first is not None:
            raise first

    def _on_partition(self, plan: _Planned, p: FetchPartitionResult) -> None:
        tp, state = plan.tp, plan.state
        if self._state.get(tp) is not state:
            return  # no longer assigned
        if p.error in (ErrorCode.NONE, ErrorCode.OFFSET_OUT_OF_RANGE):
            if p.high_watermark >= 0:
                state.high_watermark = int(p.high_watermark)
            if p.log_start_offset >= 0:
                state.log_start_offset = int(p.log_start_offset)
        if state.epoch != plan.epoch or state.paused or state.fetch_offset != plan.offset:
            return  # seeked, paused or reassigned since the fetch was sent
        if p.error == ErrorCode.OFFSET_OUT_OF_RANGE:
            state.set_position(None)
            state.reset_reason = (
                f"offset {plan.offset} is out of range (log start {p.log_start_offset}, "
                f"high watermark {p.high_watermark})"
            )
            log.info("event=offset_out_of_range %s %s", _what(tp), state.reset_reason)
            return
        if p.error in _REFRESH_CODES:
            self.cluster.on_not_leader(tp.topic, tp.partition, p.leader_hint)
            state.retry_at = trio.current_time() + self._backoff_s()
            return
        if p.error != ErrorCode.NONE:
            raise broker_error(p.error, p.message, _what(tp))
        self._take_records(tp, bytes(p.records), state)

    @staticmethod
    def _take_records(tp: TopicPartition, data: bytes, state: _PartitionState) -> None:
        assert state.fetch_offset is not None
        pos = 0
        try:
            while pos < len(data):
                size = peek_size(data, pos)
                if size is None or pos + size > len(data):
                    break  # a partial batch at the end: fetched whole next time
                header, records = decode_batch(data, pos, max_bytes=size)
                pos += size
                next_offset = header.base_offset + header.last_offset_delta + 1
                if next_offset <= state.fetch_offset:
                    continue
                if not header.is_control:
                    for r in records:
                        if r.offset >= state.fetch_offset:
                            record = ConsumerRecord(
                                tp.topic,
                                tp.partition,
                                r.offset,
                                r.timestamp_ms,
                                r.key,
                                r.value,
                                r.headers,
                            )
                            state.buffered.append(record)
                            state.buffered_bytes += _record_bytes(record)
                state.fetch_offset = next_offset
        finally:
            if not state.buffered:
                state.position = state.fetch_offset

    # ------------------------------------------------------------------ iteration, close

    def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        """``async for record in consumer``: records until ``close``, or until
        ``consumer_timeout_ms`` passes without any."""
        return self._records()

    async def _records(self) -> AsyncIterator[ConsumerRecord]:
        idle_since = trio.current_time()
        while not self._closed:
            records = await self.poll(timeout_ms=ITERATION_POLL_MS)
            if records:
                idle_since = trio.current_time()
                for record in records:
                    yield record
            elif self.consumer_timeout_ms is not None and (
                trio.current_time() - idle_since >= self.consumer_timeout_ms / 1000
            ):
                return

    def close(self) -> None:
        """Stop background fetches; later polls raise ``ClientClosedError``."""
        self._closed = True
        for scope in list(self._in_flight.values()):
            scope.cancel()
        self._notify()


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error to raise for a nursery's group; the group itself when it holds only
    cancellations (trio must see those)."""
    error = first_error(group)
    if error is group:
        raise group
    return error


def _scan_for_time(
    data: bytes, offset: int, timestamp: int
) -> tuple[OffsetAndTimestamp | None, int]:
    """In fetched batches: the first user record at or after ``offset`` with a timestamp
    at or after ``timestamp``, and the offset after the last whole batch read."""
    pos = 0
    next_offset = offset
    while pos < len(data):
        size = peek_size(data, pos)
        if size is None or pos + size > len(data):
            break
        header, records = decode_batch(data, pos, max_bytes=size)
        pos += size
        next_offset = max(next_offset, header.base_offset + header.last_offset_delta + 1)
        if header.is_control:
            continue
        for r in records:
            if r.offset >= offset and r.timestamp_ms >= timestamp:
                return OffsetAndTimestamp(r.offset, r.timestamp_ms), next_offset
    return None, next_offset


class Consumer(ClosesOnExit):
    """A blocking consumer: ``assign`` partitions or ``subscribe`` to topics, then ``poll``
    or iterate.

    - ``group_id``: None (the default) reads without a consumer group; groups (and
      ``subscribe`` with a group) arrive with the group coordinator.
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

    Fetches run in the consumer's loop thread, also between polls (prefetch). Methods may
    be called from any thread; ``poll`` by one thread at a time.

    Example::

        with Consumer("127.0.0.1:9092", auto_offset_reset="earliest") as consumer:
            consumer.subscribe(["orders"])
            for record in consumer:
                print(record.partition, record.offset, record.value)
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

    def subscribe(self, topics: str | Iterable[str]) -> None:
        """Read every partition of ``topics``, including partitions added later; see
        ``AsyncConsumer.subscribe``. Raises ``ConsumerGroupsUnavailableError`` with a
        ``group_id``, ``IllegalStateError`` after ``assign``.
        Example: ``consumer.subscribe(["orders", "payments"])``."""
        names = topics if isinstance(topics, str) else list(topics)
        self._loop.run(self._core.subscribe, names)

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

    def close(self) -> None:
        """Stop fetching, close the connections and the loop thread. Idempotent; later
        calls raise ``ClientClosedError``."""
        if self._closed:
            return
        self._closed = True
        core = self._core

        def stop() -> None:
            core.close()
            core.cluster.close()

        try:
            self._loop.run_sync_soon(stop)
        finally:
            self._loop.close()
