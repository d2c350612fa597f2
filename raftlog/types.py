"""Identifiers shared by every layer.

They are ``NewType`` aliases of ``int``/``str``: free at run time, distinct for the type
checker, so that an offset is never passed where a term is expected.
"""

from __future__ import annotations

from typing import NewType

NodeId = NewType("NodeId", int)
"""A broker's id, unique in the cluster (Kafka's broker.id)."""

Term = NewType("Term", int)
"""A Raft term. Inside a partition log it is stored as the batch's leader epoch."""

Offset = NewType("Offset", int)
"""A record's position in a partition log. Raft log positions are record offsets."""

PartitionId = NewType("PartitionId", int)
"""A partition number within a topic, from 0."""

TimestampMs = NewType("TimestampMs", int)
"""Milliseconds since the Unix epoch."""

NO_TERM = Term(-1)
"""The epoch of "no entry", e.g. before the first batch of an empty log."""
