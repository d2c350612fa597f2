"""The native-port listener: sorts connections into peers and clients, and serves clients.

The first frame of every connection is a HELLO. A peer's goes to the peer transport (which
authenticates it); a client's gets a ``HelloResponse`` and then a session: requests are
read as they come (pipelined), each handled in its own task, and answered strictly in
request order. At most ``INFLIGHT_MAX`` requests of one connection are in progress: past
that the session stops reading (backpressure on a client that does not read its answers).

A malformed frame gets an ``ErrorResponse`` for its correlation id when it could be read,
and the session goes on; a frame over the size cap closes the connection (the stream can
no longer be trusted to be in step). No traceback ever reaches a peer or client: an
unexpected exception in a handler becomes an UNKNOWN error with "see broker log", logged
here once. Whatever one connection does, it ends at most that connection: an exception that
leaves a session is logged and never reaches ``trio.serve_listeners`` (which would stop the
broker).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from raftlog.errors import ErrorCode
from raftlog.runtime.transport import PeerTransport, serve_first_hello
from raftlog.types import NodeId
from raftlog.wire import (
    AlterConfigsRequest,
    BadFrame,
    BadRequest,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteGroupsRequest,
    DeleteTopicsRequest,
    DescribeConfigsRequest,
    DescribeGroupsRequest,
    ErrorResponse,
    FetchRequest,
    FindCoordinatorRequest,
    Frame,
    FrameDecoder,
    FrameTooLarge,
    HeartbeatRequest,
    HelloRequest,
    HelloResponse,
    InitProducerIdRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    ListGroupsRequest,
    ListOffsetsRequest,
    MetadataRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
    ProduceRequest,
    SyncGroupRequest,
    decode,
    encode_response,
    error_frame,
)

log = logging.getLogger("raftlog.server")

INFLIGHT_MAX = 64
CLIENT_FRAME_BYTES_MAX = 100 * 1024 * 1024
RECEIVE_BYTES = 256 * 1024


class Server:
    """Serves one broker's native port."""

    def __init__(
        self,
        broker_id: int,
        cluster_id: str,
        handlers: Any,
        transport: PeerTransport,
    ) -> None:
        self.broker_id = broker_id
        self.cluster_id = cluster_id
        self.handlers = handlers
        self.transport = transport
        self.dispatch: dict[type, Callable[[Any], Awaitable[Any]]] = {
            MetadataRequest: handlers.metadata,
            ProduceRequest: handlers.produce,
            FetchRequest: handlers.fetch,
            ListOffsetsRequest: handlers.list_offsets,
            CreateTopicsRequest: handlers.create_topics,
            DeleteTopicsRequest: handlers.delete_topics,
            DescribeConfigsRequest: handlers.describe_configs,
            AlterConfigsRequest: handlers.alter_configs,
            CreatePartitionsRequest: handlers.create_partitions,
            InitProducerIdRequest: handlers.init_producer_id,
            FindCoordinatorRequest: handlers.find_coordinator,
        }
        coordinator = getattr(handlers, "coordinator", None)
        if coordinator is not None:
            api = handlers.group_api
            self.dispatch.update(
                {
                    JoinGroupRequest: api(coordinator.join),
                    SyncGroupRequest: api(coordinator.sync),
                    HeartbeatRequest: api(coordinator.heartbeat),
                    LeaveGroupRequest: api(coordinator.leave),
                    OffsetCommitRequest: api(coordinator.commit),
                    OffsetFetchRequest: api(coordinator.fetch_offsets),
                    ListGroupsRequest: api(coordinator.list_groups),
                    DescribeGroupsRequest: api(coordinator.describe_groups),
                    DeleteGroupsRequest: api(coordinator.delete_groups),
                }
            )
        self.connections = 0

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        try:
            async with stream:
                first = await serve_first_hello(stream, CLIENT_FRAME_BYTES_MAX)
                if first is None:
                    return
                decoder, frame, hello = first
                if hello.role == "peer":
                    await self.transport.serve_peer(stream, decoder, frame, hello)
                else:
                    await self._serve_client(stream, decoder, frame, hello)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except BaseExceptionGroup as group:  # the session's nursery wraps what its tasks raise
            _, rest = group.split(_CONNECTION_GONE)
            if rest is not None:
                errors, base = rest.split(Exception)
                if errors is not None:
                    log.error("event=connection_failed", exc_info=errors)
                if base is not None:
                    raise base from None  # Cancelled and the like belong to trio
        except Exception:
            # one connection must never take the broker down (trio.serve_listeners would
            # end every connection and the process): logged once, this client dropped
            log.exception("event=connection_failed")
        finally:
            self.connections -= 1

    async def _serve_client(
        self, stream: trio.SocketStream, decoder: FrameDecoder, frame: Frame, hello: HelloRequest
    ) -> None:
        reply = HelloResponse(NodeId(self.broker_id), self.cluster_id, 1)
        await stream.send_all(b"".join(encode_response(reply, frame.correlation_id)))
        send, recv = trio.open_memory_channel[Any](INFLIGHT_MAX)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer, stream, recv)
            try:
                await self._reader(stream, decoder, send, nursery)
            finally:
                await send.aclose()

    async def _reader(
        self,
        stream: trio.SocketStream,
        decoder: FrameDecoder,
        send: trio.MemorySendChannel[Any],
        nursery: trio.Nursery,
    ) -> None:
        data = b""  # first, what the client pipelined right behind its HELLO
        while True:
            try:
                frames = decoder.feed(data)
            except FrameTooLarge as e:
                log.warning("event=client_frame_too_large error=%s", e)
                pieces = error_frame(e)
                if pieces is not None:
                    with contextlib.suppress(trio.BrokenResourceError):
                        await send.send(_ready(pieces))
                return
            except BadFrame as e:
                # answered, then the frames behind it (good or bad) are read from what was
                # already received: each BadFrame consumes its frame, so this loop ends
                pieces = error_frame(e)
                if pieces is not None:
                    try:
                        await send.send(_ready(pieces))
                    except trio.BrokenResourceError:
                        return  # the writer stopped: the client is gone
                data = b""
                continue
            data = b""
            for f in frames:
                slot = _Slot()
                try:
                    await send.send(slot)  # blocks past INFLIGHT_MAX: backpressure
                except trio.BrokenResourceError:
                    return  # the writer stopped: the client is gone
                nursery.start_soon(self._handle, f, slot)
            if frames:
                # a bad frame deferred behind good ones is raised by the next feed: answer
                # it now, not after the client's next bytes (which may never come)
                continue
            try:
                data = await stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return

    async def _handle(self, frame: Frame, slot: _Slot) -> None:
        try:
            request = decode(frame)
            handler = self.dispatch.get(type(request))
            if handler is None:
                raise BadRequest(
                    ErrorCode.INVALID_REQUEST,
                    f"api {type(request).__name__} is not served on this port",
                    correlation_id=frame.correlation_id,
                    api_key=frame.api_key,
                )
            response = await handler(request)
            if response is None:
                slot.pieces = None
            elif isinstance(response, ErrorResponse):  # a handler's refusal of the request
                slot.pieces = encode_response(response, frame.correlation_id, frame.api_key)
            else:
                slot.pieces = encode_response(response, frame.correlation_id)
        except BadRequest as e:
            slot.pieces = error_frame(e)
        except Exception as e:  # never a traceback to the client; once in our log
            log.exception("event=handler_failed api_key=%d", frame.api_key)
            slot.pieces = encode_response(
                ErrorResponse.from_exception(e), frame.correlation_id, frame.api_key
            )
        finally:
            slot.done.set()

    async def _writer(
        self, stream: trio.SocketStream, recv: trio.MemoryReceiveChannel[Any]
    ) -> None:
        async with recv:
            async for slot in recv:
                await slot.done.wait()
                if slot.pieces:
                    try:
                        await stream.send_all(b"".join(slot.pieces))
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return  # the client went away; its remaining answers are dropped


_CONNECTION_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _Slot:
    """One request's place in the answer order."""

    __slots__ = ("done", "pieces")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.pieces: list[Any] | None = None


def _ready(pieces: list[Any]) -> _Slot:
    slot = _Slot()
    slot.pieces = pieces
    slot.done.set()
    return slot
