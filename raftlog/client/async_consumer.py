"""The trio consumer: read partitions from a position, with long-poll fetches and bounded
prefetch.

``AsyncConsumer`` is the trio implementation; the blocking ``Consumer``
(``raftlog.client.consumer``) runs one in its own loop thread. The two have the same
methods (the trio ones that talk to a broker are ``async``). The consumer's parts:
``consumer_types`` (records, errors, per-partition state), ``fetcher`` (fetching and
decoding answers), ``offsets_lookup`` (LIST_OFFSETS, offsets by time), ``consumer_group``
(membership, rebalances, commits); this module holds the rest: assignment and
subscription, positions, pause and lag, ``poll``.

Which partitions: ``assign`` names them; ``subscribe`` names topics (or a regex of topic
names) and, without a consumer group (``group_id=None``), reads every partition of them.
The two are mutually exclusive (``IllegalStateError``). A subscription is resolved from the
metadata at ``subscribe`` time and re-checked every ``metadata_max_age_ms`` (every second
while a subscribed topic is unknown), so partitions added later, and topics created later,
are picked up; they start per ``auto_offset_reset``. With a ``group_id``, ``subscribe``
makes the consumer a member of that consumer group instead (``consumer_group``).

Each partition has a *position*, the offset of the next record ``poll`` returns. A
partition without one gets it from the group's committed offset (with a ``group_id``), else
from ``auto_offset_reset`` ("earliest": the log start; "latest": the high watermark;
"none": ``OffsetOutOfRangeError`` from ``poll``) through LIST_OFFSETS to its leader; one
whose position fell out of the log gets it from ``auto_offset_reset``.

``poll`` returns as soon as some partition has records. The blocking ``Consumer`` (and an
``AsyncConsumer`` given a ``nursery``) runs fetches in the background: when ``poll``
returns, the partitions it emptied are fetched again while the caller works (prefetch),
and a fetch still in flight when ``poll`` times out is kept and its answer used; what
prefetch may hold is bounded (``fetcher``). Records beyond ``max_records`` stay buffered
for the next ``poll``. ``pause`` drops what is buffered for a partition (its position
stays at the first record not returned, so ``resume`` skips nothing).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import overload

import trio

from raftlog.client.cluster import Cluster
from raftlog.client.consumer_group import ConsumerGroupMixin
from raftlog.client.consumer_types import (
    ConsumerRecord,
    IllegalStateError,
    OffsetAndTimestamp,
    PartitionMetrics,
    _as_tp,
    _check_bytes,
    _PartitionState,
    _position_args,
    _seek_args,
    _tps_from_args,
    _unwrap,
    _what,
)
from raftlog.client.errors import ClientClosedError
from raftlog.client.fetcher import Fetcher
from raftlog.client.group import (
    STRATEGIES,
    GroupConfig,
    Listener,
    MemberState,
    PartitionsCallback,
    TopicPartition,
    fetch_committed,
)
from raftlog.client.offsets_lookup import list_offsets, offsets_for_times
from raftlog.errors import OffsetOutOfRangeError, RaftlogError
from raftlog.wire import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP

log = logging.getLogger("raftlog.client")

RESETS = ("earliest", "latest", "none")
UNKNOWN_TOPIC_RECHECK_S = 1.0
"""How often a subscription with a topic the cluster does not know re-reads the metadata."""
ITERATION_POLL_MS = 500


class AsyncConsumer(ConsumerGroupMixin):
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
        self._init_group()
        self._manual = False
        self._metadata_checked = -math.inf
        self._wakeup = trio.Event()
        self._fetcher = Fetcher(self, lambda: self._state, self._notify)
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
        found = await list_offsets(self.cluster, dict.fromkeys(tps, timestamp))
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
        found = await list_offsets(self.cluster, dict.fromkeys(tps, ts))
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
        return await offsets_for_times(self.cluster, timestamps, self.max_partition_fetch_bytes)

    async def beginning_offsets(
        self, partitions: Iterable[tuple[str, int]]
    ) -> dict[TopicPartition, int]:
        """The log start offset of each partition (assigned or not), from its leader.
        Raises a ``RaftlogError`` when a leader cannot answer."""
        tps = [_as_tp(p) for p in partitions]
        found = await list_offsets(self.cluster, dict.fromkeys(tps, EARLIEST_TIMESTAMP))
        return {tp: int(r.offset) for tp, r in found.items()}

    async def end_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[TopicPartition, int]:
        """The high watermark of each partition (assigned or not: the offset the next
        committed record gets), from its leader. Raises a ``RaftlogError`` when a leader
        cannot answer."""
        tps = [_as_tp(p) for p in partitions]
        found = await list_offsets(self.cluster, dict.fromkeys(tps, LATEST_TIMESTAMP))
        return {tp: int(r.offset) for tp, r in found.items()}

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
            out = self._fetcher.drain(max_records)
            if not out:
                self._raise_pending()
            now = trio.current_time()
            if out or now >= deadline:
                if background:  # prefetch while the caller works through these
                    await self._fetcher.start_fetches(
                        nursery, self.fetch_max_wait_ms, look_up=False
                    )
                return out
            wait_ms = self.fetch_max_wait_ms
            if not background:
                wait_ms = min(wait_ms, math.ceil((deadline - now) * 1000))
            await self._fetcher.start_fetches(nursery, wait_ms, look_up=True)
            until = deadline
            if not self._fetcher.in_flight:  # nothing can answer: wake for the next retry
                until = min(deadline, self._fetcher.next_retry())
            with trio.move_on_at(until):
                await wakeup.wait()

    def _raise_pending(self) -> None:
        """Raise the error a fetch met (once). The records fetched before it are returned
        first: a poll that has records returns them and the next one raises."""
        if self._fetcher.error is not None:
            error, self._fetcher.error = self._fetcher.error, None
            raise error

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = trio.Event()

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
        self._fetcher.close()
        self._notify()
