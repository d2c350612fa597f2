"""Offsets by time and the log's ends, asked of each partition's leader.

A timestamp query asks the leader for an offset (LIST_OFFSETS), then reads the records
from there (FETCH) to find the first one whose timestamp is at or after the asked time,
and learn that timestamp (``_scan_for_time``; control batches hold no user records). The
log's ends are LIST_OFFSETS with the "earliest" and "latest" timestamps: the consumer's
``seek_to_beginning``/``seek_to_end``, ``beginning_offsets``/``end_offsets`` and its
positions per ``auto_offset_reset``. A leader change or a lost connection is retried until
``request_timeout_ms``; any other broker error is raised.
"""

from __future__ import annotations

from collections.abc import Mapping

import trio

from raftlog.client.cluster import Cluster
from raftlog.client.consumer_types import (
    _REFRESH_CODES,
    OffsetAndTimestamp,
    _as_tp,
    _by_topic,
    _unwrap,
    _what,
)
from raftlog.client.errors import ProtocolError, broker_error
from raftlog.client.fetcher import send_to_leader
from raftlog.client.group import TopicPartition
from raftlog.errors import ErrorCode, RaftlogError
from raftlog.storage.record_batch import peek_size
from raftlog.storage.records import decode_batch
from raftlog.types import Offset, PartitionId
from raftlog.wire import (
    FetchPartition,
    FetchRequest,
    FetchResponse,
    FetchTopic,
    ListOffsetsPartition,
    ListOffsetsPartitionResult,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopic,
)


async def offsets_for_times(
    cluster: Cluster, timestamps: Mapping[tuple[str, int], int], max_partition_fetch_bytes: int
) -> dict[TopicPartition, OffsetAndTimestamp | None]:
    """Per partition, the first record at or after the given time (ms since the epoch), or
    None; see ``AsyncConsumer.offsets_for_times``. LIST_OFFSETS finds the offset, a FETCH
    of at most ``max_partition_fetch_bytes`` the record's timestamp."""
    queries: dict[TopicPartition, int] = {}
    for key, ts in timestamps.items():
        if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
            raise ValueError(f"timestamp of {key!r} must be ms since the epoch, not {ts!r}")
        queries[_as_tp(key)] = ts
    out: dict[TopicPartition, OffsetAndTimestamp | None] = dict.fromkeys(queries)
    if not queries:
        return out
    listed = await list_offsets(cluster, queries)

    async def find(tp: TopicPartition, offset: int) -> None:
        out[tp] = await first_at_or_after(
            cluster, tp, offset, queries[tp], max_partition_fetch_bytes
        )

    try:
        async with trio.open_nursery() as nursery:
            for tp, result in listed.items():
                if result.offset >= 0:
                    nursery.start_soon(find, tp, int(result.offset))
    except BaseExceptionGroup as group:
        raise _unwrap(group) from None
    return out


async def list_offsets(
    cluster: Cluster, queries: Mapping[TopicPartition, int]
) -> dict[TopicPartition, ListOffsetsPartitionResult]:
    """LIST_OFFSETS for ``{partition: timestamp}``, one request per leader, retrying
    leader changes until ``request_timeout_ms``."""
    config = cluster.config
    deadline = trio.current_time() + config.request_timeout_ms / 1000
    out: dict[TopicPartition, ListOffsetsPartitionResult] = {}
    pending = dict(queries)
    while True:
        retry: dict[TopicPartition, RaftlogError] = {}
        by_leader: dict[int, list[TopicPartition]] = {}
        for tp in pending:
            try:
                leader = await cluster.leader_of(tp.topic, tp.partition)
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
                        _list_offsets_from, cluster, leader, tps, pending, out, retry
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
    cluster: Cluster,
    leader: int,
    tps: list[TopicPartition],
    pending: Mapping[TopicPartition, int],
    out: dict[TopicPartition, ListOffsetsPartitionResult],
    retry: dict[TopicPartition, RaftlogError],
) -> None:
    """One LIST_OFFSETS to ``leader``: found offsets go to ``out``, partitions to ask
    again (a leader change, a lost connection) to ``retry``."""
    config = cluster.config
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
    answer = await send_to_leader(
        cluster, leader, request, config.request_timeout_ms, {tp.topic for tp in tps}
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
            cluster.on_not_leader(tp.topic, tp.partition, result.leader_hint)
            retry[tp] = broker_error(result.error, result.message, _what(tp))
        else:
            raise broker_error(result.error, result.message, _what(tp))


async def first_at_or_after(
    cluster: Cluster,
    tp: TopicPartition,
    offset: int,
    timestamp: int,
    max_partition_fetch_bytes: int,
) -> OffsetAndTimestamp | None:
    """The first user record at or after ``offset`` whose timestamp is at least
    ``timestamp``, read with FETCH (None when the log has none below its high
    watermark: the broker answers "not found" with the high watermark)."""
    config = cluster.config
    deadline = trio.current_time() + config.request_timeout_ms / 1000
    while True:
        request = FetchRequest(
            max_wait_ms=0,
            min_bytes=0,
            max_bytes=max_partition_fetch_bytes,
            topics=(
                FetchTopic(
                    tp.topic,
                    (
                        FetchPartition(
                            PartitionId(tp.partition),
                            Offset(offset),
                            max_partition_fetch_bytes,
                        ),
                    ),
                ),
            ),
        )
        failure: RaftlogError
        try:
            leader = await cluster.leader_of(tp.topic, tp.partition)
        except RaftlogError as exc:
            if not exc.retriable:
                raise
            failure = exc
        else:
            answer = await send_to_leader(
                cluster, leader, request, config.request_timeout_ms, [tp.topic]
            )
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
                cluster.on_not_leader(tp.topic, tp.partition, p.leader_hint)
                failure = broker_error(p.error, p.message, _what(tp))
        if trio.current_time() >= deadline:
            raise failure
        await trio.sleep(config.retry_backoff_ms / 1000)


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
