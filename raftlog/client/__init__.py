"""raftlog.client: the Python client of raftlog (blocking API; trio underneath).

- ``Producer`` (``raftlog.client.producer``): batching, Kafka's key partitioning, retries.
- ``Consumer`` (``raftlog.client.consumer``): assign or subscribe, seek, offsets by time,
  pause/resume, lag, long-poll ``poll`` with bounded prefetch; consumer groups
  (``group_id``: rebalances with a listener, committed offsets, auto-commit; the member's
  state machine is ``raftlog.client.group``).
- ``Admin`` (``raftlog.client.admin``): create, delete, list and describe topics; list,
  describe (members, offsets, lag), reset offsets of and delete consumer groups.

Each blocking client runs its own trio loop in a background thread (``_loop``); the trio
classes (``AsyncAdmin``, ``AsyncConsumer``, the producer's ``Sender``) are what runs there.
Errors are ``raftlog.errors.RaftlogError`` subclasses (``raftlog.client.errors``).
"""

from raftlog.client.accumulator import RecordMetadata, SendFuture
from raftlog.client.admin import (
    Admin,
    AsyncAdmin,
    BrokerDescription,
    ClusterDescription,
    ConfigValue,
    ConsumerGroupDescription,
    GroupMemberDescription,
    GroupOverview,
    GroupPartitionOffsets,
    PartitionInfo,
    TopicDescription,
)
from raftlog.client.async_producer import AsyncProducer, Delivery
from raftlog.client.consumer import (
    AsyncConsumer,
    Consumer,
    ConsumerGroupsUnavailableError,
    ConsumerRecord,
    IllegalStateError,
    OffsetAndTimestamp,
    PartitionMetrics,
    TopicPartition,
)
from raftlog.client.errors import (
    BrokerError,
    BrokerUnreachableError,
    BufferFullError,
    ClientClosedError,
    CommitFailedError,
    ConnectionLostError,
    DeliveryTimeoutError,
    RequestTimedOutError,
    UnknownOutcomeError,
)
from raftlog.client.group import ConsumerRebalanceListener
from raftlog.client.partitioner import murmur2, partition_for_key
from raftlog.client.producer import Producer

__all__ = [
    "Admin",
    "AsyncAdmin",
    "AsyncConsumer",
    "AsyncProducer",
    "BrokerDescription",
    "BrokerError",
    "BrokerUnreachableError",
    "BufferFullError",
    "ClientClosedError",
    "ClusterDescription",
    "CommitFailedError",
    "ConfigValue",
    "ConnectionLostError",
    "Consumer",
    "ConsumerGroupDescription",
    "ConsumerGroupsUnavailableError",
    "ConsumerRebalanceListener",
    "ConsumerRecord",
    "Delivery",
    "DeliveryTimeoutError",
    "GroupMemberDescription",
    "GroupOverview",
    "GroupPartitionOffsets",
    "IllegalStateError",
    "OffsetAndTimestamp",
    "PartitionInfo",
    "PartitionMetrics",
    "Producer",
    "RecordMetadata",
    "RequestTimedOutError",
    "SendFuture",
    "TopicDescription",
    "TopicPartition",
    "UnknownOutcomeError",
    "murmur2",
    "partition_for_key",
]
