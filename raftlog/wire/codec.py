"""Messages to frames and back: the one place that knows which class serves which API key.

- ``encode_request(msg, correlation_id)`` and ``encode_response(msg, correlation_id)`` give
  the pieces of a frame for a vectored write (see ``raftlog.wire.frames``).
- ``decode(frame)`` checks the body against the schema of the frame's API and direction and
  returns the message; a response whose body holds ``error`` is an ``ErrorResponse``.
- Any problem is ``BadRequest`` carrying the frame's correlation id and api key, so that the
  caller answers with ``error_frame(exc)`` and keeps the connection: an unknown API key is
  one of them ("unknown API"), never a reason to hang up.
"""

from __future__ import annotations

from typing import Any

from raftlog.errors import ErrorCode
from raftlog.wire.admin import (
    AlterConfigsRequest,
    AlterConfigsResponse,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
)
from raftlog.wire.errors import BadRequest, WireError
from raftlog.wire.frames import Buffer, Frame, encode_frame
from raftlog.wire.groups import (
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    JoinGroupRequest,
    JoinGroupResponse,
    LeaveGroupRequest,
    LeaveGroupResponse,
    ListGroupsRequest,
    ListGroupsResponse,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    SyncGroupRequest,
    SyncGroupResponse,
)
from raftlog.wire.messages import (
    ApiKey,
    ErrorResponse,
    FetchRequest,
    FetchResponse,
    HelloRequest,
    HelloResponse,
    InitProducerIdRequest,
    InitProducerIdResponse,
    ListOffsetsRequest,
    ListOffsetsResponse,
    MetadataRequest,
    MetadataResponse,
    ProduceRequest,
    ProduceResponse,
)
from raftlog.wire.peer import RaftRequest
from raftlog.wire.schema import WireMessage

Request = (
    HelloRequest
    | MetadataRequest
    | ProduceRequest
    | FetchRequest
    | ListOffsetsRequest
    | CreateTopicsRequest
    | DeleteTopicsRequest
    | DescribeConfigsRequest
    | AlterConfigsRequest
    | CreatePartitionsRequest
    | InitProducerIdRequest
    | FindCoordinatorRequest
    | JoinGroupRequest
    | SyncGroupRequest
    | HeartbeatRequest
    | LeaveGroupRequest
    | OffsetCommitRequest
    | OffsetFetchRequest
    | ListGroupsRequest
    | DescribeGroupsRequest
    | DeleteGroupsRequest
    | RaftRequest
)
Response = (
    HelloResponse
    | MetadataResponse
    | ProduceResponse
    | FetchResponse
    | ListOffsetsResponse
    | InitProducerIdResponse
    | CreateTopicsResponse
    | DeleteTopicsResponse
    | DescribeConfigsResponse
    | AlterConfigsResponse
    | CreatePartitionsResponse
    | FindCoordinatorResponse
    | JoinGroupResponse
    | SyncGroupResponse
    | HeartbeatResponse
    | LeaveGroupResponse
    | OffsetCommitResponse
    | OffsetFetchResponse
    | ListGroupsResponse
    | DescribeGroupsResponse
    | DeleteGroupsResponse
    | ErrorResponse
)

REQUEST_TYPES: dict[ApiKey, type[Any]] = {
    ApiKey.HELLO: HelloRequest,
    ApiKey.METADATA: MetadataRequest,
    ApiKey.PRODUCE: ProduceRequest,
    ApiKey.FETCH: FetchRequest,
    ApiKey.LIST_OFFSETS: ListOffsetsRequest,
    ApiKey.CREATE_TOPICS: CreateTopicsRequest,
    ApiKey.DELETE_TOPICS: DeleteTopicsRequest,
    ApiKey.DESCRIBE_CONFIGS: DescribeConfigsRequest,
    ApiKey.ALTER_CONFIGS: AlterConfigsRequest,
    ApiKey.CREATE_PARTITIONS: CreatePartitionsRequest,
    ApiKey.INIT_PRODUCER_ID: InitProducerIdRequest,
    ApiKey.FIND_COORDINATOR: FindCoordinatorRequest,
    ApiKey.JOIN_GROUP: JoinGroupRequest,
    ApiKey.SYNC_GROUP: SyncGroupRequest,
    ApiKey.HEARTBEAT: HeartbeatRequest,
    ApiKey.LEAVE_GROUP: LeaveGroupRequest,
    ApiKey.OFFSET_COMMIT: OffsetCommitRequest,
    ApiKey.OFFSET_FETCH: OffsetFetchRequest,
    ApiKey.LIST_GROUPS: ListGroupsRequest,
    ApiKey.DESCRIBE_GROUPS: DescribeGroupsRequest,
    ApiKey.DELETE_GROUPS: DeleteGroupsRequest,
    ApiKey.RAFT: RaftRequest,
}
RESPONSE_TYPES: dict[ApiKey, type[Any]] = {
    ApiKey.HELLO: HelloResponse,
    ApiKey.METADATA: MetadataResponse,
    ApiKey.PRODUCE: ProduceResponse,
    ApiKey.FETCH: FetchResponse,
    ApiKey.LIST_OFFSETS: ListOffsetsResponse,
    ApiKey.CREATE_TOPICS: CreateTopicsResponse,
    ApiKey.DELETE_TOPICS: DeleteTopicsResponse,
    ApiKey.DESCRIBE_CONFIGS: DescribeConfigsResponse,
    ApiKey.ALTER_CONFIGS: AlterConfigsResponse,
    ApiKey.CREATE_PARTITIONS: CreatePartitionsResponse,
    ApiKey.INIT_PRODUCER_ID: InitProducerIdResponse,
    ApiKey.FIND_COORDINATOR: FindCoordinatorResponse,
    ApiKey.JOIN_GROUP: JoinGroupResponse,
    ApiKey.SYNC_GROUP: SyncGroupResponse,
    ApiKey.HEARTBEAT: HeartbeatResponse,
    ApiKey.LEAVE_GROUP: LeaveGroupResponse,
    ApiKey.OFFSET_COMMIT: OffsetCommitResponse,
    ApiKey.OFFSET_FETCH: OffsetFetchResponse,
    ApiKey.LIST_GROUPS: ListGroupsResponse,
    ApiKey.DESCRIBE_GROUPS: DescribeGroupsResponse,
    ApiKey.DELETE_GROUPS: DeleteGroupsResponse,
    # RAFT is one way: no response type
}
_ERROR_KEY = "error"


def _encode(msg: WireMessage, api_key: int, correlation_id: int, response: bool) -> list[Buffer]:
    body, payload = msg.to_body()
    return encode_frame(api_key, correlation_id, response, body, payload)


def encode_request(msg: Request, correlation_id: int) -> list[Buffer]:
    """The frame pieces of a request. ``ValueError`` when ``msg`` breaks its schema."""
    if type(msg) not in REQUEST_TYPES.values():
        raise ValueError(f"{type(msg).__name__} is not a request")
    return _encode(msg, msg.API_KEY, correlation_id, False)


def encode_response(msg: Response, correlation_id: int, api_key: int | None = None) -> list[Buffer]:
    """The frame pieces of a response. ``api_key`` is required for an ``ErrorResponse``
    (which answers any API, even one this side does not know) and ignored otherwise."""
    if isinstance(msg, ErrorResponse):
        if api_key is None:
            raise ValueError("an ErrorResponse needs the api key of the request it answers")
        return _encode(msg, api_key, correlation_id, True)
    if type(msg) not in RESPONSE_TYPES.values():
        raise ValueError(f"{type(msg).__name__} is not a response")
    return _encode(msg, msg.API_KEY, correlation_id, True)


def error_frame(
    exc: BaseException, correlation_id: int | None = None, api_key: int | None = None
) -> list[Buffer] | None:
    """The error response for a request that failed with ``exc``: a code and a message a
    person can act on, never a traceback.

    The ids default to those a ``BadFrame``/``BadRequest`` carries. Returns None when no
    correlation id is known (nothing can be addressed: the frame is dropped). A client
    matches answers by correlation id; the api key is 0 when it could not be read.
    """
    if isinstance(exc, WireError):
        correlation_id = exc.correlation_id if correlation_id is None else correlation_id
        api_key = exc.api_key if api_key is None else api_key
    if correlation_id is None:
        return None
    return encode_response(ErrorResponse.from_exception(exc), correlation_id, api_key or 0)


def decode(frame: Frame) -> Request | Response:
    """The message a frame carries; ``BadRequest`` (with the frame's correlation id and api
    key) for an unknown API or a body that breaks its schema."""

    def bad(what: str, message: str) -> BadRequest:
        return BadRequest(
            ErrorCode.INVALID_REQUEST,
            f"bad {what}: {message}",
            correlation_id=frame.correlation_id,
            api_key=frame.api_key,
        )

    if frame.response and _ERROR_KEY in frame.body:
        # an error answers any API key, even one this side does not know
        try:
            return ErrorResponse.from_body(frame.body, frame.payload)
        except WireError as exc:
            raise bad("error response", exc.message) from None
    try:
        api = ApiKey(frame.api_key)
    except ValueError:
        known = ", ".join(f"{k.value} {k.name}" for k in ApiKey)
        raise BadRequest(
            ErrorCode.INVALID_REQUEST,
            f"unknown API key {frame.api_key}; this side knows {known}",
            correlation_id=frame.correlation_id,
            api_key=frame.api_key,
        ) from None
    what = f"{api.name} {'response' if frame.response else 'request'}"
    cls = (RESPONSE_TYPES if frame.response else REQUEST_TYPES).get(api)
    if cls is None:
        raise bad(what, f"{api.name} has no response")
    try:
        msg = cls.from_body(frame.body, frame.payload)
    except WireError as exc:
        raise bad(what, exc.message) from None
    assert isinstance(msg, Request | Response)
    return msg
