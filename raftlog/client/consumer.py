"""The consumer: read partitions from a position, with long-poll fetches and bounded prefetch.

``AsyncConsumer`` is the trio implementation; ``Consumer`` the blocking API over it (its own
loop thread). The two have the same methods (the trio ones that talk to a broker are
``async``).

Which partitions: ``assign`` names them; ``subscribe`` names topics (or a regex of topic
names) and, without a consumer group (``group_id=None``), reads every partition of them.
The two are mutually exclusive (``IllegalStateError``). A subscription is resolved from the
metadata at ``subscribe`` time and re-checked every ``metadata_max_age_ms`` (every second
while a subscribed topic is unknown), so partitions added later, and topics created later,
are picked up; they start per ``auto_offset_reset``.

With a ``group_id``, ``subscribe`` makes the consumer a member of that consumer group
(``raftlog.client.group`` holds the member's state machine): the group's coordinator
assigns it a share of the partitions, and moves them when members come and go (eager
protocol: everything is revoked before a rejoin). Heartbeats and the JOIN_GROUP that waits
for the other members run in the background; ``poll`` takes the outcome, calls the
rebalance listener, and auto-commits (the positions as of the previous poll, every
``auto_commit_interval_ms``). ``commit``, ``commit_async`` and ``committed`` work on the
group's offsets, also for ``assign`` with a ``group_id`` (commits to a group without
members).

Each partition has a *position*, the offset of the next record ``poll`` returns. A
partition without one gets it from the group's committed offset (with a ``group_id``), else
from ``auto_offset_reset`` ("earliest": the log start; "latest": the high watermark;
"none": ``OffsetOutOfRangeError`` from ``poll``) through LIST_OFFSETS to its leader; one
whose position fell out of the log gets it from ``auto_offset_reset``.

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
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypedDict, TypeVar, overload

import trio

from raftlog.client._loop import ClosesOnExit, LoopThread, first_error
from raftlog.client.cluster import ClientConfig, Cluster
from raftlog.client.errors import (
    BrokerError,
    ClientClosedError,
    ClientError,
    ProtocolError,
    broker_error,
)
from raftlog.client.group import (
    STRATEGIES,
    CommitCallback,
    Coordinator,
    GroupConfig,
    GroupMember,
    Listener,
    MemberState,
    PartitionsCallback,
    call_back,
    commit_offsets,
    fetch_committed,
)
from raftlog.client.group import (
    TopicPartition as TopicPartition,  # defined with the group code; exported here too
)
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
    """``subscribe`` with a ``group_id`` against brokers that do not serve the group
    protocol (no group coordinator: an older broker)."""

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
    the caller's to close); ``await aclose()`` first commits and leaves the group.

    In a consumer group (``group_id`` and ``subscribe``) a nursery is required: heartbeats
    and the JOIN_GROUP that waits for the other members run in it, so that neither holds up
    ``poll`` nor depends on it. Rebalance listener callbacks may be coroutine functions
    (awaited inside ``poll``).

    Example::

        async with trio.open_nursery() as nursery:
            cluster = Cluster("127.0.0.1:9092", nursery, ClientConfig())
            consumer = AsyncConsumer(cluster, nursery=nursery, auto_offset_reset="earliest")
            await consumer.subscribe(["orders"])
            async for record in consumer:
                print(record.partition, record.offset, record.value)

    In a group::

        consumer = AsyncConsumer(cluster, nursery=nursery, group_id="billing")
        await consumer.subscribe(["orders"], on_assigned=lambda tps: print("got", tps))
        try:
            while True:
                for record in await consumer.poll():
                    handle(record)  # auto-commit: committed at a later poll or aclose()
        finally:
            await consumer.aclose()  # commit, LEAVE_GROUP: the others take over at once
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
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5_000,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        rebalance_timeout_ms: int = 30_000,
        group_instance_id: str | None = None,
        partition_assignment_strategy: Sequence[str] = STRATEGIES,
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
        if auto_commit_interval_ms < 1:
            raise ValueError(f"auto_commit_interval_ms must be >= 1, not {auto_commit_interval_ms}")
        if isinstance(partition_assignment_strategy, str):
            partition_assignment_strategy = (partition_assignment_strategy,)
        self._group_config: GroupConfig | None = None
        if group_id is not None:
            self._group_config = GroupConfig(
                group_id=group_id,
                client_id=cluster.config.client_id,
                instance_id=group_instance_id,
                session_timeout_ms=session_timeout_ms,
                rebalance_timeout_ms=rebalance_timeout_ms,
                heartbeat_interval_ms=heartbeat_interval_ms,
                strategies=tuple(partition_assignment_strategy),
                retry_backoff_ms=cluster.config.retry_backoff_ms,
                request_timeout_ms=cluster.config.request_timeout_ms,
            )
            self._group_config.check()
        elif group_instance_id is not None:
            raise ValueError("group_instance_id needs a group_id")
        self.cluster = cluster
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.fetch_max_bytes = fetch_max_bytes
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.buffer_bytes = buffer_bytes
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.metadata_max_age_ms = metadata_max_age_ms
        self.consumer_timeout_ms = consumer_timeout_ms
        self.enable_auto_commit = enable_auto_commit
        self.auto_commit_interval_ms = auto_commit_interval_ms
        self._nursery = nursery
        self._state: dict[TopicPartition, _PartitionState] = {}
        self._subscription: tuple[str, ...] | None = None
        self._pattern: re.Pattern[str] | None = None
        # the group (see raftlog.client.group): the member, its background tasks
        self._coordinator: Coordinator | None = None
        self._member: GroupMember | None = None
        self._listener: Listener | None = None
        self._heartbeat_scope: trio.CancelScope | None = None
        self._join_scope: trio.CancelScope | None = None
        self._join_done: trio.Event | None = None
        self._join_result: list[TopicPartition] | BaseException | None = None
        self._join_counts: dict[str, int] = {}
        self._joined_counts: dict[str, int] | None = None
        """Partition counts of the subscribed topics at the last join (None: not joined)."""
        self._commit_lock = trio.Lock()
        self._committed_cache: dict[TopicPartition, int] = {}
        """What this consumer last committed per partition (auto-commit skips those)."""
        self._auto_commit_at: float | None = None
        self._manual = False
        self._metadata_checked = -math.inf
        self._in_flight: dict[int, trio.CancelScope] = {}
        self._wakeup = trio.Event()
        self._error: BaseException | None = None
        self._polling = False
        self._closing = False
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

    async def subscribe(
        self,
        topics: str | Iterable[str] | None = None,
        listener: object | None = None,
        *,
        pattern: str | re.Pattern[str] | None = None,
        on_assigned: PartitionsCallback | None = None,
        on_revoked: PartitionsCallback | None = None,
        on_lost: PartitionsCallback | None = None,
    ) -> None:
        """Read the partitions of ``topics``, or of every topic whose whole name matches
        ``pattern`` (a regex, ``re.fullmatch``; re-checked every ``metadata_max_age_ms``).

        Without a ``group_id``: every partition of those topics, resolved from the metadata
        now and re-checked every ``metadata_max_age_ms``, so partitions (and matching
        topics) added later are read too; each starts per ``auto_offset_reset``. A topic
        the cluster does not know yet is read once it exists.

        With a ``group_id``: the consumer joins the group at the next ``poll`` and reads the
        partitions the coordinator assigns it (a rebalance runs whenever members come and
        go, or the subscribed topics change); each assigned partition starts at the group's
        committed offset, else per ``auto_offset_reset``. The rebalance listener is told
        (inside ``poll``, eager protocol): ``on_partitions_revoked`` before every rejoin
        (with auto-commit, after the positions were committed), ``on_partitions_assigned``
        after it (before positions are looked up: it may ``seek``),
        ``on_partitions_lost`` when the membership was lost (nothing can be committed then;
        defaults to the revoked callback). Give a listener object with any of those methods
        (Kafka's ConsumerRebalanceListener), or callables ``on_revoked=``,
        ``on_assigned=``, ``on_lost=``, each called with a list of ``TopicPartition``.

        Subscribing again replaces the topics; an empty list is ``unsubscribe()``.

        Raises ``ConsumerGroupsUnavailableError`` when the brokers do not serve the group
        protocol, ``IllegalStateError`` after ``assign()`` or without a nursery in a group,
        ``ValueError`` for an empty topic name, a bad pattern, or a listener without a
        group, and a non-retriable ``RaftlogError`` from the metadata request (a
        retriable one is retried by ``poll``).

        Example: ``await consumer.subscribe(pattern=r"orders-.*", on_revoked=flush)``."""
        regex: re.Pattern[str] | None = None
        names: list[str] = []
        if pattern is not None:
            if topics is not None:
                raise ValueError("subscribe to topics or to a pattern, not both")
            try:
                regex = re.compile(pattern) if isinstance(pattern, str) else pattern
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from None
        elif topics is None:
            raise TypeError("subscribe() needs topics, or pattern=")
        else:
            names = [topics] if isinstance(topics, str) else list(dict.fromkeys(topics))
            for name in names:
                if not isinstance(name, str) or not name:
                    raise ValueError(f"topic names must be non-empty strings, not {name!r}")
        built: Listener | None
        if isinstance(listener, Listener):
            built = listener
        elif listener is not None or on_assigned or on_revoked or on_lost:
            built = Listener(
                listener, on_revoked=on_revoked, on_assigned=on_assigned, on_lost=on_lost
            )
        else:
            built = None
        if built is not None and self.group_id is None:
            raise ValueError(
                "a rebalance listener needs a group_id: without a group the consumer reads "
                "every partition of the topics and nothing is ever assigned or revoked"
            )
        if regex is None and not names:
            self.unsubscribe()
            return
        if self._manual:
            raise IllegalStateError(
                "subscribe() after assign(): subscription to topics and manual assignment "
                "of partitions are mutually exclusive; call unsubscribe() first"
            )
        if self.group_id is not None:
            if self._nursery is None:
                raise IllegalStateError(
                    "subscribe() with a group_id needs an AsyncConsumer made with a nursery "
                    "(heartbeats and rebalances run in the background); or use the blocking "
                    "Consumer"
                )
            if self._member is None:
                await self._probe_coordinator()
        self._subscription = None if regex is not None else tuple(names)
        self._pattern = regex
        self._listener = built
        if self.group_id is not None:
            self._ensure_member()
        await self._sync_subscription(force=True)

    async def _probe_coordinator(self) -> None:
        """FIND_COORDINATOR once: a broker without the group protocol is found out now
        (``ConsumerGroupsUnavailableError``); any retriable failure is left to ``poll``."""
        try:
            await self._coord().find()
        except RaftlogError as exc:
            if exc.retriable:
                log.info("event=coordinator_not_found_yet group=%s error=%s", self.group_id, exc)
                return
            if isinstance(exc, BrokerError) and exc.code in (
                ErrorCode.INVALID_REQUEST,
                ErrorCode.UNKNOWN,
            ):
                raise ConsumerGroupsUnavailableError(
                    f"subscribe() with group_id={self.group_id!r} needs a group coordinator, "
                    f"and the brokers do not serve the group protocol ({exc.message}); use "
                    "group_id=None to read every partition of the topics without a group, "
                    "or assign() partitions"
                ) from None
            raise

    def subscription(self) -> set[str]:
        """The subscribed topics (for a pattern: the topics it matches now; empty when not
        subscribed)."""
        if self._subscription is None and self._pattern is None:
            return set()
        return set(self._topic_names())

    def unsubscribe(self) -> None:
        """Stop reading: forget the subscription or the manual assignment (and positions).
        In a group, the member leaves in the background: with auto-commit its positions are
        committed first, then the listener's revoked callback runs, then LEAVE_GROUP."""
        if self._member is not None:
            self._drop_member(leave=True)
        self._subscription = None
        self._pattern = None
        self._listener = None
        self._manual = False
        self._set_assignment([])

    def _set_assignment(self, wanted: Sequence[TopicPartition]) -> None:
        old = self._state
        self._state = {tp: old.get(tp) or _PartitionState() for tp in wanted}
        for tp, state in old.items():
            if tp not in self._state:
                state.drop_buffer()  # an answer in flight for it is dropped
        self._notify()

    def _topic_names(self) -> list[str]:
        """The subscribed topics: as given, or those of the cluster the pattern matches."""
        if self._pattern is not None:
            return sorted(t for t in self.cluster.topics if self._pattern.fullmatch(t))
        return list(self._subscription or ())

    def _topic_counts(self, names: Iterable[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for name in names:
            meta = self.cluster.topics.get(name)
            out[name] = 0 if meta is None else len(meta.partitions)
        return out

    async def _sync_subscription(self, *, force: bool = False) -> None:
        """Bring the assignment in line with the subscribed topics' partitions (without a
        group); in a group, ask for a rejoin when they changed."""
        if self._subscription is None and self._pattern is None:
            return
        key = (self._subscription, self._pattern)
        explicit = self._subscription or ()
        now = trio.current_time()
        unknown = any(t not in self.cluster.topics for t in explicit)
        due = (
            force
            or now >= self._metadata_checked + self.metadata_max_age_ms / 1000
            or (unknown and now >= self._metadata_checked + UNKNOWN_TOPIC_RECHECK_S)
        )
        fresh = False
        if due:
            self._metadata_checked = now
            try:
                await self.cluster.refresh(explicit if self._pattern is None else None, force=True)
                fresh = True
            except RaftlogError as exc:
                if not exc.retriable:
                    raise
                log.info("event=subscription_refresh_failed error=%r", exc)
        if (self._subscription, self._pattern) != key:
            return  # changed while we waited: that call synced
        names = self._topic_names()
        member = self._member
        if member is not None:
            if (
                fresh
                and self._joined_counts is not None
                and member.state == MemberState.STABLE
                and self._topic_counts(names) != self._joined_counts
            ):
                member.request_rejoin("the subscribed topics or their partitions changed")
            return
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

    # ------------------------------------------------------------------ group

    def _coord(self) -> Coordinator:
        """The coordinator of this consumer's group, for OFFSET_FETCH and commits outside a
        membership (a member has a connection of its own for JOIN_GROUP)."""
        if self.group_id is None:
            raise IllegalStateError("no group_id")
        if self._coordinator is None:
            self._coordinator = self._new_coordinator()
        return self._coordinator

    def _new_coordinator(self) -> Coordinator:
        assert self.group_id is not None
        return Coordinator(self.cluster, self.group_id, nursery=self._nursery)

    def _need_group(self, what: str) -> str:
        if self.group_id is None:
            raise IllegalStateError(
                f"{what}() needs a consumer group: make the consumer with group_id=... "
                "(offsets are committed per group)"
            )
        return self.group_id

    def _ensure_member(self) -> None:
        """The group member and its heartbeat task, made at the first group subscribe."""
        if self._member is not None:
            return
        assert self._group_config is not None and self._nursery is not None
        member = GroupMember(self._new_coordinator(), self._group_config, on_change=self._notify)
        scope = trio.CancelScope()
        self._member = member
        self._heartbeat_scope = scope
        self._joined_counts = None
        self._nursery.start_soon(self._heartbeats, member, scope)

    async def _heartbeats(self, member: GroupMember, scope: trio.CancelScope) -> None:
        with scope:
            try:
                await member.run_heartbeats()
            except Exception as exc:  # never kills the loop
                log.error("event=heartbeat_task_failed group=%s error=%r", self.group_id, exc)

    def _cancel_group_tasks(self) -> None:
        for scope in (self._heartbeat_scope, self._join_scope):
            if scope is not None:
                scope.cancel()
        self._heartbeat_scope = self._join_scope = None
        self._join_done = None
        self._join_result = None

    def _drop_member(self, *, leave: bool) -> None:
        """Forget the member; with ``leave``, commit (auto-commit), revoke and leave in the
        background."""
        member = self._member
        if member is None:
            return
        tps = list(self._state)
        offsets = self._positions()
        self._cancel_group_tasks()
        self._member = None
        self._joined_counts = None
        self._committed_cache.clear()
        if leave and self._nursery is not None:
            self._nursery.start_soon(self._leave, member, tps, offsets, self._listener)
        else:
            member.close()
            member.coordinator.close()

    async def _leave(
        self,
        member: GroupMember,
        tps: list[TopicPartition],
        offsets: dict[TopicPartition, int],
        listener: Listener | None,
    ) -> None:
        """Commit (auto-commit), tell the listener, LEAVE_GROUP; failures are logged."""
        try:
            if self.enable_auto_commit and offsets and member.state == MemberState.STABLE:
                try:
                    async with self._commit_lock:
                        await member.commit(offsets)
                except RaftlogError as exc:
                    log.warning(
                        "event=commit_on_leave_failed group=%s error=%s", member.group_id, exc
                    )
            if tps and listener is not None:
                await listener.revoked(tps)
                listener.take_error()  # logged by the listener: nobody to raise it to
            await member.leave()
        except Exception as exc:
            log.error("event=group_leave_failed group=%s error=%r", member.group_id, exc)
        finally:
            member.close()
            member.coordinator.close()

    async def _maintain_group(self) -> None:
        """The group's part of ``poll``: take a finished join's assignment, drop lost
        partitions, revoke and rejoin when asked, auto-commit."""
        member = self._member
        if self._closing:
            return
        if member is None:
            await self._maybe_auto_commit()
            return
        done = self._join_done
        if done is not None and done.is_set():
            result = self._join_result
            self._join_done = self._join_result = self._join_scope = None
            if isinstance(result, BaseException):
                raise result
            if result is not None and not member.needs_join and not member.lost:
                await self._take_assignment(result)
        if member.lost:
            member.lost = False
            tps = list(self._state)
            self._committed_cache.clear()
            if tps and self._listener is not None:
                await self._listener.lost(tps)
            self._set_assignment([])
        if self._join_done is None and member.needs_join and self._member is member:
            topics = self._topic_names()
            if topics:
                await self._revoke(member)
                if self._member is member and not self._closing:
                    self._start_join(member, topics)
            elif member.state == MemberState.STABLE:
                # a pattern that matches no topic any more: nothing to be a member for
                await self._revoke(member)
                await member.leave(final=False)
        await self._maybe_auto_commit()
        if self._listener is not None:
            error = self._listener.take_error()
            if error is not None:
                raise error

    async def _take_assignment(self, tps: list[TopicPartition]) -> None:
        log.info("event=partitions_assigned group=%s partitions=%s", self.group_id, tps)
        self._set_assignment(tps)
        self._committed_cache.clear()
        self._joined_counts = self._join_counts
        self._auto_commit_at = trio.current_time() + self.auto_commit_interval_ms / 1000
        if self._listener is not None:
            await self._listener.assigned(list(tps))

    async def _revoke(self, member: GroupMember) -> None:
        """Eager protocol, before a rejoin: commit (auto-commit), tell the listener, drop
        every partition."""
        tps = list(self._state)
        if not tps:
            return
        if self.enable_auto_commit and member.state == MemberState.STABLE:
            try:
                await self._commit_offsets(self._positions())
            except RaftlogError as exc:
                log.warning("event=commit_on_revoke_failed group=%s error=%s", self.group_id, exc)
        if self._listener is not None:
            await self._listener.revoked(tps)
        log.info("event=partitions_revoked group=%s partitions=%s", self.group_id, tps)
        self._committed_cache.clear()
        self._set_assignment([])

    def _start_join(self, member: GroupMember, topics: list[str]) -> None:
        assert self._nursery is not None
        self._join_counts = self._topic_counts(topics)
        done = trio.Event()
        scope = trio.CancelScope()
        self._join_done, self._join_scope, self._join_result = done, scope, None
        self._nursery.start_soon(self._join, member, topics, done, scope)

    async def _join(
        self, member: GroupMember, topics: list[str], done: trio.Event, scope: trio.CancelScope
    ) -> None:
        result: list[TopicPartition] | BaseException | None = None
        try:
            with scope:
                result = await member.join(topics)
        except Exception as exc:  # handed to the next poll
            result = exc
        finally:
            if self._join_done is done:
                self._join_result = result
            done.set()
            self._notify()

    def _positions(self) -> dict[TopicPartition, int]:
        """The position of every assigned partition that has one: everything before it was
        returned by a ``poll``."""
        return {tp: s.position for tp, s in self._state.items() if s.position is not None}

    async def _maybe_auto_commit(self) -> None:
        """Every ``auto_commit_interval_ms``: commit the positions as of now, that is as of
        the previous poll (this one has returned nothing yet), so a crash never skips a
        record the caller did not get through."""
        if not self.enable_auto_commit or self.group_id is None:
            return
        now = trio.current_time()
        if self._auto_commit_at is None:
            self._auto_commit_at = now + self.auto_commit_interval_ms / 1000
        if now < self._auto_commit_at:
            return
        self._auto_commit_at = now + self.auto_commit_interval_ms / 1000
        member = self._member
        if member is not None:
            if member.state != MemberState.STABLE or member.needs_join:
                return
        elif not self._manual:
            return
        offsets = {
            tp: o for tp, o in self._positions().items() if self._committed_cache.get(tp) != o
        }
        if not offsets:
            return
        if self._nursery is not None:
            self._nursery.start_soon(self._auto_commit, offsets)
        else:
            await self._auto_commit(offsets)

    async def _auto_commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._commit_offsets(offsets)
            log.debug("event=auto_commit group=%s offsets=%s", self.group_id, offsets)
        except Exception as exc:  # in the background: logged, never kills the loop
            log.info("event=auto_commit_failed group=%s error=%s", self.group_id, exc)

    async def _commit_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit, in order with every other commit of this consumer: as the group member
        when subscribed, else as a commit to a group without members."""
        group_id = self._need_group("commit")
        if not offsets:
            return
        async with self._commit_lock:
            member = self._member
            if member is not None:
                await member.commit(offsets)
            else:
                await commit_offsets(self._coord(), group_id, offsets)
            self._committed_cache.update(offsets)

    def _offsets_arg(
        self, offsets: Mapping[tuple[str, int], int] | None
    ) -> dict[TopicPartition, int]:
        if offsets is None:
            return self._positions()
        out: dict[TopicPartition, int] = {}
        for key, offset in offsets.items():
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise ValueError(f"offset of {key!r} must be an int >= 0, not {offset!r}")
            out[_as_tp(key)] = offset
        return out

    async def commit(self, offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        """Commit offsets to the group and wait for the answer.

        ``offsets``: ``{(topic, partition): offset of the next record to read}``; None (the
        default) commits the position of every assigned partition, i.e. everything
        ``poll`` has returned. In a group only the partitions assigned to this member can
        be committed. Commits go out in the order they were made (``commit_async`` ones
        too).

        Raises ``CommitFailedError`` when the group fenced the commit (a rebalance gave the
        partitions to another member, or this member was dropped: nothing was committed,
        and poll() rejoins), ``IllegalStateError`` without a ``group_id``, ``ValueError``
        for a negative offset, and a ``RaftlogError`` when the coordinator cannot be
        reached within ``request_timeout_ms``.

        Example: ``await consumer.commit({("orders", 0): record.offset + 1})``."""
        self._need_group("commit")
        await self._commit_offsets(self._offsets_arg(offsets))

    def commit_async(
        self,
        offsets: Mapping[tuple[str, int], int] | None = None,
        callback: CommitCallback | None = None,
    ) -> None:
        """Like ``commit`` without waiting: the offsets (by default the positions as of
        now) are committed in the background, in order with other commits. ``callback``
        (optional; may be a coroutine function) gets ``(offsets, error)`` once answered,
        ``error`` None on success or the ``RaftlogError`` (``CommitFailedError``...).
        Raises ``IllegalStateError`` without a ``group_id`` or without a nursery."""
        self._commit_async(offsets, callback, in_thread=False)

    def _commit_async(
        self,
        offsets: Mapping[tuple[str, int], int] | None,
        callback: CommitCallback | None,
        *,
        in_thread: bool,
    ) -> None:
        self._need_group("commit_async")
        if self._nursery is None:
            raise IllegalStateError(
                "commit_async() runs in the background: make the AsyncConsumer with a "
                "nursery, or await commit()"
            )
        todo = self._offsets_arg(offsets)
        self._nursery.start_soon(self._commit_task, todo, callback, in_thread)

    async def _commit_task(
        self, todo: dict[TopicPartition, int], callback: CommitCallback | None, in_thread: bool
    ) -> None:
        error: Exception | None = None
        try:
            await self._commit_offsets(todo)
        except Exception as exc:  # in the background: to the callback, never kills the loop
            error = exc
            log.info("event=commit_async_failed group=%s error=%s", self.group_id, exc)
        if callback is not None:
            await call_back(callback, todo, error, in_thread=in_thread)

    @overload
    async def committed(self, partition: tuple[str, int], /) -> int | None: ...
    @overload
    async def committed(self, topic: str, partition: int, /) -> int | None: ...
    async def committed(self, *args: object) -> int | None:
        """The group's committed offset of a partition (assigned or not), None when none is
        committed: ``committed(("orders", 0))`` or ``committed("orders", 0)``. Raises
        ``IllegalStateError`` without a ``group_id``, a ``RaftlogError`` when the
        coordinator cannot be reached."""
        tp = _position_args(args)
        group_id = self._need_group("committed")
        found = await fetch_committed(self._coord(), group_id, [tp])
        return found.get(tp)

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
        yet, it is set first: to the group's committed offset (with a ``group_id``), else per
        ``auto_offset_reset``. Call as ``position(("orders", 0))`` or
        ``position("orders", 0)``. Raises ``ValueError`` when it is not assigned,
        ``OffsetOutOfRangeError`` when it has no position and ``auto_offset_reset`` is
        "none"."""
        tp = _position_args(args)
        state = self._partition(tp)
        if state.position is None:
            await self._place([tp])
        position = self._partition(tp).position
        if position is None:  # reassigned or re-seeked meanwhile
            raise OffsetOutOfRangeError(f"{_what(tp)} lost its position; try again")
        return position

    async def _place(self, tps: list[TopicPartition]) -> None:
        """Set the positions of ``tps`` (those still without one): with a ``group_id``, the
        committed offsets of those that never had a position (OFFSET_FETCH); the rest per
        ``auto_offset_reset``."""
        if self.group_id is not None:
            first = [tp for tp in tps if tp in self._state and self._state[tp].reset_reason is None]
            if first:
                found = await fetch_committed(self._coord(), self.group_id, first)
                for tp, offset in found.items():
                    state = self._state.get(tp)
                    if offset is not None and state is not None and state.position is None:
                        log.debug("event=position_from_commit %s offset=%d", _what(tp), offset)
                        state.set_position(offset)
            tps = [tp for tp in tps if tp in self._state and self._state[tp].position is None]
        if tps:
            await self._reset(tps)

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
        of a broker answer that retrying cannot fix.

        In a group, ``poll`` also does the group's work: it takes the assignment of a
        finished rebalance (``on_partitions_assigned``), revokes everything before a rejoin
        (``on_partitions_revoked``, after committing with auto-commit), drops partitions
        of a lost membership (``on_partitions_lost``), and auto-commits every
        ``auto_commit_interval_ms`` the positions as of the previous poll. An exception
        from a listener callback is raised here once that step is done. The JOIN_GROUP
        itself runs in the background: while the group rebalances, ``poll`` returns
        nothing (it does not wait past ``timeout_ms`` for it)."""
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
            if self.group_id is not None:
                await self._maintain_group()
            unplaced = [tp for tp, s in self._state.items() if s.position is None and not s.paused]
            if unplaced:
                await self._place(unplaced)
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

    async def aclose(self, timeout_ms: int = 30_000) -> None:
        """Leave cleanly, then ``close()``: in a group, commit the positions (auto-commit),
        call the listener's revoked callback and send LEAVE_GROUP (a static member does
        not: it keeps its assignment for its session timeout), so the other members take
        over its partitions at once; an assign()-mode consumer with a ``group_id``
        commits its positions (auto-commit). Gives up after ``timeout_ms``; failures are
        logged, not raised."""
        if self._closed:
            return
        self._closing = True
        with trio.move_on_after(timeout_ms / 1000) as scope:
            member = self._member
            if member is not None:
                self._cancel_group_tasks()
                # still the member while leaving: the listener may commit as one
                await self._leave(member, list(self._state), self._positions(), self._listener)
                self._member = None
            elif self.group_id is not None and self.enable_auto_commit and self._manual:
                try:
                    await self._commit_offsets(self._positions())
                except RaftlogError as exc:
                    log.warning(
                        "event=commit_on_close_failed group=%s error=%s", self.group_id, exc
                    )
        if scope.cancelled_caught:
            log.warning("event=close_timed_out group=%s timeout_ms=%d", self.group_id, timeout_ms)
        self.close()

    def close(self) -> None:
        """Stop background fetches (and, in a group, heartbeats: without ``aclose`` the
        coordinator notices the member is gone only after its session timeout); later
        polls raise ``ClientClosedError``."""
        self._closed = True
        self._drop_member(leave=False)
        if self._coordinator is not None:
            self._coordinator.close()
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
