"""Sample messages for the wire tests: one fully populated instance of every request and
response (every optional field set, every list non-empty), and helpers to send them through
bytes."""

from __future__ import annotations

from raftlog.errors import ErrorCode
from raftlog.raft.config import Membership
from raftlog.raft.log_store import Entry
from raftlog.raft.messages import (
    AppendEntriesRequest,
    AppendEntriesResponse,
    InstallLogStart,
    Message,
    PreVoteRequest,
    PreVoteResponse,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from raftlog.types import NodeId, Offset, PartitionId, Term, TimestampMs
from raftlog.wire import (
    AlterConfigsRequest,
    AlterConfigsResponse,
    AlterTopicConfigs,
    BrokerInfo,
    Buffer,
    ConfigEntry,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    ErrorResponse,
    FetchPartition,
    FetchPartitionResult,
    FetchRequest,
    FetchResponse,
    FetchTopic,
    FetchTopicResult,
    Frame,
    FrameDecoder,
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
    NewPartitions,
    NewTopic,
    PartitionMetadata,
    ProducePartition,
    ProducePartitionResult,
    ProduceRequest,
    ProduceResponse,
    ProduceTopic,
    ProduceTopicResult,
    RaftRequest,
    TopicConfigs,
    TopicMetadata,
    TopicResult,
    partition_group,
)
from raftlog.wire import groups as G
from tests.storage_helpers import make_batch

BATCH_A = make_batch(1, payload_bytes=10)
BATCH_B = make_batch(3, payload_bytes=300, fill=0x62)
BATCH_C = make_batch(2, payload_bytes=50, fill=0x63)


def raft_messages() -> tuple[Message, ...]:
    """One of every partition-Raft message type, over three groups, interleaved."""
    g1, g2, g3 = partition_group("orders", 0), partition_group("orders", 7), "a.b-c_d/3"
    n1, n2, n3 = NodeId(1), NodeId(2), NodeId(3)
    t = Term(5)
    entries = (
        Entry(Offset(10), Offset(10), Term(4), BATCH_A),
        Entry(Offset(11), Offset(13), t, BATCH_B),
        Entry(Offset(14), Offset(14), t, b""),
    )
    return (
        PreVoteRequest(g1, n1, n2, Term(6), Term(5), Offset(14)),
        PreVoteResponse(g1, n2, n1, Term(5), True),
        VoteRequest(g2, n1, n3, Term(6), Term(-1), Offset(0), transfer=True),
        VoteResponse(g2, n3, n1, Term(6), False),
        AppendEntriesRequest(g1, n1, n2, t, Offset(9), Term(4), entries, Offset(12)),
        AppendEntriesRequest(g1, n1, n3, t, Offset(-1), Term(-1), (), Offset(0)),
        AppendEntriesResponse(g3, n2, n1, t, True, match_offset=Offset(15)),
        AppendEntriesResponse(
            g3,
            n3,
            n1,
            t,
            False,
            reject_offset=Offset(9),
            hint_term=Term(3),
            hint_end_offset=Offset(7),
        ),
        TimeoutNow(g2, n1, n2, t),
        InstallLogStart(
            g1,
            n1,
            n3,
            t,
            Offset(100),
            Term(4),
            Offset(120),
            Membership((n1, n2, n3), (NodeId(4),)),
        ),
    )


def samples() -> list[tuple[str, object]]:
    """(name, message) for every request and response type, fully populated."""
    err = ErrorCode.NOT_LEADER
    return [
        ("hello_req", HelloRequest("peer", "broker-2", (1, 2), node_id=NodeId(2))),
        ("hello_client", HelloRequest("client", "my-app")),
        ("hello_resp", HelloResponse(NodeId(1), "cluster-x", 1)),
        ("metadata_req", MetadataRequest(("orders", "logs"))),
        ("metadata_all", MetadataRequest()),
        (
            "metadata_resp",
            MetadataResponse(
                brokers=(
                    BrokerInfo(NodeId(1), "10.0.0.1", 9092, rack="r1"),
                    BrokerInfo(NodeId(2), "host-2", 9192, rack="r2"),
                ),
                metadata_leader_id=NodeId(1),
                topics=(
                    TopicMetadata(
                        "orders",
                        (
                            PartitionMetadata(
                                PartitionId(0),
                                NodeId(1),
                                Term(3),
                                (NodeId(1), NodeId(2)),
                                high_watermark=Offset(42),
                                error=ErrorCode.LEADER_NOT_AVAILABLE,
                                message="electing",
                            ),
                        ),
                        error=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                        message="some partitions are offline",
                    ),
                ),
            ),
        ),
        (
            "produce_req",
            ProduceRequest(
                -1,
                30_000,
                (
                    ProduceTopic(
                        "orders",
                        (
                            ProducePartition(PartitionId(0), (BATCH_A, BATCH_B)),
                            ProducePartition(PartitionId(3), (BATCH_C,)),
                        ),
                    ),
                    ProduceTopic("logs", (ProducePartition(PartitionId(1), (BATCH_B,)),)),
                ),
            ),
        ),
        (
            "produce_resp",
            ProduceResponse(
                (
                    ProduceTopicResult(
                        "orders",
                        (
                            ProducePartitionResult(
                                PartitionId(0),
                                err,
                                base_offset=Offset(5),
                                log_append_time_ms=TimestampMs(1_700_000_000_000),
                                log_start_offset=Offset(0),
                                leader_hint=NodeId(2),
                                message="leader is broker 2",
                            ),
                        ),
                    ),
                )
            ),
        ),
        (
            "fetch_req",
            FetchRequest(
                500,
                1,
                1 << 20,
                (
                    FetchTopic(
                        "orders",
                        (
                            FetchPartition(
                                PartitionId(0), Offset(10), 65536, current_leader_epoch=Term(3)
                            ),
                            FetchPartition(
                                PartitionId(1), Offset(0), 1024, current_leader_epoch=Term(0)
                            ),
                        ),
                    ),
                ),
            ),
        ),
        (
            "fetch_resp",
            FetchResponse(
                (
                    FetchTopicResult(
                        "orders",
                        (
                            FetchPartitionResult(
                                PartitionId(0),
                                ErrorCode.OFFSET_OUT_OF_RANGE,
                                high_watermark=Offset(20),
                                log_start_offset=Offset(3),
                                last_stable_offset=Offset(20),
                                records=BATCH_A + BATCH_B,
                                leader_hint=NodeId(1),
                                message="offset 99 is past the high watermark 20",
                            ),
                            FetchPartitionResult(
                                PartitionId(1), records=BATCH_C, leader_hint=NodeId(2)
                            ),
                        ),
                    ),
                )
            ),
        ),
        (
            "list_offsets_req",
            ListOffsetsRequest(
                (
                    ListOffsetsTopic(
                        "orders",
                        (
                            ListOffsetsPartition(PartitionId(0), -2),
                            ListOffsetsPartition(PartitionId(1), -1),
                            ListOffsetsPartition(PartitionId(2), 1_700_000_000_000),
                        ),
                    ),
                )
            ),
        ),
        (
            "list_offsets_resp",
            ListOffsetsResponse(
                (
                    ListOffsetsTopicResult(
                        "orders",
                        (
                            ListOffsetsPartitionResult(
                                PartitionId(0),
                                ErrorCode.NONE,
                                offset=Offset(7),
                                timestamp=TimestampMs(5),
                                leader_hint=NodeId(1),
                                message="fine",
                            ),
                        ),
                    ),
                )
            ),
        ),
        (
            "create_req",
            CreateTopicsRequest(
                (
                    NewTopic("orders", 6, 3, {"retention.ms": "1000", "cleanup.policy": "delete"}),
                    NewTopic("logs", 1, 1, {"fsync": "false"}),
                ),
                timeout_ms=10_000,
                validate_only=True,
            ),
        ),
        (
            "create_resp",
            CreateTopicsResponse(
                (TopicResult("orders", ErrorCode.TOPIC_ALREADY_EXISTS, "topic 'orders' exists"),)
            ),
        ),
        ("delete_req", DeleteTopicsRequest(("orders", "logs"), timeout_ms=5_000)),
        ("delete_resp", DeleteTopicsResponse((TopicResult("orders", message="deleted"),))),
        ("describe_req", DescribeConfigsRequest(("orders",))),
        ("describe_all", DescribeConfigsRequest()),
        (
            "describe_resp",
            DescribeConfigsResponse(
                (
                    TopicConfigs(
                        "orders",
                        (
                            ConfigEntry("retention.ms", "1000", False),
                            ConfigEntry("segment.bytes", "1073741824", True),
                        ),
                        error=ErrorCode.NONE,
                        message="ok",
                    ),
                )
            ),
        ),
        (
            "alter_req",
            AlterConfigsRequest(
                (
                    AlterTopicConfigs(
                        "orders", {"retention.ms": "5000"}, delete_configs=("segment.ms",)
                    ),
                ),
                validate_only=True,
            ),
        ),
        (
            "alter_resp",
            AlterConfigsResponse((TopicResult("orders", ErrorCode.INVALID_CONFIG, "bad"),)),
        ),
        (
            "create_partitions_req",
            CreatePartitionsRequest(
                (
                    NewPartitions("orders", 8, ((NodeId(1), NodeId(2)), (NodeId(2), NodeId(3)))),
                    NewPartitions("logs", 3),
                ),
                timeout_ms=10_000,
                validate_only=True,
            ),
        ),
        (
            "create_partitions_resp",
            CreatePartitionsResponse(
                (
                    TopicResult("orders"),
                    TopicResult("logs", ErrorCode.INVALID_PARTITIONS, "topic 'logs' has 4"),
                )
            ),
        ),
        ("init_producer_id", InitProducerIdRequest(timeout_ms=5000)),
        ("init_producer_id_resp", InitProducerIdResponse(producer_id=12345, producer_epoch=0)),
        ("find_coordinator", G.FindCoordinatorRequest("billing")),
        ("find_coordinator_resp", G.FindCoordinatorResponse(NodeId(2), "127.0.0.1", 9092)),
        (
            "join_group",
            G.JoinGroupRequest("billing", ("orders",), "", "i-1", "app", 10_000, 30_000),
        ),
        (
            "join_group_resp",
            G.JoinGroupResponse(
                3, "app-1", "app-1", "custom", (G.GroupMemberInfo("app-1", "i-1", ("orders",)),)
            ),
        ),
        (
            "sync_group",
            G.SyncGroupRequest(
                "billing",
                3,
                "app-1",
                (G.MemberAssignment("app-1", (G.TopicPartitions("orders", (0, 2)),)),),
            ),
        ),
        ("sync_group_resp", G.SyncGroupResponse((G.TopicPartitions("orders", (1, 3)),))),
        ("heartbeat", G.HeartbeatRequest("billing", 3, "app-1")),
        ("heartbeat_resp", G.HeartbeatResponse()),
        ("leave_group", G.LeaveGroupRequest("billing", "app-1")),
        ("leave_group_resp", G.LeaveGroupResponse()),
        (
            "offset_commit",
            G.OffsetCommitRequest(
                "billing",
                (G.CommitTopic("orders", (G.CommitPartition(0, 42, "m"),)),),
                3,
                "app-1",
            ),
        ),
        (
            "offset_commit_resp",
            G.OffsetCommitResponse(
                (
                    G.CommitTopicResult(
                        "orders", (G.PartitionResult(0), G.PartitionResult(1, ErrorCode.NOT_OWNER))
                    ),
                )
            ),
        ),
        ("offset_fetch", G.OffsetFetchRequest("billing", (G.TopicPartitions("orders", (0,)),))),
        (
            "offset_fetch_resp",
            G.OffsetFetchResponse(
                (G.FetchedTopic("orders", (G.FetchedOffset(0, 42, "m"), G.FetchedOffset(1, -1))),)
            ),
        ),
        ("list_groups", G.ListGroupsRequest()),
        ("list_groups_resp", G.ListGroupsResponse((G.GroupListing("billing", "Stable", 2),))),
        ("describe_groups", G.DescribeGroupsRequest(("billing",))),
        (
            "describe_groups_resp",
            G.DescribeGroupsResponse(
                (
                    G.GroupDescription(
                        "billing",
                        "Stable",
                        3,
                        "sticky",
                        "app-1",
                        (
                            G.MemberDescription(
                                "app-1", None, "app", "", (G.TopicPartitions("orders", (0,)),)
                            ),
                        ),
                    ),
                )
            ),
        ),
        ("delete_groups", G.DeleteGroupsRequest(("billing",))),
        (
            "delete_groups_resp",
            G.DeleteGroupsResponse((G.GroupResult("billing", ErrorCode.NON_EMPTY_GROUP, "busy"),)),
        ),
        ("raft", RaftRequest(raft_messages())),
        ("error_resp", ErrorResponse(ErrorCode.INVALID_REQUEST, "bad FETCH request: ...")),
    ]


def joined(pieces: list[Buffer]) -> bytes:
    return b"".join(bytes(p) for p in pieces)


def one_frame(data: bytes) -> Frame:
    frames = FrameDecoder().feed(data)
    assert len(frames) == 1, frames
    return frames[0]
