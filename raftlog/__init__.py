"""raftlog: a distributed commit log in the model of Apache Kafka, with Raft everywhere.

Cluster metadata lives in one pysyncobj Raft group that every broker embeds; each
partition's log is its own Raft group (``raftlog.raft``) over a segmented on-disk log
(``raftlog.storage``). See DESIGN.md in the shared folder for the map.

The client is exported here lazily (``from raftlog import Producer, Consumer, Admin``):
``import raftlog`` alone does not import trio or the client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Producer": "raftlog.client.producer",
    "Consumer": "raftlog.client.consumer",
    "Admin": "raftlog.client.admin",
    "RecordMetadata": "raftlog.client.accumulator",
    "ConsumerRecord": "raftlog.client.consumer",
}

if TYPE_CHECKING:
    from raftlog.client.accumulator import RecordMetadata
    from raftlog.client.admin import Admin
    from raftlog.client.consumer import Consumer, ConsumerRecord
    from raftlog.client.producer import Producer

__all__ = ["Admin", "Consumer", "ConsumerRecord", "Producer", "RecordMetadata", "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'raftlog' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
