"""One connection to one broker: connect, HELLO, pipelined requests matched by correlation id.

How it works: ``Connection.open`` connects (with a deadline), sends
``HelloRequest(role="client")`` and reads the ``HelloResponse`` before anything else, then
starts a reader task in the caller's nursery. ``request`` gives each request the next
correlation id, registers it as pending, writes the whole frame in one ``send_all`` under a
send lock (requests from many tasks go out back to back: they pipeline), and waits for the
reader to hand it the response with the same id. The broker answers in request order, but
matching by id keeps a late answer to a request that already timed out from being taken for
another one's.

Rules it keeps:

- A request has a deadline; past it, ``RequestTimedOutError`` (code ``REQUEST_TIMED_OUT``),
  which for a produce says "unknown outcome": it may have been written.
- A broken connection fails every pending request with ``ConnectionLostError`` and the
  connection is closed for good (the cluster opens a new one).
- A write cancelled halfway would leave a partial frame on the stream: the connection is then
  closed rather than reused.
- Frames are decoded by the sans-io ``FrameDecoder`` with a cap (``max_frame_bytes``, 100
  MiB by default: a fetch answers at most 64 MiB of records); a frame above it closes the
  connection.
- Nothing here raises anything but ``RaftlogError`` subclasses to its callers.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import socket

import trio

from raftlog.client.errors import (
    BrokerUnreachableError,
    ClientClosedError,
    ConnectionLostError,
    ProtocolError,
    RequestTimedOutError,
    broker_error,
)
from raftlog.errors import RaftlogError
from raftlog.wire import (
    DEFAULT_MAX_FRAME_BYTES,
    ApiKey,
    ErrorResponse,
    FrameDecoder,
    HelloRequest,
    HelloResponse,
    Request,
    Response,
    WireError,
    decode,
    encode_request,
)

log = logging.getLogger("raftlog.client")

RECEIVE_BYTES = 256 * 1024
CORRELATION_ID_MAX = 2**31 - 1


def describe_os_error(exc: BaseException) -> str:
    """A few words for why a connect failed ("connection refused", "unknown host").
    trio reports a failed connect as one OSError caused by the errors of every attempt."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        return describe_os_error(cause.exceptions[0])
    if isinstance(cause, OSError) and getattr(exc, "errno", None) is None:
        return describe_os_error(cause)
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, OSError):
        if exc.errno == errno.ECONNREFUSED:
            return "connection refused"
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "host unreachable"
        if exc.strerror:
            return exc.strerror.lower()
    return str(exc) or type(exc).__name__


class _Pending:
    __slots__ = ("api", "event", "response")

    def __init__(self, api: ApiKey) -> None:
        self.api = api
        self.event = trio.Event()
        self.response: Response | RaftlogError | None = None


class Connection:
    """A connected, greeted connection to one broker. Build it with ``Connection.open``."""

    def __init__(
        self,
        stream: trio.SocketStream,
        address: str,
        broker_id: int,
        max_frame_bytes: int,
    ) -> None:
        self.address = address
        self.broker_id = broker_id
        self.cluster_id: str | None = None
        """The cluster id the broker gave in its HELLO answer."""
        self._stream = stream
        self._decoder = FrameDecoder(max_frame_bytes)
        self._send_lock = trio.Lock()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._closed: RaftlogError | None = None
        self._reader_scope = trio.CancelScope()

    @classmethod
    async def open(
        cls,
        nursery: trio.Nursery,
        host: str,
        port: int,
        *,
        client_id: str,
        connect_timeout_ms: int,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> Connection:
        """Connect, greet, and start the reader in ``nursery``.

        Raises ``BrokerUnreachableError`` when the broker cannot be reached or does not
        answer the HELLO in time (nothing else was sent: safe to retry elsewhere)."""
        address = f"{host}:{port}"

        def unreachable(why: str) -> BrokerUnreachableError:
            return BrokerUnreachableError(
                f"cannot reach broker {address}: {why}; is `raftlog node start` running "
                f"there, and is {address} its advertised address?"
            )

        stream: trio.SocketStream | None = None
        try:
            with trio.fail_after(connect_timeout_ms / 1000):
                stream = await trio.open_tcp_stream(host, port)
                stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn = cls(stream, address, -1, max_frame_bytes)
                hello = await conn._hello(client_id)
        except trio.TooSlowError:
            if stream is not None:
                stream.socket.close()
            raise unreachable(f"no answer within {connect_timeout_ms} ms") from None
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if stream is not None:
                stream.socket.close()
            raise unreachable(describe_os_error(exc)) from None
        except RaftlogError:
            if stream is not None:
                stream.socket.close()
            raise
        conn.broker_id = hello.broker_id
        conn.cluster_id = hello.cluster_id
        nursery.start_soon(conn._reader)
        return conn

    async def _hello(self, client_id: str) -> HelloResponse:
        """The handshake, before the reader runs: one request, one answer, read inline."""
        await self._write(HelloRequest(role="client", client_id=client_id), 0)
        while True:
            data = await self._stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise ConnectionLostError(
                    f"broker {self.address} closed the connection during the handshake"
                )
            try:
                frames = self._decoder.feed(data)
            except WireError as exc:
                raise ProtocolError(f"broker {self.address} sent a bad frame: {exc}") from None
            if frames:
                try:
                    msg = decode(frames[0])
                except WireError as exc:
                    raise ProtocolError(f"bad HELLO answer from {self.address}: {exc}") from None
                if isinstance(msg, ErrorResponse):
                    raise broker_error(msg.error, msg.message, f"HELLO to {self.address}")
                if not isinstance(msg, HelloResponse):
                    raise ProtocolError(f"broker {self.address} answered HELLO with {msg!r}")
                return msg

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._pending)

    def _next_id(self) -> int:
        return next(self._ids) % (CORRELATION_ID_MAX + 1)

    async def _write(self, msg: Request, correlation_id: int) -> None:
        """Write one frame in one ``send_all`` (the pieces joined: one syscall)."""
        data = b"".join(encode_request(msg, correlation_id))
        async with self._send_lock:
            if self._closed is not None:  # nothing of this request left: safe to retry
                raise BrokerUnreachableError(
                    f"connection to broker {self.address} closed before the request was sent "
                    f"({self._closed.message})"
                )
            done = False
            try:
                await self._stream.send_all(data)
                done = True
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._fail(ConnectionLostError(f"lost connection to broker {self.address}: {exc}"))
                raise self._closed_error() from None
            finally:
                if not done and self._closed is None:
                    # cancelled halfway: a partial frame may be on the wire
                    self._fail(ConnectionLostError(f"write to broker {self.address} cancelled"))

    def _closed_error(self) -> RaftlogError:
        assert self._closed is not None
        return self._closed

    async def request(self, msg: Request, *, timeout_ms: int) -> Response:
        """Send ``msg`` and return its answer (an ``ErrorResponse`` is raised as a
        ``BrokerError``). Raises ``RequestTimedOutError`` past ``timeout_ms``,
        ``ConnectionLostError`` when the connection breaks meanwhile."""
        correlation_id = self._next_id()
        pending = _Pending(msg.API_KEY)
        self._pending[correlation_id] = pending
        try:
            with trio.move_on_after(timeout_ms / 1000):
                await self._write(msg, correlation_id)
                await pending.event.wait()
        finally:
            self._pending.pop(correlation_id, None)
        answer = pending.response
        if answer is None:
            api = msg.API_KEY.name
            outcome = (
                "; unknown outcome: the records may or may not have been written"
                if msg.API_KEY == ApiKey.PRODUCE
                else ""
            )
            raise RequestTimedOutError(
                f"{api} request to broker {self.address} got no answer within "
                f"{timeout_ms} ms{outcome}"
            )
        if isinstance(answer, RaftlogError):
            raise answer
        if isinstance(answer, ErrorResponse):
            raise broker_error(answer.error, answer.message, f"{msg.API_KEY.name} request")
        return answer

    async def send_only(self, msg: Request, *, timeout_ms: int) -> None:
        """Send a request that gets no answer (PRODUCE with acks=0)."""
        with trio.move_on_after(timeout_ms / 1000) as scope:
            await self._write(msg, self._next_id())
        if scope.cancelled_caught:
            raise RequestTimedOutError(
                f"{msg.API_KEY.name} to broker {self.address} could not be written within "
                f"{timeout_ms} ms; unknown outcome"
            )

    async def _reader(self) -> None:
        with self._reader_scope:
            try:
                await self._read_loop()
            except RaftlogError as exc:
                self._fail(exc)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._fail(ConnectionLostError(f"lost connection to broker {self.address}: {exc}"))
        if self._closed is None:
            self._fail(ClientClosedError(f"connection to broker {self.address} was closed"))

    async def _read_loop(self) -> None:
        while True:
            data = await self._stream.receive_some(RECEIVE_BYTES)
            if not data:
                n = len(self._pending)
                raise ConnectionLostError(
                    f"broker {self.address} closed the connection with {n} request(s) in flight"
                )
            try:
                frames = self._decoder.feed(data)
            except WireError as exc:
                raise ProtocolError(f"broker {self.address} sent a bad frame: {exc}") from None
            for frame in frames:
                pending = self._pending.get(frame.correlation_id)
                if pending is None:
                    continue  # the answer to a request that timed out: dropped
                try:
                    msg = decode(frame)
                except WireError as exc:
                    pending.response = ProtocolError(
                        f"bad {pending.api.name} answer from broker {self.address}: {exc}"
                    )
                else:
                    if frame.response and isinstance(msg, Response):
                        pending.response = msg
                    else:
                        pending.response = ProtocolError(
                            f"broker {self.address} sent a request frame to a client"
                        )
                pending.event.set()

    def _fail(self, exc: RaftlogError) -> None:
        """Close for good: every pending request fails with ``exc``."""
        if self._closed is not None:
            return
        self._closed = exc
        self._reader_scope.cancel()
        for pending in self._pending.values():
            if pending.response is None:
                pending.response = exc
            pending.event.set()
        self._pending.clear()
        with contextlib.suppress(OSError):
            self._stream.socket.close()

    def close(self) -> None:
        """Close now; pending requests fail with ``ClientClosedError``."""
        self._fail(ClientClosedError(f"connection to broker {self.address} was closed"))
