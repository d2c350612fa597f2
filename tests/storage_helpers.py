"""Batches for storage tests: valid RecordBatch v2 headers and CRCs around opaque bytes.

The storage layer never decodes records, so the record bytes here are filler of the right
size (7 bytes a record at least, as the header check demands).
"""

from __future__ import annotations

from raftlog.storage.record_batch import encode_header


def make_batch(
    records: int = 1,
    *,
    payload_bytes: int = 0,
    timestamp_ms: int = 1_000,
    base_offset: int = 0,
    epoch: int = 0,
    fill: int = 0x61,
) -> bytes:
    body = bytes([fill]) * (records * 7 + payload_bytes)
    return bytes(
        encode_header(
            base_offset=base_offset,
            epoch=epoch,
            attributes=0,
            last_offset_delta=records - 1,
            base_timestamp=timestamp_ms,
            max_timestamp=timestamp_ms,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            record_count=records,
            records=body,
        )
    )
