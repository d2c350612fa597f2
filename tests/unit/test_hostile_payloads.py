"""Hostile input at the lowest layers that serve it: the native-port session
(``raftlog.broker.server.Server``) and the admin HTTP handler, driven through in-memory or
stub streams. Each test here is the regression test of a way a single client could stop
the whole broker (found by the S16 hostile-clients driver, ``raftlog.scenarios.hostile``)."""

from __future__ import annotations

import struct
from typing import Any

import cbor2
import trio
import trio.testing

from raftlog.broker.admin_http import AdminHttp
from raftlog.broker.server import Server
from raftlog.wire import (
    ErrorResponse,
    FrameDecoder,
    HelloRequest,
    MetadataRequest,
    MetadataResponse,
    decode,
    encode_request,
)


def _req(msg: Any, correlation_id: int) -> bytes:
    return b"".join(bytes(p) for p in encode_request(msg, correlation_id))


HELLO = _req(HelloRequest("client", "hostile-test"), 1)


def _bad_envelope(correlation_id: int) -> bytes:
    """A frame whose envelope is CBOR with an unknown key: ``BadFrame`` that still names its
    correlation id, so the broker can answer it."""
    env = cbor2.dumps({"v": 1, "k": 1, "c": correlation_id, "r": 0, "b": {}, "x": 0})
    return struct.pack(">II", 4 + len(env), len(env)) + env


class _Handlers:
    """Just enough of ``raftlog.broker.handlers.Handlers`` for the session."""

    coordinator = None

    async def metadata(self, req: Any) -> MetadataResponse:
        return MetadataResponse((), None, ())

    produce = fetch = list_offsets = create_topics = delete_topics = metadata
    describe_configs = alter_configs = create_partitions = init_producer_id = metadata
    find_coordinator = metadata


def _server() -> Server:
    return Server(1, "cluster", _Handlers(), transport=None)  # type: ignore[arg-type]


async def _answers(stream: Any, decoder: FrameDecoder, n: int) -> list[Any]:
    out: list[Any] = []
    while len(out) < n:
        data = await stream.receive_some(65536)
        assert data, f"the broker closed the connection after {len(out)} of {n} answers"
        out.extend(decode(f) for f in decoder.feed(data))
    return out


async def test_two_bad_frames_in_a_row_are_both_answered_and_the_session_goes_on() -> None:
    # Before the fix the second BadFrame escaped Server._reader's except clause, the
    # session's nursery raised an ExceptionGroup that handle_connection did not catch, and
    # trio.serve_listeners took the whole broker down: 16 bytes from any client killed it.
    server = _server()
    client, broker_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_connection, broker_side)
        decoder = FrameDecoder()
        with trio.fail_after(5):
            await client.send_all(
                HELLO + _bad_envelope(2) + _bad_envelope(3) + _req(MetadataRequest(), 4)
            )
            _hello, bad2, bad3, md = await _answers(client, decoder, 4)
        assert isinstance(bad2, ErrorResponse) and isinstance(bad3, ErrorResponse)
        assert "unknown keys" in bad2.message and "unknown keys" in bad3.message
        assert isinstance(md, MetadataResponse)
        await client.aclose()
    assert server.connections == 0


async def test_a_bad_frame_behind_good_ones_is_answered_without_more_input() -> None:
    # Before the fix a BadFrame deferred behind good frames was raised only by the next
    # feed, after the next receive: a client that sent [good, bad] and waited never got
    # its second answer.
    server = _server()
    client, broker_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle_connection, broker_side)
        with trio.fail_after(5):
            await client.send_all(HELLO + _req(MetadataRequest(), 2) + _bad_envelope(3))
            _, md, bad = await _answers(client, FrameDecoder(), 3)
        assert isinstance(md, MetadataResponse) and isinstance(bad, ErrorResponse)
        await client.aclose()


async def test_a_bad_frame_then_an_oversized_length_closes_only_that_connection() -> None:
    # Before the fix the FrameTooLarge raised by feed(b"") inside the BadFrame handler
    # escaped the session and crashed the broker.
    server = _server()
    client, broker_side = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle_connection, broker_side)
            await client.send_all(HELLO + _bad_envelope(2) + struct.pack(">I", 2**32 - 1))
            decoder = FrameDecoder()
            got: list[Any] = []
            while data := await client.receive_some(65536):  # until the broker closes
                got.extend(decode(f) for f in decoder.feed(data))
    assert len(got) == 2 and isinstance(got[1], ErrorResponse)
    assert server.connections == 0


class _StubStream(trio.abc.Stream):
    """A stream whose receive side is scripted: each item is bytes to return, an
    exception to raise, or a ``trio.Event`` to wait for."""

    def __init__(self, script: list[Any], *, fail_sends_after: int | None = None) -> None:
        self.script = list(script)
        self.sent: list[bytes] = []
        self.fail_sends_after = fail_sends_after
        self.send_failed = trio.Event()

    async def send_all(self, data: Any) -> None:
        if self.fail_sends_after is not None and len(self.sent) >= self.fail_sends_after:
            self.send_failed.set()
            raise trio.BrokenResourceError("connection reset by peer")
        self.sent.append(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        return None

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while self.script:
            item = self.script.pop(0)
            if isinstance(item, trio.Event):
                await item.wait()
                continue
            if isinstance(item, BaseException):
                raise item
            return bytes(item)
        return b""

    async def aclose(self) -> None:
        return None


async def test_a_bad_frame_after_the_client_stopped_reading_answers_ends_the_session() -> None:
    # The writer dies when the client resets; a BadFrame met afterwards sent its error to
    # the closed channel: BrokenResourceError from the reader, which took the broker down.
    server = _server()
    stream = _StubStream([], fail_sends_after=1)  # the HELLO answer goes, nothing after
    stream.script = [HELLO + _req(MetadataRequest(), 2), stream.send_failed, _bad_envelope(3)]
    with trio.fail_after(5):
        await server.handle_connection(stream)  # type: ignore[arg-type]
    assert server.connections == 0


async def test_a_reset_during_an_admin_http_request_does_not_escape_the_handler() -> None:
    # Before the fix BrokenResourceError from receive_some (a client that sent part of a
    # request and reset the connection) escaped AdminHttp.handle into
    # trio.serve_listeners, and the broker process died.
    admin = AdminHttp(lambda: (True, {"ok": True}), lambda: "")
    stream = _StubStream([b"GET /hea", trio.BrokenResourceError("reset by peer")])
    with trio.fail_after(5):
        await admin.handle(stream)  # type: ignore[arg-type]
    # the answer to a reset connection is dropped quietly too
    stream = _StubStream([b"GET /health HTTP/1.0\r\n\r\n"], fail_sends_after=0)
    with trio.fail_after(5):
        await admin.handle(stream)  # type: ignore[arg-type]


async def test_admin_http_answers_garbage_and_traversal_and_caps_the_head() -> None:
    admin = AdminHttp(lambda: (True, {"ok": True}), lambda: "m 1\n")
    cases = [
        (b"\x00\xff\xfe garbage\r\n\r\n", b"405"),
        (b"GET /../../etc/passwd HTTP/1.1\r\n\r\n", b"404"),
        (b"GET /health/../../../etc/passwd HTTP/1.1\r\n\r\n", b"404"),
        (b"GET /health HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n", b"200"),
    ]
    for request, status in cases:
        chunks = [request[i : i + 4096] for i in range(0, len(request), 4096)]
        stream = _StubStream(chunks)
        with trio.fail_after(5):
            await admin.handle(stream)  # type: ignore[arg-type]
        assert stream.sent and stream.sent[0].startswith(b"HTTP/1.1 " + status), stream.sent
        # the head is read to at most HEAD_BYTES_MAX + one chunk: the rest stays unread
        assert len(stream.script) >= max(0, len(chunks) - 4)
