"""The fault proxy's control protocol: JSON lines over TCP, and the harness's blocking client.

A ``ControlServer`` serves one ``FaultProxy`` on ``127.0.0.1:port``: each line a client sends
is one JSON object ``{"cmd": ..., ...}``, and each gets one JSON line back, ``{"ok": true,
...}`` or ``{"ok": false, "error": "..."}``. Every argument of a request is checked (its
type here, its range by the proxy) before anything changes, and an unknown key is an error,
so a bad request changes nothing. Lines are at most ``CONTROL_LINE_MAX`` bytes; at most
``MAX_CONTROL_SESSIONS`` connections are served at once. The commands are listed in the
docstring of ``raftlog.scenarios.proxy``.

``ProxyControl`` is the blocking client the harness uses from outside trio: one method per
command, ``ProxyControlError`` for an answer that is not ok.
"""

from __future__ import annotations

import io
import json
import logging
import math
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Self, cast

import trio

from raftlog.scenarios.proxy_faults import Direction, _check_bool
from raftlog.scenarios.proxy_pump import _STREAM_ERRORS, READ_BYTES
from raftlog.scenarios.proxy_routes import HOST, _check_loopback, _check_port

if TYPE_CHECKING:
    from raftlog.scenarios.proxy import FaultProxy

log = logging.getLogger("raftlog.proxy")

CONTROL_LINE_MAX = 64 * 1024
MAX_CONTROL_SESSIONS = 16


# ---------------------------------------------------------------------------- server


class ControlServer:
    """Answers control requests for ``proxy``, decoded or as lines, and serves them on TCP."""

    def __init__(self, proxy: FaultProxy) -> None:
        self._proxy = proxy
        self._sessions = 0

    def handle_command(self, request: object) -> dict[str, Any]:
        """Answer one decoded control request; a bad one changes nothing."""
        try:
            if not isinstance(request, dict):
                raise ValueError("a request must be a JSON object")
            cmd = request.get("cmd")
            handler = _COMMANDS.get(cmd) if isinstance(cmd, str) else None
            if handler is None:
                raise ValueError(f"unknown command {cmd!r}; commands: {', '.join(_COMMANDS)}")
            return {"ok": True, **handler(self._proxy, _Args(request))}
        except ValueError as e:
            return {"ok": False, "error": str(e)}
        except Exception as e:  # a bug here must not take the proxy down
            log.exception("event=proxy_control_failed request=%r", request)
            return {"ok": False, "error": f"internal error: {e!r}"}

    def handle_line(self, line: bytes) -> dict[str, Any]:
        """Answer one control line (without its newline)."""
        try:
            request = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return {"ok": False, "error": f"a request must be one JSON object per line: {e}"}
        return self.handle_command(request)

    async def serve(
        self, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve the control protocol on 127.0.0.1:``port`` (0: a free one, reported
        through ``task_status``) until cancelled."""
        listeners = await trio.open_tcp_listeners(port, host=HOST)
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._session, listeners)

    async def _session(self, stream: trio.SocketStream) -> None:
        """One control connection; whatever its peer does, the proxy goes on."""
        try:
            async with stream:
                if self._sessions >= MAX_CONTROL_SESSIONS:
                    await _answer(stream, {"ok": False, "error": "too many control connections"})
                    return
                self._sessions += 1
                try:
                    await self._requests(stream)
                finally:
                    self._sessions -= 1
        except _STREAM_ERRORS:
            pass

    async def _requests(self, stream: trio.SocketStream) -> None:
        lines = _LineReader(stream, CONTROL_LINE_MAX)
        while True:  # ends with the connection
            try:
                line = await lines.next_line()
            except ValueError as e:
                await _answer(stream, {"ok": False, "error": str(e)})
                return
            if line is None:
                return
            await _answer(stream, self.handle_line(line))


# ---------------------------------------------------------------------------- requests


async def _answer(stream: trio.SocketStream, answer: Mapping[str, Any]) -> None:
    await stream.send_all(json.dumps(answer).encode() + b"\n")


class _LineReader:
    """Lines of at most ``limit`` bytes from a stream; ``ValueError`` for a longer one."""

    def __init__(self, stream: trio.SocketStream, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._buffer = bytearray()

    async def next_line(self) -> bytes | None:
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > self._limit:
                raise ValueError(f"control line longer than {self._limit} bytes")
            data = await self._stream.receive_some(READ_BYTES)
            if not data:
                return None
            self._buffer += data
        if end > self._limit:
            raise ValueError(f"control line longer than {self._limit} bytes")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line


class _Args:
    """A control request's arguments: every key must be used, each of the expected type."""

    def __init__(self, request: dict[str, Any]) -> None:
        self._request = request
        self._used = {"cmd"}

    def get(self, key: str, default: Any = ..., *, check: Callable[[Any], Any]) -> Any:
        self._used.add(key)
        if key not in self._request:
            if default is ...:
                raise ValueError(f"{self._request['cmd']} needs {key!r}")
            return default
        try:
            return check(self._request[key])
        except ValueError as e:
            raise ValueError(f"{key!r}: {e}") from None

    def link(self) -> str:
        return str(self.get("link", check=_check_text))

    def direction(self) -> Direction:
        return cast(Direction, self.get("direction", "both", check=_check_direction))

    def number(self, key: str, default: Any = ...) -> Any:
        return self.get(key, default, check=_check_number)

    def done(self) -> None:
        unknown = sorted(set(self._request) - self._used)
        if unknown:
            raise ValueError(f"{self._request['cmd']} takes no {', '.join(map(repr, unknown))}")


def _check_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _check_direction(value: object) -> Direction:
    if value not in ("a_to_b", "b_to_a", "both"):
        raise ValueError(f"expected a_to_b, b_to_a or both, got {value!r}")
    return value


def _check_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def _check_optional_int(value: object) -> int | None:
    if value is not None and type(value) is not int:
        raise ValueError(f"expected an integer or null, got {value!r}")
    return value


# ---------------------------------------------------------------------------- commands


def _cmd_cut(proxy: FaultProxy, a: _Args) -> dict[str, Any]:
    link, direction = a.link(), a.direction()
    reset = a.get("reset", False, check=lambda v: _check_bool(v, "reset"))
    a.done()
    proxy.cut(link, direction=direction, reset=reset)
    return {}


def _cmd_delay(proxy: FaultProxy, a: _Args) -> dict[str, Any]:
    link, direction, ms, jitter = a.link(), a.direction(), a.number("ms"), a.number("jitter_ms", 0)
    a.done()
    proxy.delay(link, ms, jitter, direction=direction)
    return {}


def _probability_command(kind: str) -> Callable[[FaultProxy, _Args], dict[str, Any]]:
    def command(proxy: FaultProxy, a: _Args) -> dict[str, Any]:
        link, direction, probability = a.link(), a.direction(), a.number("probability")
        a.done()
        proxy._set_probability(link, kind, probability, direction)
        return {}

    return command


def _cmd_reorder(proxy: FaultProxy, a: _Args) -> dict[str, Any]:
    link, direction, probability = a.link(), a.direction(), a.number("probability")
    window = a.get("window", 1, check=_check_optional_int)
    hold_ms = a.number("hold_ms", 100.0)
    a.done()
    proxy.reorder(link, probability, window, direction=direction, hold_ms=hold_ms)
    return {}


def _cmd_throttle(proxy: FaultProxy, a: _Args) -> dict[str, Any]:
    link, direction = a.link(), a.direction()
    rate = a.get("bytes_per_s", check=_check_optional_int)
    a.done()
    proxy.throttle(link, rate, direction=direction)
    return {}


def _cmd_reset_connections(proxy: FaultProxy, a: _Args) -> dict[str, Any]:
    link = a.link()
    a.done()
    return {"connections_reset": proxy.reset_connections(link)}


def _cmd_heal(proxy: FaultProxy, a: _Args) -> dict[str, Any]:
    link = a.get("link", None, check=_check_text)
    direction = a.direction()
    a.done()
    proxy.heal(link, direction=direction)
    return {}


def _cmd_stats(proxy: FaultProxy, a: _Args) -> dict[str, Any]:
    a.done()
    return {"stats": proxy.stats()}


def _cmd_faults(proxy: FaultProxy, a: _Args) -> dict[str, Any]:
    since = a.get("since", 0, check=_check_optional_int)
    a.done()
    return {"faults": proxy.faults(since or 0)}


def _cmd_ping(proxy: FaultProxy, a: _Args) -> dict[str, Any]:
    a.done()
    return {"links": proxy.links}


_COMMANDS: dict[str, Callable[[FaultProxy, _Args], dict[str, Any]]] = {
    "cut": _cmd_cut,
    "delay": _cmd_delay,
    "drop": _probability_command("drop"),
    "duplicate": _probability_command("duplicate"),
    "reorder": _cmd_reorder,
    "throttle": _cmd_throttle,
    "reset_connections": _cmd_reset_connections,
    "heal": _cmd_heal,
    "stats": _cmd_stats,
    "faults": _cmd_faults,
    "ping": _cmd_ping,
}


# ---------------------------------------------------------------------------- blocking client


class ProxyControlError(RuntimeError):
    """The proxy answered ``{"ok": false, "error": ...}``."""


class ProxyControl:
    """The harness's blocking client of a proxy process's control port: one method per
    command, each returning the answer (without ``ok``) or raising ``ProxyControlError``.

    It connects on first use, retrying until ``connect_timeout_s`` (the proxy may still be
    starting); each request waits at most ``timeout_s`` for its answer.
    """

    ANSWER_MAX = 64 * 1024 * 1024

    def __init__(
        self,
        port: int,
        host: str = HOST,
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.address = (_check_loopback(host), _check_port(port, "port", zero_ok=False))
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._sock: socket.socket | None = None
        self._reader: io.BufferedReader | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            if self._reader is not None:
                self._reader.close()
            self._sock.close()
            self._sock, self._reader = None, None

    def connect(self) -> None:
        """Connect now, retrying refused connections until the deadline."""
        deadline = time.monotonic() + self.connect_timeout_s
        while self._sock is None:
            try:
                sock = socket.create_connection(self.address, timeout=self.timeout_s)
            except OSError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
                continue
            self._sock, self._reader = sock, sock.makefile("rb")

    def request(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send one request and return its answer; ``ProxyControlError`` if not ok."""
        self.connect()
        assert self._sock is not None and self._reader is not None
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
            line = self._reader.readline(self.ANSWER_MAX)
        except OSError:
            self.close()
            raise
        if not line.endswith(b"\n"):
            self.close()
            raise ConnectionError("the proxy closed the control connection")
        answer: dict[str, Any] = json.loads(line)
        if not answer.pop("ok", False):
            raise ProxyControlError(answer.get("error", "unknown error"))
        return answer

    def cut(self, link: str, direction: Direction = "both", reset: bool = False) -> None:
        self.request({"cmd": "cut", "link": link, "direction": direction, "reset": reset})

    def delay(
        self, link: str, ms: float, jitter_ms: float = 0.0, direction: Direction = "both"
    ) -> None:
        self.request(
            {"cmd": "delay", "link": link, "ms": ms, "jitter_ms": jitter_ms, "direction": direction}
        )

    def drop(self, link: str, probability: float, direction: Direction = "both") -> None:
        self.request(
            {"cmd": "drop", "link": link, "probability": probability, "direction": direction}
        )

    def duplicate(self, link: str, probability: float, direction: Direction = "both") -> None:
        self.request(
            {"cmd": "duplicate", "link": link, "probability": probability, "direction": direction}
        )

    def reorder(
        self,
        link: str,
        probability: float,
        window: int = 1,
        direction: Direction = "both",
        hold_ms: float = 100.0,
    ) -> None:
        self.request(
            {
                "cmd": "reorder",
                "link": link,
                "probability": probability,
                "window": window,
                "direction": direction,
                "hold_ms": hold_ms,
            }
        )

    def throttle(self, link: str, bytes_per_s: int | None, direction: Direction = "both") -> None:
        self.request(
            {"cmd": "throttle", "link": link, "bytes_per_s": bytes_per_s, "direction": direction}
        )

    def reset_connections(self, link: str) -> int:
        return int(self.request({"cmd": "reset_connections", "link": link})["connections_reset"])

    def heal(self, link: str | None = None, direction: Direction = "both") -> None:
        request: dict[str, Any] = {"cmd": "heal", "direction": direction}
        if link is not None:
            request["link"] = link
        self.request(request)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.request({"cmd": "stats"})["stats"]
        return stats

    def faults(self, since: int = 0) -> list[dict[str, Any]]:
        faults: list[dict[str, Any]] = self.request({"cmd": "faults", "since": since})["faults"]
        return faults

    def ping(self) -> list[str]:
        links: list[str] = self.request({"cmd": "ping"})["links"]
        return links
