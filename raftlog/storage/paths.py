"""Where a partition lives on disk, and topic names that can never leave the data folder.

Layout: ``<data>/<topic>/<partition>/`` (DESIGN.md). Topic names follow Kafka's rule,
``[A-Za-z0-9._-]{1,249}`` and neither ``.`` nor ``..``, so a name is always exactly one
path component inside the data folder.
"""

from __future__ import annotations

import os

from raftlog.config import TOPIC_NAME_CHARS_MAX, validate_topic_name
from raftlog.errors import InvalidTopicError

TOPIC_NAME_BYTES_MAX = TOPIC_NAME_CHARS_MAX
PARTITIONS_MAX = 1_000_000


def validate_topic(name: str) -> str:
    """Return ``name`` when it is a valid topic name, else raise ``InvalidTopicError``
    saying what is wrong. The rule lives in ``raftlog.config.validate_topic_name``."""
    return validate_topic_name(name)


def partition_dir(data_dir: str, topic: str, partition: int) -> str:
    """The folder of one partition; raises for a bad topic or partition number, and
    asserts the result lies inside ``data_dir``."""
    validate_topic(topic)
    if isinstance(partition, bool) or not isinstance(partition, int):
        raise InvalidTopicError(f"partition must be an integer, got {partition!r}")
    if not 0 <= partition < PARTITIONS_MAX:
        raise InvalidTopicError(f"partition {partition} is outside 0..{PARTITIONS_MAX - 1}")
    root = os.path.abspath(data_dir)
    path = os.path.join(root, topic, str(partition))
    assert os.path.commonpath([root, path]) == root, path
    return path
