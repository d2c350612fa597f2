"""The consumer: read assigned partitions from a position, with long-poll fetches.

``AsyncConsumer`` is the trio implementation; ``Consumer`` the blocking API over it (its own
loop thread). Each partition has a *position*, the offset of the next record ``poll``
returns. A partition without one gets it from ``auto_offset_reset`` ("earliest": the log
start; "latest": the high watermark; "none": ``OffsetOutOfRangeError``) through LIST_OFFSETS
to its leader.

``poll`` sends one FETCH per leader for the partitions that have nothing buffered, all at
once, each long-polling up to the time left (the broker answers as soon as there is data);
the first answer with records cancels the others. Answers are checked and decoded here:

- every batch's CRC is checked by ``decode_batch`` (``CorruptRecordError`` otherwise);
- a partial batch at the end of a partition's records is cut off (fetched again next time);
- control batches (attribute bit 5) hold no user records: skipped, the position moves past
  them;
- a batch may start before the fetch offset (the broker sends whole batches): its records
  below the position are skipped;
- NOT_LEADER / LEADER_NOT_AVAILABLE / UNKNOWN_TOPIC_OR_PARTITION refresh the metadata and
  retry; OFFSET_OUT_OF_RANGE resets the position per ``auto_offset_reset``.

Records beyond ``max_records`` stay buffered for the next ``poll``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import trio

from raftlog.client._loop import ClosesOnExit, LoopThread, first_error
from raftlog.client.cluster import ClientConfig, Cluster
from raftlog.client.errors import ProtocolError, broker_error
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
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopic,
)

RESETS = ("earliest", "latest", "none")
_REFRESH_CODES = frozenset(
    {
        ErrorCode.NOT_LEADER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.BROKER_NOT_AVAILABLE,
    }
)
TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ConsumerRecord:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


@dataclass(slots=True)
class _PartitionState:
    position: int | None = None
    """The offset of the next record poll returns."""
    fetch_offset: int | None = None
    """The offset the next fetch starts at (past what is buffered)."""
    buffered: deque[ConsumerRecord] = field(default_factory=deque)


class AsyncConsumer:
    """A consumer in a trio program; see the module docstring."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        auto_offset_reset: str = "latest",
        fetch_max_bytes: int = 50 * 1024 * 1024,
        partition_max_bytes: int = 1024 * 1024,
    ) -> None:
        if auto_offset_reset not in RESETS:
            raise ValueError(
                f"auto_offset_reset must be one of {RESETS}, not {auto_offset_reset!r}"
            )
        self.cluster = cluster
        self.auto_offset_reset = auto_offset_reset
        self.fetch_max_bytes = fetch_max_bytes
        self.partition_max_bytes = partition_max_bytes
        self._state: dict[TopicPartition, _PartitionState] = {}

    # ------------------------------------------------------------------ assignment, positions

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read exactly these partitions (positions of partitions kept are kept)."""
        wanted = [(str(t), int(p)) for t, p in partitions]
        self._state = {tp: self._state.get(tp) or _PartitionState() for tp in wanted}

    def assignment(self) -> list[TopicPartition]:
        return list(self._state)

    def _partition(self, topic: str, partition: int) -> _PartitionState:
        state = self._state.get((topic, partition))
        if state is None:
            raise ValueError(f"topic {topic!r} partition {partition} is not assigned")
        return state

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """The next poll returns records of this partition from ``offset``."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        state = self._partition(topic, partition)
        state.position = state.fetch_offset = offset
        state.buffered.clear()

    async def seek_to(self, topic: str, partition: int, where: str) -> None:
        """``where`` "earliest" or "latest": seek to the log start or the high watermark."""
        self.seek(topic, partition, await self._list_offset(topic, partition, where))

    async def position(self, topic: str, partition: int) -> int:
        """The offset of the next record poll returns for this partition."""
        state = self._partition(topic, partition)
        if state.position is None:
            await self._reset(topic, partition, state, why="no position yet")
        assert state.position is not None
        return state.position

    async def _reset(self, topic: str, partition: int, state: _PartitionState, *, why: str) -> None:
        if self.auto_offset_reset == "none":
            raise OffsetOutOfRangeError(
                f"topic {topic!r} partition {partition}: {why} and auto_offset_reset is "
                "'none'; seek() to an offset"
            )
        offset = await self._list_offset(topic, partition, self.auto_offset_reset)
        state.position = state.fetch_offset = offset
        state.buffered.clear()

    async def _list_offset(self, topic: str, partition: int, where: str) -> int:
        ts = EARLIEST_TIMESTAMP if where == "earliest" else LATEST_TIMESTAMP
        request = ListOffsetsRequest(
            topics=(ListOffsetsTopic(topic, (ListOffsetsPartition(PartitionId(partition), ts),)),)
        )
        what = f"topic {topic!r} partition {partition}"
        deadline = trio.current_time() + self.cluster.config.request_timeout_ms / 1000
        while True:
            leader = await self.cluster.leader_of(topic, partition)
            conn = await self.cluster.connection(leader)
            answer = await conn.request(request, timeout_ms=self.cluster.config.request_timeout_ms)
            if not isinstance(answer, ListOffsetsResponse):
                raise ProtocolError(f"LIST_OFFSETS answered with {type(answer).__name__}")
            result = next(
                (
                    p
                    for t in answer.topics
                    if t.name == topic
                    for p in t.partitions
                    if p.partition == partition
                ),
                None,
            )
            if result is None:
                raise ProtocolError(f"the LIST_OFFSETS answer says nothing of {what}")
            if result.error == ErrorCode.NONE:
                return result.offset
            error = broker_error(result.error, result.message, what)
            if result.error not in _REFRESH_CODES or trio.current_time() >= deadline:
                raise error
            self.cluster.on_not_leader(topic, partition, result.leader_hint)
            await trio.sleep(self.cluster.config.retry_backoff_ms / 1000)

    # ------------------------------------------------------------------ poll

    async def poll(self, timeout_ms: int = 1000, max_records: int = 500) -> list[ConsumerRecord]:
        """Records from the assigned partitions, at most ``max_records``; waits up to
        ``timeout_ms`` for some (an empty list when none came)."""
        deadline = trio.current_time() + timeout_ms / 1000
        while True:
            out = self._drain(max_records)
            if out or not self._state:
                if not out:
                    await trio.sleep_until(deadline)
                return out
            for (topic, partition), state in self._state.items():
                if state.position is None:
                    await self._reset(topic, partition, state, why="no position yet")
            remaining_ms = int(max(0.0, deadline - trio.current_time()) * 1000)
            progressed = await self._fetch(remaining_ms)
            if self._has_buffered():
                continue
            if trio.current_time() >= deadline:
                return []
            if not progressed:  # errors everywhere: do not spin
                await trio.sleep_until(
                    min(deadline, trio.current_time() + self.cluster.config.retry_backoff_ms / 1000)
                )

    def _has_buffered(self) -> bool:
        return any(s.buffered for s in self._state.values())

    def _drain(self, max_records: int) -> list[ConsumerRecord]:
        out: list[ConsumerRecord] = []
        for state in self._state.values():
            while state.buffered and len(out) < max_records:
                record = state.buffered.popleft()
                state.position = record.offset + 1
                out.append(record)
            if not state.buffered:
                state.position = state.fetch_offset
        return out

    async def _fetch(self, max_wait_ms: int) -> bool:
        """One round of fetches to every leader; True when some answer was usable."""
        by_leader: dict[int, list[TopicPartition]] = {}
        for tp, state in self._state.items():
            if state.buffered or state.fetch_offset is None:
                continue
            leader = self.cluster.leader(*tp)
            if leader is None:
                try:
                    leader = await self.cluster.leader_of(*tp)
                except RaftlogError as exc:
                    if not exc.retriable and exc.code != ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                        raise
                    continue
            by_leader.setdefault(leader, []).append(tp)
        if not by_leader:
            return False
        progressed = False
        try:
            async with trio.open_nursery() as nursery:

                async def fetch_from(leader: int, tps: list[TopicPartition]) -> None:
                    nonlocal progressed
                    if await self._fetch_from(leader, tps, max_wait_ms):
                        progressed = True
                    if self._has_buffered():
                        nursery.cancel_scope.cancel()

                for leader, tps in by_leader.items():
                    nursery.start_soon(fetch_from, leader, tps)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        return progressed

    async def _fetch_from(self, leader: int, tps: list[TopicPartition], max_wait_ms: int) -> bool:
        topics: dict[str, list[FetchPartition]] = {}
        for topic, partition in tps:
            offset = self._state[(topic, partition)].fetch_offset
            assert offset is not None
            topics.setdefault(topic, []).append(
                FetchPartition(PartitionId(partition), Offset(offset), self.partition_max_bytes)
            )
        request = FetchRequest(
            max_wait_ms=max_wait_ms,
            min_bytes=1,
            max_bytes=self.fetch_max_bytes,
            topics=tuple(FetchTopic(t, tuple(ps)) for t, ps in topics.items()),
        )
        try:
            conn = await self.cluster.connection(leader)
            answer = await conn.request(
                request, timeout_ms=max_wait_ms + self.cluster.config.request_timeout_ms
            )
        except RaftlogError as exc:
            if not exc.retriable:
                raise
            self.cluster.drop_connection(leader)
            for topic, _ in tps:
                self.cluster.mark_stale(topic)
            return False
        if not isinstance(answer, FetchResponse):
            raise ProtocolError(f"FETCH answered with {type(answer).__name__}")
        progressed = True
        for t in answer.topics:
            for p in t.partitions:
                state = self._state.get((t.name, p.partition))
                if state is None or state.fetch_offset is None:
                    continue
                if not await self._on_partition(t.name, p, state):
                    progressed = False
        return progressed

    async def _on_partition(
        self, topic: str, p: FetchPartitionResult, state: _PartitionState
    ) -> bool:
        what = f"topic {topic!r} partition {p.partition}"
        if p.error == ErrorCode.OFFSET_OUT_OF_RANGE:
            why = (
                f"offset {state.fetch_offset} is out of range (log start {p.log_start_offset}, "
                f"high watermark {p.high_watermark})"
            )
            await self._reset(topic, p.partition, state, why=why)
            return True
        if p.error in _REFRESH_CODES:
            self.cluster.on_not_leader(topic, p.partition, p.leader_hint)
            return False
        if p.error != ErrorCode.NONE:
            raise broker_error(p.error, p.message, what)
        assert state.fetch_offset is not None
        self._take_records(topic, p.partition, bytes(p.records), state)
        return True

    @staticmethod
    def _take_records(topic: str, partition: int, data: bytes, state: _PartitionState) -> None:
        assert state.fetch_offset is not None
        pos = 0
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
                        state.buffered.append(
                            ConsumerRecord(
                                topic,
                                partition,
                                r.offset,
                                r.timestamp_ms,
                                r.key,
                                r.value,
                                r.headers,
                            )
                        )
            state.fetch_offset = next_offset


class Consumer(ClosesOnExit):
    """A blocking consumer: ``assign``, then ``poll`` or iterate.

    ``auto_offset_reset`` says where a partition without a position starts, and where one
    whose position fell out of the log goes: "latest" (Kafka's default), "earliest", or
    "none" (raise ``OffsetOutOfRangeError``). Iterating yields records until ``close``, or
    until ``consumer_timeout_ms`` passes without any."""

    def __init__(
        self,
        bootstrap: str | Sequence[str],
        *,
        auto_offset_reset: str = "latest",
        fetch_max_bytes: int = 50 * 1024 * 1024,
        partition_max_bytes: int = 1024 * 1024,
        request_timeout_ms: int = 30_000,
        connect_timeout_ms: int = 10_000,
        consumer_timeout_ms: int | None = None,
        client_id: str = "raftlog-consumer",
    ) -> None:
        config = ClientConfig(
            client_id=client_id,
            connect_timeout_ms=connect_timeout_ms,
            request_timeout_ms=request_timeout_ms,
        )
        self._consumer_timeout_ms = consumer_timeout_ms
        self._closed = False
        self._loop = LoopThread("raftlog-consumer")
        try:
            self._core: AsyncConsumer = self._loop.run(
                self._start,
                bootstrap,
                config,
                auto_offset_reset,
                fetch_max_bytes,
                partition_max_bytes,
            )
        except BaseException:
            self._loop.close()
            raise

    async def _start(
        self,
        bootstrap: str | Sequence[str],
        config: ClientConfig,
        reset: str,
        fetch_max_bytes: int,
        partition_max_bytes: int,
    ) -> AsyncConsumer:
        cluster = Cluster(bootstrap, self._loop.nursery, config)
        return AsyncConsumer(
            cluster,
            auto_offset_reset=reset,
            fetch_max_bytes=fetch_max_bytes,
            partition_max_bytes=partition_max_bytes,
        )

    def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read exactly these (topic, partition) pairs."""
        self._core.assign(partitions)

    def assignment(self) -> list[TopicPartition]:
        return self._core.assignment()

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._core.seek(topic, partition, offset)

    def seek_to_beginning(self, topic: str, partition: int) -> None:
        self._loop.run(self._core.seek_to, topic, partition, "earliest")

    def seek_to_end(self, topic: str, partition: int) -> None:
        self._loop.run(self._core.seek_to, topic, partition, "latest")

    def position(self, topic: str, partition: int) -> int:
        return self._loop.run(self._core.position, topic, partition)

    def poll(self, timeout_ms: int = 1000, max_records: int = 500) -> list[ConsumerRecord]:
        """At most ``max_records`` records, waiting up to ``timeout_ms`` for some."""
        return self._loop.run(self._core.poll, timeout_ms, max_records)

    def __iter__(self) -> Iterator[ConsumerRecord]:
        idle_since = time.monotonic()
        while not self._closed:
            records = self.poll(timeout_ms=500)
            if records:
                idle_since = time.monotonic()
                yield from records
            elif self._consumer_timeout_ms is not None and (
                time.monotonic() - idle_since >= self._consumer_timeout_ms / 1000
            ):
                return

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run_sync_soon(self._core.cluster.close)
        finally:
            self._loop.close()
