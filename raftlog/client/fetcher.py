"""The consumer's fetching: which partitions to fetch from which leader, the fetch tasks,
and taking records from the answers into each partition's buffer.

One FETCH per leader at a time, for that leader's partitions that are not paused and have
nothing buffered; each long-polls up to ``fetch_max_wait_ms`` (the broker answers as soon
as there is data). What prefetch may hold is bounded: a FETCH asks for at most
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

An error a fetch task meets is kept in ``Fetcher.error`` for the next ``poll`` to raise.
Records beyond ``max_records`` stay buffered for the next ``poll`` (``Fetcher.drain``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import trio

from raftlog.client.cluster import Cluster
from raftlog.client.consumer_types import (
    _REFRESH_CODES,
    ConsumerRecord,
    _PartitionState,
    _what,
    record_maker,
)
from raftlog.client.errors import ProtocolError, broker_error
from raftlog.client.group import TopicPartition
from raftlog.errors import ErrorCode, RaftlogError
from raftlog.storage.record_batch import peek_size, read_header
from raftlog.storage.records import decode_batch
from raftlog.types import Offset, PartitionId
from raftlog.wire import (
    FetchPartition,
    FetchPartitionResult,
    FetchRequest,
    FetchResponse,
    FetchTopic,
    Request,
    Response,
)

log = logging.getLogger("raftlog.client")


@dataclass(slots=True)
class _Planned:
    tp: TopicPartition
    state: _PartitionState
    epoch: int
    offset: int


async def send_to_leader(
    cluster: Cluster, leader: int, request: Request, timeout_ms: int, topics: Iterable[str]
) -> Response | RaftlogError:
    """``request`` to ``leader``; a retriable failure to get an answer is returned
    (the connection dropped, the topics marked for a metadata refresh)."""
    try:
        conn = await cluster.connection(leader)
        return await conn.request(request, timeout_ms=timeout_ms)
    except RaftlogError as exc:
        if not exc.retriable:
            raise
        cluster.drop_connection(leader)
        for topic in topics:
            cluster.mark_stale(topic)
        return exc


class FetchingConsumer(Protocol):
    """What a ``Fetcher`` reads of its consumer, at each use (the settings are the
    consumer's attributes)."""

    cluster: Cluster
    fetch_max_bytes: int
    max_partition_fetch_bytes: int
    buffer_bytes: int


class Fetcher:
    """The fetches of one consumer. ``partitions`` gives the consumer's partition states
    as they are now (the mapping is replaced when the assignment changes); ``notify`` wakes
    a waiting ``poll`` whenever a fetch ends."""

    def __init__(
        self,
        consumer: FetchingConsumer,
        partitions: Callable[[], Mapping[TopicPartition, _PartitionState]],
        notify: Callable[[], None],
    ) -> None:
        self._consumer = consumer
        self._partitions = partitions
        self._notify = notify
        self.in_flight: dict[int, trio.CancelScope] = {}
        """The fetch in flight to each leader."""
        self.error: BaseException | None = None
        """What a fetch met, for the next ``poll`` to raise."""
        self.closed = False

    def close(self) -> None:
        """Cancel the fetches in flight; no fetch is sent any more."""
        self.closed = True
        for scope in list(self.in_flight.values()):
            scope.cancel()

    def next_retry(self) -> float:
        now = trio.current_time()
        return min(
            (s.retry_at for s in self._partitions().values() if s.retry_at > now and not s.paused),
            default=math.inf,
        )

    def drain(self, max_records: int) -> list[ConsumerRecord]:
        out: list[ConsumerRecord] = []
        for state in self._partitions().values():
            if len(out) >= max_records:
                break
            if state.paused:
                continue
            buffered = state.buffered
            take = min(len(buffered), max_records - len(out))
            if take == len(buffered):
                out.extend(buffered)
                buffered.clear()
            else:
                for _ in range(take):
                    out.append(buffered.popleft())
            if take:
                state.position = out[-1].offset + 1
            batches = state.buffered_batches
            position = state.position
            while batches and position is not None and batches[0][0] <= position:
                state.buffered_bytes -= batches.popleft()[1]
            if not buffered:
                state.buffered_bytes = 0
                batches.clear()
                state.position = state.fetch_offset
        return out

    async def start_fetches(
        self, nursery: trio.Nursery, max_wait_ms: int, *, look_up: bool
    ) -> None:
        """Send a FETCH to each leader that has none in flight, for its partitions that
        are due one; unless the buffer is over ``buffer_bytes``."""
        if self.closed:
            return
        buffered = sum(s.buffered_bytes for s in self._partitions().values())
        if buffered > self._consumer.buffer_bytes:
            return
        now = trio.current_time()
        by_leader: dict[int, list[TopicPartition]] = {}
        for tp, state in list(self._partitions().items()):
            if (
                state.paused
                or state.in_flight
                or state.buffered
                or state.fetch_offset is None
                or state.retry_at > now
            ):
                continue
            leader = self._consumer.cluster.leader(tp.topic, tp.partition)
            if leader is None:
                if not look_up:
                    continue
                try:
                    leader = await self._consumer.cluster.leader_of(tp.topic, tp.partition)
                except RaftlogError as exc:
                    if not exc.retriable and exc.code != ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                        raise
                    log.debug("event=no_leader %s error=%r", _what(tp), exc)
                    state.retry_at = trio.current_time() + self._backoff_s()
                    continue
            if leader not in self.in_flight:
                by_leader.setdefault(leader, []).append(tp)
        if not by_leader:
            return
        room = self._consumer.buffer_bytes - buffered
        max_bytes = max(1, min(self._consumer.fetch_max_bytes, room // len(by_leader)))
        for leader, tps in by_leader.items():
            planned: list[_Planned] = []
            for tp in tps:
                now_state = self._partitions().get(tp)
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
            if not planned or leader in self.in_flight:
                continue
            for plan in planned:
                plan.state.in_flight = True
            scope = trio.CancelScope()
            self.in_flight[leader] = scope
            nursery.start_soon(self._fetch_task, leader, planned, max_wait_ms, max_bytes, scope)

    def _backoff_s(self) -> float:
        return self._consumer.cluster.config.retry_backoff_ms / 1000

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
            if self.error is None:
                self.error = exc
        finally:
            if self.in_flight.get(leader) is scope:
                del self.in_flight[leader]
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
                    self._consumer.max_partition_fetch_bytes,
                )
            )
        request = FetchRequest(
            max_wait_ms=max_wait_ms,
            min_bytes=1,
            max_bytes=max_bytes,
            topics=tuple(FetchTopic(t, tuple(ps)) for t, ps in topics.items()),
        )
        timeout_ms = max_wait_ms + self._consumer.cluster.config.request_timeout_ms
        answer = await send_to_leader(self._consumer.cluster, leader, request, timeout_ms, topics)
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
        if self._partitions().get(tp) is not state:
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
            self._consumer.cluster.on_not_leader(tp.topic, tp.partition, p.leader_hint)
            state.retry_at = trio.current_time() + self._backoff_s()
            return
        if p.error != ErrorCode.NONE:
            raise broker_error(p.error, p.message, _what(tp))
        self._take_records(tp, bytes(p.records), state)

    @staticmethod
    def _take_records(tp: TopicPartition, data: bytes, state: _PartitionState) -> None:
        assert state.fetch_offset is not None
        make = record_maker(tp.topic, tp.partition)
        pos = 0
        try:
            while pos < len(data):
                size = peek_size(data, pos)
                if size is None or pos + size > len(data):
                    break  # a partial batch at the end: fetched whole next time
                header = read_header(data, pos)
                next_offset = header.base_offset + header.last_offset_delta + 1
                if next_offset <= state.fetch_offset:
                    pos += size
                    continue
                header, records = decode_batch(data, pos, max_bytes=size, make=make)
                pos += size
                if not header.is_control:
                    if header.base_offset < state.fetch_offset:
                        records = [r for r in records if r.offset >= state.fetch_offset]
                    if records:
                        state.buffered.extend(records)
                        # counted once per batch, as its size on the wire (a little more
                        # than its records' keys, values and headers)
                        state.buffered_batches.append((next_offset, size))
                        state.buffered_bytes += size
                state.fetch_offset = next_offset
        finally:
            if not state.buffered:
                state.position = state.fetch_offset
