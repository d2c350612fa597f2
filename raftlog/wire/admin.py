"""The admin APIs of the native protocol: topics and their configs.

- CREATE_TOPICS (5): name, partition count, replication factor and config overrides per
  topic; ``validate_only`` checks without creating. One ``TopicResult`` per topic.
- DELETE_TOPICS (6): names. One ``TopicResult`` per topic.
- DESCRIBE_CONFIGS (7): topic names, or None for every topic; the effective value of every
  config key, saying which are defaults.
- ALTER_CONFIGS (8): per topic, keys to set and keys to reset to the default (incremental,
  like Kafka's IncrementalAlterConfigs); ``validate_only`` checks without changing.
- CREATE_PARTITIONS (11): per topic, the new total partition count (larger than today's:
  partitions are never removed) and optionally the replica lists of the new partitions;
  ``validate_only`` checks without adding. One ``TopicResult`` per topic.

The wire checks shapes and sizes only (strings of at most 255 characters, at most 100 config
keys, partitions and replication factor within the metadata model's limits, at most 10,000
replica lists of at most 16 distinct brokers across one CREATE_PARTITIONS request); whether a
key exists and its value is valid is the metadata model's answer (``INVALID_CONFIG``), per
topic, as is whether a new partition count is larger than the current one
(``INVALID_PARTITIONS``).
"""

# wire() returns dataclasses.field(metadata=...), which ruff cannot see through
# ruff: noqa: RUF009

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from raftlog.errors import ErrorCode
from raftlog.types import NodeId
from raftlog.wire.messages import (
    MESSAGE,
    NODE,
    PARTITIONS_PER_TOPIC_MAX,
    TIMEOUT_MS,
    TOPICS_PER_REQUEST_MAX,
    ApiKey,
    ResultMixin,
    TopicResult,
    topics_of,
)
from raftlog.wire.schema import (
    Bool,
    Code,
    Int,
    ListOf,
    MapOf,
    Opt,
    Str,
    Struct,
    Topic,
    WireMessage,
    wire,
)

TOPIC_CONFIGS_MAX = 100
REPLICATION_FACTOR_MAX = 16

CONFIG_KEY = Str(min_chars=1)
CONFIG_VALUE = Str()
CONFIGS = MapOf(CONFIG_KEY, CONFIG_VALUE, TOPIC_CONFIGS_MAX)
TOPIC_NAMES = ListOf(Topic(), TOPICS_PER_REQUEST_MAX, min_items=1, unique=lambda t: t)


# ------------------------------------------------------------------ CREATE_TOPICS


@dataclass(frozen=True, slots=True)
class NewTopic:
    name: str = wire(Topic())
    partitions: int = wire(Int(1, PARTITIONS_PER_TOPIC_MAX))
    replication_factor: int = wire(Int(1, REPLICATION_FACTOR_MAX))
    configs: Mapping[str, str] = wire(CONFIGS, default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreateTopicsRequest(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.CREATE_TOPICS
    topics: tuple[NewTopic, ...] = topics_of(NewTopic)
    timeout_ms: int = wire(TIMEOUT_MS, default=30_000)
    validate_only: bool = wire(Bool(), default=False)


@dataclass(frozen=True, slots=True)
class CreateTopicsResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.CREATE_TOPICS
    topics: tuple[TopicResult, ...] = topics_of(TopicResult)


# ------------------------------------------------------------------ DELETE_TOPICS


@dataclass(frozen=True, slots=True)
class DeleteTopicsRequest(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.DELETE_TOPICS
    topics: tuple[str, ...] = wire(TOPIC_NAMES)
    timeout_ms: int = wire(TIMEOUT_MS, default=30_000)


@dataclass(frozen=True, slots=True)
class DeleteTopicsResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.DELETE_TOPICS
    topics: tuple[TopicResult, ...] = topics_of(TopicResult)


# ------------------------------------------------------------------ DESCRIBE_CONFIGS


@dataclass(frozen=True, slots=True)
class DescribeConfigsRequest(WireMessage):
    """``topics`` None describes every topic."""

    API_KEY: ClassVar[ApiKey] = ApiKey.DESCRIBE_CONFIGS
    topics: tuple[str, ...] | None = wire(Opt(TOPIC_NAMES), default=None)


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One config key's effective value; ``is_default`` when the topic does not override it."""

    name: str = wire(CONFIG_KEY)
    value: str = wire(CONFIG_VALUE)
    is_default: bool = wire(Bool())


@dataclass(frozen=True, slots=True)
class TopicConfigs(ResultMixin):
    name: str = wire(Topic())
    configs: tuple[ConfigEntry, ...] = wire(
        ListOf(Struct(ConfigEntry), TOPIC_CONFIGS_MAX, unique=lambda c: c.name), default=()
    )
    error: ErrorCode = wire(Code(), default=ErrorCode.NONE)
    message: str | None = wire(MESSAGE, default=None)


@dataclass(frozen=True, slots=True)
class DescribeConfigsResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.DESCRIBE_CONFIGS
    topics: tuple[TopicConfigs, ...] = topics_of(TopicConfigs, min_items=0)


# ------------------------------------------------------------------ ALTER_CONFIGS


@dataclass(frozen=True, slots=True)
class AlterTopicConfigs:
    """Keys in ``set_configs`` take the given values; keys in ``delete_configs`` go back to
    their defaults. A key may not be in both."""

    name: str = wire(Topic())
    set_configs: Mapping[str, str] = wire(CONFIGS, default_factory=dict)
    delete_configs: tuple[str, ...] = wire(
        ListOf(CONFIG_KEY, TOPIC_CONFIGS_MAX, unique=lambda k: k), default=()
    )

    @staticmethod
    def _wire_check(v: dict[str, Any]) -> str | None:
        both = sorted(set(v["set_configs"]) & set(v["delete_configs"]))
        if both:
            return f"keys both set and deleted: {', '.join(both)}"
        if not v["set_configs"] and not v["delete_configs"]:
            return "nothing to change: give set_configs or delete_configs"
        return None


@dataclass(frozen=True, slots=True)
class AlterConfigsRequest(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.ALTER_CONFIGS
    topics: tuple[AlterTopicConfigs, ...] = topics_of(AlterTopicConfigs)
    validate_only: bool = wire(Bool(), default=False)


@dataclass(frozen=True, slots=True)
class AlterConfigsResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.ALTER_CONFIGS
    topics: tuple[TopicResult, ...] = topics_of(TopicResult)


# ------------------------------------------------------------------ CREATE_PARTITIONS

REPLICA_LIST = ListOf(NODE, REPLICATION_FACTOR_MAX, min_items=1, unique=lambda b: b)
NEW_ASSIGNMENTS = ListOf(REPLICA_LIST, PARTITIONS_PER_TOPIC_MAX, min_items=1, budget="partitions")
"""Replica lists of the new partitions; the ``partitions`` budget caps them per request."""


@dataclass(frozen=True, slots=True)
class NewPartitions:
    """Grow topic ``name`` to ``count`` partitions in all. ``assignments``, when given, lists
    the replicas (preferred leader first) of each new partition, in partition order: exactly
    ``count`` minus the current count lists, each as long as the topic's replication factor
    (the metadata model checks both); None lets the cluster place them."""

    name: str = wire(Topic())
    count: int = wire(Int(1, PARTITIONS_PER_TOPIC_MAX))
    assignments: tuple[tuple[NodeId, ...], ...] | None = wire(Opt(NEW_ASSIGNMENTS), default=None)


@dataclass(frozen=True, slots=True)
class CreatePartitionsRequest(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.CREATE_PARTITIONS
    topics: tuple[NewPartitions, ...] = topics_of(NewPartitions)
    timeout_ms: int = wire(TIMEOUT_MS, default=30_000)
    validate_only: bool = wire(Bool(), default=False)


@dataclass(frozen=True, slots=True)
class CreatePartitionsResponse(WireMessage):
    API_KEY: ClassVar[ApiKey] = ApiKey.CREATE_PARTITIONS
    topics: tuple[TopicResult, ...] = topics_of(TopicResult)
