"""Batches for storage tests: real RecordBatch v2 bytes built by the client codec."""

from __future__ import annotations

from raftlog.storage.records import Record, build_batch


def make_batch(
    records: int = 1,
    *,
    payload_bytes: int = 0,
    timestamp_ms: int = 1_000,
    base_offset: int = 0,
    epoch: int = 0,
    fill: int = 0x61,
    timestamps: list[int] | None = None,
) -> bytes:
    """``records`` records whose values share ``payload_bytes`` (plus 5 bytes each), all
    at ``timestamp_ms`` unless ``timestamps`` gives one per record."""
    value = bytes([fill]) * (5 + payload_bytes // records)
    stamps = timestamps or [timestamp_ms] * records
    return build_batch(
        [Record(None, value, timestamp_ms=t) for t in stamps],
        base_offset=base_offset,
        epoch=epoch,
        now_ms=timestamp_ms,
    )
