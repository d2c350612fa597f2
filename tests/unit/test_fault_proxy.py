"""The scenario fault proxy: forwarding of framed and raw traffic, every fault kind one way
and both ways, determinism from the seed, and the control protocol in-process and through
``python -m raftlog.scenarios.proxy`` driven by ``ProxyControl``.

Targets are small trio servers on port 0 (the proxy listens on port 0 too and reports its
port), except in the process test, which uses ``free_ports``. Every wait has a deadline.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio

from raftlog.scenarios.proxy import (
    CONTROL_LINE_MAX,
    Direction,
    FaultProxy,
    ProxyControl,
    ProxyControlError,
)
from raftlog.testing.procs import free_ports
from raftlog.wire.frames import encode_frame

LINK = "c->s"
QUIET_S = 0.3
"""How long a test listens to be sure that nothing comes."""


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def split_frames(buffer: bytearray) -> list[bytes]:
    """Take the whole frames off the front of ``buffer``."""
    frames = []
    while len(buffer) >= 4:
        (length,) = struct.unpack_from(">I", buffer)
        if len(buffer) < 4 + length:
            break
        frames.append(bytes(buffer[: 4 + length]))
        del buffer[: 4 + length]
    return frames


class FrameServer:
    """The target: records every frame it gets, echoes it unless ``echo`` is off, and can
    push frames of its own to every connection."""

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.received: list[bytes] = []
        self.streams: list[trio.SocketStream] = []

    async def handle(self, stream: trio.SocketStream) -> None:
        self.streams.append(stream)
        buffer = bytearray()
        try:
            while data := await stream.receive_some(65536):
                buffer += data
                for f in split_frames(buffer):
                    self.received.append(f)
                    if self.echo:
                        await stream.send_all(f)
        except trio.BrokenResourceError:
            pass

    async def push(self, data: bytes) -> None:
        for stream in self.streams:
            await stream.send_all(data)


async def raw_echo(stream: trio.SocketStream) -> None:
    try:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


class FrameClient:
    """A connection through the proxy that reads whole frames, or raw bytes."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def connect(cls, port: int) -> FrameClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, *frames: bytes) -> None:
        await self.stream.send_all(b"".join(frames))

    async def frames(self, n: int, timeout_s: float = 3.0) -> list[bytes]:
        got: list[bytes] = []
        with trio.fail_after(timeout_s):
            while len(got) < n:
                got += split_frames(self.buffer)
                if len(got) < n:
                    data = await self.stream.receive_some(65536)
                    assert data, "connection closed"
                    self.buffer += data
        return got

    async def nothing_for(self, seconds: float = QUIET_S) -> bool:
        with trio.move_on_after(seconds):
            data = await self.stream.receive_some(65536)
            return not data  # an end of stream is nothing, too
        return True

    async def raw(self, n: int, timeout_s: float = 3.0) -> bytes:
        with trio.fail_after(timeout_s):
            while len(self.buffer) < n:
                data = await self.stream.receive_some(65536)
                assert data, "connection closed"
                self.buffer += data
        return bytes(self.buffer)

    async def closed(self, timeout_s: float = 2.0) -> str:
        """How the proxy ends this connection within ``timeout_s``: "reset" or "eof"."""
        with trio.fail_after(timeout_s):
            try:
                while await self.stream.receive_some(65536):
                    pass
            except trio.BrokenResourceError as e:
                assert isinstance(e.__cause__, ConnectionResetError)
                return "reset"
        return "eof"


async def wait_until(predicate: Callable[[], object], timeout_s: float = 3.0) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.01)


@asynccontextmanager
async def proxied(
    handler: Callable[[trio.SocketStream], Awaitable[None]], *, framed: bool = True, seed: int = 1
) -> AsyncIterator[tuple[FaultProxy, int]]:
    """A target server running ``handler`` and a proxy in front of it on link ``c->s``."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        target = listeners[0].socket.getsockname()[1]
        async with FaultProxy({LINK: (0, "127.0.0.1", target, framed)}, seed) as proxy:
            yield proxy, proxy.port(LINK)
        nursery.cancel_scope.cancel()


def direction_stats(proxy: FaultProxy, direction: str) -> dict[str, int]:
    stats: dict[str, int] = proxy.stats()[LINK][direction]
    return stats


def handled(proxy: FaultProxy) -> int:
    """Frames of ``a_to_b`` the proxy has decided about: forwarded or dropped."""
    stats = direction_stats(proxy, "a_to_b")
    return stats["frames_forwarded"] + stats["frames_dropped"]


# ---------------------------------------------------------------------------- forwarding


async def test_frames_flow_both_ways() -> None:
    real = b"".join(encode_frame(3, 7, False, {"topic": "t"}, [b"payload"]))
    frames = [frame(b"a"), real, frame(bytes(300_000)), frame(b"")]
    async with proxied(FrameServer().handle) as (proxy, port):
        client = await FrameClient.connect(port)
        await client.send(*frames)
        assert await client.frames(4) == frames
        await wait_until(lambda: direction_stats(proxy, "b_to_a")["frames_forwarded"] == 4)
        a_to_b = direction_stats(proxy, "a_to_b")
        assert a_to_b["frames_forwarded"] == 4
        assert a_to_b["bytes_forwarded"] == sum(map(len, frames))
        assert proxy.stats()[LINK]["connections_open"] == 1


@pytest.mark.parametrize("framed", [False, True])
async def test_bytes_that_are_not_frames_still_flow(framed: bool) -> None:
    # a declared length of 4 GiB is no frame: a framed route falls back to raw chunks
    data = b"\xff\xff\xff\xffnot a frame" + bytes(range(256)) * 400
    async with proxied(raw_echo, framed=framed) as (_proxy, port):
        client = await FrameClient.connect(port)
        await client.send(data)
        assert await client.raw(len(data)) == data


# ---------------------------------------------------------------------------- cut and heal


async def test_cut_both_ways_then_heal() -> None:
    server = FrameServer(echo=False)
    async with proxied(server.handle) as (proxy, port):
        client = await FrameClient.connect(port)
        await wait_until(lambda: server.streams)
        proxy.cut(LINK)
        await client.send(frame(b"lost-up"))
        await server.push(frame(b"lost-down"))
        assert await client.nothing_for()
        assert server.received == []
        proxy.heal(LINK)
        await client.send(frame(b"up"))
        await server.push(frame(b"down"))
        assert await client.frames(1) == [frame(b"down")]
        await wait_until(lambda: server.received == [frame(b"up")])
        assert direction_stats(proxy, "a_to_b")["frames_cut"] == 1
        assert direction_stats(proxy, "b_to_a")["frames_cut"] == 1


async def test_a_cut_stalls_an_unframed_stream_and_heal_delivers_every_byte_in_order() -> None:
    # pysyncobj's metadata traffic is not frames: dropping a piece from the middle of its
    # stream would corrupt it, which no real network does to a TCP connection
    async with proxied(raw_echo, framed=False) as (proxy, port):
        client = await FrameClient.connect(port)
        await client.send(b"before-")
        assert await client.raw(7) == b"before-"
        proxy.cut(LINK, direction="a_to_b")
        await client.send(b"during-the-cut")
        assert await client.nothing_for()
        proxy.heal(LINK)
        assert await client.raw(7 + 14) == b"before-during-the-cut"
        assert direction_stats(proxy, "a_to_b")["frames_cut"] == 0
        assert direction_stats(proxy, "a_to_b")["stalls"] >= 1


@pytest.mark.parametrize("cut", ["a_to_b", "b_to_a"])
async def test_one_way_cut(cut: Direction) -> None:
    server = FrameServer(echo=False)
    async with proxied(server.handle) as (proxy, port):
        client = await FrameClient.connect(port)
        await wait_until(lambda: server.streams)
        proxy.cut(LINK, direction=cut)
        await client.send(frame(b"up"))
        await server.push(frame(b"down"))
        if cut == "a_to_b":
            assert await client.frames(1) == [frame(b"down")]
            await trio.sleep(QUIET_S)
            assert server.received == []
        else:
            await wait_until(lambda: server.received == [frame(b"up")])
            assert await client.nothing_for()


async def test_cut_with_reset_closes_connections_until_healed() -> None:
    async with proxied(FrameServer().handle) as (proxy, port):
        client = await FrameClient.connect(port)
        await client.send(frame(b"hello"))
        assert await client.frames(1) == [frame(b"hello")]
        proxy.cut(LINK, direction="a_to_b", reset=True)
        assert await client.closed() == "reset"
        refused = await FrameClient.connect(port)
        assert await refused.closed() == "reset"
        proxy.heal(LINK)
        again = await FrameClient.connect(port)
        await again.send(frame(b"back"))
        assert await again.frames(1) == [frame(b"back")]
        stats = proxy.stats()[LINK]
        assert stats["connections_reset"] == 1 and stats["connections_refused"] == 1


async def test_reset_connections_is_one_off() -> None:
    async with proxied(FrameServer().handle) as (proxy, port):
        client = await FrameClient.connect(port)
        await client.send(frame(b"x"))
        await client.frames(1)
        assert proxy.reset_connections(LINK) == 1
        assert await client.closed() == "reset"
        fresh = await FrameClient.connect(port)
        await fresh.send(frame(b"y"))
        assert await fresh.frames(1) == [frame(b"y")]


# ---------------------------------------------------------------------------- frame faults


async def test_drop_all_then_none() -> None:
    server = FrameServer(echo=False)
    async with proxied(server.handle) as (proxy, port):
        client = await FrameClient.connect(port)
        proxy.drop(LINK, 1.0, direction="a_to_b")
        await client.send(*(frame(b"%d" % i) for i in range(5)))
        await wait_until(lambda: direction_stats(proxy, "a_to_b")["frames_dropped"] == 5)
        proxy.drop(LINK, 0.0, direction="a_to_b")
        await client.send(*(frame(b"kept %d" % i) for i in range(5)))
        await wait_until(lambda: len(server.received) == 5)
        assert server.received == [frame(b"kept %d" % i) for i in range(5)]


async def test_duplicate_sends_each_frame_twice() -> None:
    server = FrameServer(echo=False)
    async with proxied(server.handle) as (proxy, port):
        client = await FrameClient.connect(port)
        proxy.duplicate(LINK, 1.0, direction="a_to_b")
        await client.send(frame(b"1"), frame(b"2"), frame(b"3"))
        await wait_until(lambda: len(server.received) == 6)
        assert server.received == [frame(b) for b in (b"1", b"1", b"2", b"2", b"3", b"3")]
        assert direction_stats(proxy, "a_to_b")["frames_duplicated"] == 3


async def test_reorder_swaps_two_frames_and_releases_a_lone_one() -> None:
    server = FrameServer(echo=False)
    async with proxied(server.handle) as (proxy, port):
        client = await FrameClient.connect(port)
        proxy.reorder(LINK, 1.0, window=1, direction="a_to_b", hold_ms=200)
        await client.send(frame(b"first"), frame(b"second"))
        await wait_until(lambda: len(server.received) == 2)
        assert server.received == [frame(b"second"), frame(b"first")]
        start = trio.current_time()
        await client.send(frame(b"alone"))
        await wait_until(lambda: len(server.received) == 3)
        assert trio.current_time() - start >= 0.19


@pytest.mark.parametrize(("direction", "minimum_s"), [("a_to_b", 0.15), ("both", 0.3)])
async def test_delay(direction: Direction, minimum_s: float) -> None:
    async with proxied(FrameServer().handle) as (proxy, port):
        client = await FrameClient.connect(port)
        proxy.delay(LINK, 150, direction=direction)
        start = trio.current_time()
        await client.send(frame(b"ping"))
        assert await client.frames(1) == [frame(b"ping")]
        assert minimum_s <= trio.current_time() - start < minimum_s + 0.5


async def test_delay_with_jitter_keeps_frame_order() -> None:
    async with proxied(FrameServer().handle) as (proxy, port):
        client = await FrameClient.connect(port)
        proxy.delay(LINK, 30, jitter_ms=30)
        frames = [frame(b"%d" % i) for i in range(30)]
        for f in frames:
            await client.send(f)
            await trio.sleep(0.002)
        assert await client.frames(30) == frames


async def test_throttle() -> None:
    server = FrameServer(echo=False)
    frames = [frame(bytes(10_000)) for _ in range(12)]  # 120 KB at 100 KB/s: about 1.2 s
    async with proxied(server.handle) as (proxy, port):
        client = await FrameClient.connect(port)
        proxy.throttle(LINK, 100_000, direction="a_to_b")
        start = trio.current_time()
        await client.send(*frames)
        await wait_until(lambda: len(server.received) == 12)
        assert 1.15 <= trio.current_time() - start < 2.5
        assert server.received == frames


@pytest.mark.parametrize("fault", ["delay", "throttle"])
async def test_heal_releases_frames_already_waiting(fault: str) -> None:
    server = FrameServer(echo=False)
    async with proxied(server.handle) as (proxy, port):
        client = await FrameClient.connect(port)
        if fault == "delay":
            proxy.delay(LINK, 60_000)
        else:
            proxy.throttle(LINK, 10)  # a 1 KB frame would take 100 s
        await client.send(frame(bytes(1000)))
        await trio.sleep(0.1)
        assert server.received == []
        proxy.heal(LINK)
        await wait_until(lambda: server.received == [frame(bytes(1000))], timeout_s=1.0)


async def test_an_error_inside_the_proxy_block_leaves_as_it_is() -> None:
    with pytest.raises(KeyError):
        async with FaultProxy({LINK: (0, "127.0.0.1", 1)}):
            raise KeyError("mine")


async def test_same_seed_same_drop_pattern() -> None:
    async def delivered(seed: int) -> list[bytes]:
        server = FrameServer(echo=False)
        async with proxied(server.handle, seed=seed) as (proxy, port):
            client = await FrameClient.connect(port)
            proxy.drop(LINK, 0.5, direction="a_to_b")
            await client.send(*(frame(b"%d" % i) for i in range(40)))
            await wait_until(lambda: handled(proxy) == 40)
            proxy.heal()
            await client.send(frame(b"fence"))
            await wait_until(lambda: server.received[-1:] == [frame(b"fence")])
        return server.received[:-1]

    first = await delivered(5)
    assert 5 < len(first) < 35
    assert await delivered(5) == first
    assert await delivered(6) != first


# ---------------------------------------------------------------------------- control


def test_bad_control_requests_change_nothing() -> None:
    proxy = FaultProxy({LINK: (0, "127.0.0.1", 1)}, seed=3)
    before = proxy.current_faults(LINK)
    bad = [
        b"{not json",
        b'"cut"',
        b'{"cmd": "explode"}',
        b'{"cmd": "cut"}',
        b'{"cmd": "cut", "link": "9->9"}',
        b'{"cmd": "cut", "link": "c->s", "direction": "sideways"}',
        b'{"cmd": "cut", "link": "c->s", "reset": "yes"}',
        b'{"cmd": "cut", "link": "c->s", "resett": true}',
        b'{"cmd": "drop", "link": "c->s", "probability": 1.5}',
        b'{"cmd": "drop", "link": "c->s", "probability": "half"}',
        b'{"cmd": "delay", "link": "c->s", "ms": NaN}',
        b'{"cmd": "delay", "link": "c->s", "ms": -5}',
        b'{"cmd": "reorder", "link": "c->s", "probability": 0.5, "window": 0}',
        b'{"cmd": "throttle", "link": "c->s", "bytes_per_s": -1}',
        b'{"cmd": "throttle", "link": "c->s"}',
        b"\xff\xfe",
    ]
    for line in bad:
        answer = proxy.handle_line(line)
        assert answer["ok"] is False and answer["error"], line
    assert proxy.current_faults(LINK) == before
    assert proxy.faults() == []


def test_control_changes_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    proxy = FaultProxy({LINK: (0, "127.0.0.1", 1)}, seed=3)
    requests = [
        {"cmd": "cut", "link": LINK, "direction": "a_to_b", "reset": True},
        {"cmd": "delay", "link": LINK, "ms": 20, "jitter_ms": 5},
        {"cmd": "throttle", "link": LINK, "bytes_per_s": None},
        {"cmd": "heal"},
    ]
    with caplog.at_level(logging.INFO, logger="raftlog.proxy"):
        for request in requests:
            assert proxy.handle_command(request) == {"ok": True}
    faults = proxy.faults()
    assert [f["kind"] for f in faults] == ["cut", "delay", "throttle", "heal"]
    assert faults[0]["direction"] == "a_to_b" and faults[0]["reset"] is True
    assert [f["t"] for f in faults] == sorted(f["t"] for f in faults)
    assert [f["seq"] for f in proxy.faults(since=2)] == [2, 3]
    assert "event=fault link=c->s kind=cut direction=a_to_b reset=true" in caplog.text
    assert "event=fault link=* kind=heal direction=both" in caplog.text


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


def _echo_through(port: int, payload: bytes, timeout_s: float = 2.0) -> bytes | None:
    """Send one frame through the proxy; the echo, or None when nothing came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(frame(payload))
        try:
            return sock.recv(65536)
        except TimeoutError:
            return None


def test_process_mode_with_proxy_control(tmp_path: Path) -> None:
    target, listen, control_port = free_ports(3)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", target), _EchoHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    routes = tmp_path / "routes.json"
    routes.write_text(
        json.dumps(
            {LINK: {"listen_port": listen, "target_host": "127.0.0.1", "target_port": target}}
        )
    )
    log_file = (tmp_path / "proxy.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "raftlog.scenarios.proxy",
        "--routes",
        str(routes),
        "--control-port",
        str(control_port),
        "--seed",
        "7",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        with ProxyControl(control_port, connect_timeout_s=10) as control:
            assert control.ping() == [LINK]
            assert _echo_through(listen, b"one") == frame(b"one")
            control.cut(LINK, direction="a_to_b")
            assert _echo_through(listen, b"two", timeout_s=QUIET_S) is None
            control.heal(LINK)
            assert _echo_through(listen, b"three") == frame(b"three")
            with pytest.raises(ProxyControlError, match="probability"):
                control.drop(LINK, 2.0)
            stats = control.stats()[LINK]
            assert stats["a_to_b"]["frames_forwarded"] == 2
            assert stats["a_to_b"]["frames_cut"] == 1
            assert [f["kind"] for f in control.faults()] == ["cut", "heal"]
            _check_malformed_control_lines(control_port)
            assert control.ping() == [LINK]
            assert _echo_through(listen, b"four") == frame(b"four")
        assert "event=fault link=c->s kind=cut" in (tmp_path / "proxy.log").read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        server.shutdown()
        server.server_close()
        log_file.close()


def _check_malformed_control_lines(control_port: int) -> None:
    with socket.create_connection(("127.0.0.1", control_port), timeout=3) as sock:
        reader = sock.makefile("rb")
        sock.sendall(b"{oops\n")
        assert json.loads(reader.readline())["ok"] is False
        sock.sendall(b'{"cmd": "ping"}\n')  # the same connection goes on
        assert json.loads(reader.readline())["ok"] is True
        sock.sendall(b"x" * (CONTROL_LINE_MAX + 10))
        answer = json.loads(reader.readline())
        assert answer["ok"] is False and "longer than" in answer["error"]
        assert reader.readline() == b""  # and the connection is closed
        reader.close()


def test_process_refuses_bad_routes(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({LINK: [0, "10.0.0.1", 9092]}))
    start = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "raftlog.scenarios.proxy",
            "--routes",
            str(routes),
            "--control-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2 and "loopback" in result.stderr
    assert time.monotonic() - start < 20
