"""What the consumer's modules share: the public record and metric types, the consumer's
errors, the (topic, partition) argument helpers, and the per-partition state.

``_PartitionState`` is the one place a partition's position lives: ``poll`` moves it past
the records it returns, a fetch answer fills the buffer behind it, and ``seek``, ``pause``
and a reassignment bump its epoch so that an answer to a fetch sent before them is dropped.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypedDict

from raftlog.client._loop import first_error
from raftlog.client.errors import ClientError
from raftlog.client.group import TopicPartition
from raftlog.errors import ErrorCode
from raftlog.wire.messages import FETCH_BYTES_MAX

_REFRESH_CODES = frozenset(
    {
        ErrorCode.NOT_LEADER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.BROKER_NOT_AVAILABLE,
    }
)
"""Partition errors after which the metadata is refreshed and the request retried."""


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


@dataclass(slots=True)
class _ConsumerRecordBuilder:
    """Same slots as ConsumerRecord, not frozen: the fetcher builds this and switches its
    ``__class__`` to ConsumerRecord (the trick and its figures: ``raftlog.storage.records.
    _DecodedRecordBuilder``)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


def record_maker(
    topic: str, partition: int
) -> Callable[[int, int, bytes | None, bytes | None, Any], ConsumerRecord]:
    """``decode_batch``'s ``make`` for one partition: builds ConsumerRecords directly."""

    def make(
        offset: int,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        headers: Any,
        _builder: type = _ConsumerRecordBuilder,
        _final: type = ConsumerRecord,
    ) -> ConsumerRecord:
        record = _builder(topic, partition, offset, timestamp, key, value, headers)
        record.__class__ = _final
        return record  # type: ignore[no-any-return]

    return make


class IllegalStateError(ClientError):
    """A call that does not fit the consumer's state, e.g. ``subscribe`` after ``assign``
    (Kafka's IllegalStateException)."""

    code = ErrorCode.INVALID_REQUEST


class ConsumerGroupsUnavailableError(ClientError):
    """``subscribe`` with a ``group_id`` against brokers that do not serve the group
    protocol (no group coordinator: an older broker)."""

    code = ErrorCode.INVALID_REQUEST


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
    """The record bytes of the batches that are (at least partly) still buffered: counted
    per batch, not per record, which costs nothing per record (``buffered_batches``)."""
    buffered_batches: deque[tuple[int, int]] = field(default_factory=deque)
    """(next offset after the batch, its record bytes) of each batch in ``buffered``."""
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
        self.buffered_batches.clear()
        self.fetch_offset = self.position
        self.epoch += 1

    def lag(self) -> int | None:
        if self.high_watermark is None or self.position is None:
            return None
        return self.high_watermark - self.position


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error to raise for a nursery's group; the group itself when it holds only
    cancellations (trio must see those)."""
    error = first_error(group)
    if error is group:
        raise group
    return error
