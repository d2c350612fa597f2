"""raftlog.wire: the native protocol, sans-io (bytes in, messages out).

A frame is ``u32 frame_bytes`` + ``u32 envelope_bytes`` + a CBOR envelope + a raw payload
(``raftlog.wire.frames``); bodies are checked against one schema per message
(``raftlog.wire.schema``, ``messages``, ``admin``, ``peer``); ``raftlog.wire.codec`` maps API
keys to messages. Typical use on a connection::

    decoder = FrameDecoder(max_frame_bytes)
    try:
        frames = decoder.feed(data)
    except FrameTooLarge:
        close the connection
    except BadFrame as exc:
        send error_frame(exc) unless None, then decoder.feed(b"") for the frames behind it
    for frame in frames:
        try:
            msg = decode(frame)
        except BadRequest as exc:
            send error_frame(exc) and go on with the next frame
        ...
        send encode_response(answer, frame.correlation_id)  # pieces for a vectored write
"""

from raftlog.wire.admin import (
    AlterConfigsRequest,
    AlterConfigsResponse,
    AlterTopicConfigs,
    ConfigEntry,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    NewPartitions,
    NewTopic,
    TopicConfigs,
)
from raftlog.wire.codec import (
    REQUEST_TYPES,
    RESPONSE_TYPES,
    Request,
    Response,
    decode,
    encode_request,
    encode_response,
    error_frame,
)
from raftlog.wire.errors import BadFrame, BadRequest, FrameTooLarge, WireError, is_retriable
from raftlog.wire.frames import (
    DEFAULT_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Buffer,
    Frame,
    FrameDecoder,
    encode_frame,
)
from raftlog.wire.messages import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    ApiKey,
    BrokerInfo,
    ErrorResponse,
    FetchPartition,
    FetchPartitionResult,
    FetchRequest,
    FetchResponse,
    FetchTopic,
    FetchTopicResult,
    HelloRequest,
    HelloResponse,
    InitProducerIdRequest,
    InitProducerIdResponse,
    ListOffsetsPartition,
    ListOffsetsPartitionResult,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopic,
    ListOffsetsTopicResult,
    MetadataRequest,
    MetadataResponse,
    PartitionMetadata,
    ProducePartition,
    ProducePartitionResult,
    ProduceRequest,
    ProduceResponse,
    ProduceTopic,
    ProduceTopicResult,
    TopicMetadata,
    TopicResult,
)
from raftlog.wire.peer import RaftRequest, parse_partition_group, partition_group

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "PROTOCOL_VERSION",
    "REQUEST_TYPES",
    "RESPONSE_TYPES",
    "AlterConfigsRequest",
    "AlterConfigsResponse",
    "AlterTopicConfigs",
    "ApiKey",
    "BadFrame",
    "BadRequest",
    "BrokerInfo",
    "Buffer",
    "ConfigEntry",
    "CreatePartitionsRequest",
    "CreatePartitionsResponse",
    "CreateTopicsRequest",
    "CreateTopicsResponse",
    "DeleteTopicsRequest",
    "DeleteTopicsResponse",
    "DescribeConfigsRequest",
    "DescribeConfigsResponse",
    "ErrorResponse",
    "FetchPartition",
    "FetchPartitionResult",
    "FetchRequest",
    "FetchResponse",
    "FetchTopic",
    "FetchTopicResult",
    "Frame",
    "FrameDecoder",
    "FrameTooLarge",
    "HelloRequest",
    "HelloResponse",
    "InitProducerIdRequest",
    "InitProducerIdResponse",
    "ListOffsetsPartition",
    "ListOffsetsPartitionResult",
    "ListOffsetsRequest",
    "ListOffsetsResponse",
    "ListOffsetsTopic",
    "ListOffsetsTopicResult",
    "MetadataRequest",
    "MetadataResponse",
    "NewPartitions",
    "NewTopic",
    "PartitionMetadata",
    "ProducePartition",
    "ProducePartitionResult",
    "ProduceRequest",
    "ProduceResponse",
    "ProduceTopic",
    "ProduceTopicResult",
    "RaftRequest",
    "Request",
    "Response",
    "TopicConfigs",
    "TopicMetadata",
    "TopicResult",
    "WireError",
    "decode",
    "encode_frame",
    "encode_request",
    "encode_response",
    "error_frame",
    "is_retriable",
    "parse_partition_group",
    "partition_group",
]
