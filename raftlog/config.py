"""Frozen configuration objects with Kafka's defaults, and their validation.

Units are the last word of every name (``segment_bytes``, ``retention_ms``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raftlog.errors import InvalidConfigError, InvalidTopicError

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


# ------------------------------------------------------------------ topic names and configs

TOPIC_NAME_CHARS_MAX = 249
"""Kafka's limit on a topic name (names are ASCII, so characters are bytes)."""
_TOPIC_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")
_TOPIC_NAME_CHAR_RE = re.compile(r"[A-Za-z0-9._-]")


def validate_topic_name(name: object) -> str:
    """Return ``name`` when it is a valid topic name, else raise ``InvalidTopicError``
    saying what is wrong.

    The rule is Kafka's: ``[A-Za-z0-9._-]{1,249}`` and neither ``.`` nor ``..``, so that a
    name is always exactly one path component inside the data folder. It is the one rule
    for every layer (storage paths, the metadata model, clients).
    """
    if not isinstance(name, str) or not name:
        raise InvalidTopicError("topic name must be a non-empty string")
    if len(name) > TOPIC_NAME_CHARS_MAX:
        raise InvalidTopicError(
            f"topic name is {len(name)} characters; the limit is {TOPIC_NAME_CHARS_MAX}"
        )
    if name in (".", ".."):
        raise InvalidTopicError(f"topic name cannot be {name!r}")
    if not _TOPIC_NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not _TOPIC_NAME_CHAR_RE.fullmatch(c)})
        raise InvalidTopicError(
            f"topic name {name!r} has characters outside A-Z a-z 0-9 . _ -: {''.join(bad)!r}"
        )
    return name


CLEANUP_POLICIES = ("compact", "delete")
MIN_INSYNC_REPLICAS_MAX = 16
TOPIC_CONFIG_VALUE_CHARS_MAX = 32
# topic config key -> LogConfig field it overrides (None: not a log setting)
_TOPIC_CONFIG_FIELDS: dict[str, str | None] = {
    "cleanup.policy": None,
    "fsync": "fsync",
    "max.message.bytes": "max_message_bytes",
    "min.insync.replicas": None,
    "retention.bytes": "retention_bytes",
    "retention.ms": "retention_ms",
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
}
TOPIC_CONFIG_KEYS: tuple[str, ...] = tuple(sorted(_TOPIC_CONFIG_FIELDS))
"""Every topic config key a topic may set, sorted."""
_INT_RE = re.compile(r"-?[0-9]{1,19}")


def _config_int(key: str, value: str) -> int:
    if not _INT_RE.fullmatch(value) or not -(2**63) <= int(value) < 2**63:
        raise InvalidConfigError(f"{key} must be a whole number, got {value!r}")
    return int(value)


def normalize_topic_config(key: object, value: object) -> str:
    """The canonical string of one topic config value (``"007"`` -> ``"7"``, ``"TRUE"`` ->
    ``"true"``), or ``InvalidConfigError`` naming the key and what it accepts.

    Ranges shared with the log are checked by ``LogConfig`` itself, so that the model and the
    log can never disagree on what a valid ``segment.bytes`` is.
    """
    if not isinstance(key, str) or key not in _TOPIC_CONFIG_FIELDS:
        raise InvalidConfigError(
            f"unknown topic config {key!r}; known keys: {', '.join(TOPIC_CONFIG_KEYS)}"
        )
    if not isinstance(value, str) or len(value) > TOPIC_CONFIG_VALUE_CHARS_MAX:
        raise InvalidConfigError(
            f"{key} must be a string of at most {TOPIC_CONFIG_VALUE_CHARS_MAX} characters"
        )
    if key == "cleanup.policy":
        if value not in CLEANUP_POLICIES:
            raise InvalidConfigError(
                f"cleanup.policy must be one of {', '.join(CLEANUP_POLICIES)}, got {value!r}"
            )
        return value
    if key == "fsync":
        if value.lower() not in ("true", "false"):
            raise InvalidConfigError(f"fsync must be true or false, got {value!r}")
        return value.lower()
    number = _config_int(key, value)
    if key == "min.insync.replicas":
        if not 1 <= number <= MIN_INSYNC_REPLICAS_MAX:
            raise InvalidConfigError(
                f"min.insync.replicas must be in 1..{MIN_INSYNC_REPLICAS_MAX}, got {number}"
            )
    else:
        topic_log_config({key: str(number)})  # LogConfig checks the range
    return str(number)


def validate_topic_configs(configs: Mapping[Any, object]) -> dict[str, str]:
    """Check a whole set of topic config overrides and return it normalized (sorted keys,
    canonical values); raise ``InvalidConfigError`` on the first bad key or value."""
    out: dict[str, str] = {}
    for key in sorted(configs, key=repr):
        out[str(key)] = normalize_topic_config(key, configs[key])  # str(key): key is a str
    topic_log_config(out)  # the combination must make a valid LogConfig too
    return out


def topic_log_config(configs: Mapping[str, str]) -> LogConfig:
    """The ``LogConfig`` of a topic: Kafka's defaults overridden by the topic's configs.

    Raises ``InvalidConfigError`` for an unparsable value or one out of the log's range.
    Keys that are not log settings (``cleanup.policy``, ``min.insync.replicas``) are ignored.
    """
    fields: dict[str, int | bool] = {}
    for key in sorted(configs):
        field = _TOPIC_CONFIG_FIELDS.get(key)
        if field == "fsync":
            fields[field] = configs[key].lower() == "true"
        elif field is not None:
            fields[field] = _config_int(key, configs[key])
    return LogConfig(**fields)  # type: ignore[arg-type]
