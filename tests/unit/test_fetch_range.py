"""FETCH's out-of-range rule on a leader (found by scenario S02): a new leader's high
watermark may lag the offset a consumer already read up to (it learns its commit point
only when it commits an entry of its own term). Such a fetch must get no records yet, not
OFFSET_OUT_OF_RANGE (which makes the consumer reset its position, rewinding to the start)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from raftlog.broker.handlers import Handlers
from raftlog.wire.errors import ErrorCode
from raftlog.wire.messages import FetchPartition


class _Log:
    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.reads: list[tuple[int, int]] = []

    def log_start_offset(self) -> int:
        return self.start

    def log_end_offset(self) -> int:
        return self.end

    def read(self, offset: int, max_bytes: int, upper: int) -> bytes:
        self.reads.append((offset, upper))
        return b"batch-bytes"


def _handlers(hw: int, start: int, end: int) -> tuple[Handlers, _Log]:
    log = _Log(start, end)
    replica = SimpleNamespace(driver=SimpleNamespace(commit_offset=hw), log=log)
    handlers = Handlers.__new__(Handlers)

    def lead(topic: str, partition: int) -> tuple[Any, ErrorCode, str]:
        return replica, ErrorCode.NONE, ""

    handlers._lead = lead  # type: ignore[method-assign]
    return handlers, log


def _fetch(handlers: Handlers, offset: int) -> Any:
    return handlers._fetch_partition("t", FetchPartition(0, offset, 1 << 20), 1 << 20)


def test_offset_between_the_high_watermark_and_the_log_end_gets_no_records_not_a_reset() -> None:
    handlers, log = _handlers(hw=5, start=0, end=12)
    for offset in (5, 8, 12):
        result = _fetch(handlers, offset)
        assert result.error == ErrorCode.NONE, offset
        assert result.records == b""
        assert result.high_watermark == 5
    assert log.reads == []  # nothing above the high watermark is ever read


def test_offsets_below_the_start_or_past_the_log_end_are_out_of_range() -> None:
    handlers, _ = _handlers(hw=5, start=2, end=12)
    assert _fetch(handlers, 1).error == ErrorCode.OFFSET_OUT_OF_RANGE
    assert _fetch(handlers, 13).error == ErrorCode.OFFSET_OUT_OF_RANGE


def test_committed_offsets_are_read_up_to_the_high_watermark() -> None:
    handlers, log = _handlers(hw=5, start=0, end=12)
    result = _fetch(handlers, 3)
    assert result.error == ErrorCode.NONE and result.records == b"batch-bytes"
    assert log.reads == [(3, 5)]
