"""Frozen configuration objects with Kafka's defaults, and their validation.

Units are the last word of every name (``segment_bytes``, ``retention_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass

from raftlog.errors import InvalidConfigError

DAY_MS = 24 * 60 * 60 * 1000

DEFAULT_NATIVE_PORT = 9092
"""The client/peer port of the native protocol; the metadata port is +1, admin HTTP +2."""


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Per-partition log settings (Kafka topic configs of the same names).

    - ``segment_bytes`` (``segment.bytes``, 1 GiB): roll a new segment past this size.
    - ``segment_ms`` (``segment.ms``, 7 days): roll when the active segment's first batch is
      this old.
    - ``retention_ms`` (``retention.ms``, 7 days; -1 = forever): delete closed segments whose
      newest record is older.
    - ``retention_bytes`` (``retention.bytes``, -1 = unlimited): delete oldest closed segments
      while the log is larger.
    - ``index_interval_bytes`` (``index.interval.bytes``, 4096): one sparse index entry per
      this many bytes of log.
    - ``max_message_bytes`` (``max.message.bytes``): the largest batch accepted.
    - ``fsync``: when False the log does not fsync before acknowledging (a topic that trades
      safety for speed; ``topic describe`` says so).
    """

    segment_bytes: int = 1024 * 1024 * 1024
    segment_ms: int = 7 * DAY_MS
    retention_ms: int = 7 * DAY_MS
    retention_bytes: int = -1
    index_interval_bytes: int = 4096
    max_message_bytes: int = 1024 * 1024 + 12
    fsync: bool = True

    def __post_init__(self) -> None:
        if self.segment_bytes < 14 + 61:
            raise InvalidConfigError(f"segment.bytes must be at least 75, got {self.segment_bytes}")
        if self.segment_bytes > 2**31 - 1:
            raise InvalidConfigError(
                f"segment.bytes must be below 2 GiB (positions are 32-bit), "
                f"got {self.segment_bytes}"
            )
        if self.segment_ms < 1:
            raise InvalidConfigError(f"segment.ms must be positive, got {self.segment_ms}")
        if self.retention_ms < -1:
            raise InvalidConfigError(f"retention.ms must be -1 or >= 0, got {self.retention_ms}")
        if self.retention_bytes < -1:
            raise InvalidConfigError(
                f"retention.bytes must be -1 or >= 0, got {self.retention_bytes}"
            )
        if self.index_interval_bytes < 1:
            raise InvalidConfigError(
                f"index.interval.bytes must be positive, got {self.index_interval_bytes}"
            )
        if not 0 < self.max_message_bytes <= 2**31 - 1:
            raise InvalidConfigError(
                f"max.message.bytes must be in 1..2^31-1, got {self.max_message_bytes}"
            )
