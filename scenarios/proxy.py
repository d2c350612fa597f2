"""The scenario harness's userspace fault proxy: every link of a scenario goes through it.

A scenario never lets a broker (or a client) talk to another broker directly: each *link*,
named like ``"1->2"`` (node 1 dialling node 2) or ``"client->3"``, is a *route*
``(listen_port, target_host, target_port)``. The proxy listens on ``127.0.0.1:listen_port``
and forwards every accepted connection to the target, both ways, until either side closes.
Side ``a`` of a link is the one that connects to the proxy, side ``b`` the target; the two
directions ``a_to_b`` and ``b_to_a`` carry separate faults, so a link can be cut one way.

Frames
    A framed route (the default) cuts each direction into raftlog frames -- a big-endian u32
    length, then that many bytes (``raftlog/wire/frames.py``) -- and every fault acts on
    whole frames. The proxy reads nothing but the length, so any length-prefixed bytes pass.
    A declared length above ``max_frame_bytes`` means the bytes are not frames: that
    direction of the connection falls back to raw chunks for the rest of its life, and its
    bytes still flow. A route with ``framed=False`` (the metadata port's pysyncobj traffic)
    forwards raw chunks from the start, and frame faults apply to the chunks as they were
    read.

Faults (per link and direction, set and cleared at run time)
    ``cut``           forward nothing; what is queued or arrives is dropped. With
                      ``reset=True`` the link's connections are closed with an RST (SO_LINGER
                      0, both sides: a connection cannot be closed one way) and new ones are
                      accepted and reset at once until the link is healed. Without reset,
                      connections stay open and new ones are forwarded, silent in the cut
                      direction (an end of stream does not cross a cut either). On an
                      unframed stream a cut stalls the bytes instead of dropping them (a
                      TCP stream never loses a piece from its middle): they wait, pushing
                      back on the sender, and flow again when the link heals.
    ``delay``         each frame leaves ``ms`` (+- a uniform ``jitter_ms``) after it arrived;
                      frames keep their order, as on one TCP connection.
    ``drop``          each frame is lost with ``probability``.
    ``duplicate``     each frame is sent twice with ``probability``.
    ``reorder``       with ``probability`` a frame is held back and sent after the next
                      ``window`` frames (or after ``hold_ms`` if they do not come).
    ``throttle``      the link direction (all its connections together) carries at most
                      ``bytes_per_s``.
    ``reset_connections`` (one-off) closes every current connection of the link with an RST.
    ``heal``          clears every fault of a link (or of every link).

    A change takes effect at once, also on frames already queued or waiting: after a heal
    delayed frames go out and a throttled one is no longer paced, after a cut they are
    dropped. Only a frame held back by ``reorder`` waits for the next frames or its
    ``hold_ms`` (at most ``REORDER_HOLD_MS_MAX``).

    Losing, repeating or swapping whole frames on a TCP stream is what a lossy network looks
    like to our protocol: the messages a Raft node sends over a connection that broke and
    came back, retransmitted by the sender, or overtaken by later ones (the way Jepsen-style
    tests exercise Raft's retransmission and idempotence). No fault ever splits a frame,
    changes a byte of it or forwards a part of it; only a closed connection ends a stream
    in the middle of one.

Determinism
    Every random choice comes from a ``random.Random`` per link direction, seeded from
    ``(seed, link, direction, n)`` at its n-th fault change: the choices made after a
    change depend only on the seed and on the frames that cross after it, not on the
    traffic before. (What depends on timing -- a held frame's ``hold_ms`` running out --
    stays timing-dependent.)

Control
    In-process: ``async with FaultProxy(routes, seed) as proxy: proxy.cut("1->2")``. As a
    process: ``python -m raftlog.scenarios.proxy --routes routes.json --control-port N
    --seed S``, which prints one JSON line ``{"event": "ready", "control_port": N, "ports":
    {...}}`` on stdout once it listens, and takes one JSON object per line on a TCP
    connection to ``127.0.0.1:N``::

        {"cmd": "cut", "link": "1->2", "direction": "both", "reset": false}
        {"cmd": "delay", "link": "1->2", "ms": 50, "jitter_ms": 10, "direction": "a_to_b"}
        {"cmd": "drop" | "duplicate", "link": "1->2", "probability": 0.1, "direction": ...}
        {"cmd": "reorder", "link": "1->2", "probability": 0.2, "window": 1, "hold_ms": 100}
        {"cmd": "throttle", "link": "1->2", "bytes_per_s": 100000}   (null: no limit)
        {"cmd": "reset_connections", "link": "1->2"}
        {"cmd": "heal"}  or  {"cmd": "heal", "link": "1->2", "direction": "b_to_a"}
        {"cmd": "stats"}  {"cmd": "faults", "since": 0}  {"cmd": "ping"}

    ``direction`` defaults to ``"both"``. Each answer is one JSON line, ``{"ok": true, ...}``
    or ``{"ok": false, "error": "..."}``; a bad request changes nothing. Lines are at most
    ``CONTROL_LINE_MAX`` bytes. ``ProxyControl`` is the harness's blocking client.

Every fault change is logged as one line ``event=fault link=... kind=... ...`` and kept, with
a monotonic timestamp (``time.monotonic()``, comparable across processes on one host), in
a bounded list the harness fetches with ``faults``.

Modules
    This module holds ``FaultProxy`` (listeners, connections, the fault methods) and the
    ``python -m`` entry point, and re-exports the public names of the others:
    ``proxy_routes`` (``Route``, checking and loading routes), ``proxy_faults`` (the fault
    state of a link direction, its seeded RNG, argument checks, the fault log),
    ``proxy_pump`` (one direction of a connection: framing, queueing, applying the faults)
    and ``proxy_control`` (the control protocol and the ``ProxyControl`` client).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import socket
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import trio

from raftlog.scenarios.proxy_control import (
    CONTROL_LINE_MAX,
    MAX_CONTROL_SESSIONS,
    ControlServer,
    ProxyControl,
    ProxyControlError,
)
from raftlog.scenarios.proxy_faults import (
    BYTES_PER_S_MAX,
    DELAY_MS_MAX,
    DIRECTIONS,
    FAULT_LOG_MAX,
    REORDER_HOLD_MS_MAX,
    REORDER_WINDOW_MAX,
    Direction,
    DirectionFaults,
    DirectionStats,
    FaultLog,
    _check_bool,
    _check_bytes_per_s,
    _check_range,
    _check_window,
    _DirectionState,
)
from raftlog.scenarios.proxy_pump import (
    _STREAM_ERRORS,
    READ_BYTES,
    THROTTLE_PIECE_BYTES,
    _Framer,
    _read_into,
    _UnitQueue,
    _Writer,
)
from raftlog.scenarios.proxy_routes import (
    HOST,
    LINK_NAME_MAX,
    Route,
    RouteSpec,
    _check_port,
    load_routes,
    make_route,
    make_routes,
)
from raftlog.wire.frames import DEFAULT_MAX_FRAME_BYTES as WIRE_MAX_FRAME_BYTES

__all__ = [
    "BYTES_PER_S_MAX",
    "CONNECT_TIMEOUT_S",
    "CONTROL_LINE_MAX",
    "DEFAULT_MAX_FRAME_BYTES",
    "DELAY_MS_MAX",
    "DIRECTIONS",
    "FAULT_LOG_MAX",
    "HOST",
    "LINK_NAME_MAX",
    "MAX_CONNECTIONS_PER_LINK",
    "MAX_CONTROL_SESSIONS",
    "QUEUE_BYTES",
    "READ_BYTES",
    "REORDER_HOLD_MS_MAX",
    "REORDER_WINDOW_MAX",
    "ROUTES_FILE_MAX",
    "THROTTLE_PIECE_BYTES",
    "Direction",
    "DirectionFaults",
    "DirectionStats",
    "FaultProxy",
    "ProxyControl",
    "ProxyControlError",
    "Route",
    "RouteSpec",
    "load_routes",
    "main",
    "make_route",
    "make_routes",
]

log = logging.getLogger("raftlog.proxy")

DEFAULT_MAX_FRAME_BYTES = WIRE_MAX_FRAME_BYTES
"""raftlog's own limit on a frame's declared length: a larger one means "not frames"."""
QUEUE_BYTES = 2 * 1024 * 1024
"""Bytes queued per connection direction (beyond one frame) before reading stops."""
CONNECT_TIMEOUT_S = 5.0
MAX_CONNECTIONS_PER_LINK = 1024
ROUTES_FILE_MAX = 1024 * 1024


# ---------------------------------------------------------------------------- connections


def _set_linger_zero(stream: trio.SocketStream) -> None:
    """Make the next close of ``stream`` send an RST instead of a FIN."""
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _reset_stream(stream: trio.SocketStream) -> None:
    _set_linger_zero(stream)
    stream.socket.close()


@dataclass(eq=False, slots=True)
class _Connection:
    """One accepted connection and its upstream twin."""

    client: trio.SocketStream
    upstream: trio.SocketStream
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    aborted: bool = False

    def abort(self) -> None:
        """Close both sides with an RST (once the connection's task unwinds)."""
        if not self.aborted:
            self.aborted = True
            _set_linger_zero(self.client)
            _set_linger_zero(self.upstream)
        self.cancel_scope.cancel()

    def close(self) -> None:
        self.client.socket.close()
        self.upstream.socket.close()


@dataclass(slots=True)
class _LinkState:
    name: str
    route: Route
    directions: dict[str, _DirectionState]
    connections: set[_Connection] = field(default_factory=set)
    connecting: int = 0
    port: int = 0
    accepted: int = 0
    refused: int = 0
    reset: int = 0
    connect_failures: int = 0

    def refusing(self) -> bool:
        return any(d.faults.refuse for d in self.directions.values())

    def abort_all(self) -> int:
        count = len(self.connections)
        for conn in list(self.connections):
            conn.abort()
        self.reset += count
        return count

    def stats(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "connections_accepted": self.accepted,
            "connections_open": len(self.connections),
            "connections_reset": self.reset,
            "connections_refused": self.refused,
            "connect_failures": self.connect_failures,
            **{name: dataclasses.asdict(d.stats) for name, d in self.directions.items()},
        }


# ---------------------------------------------------------------------------- the proxy


class FaultProxy:
    """Forwards every route's connections and injects the faults set on its links.

    Use as ``async with FaultProxy(routes, seed) as proxy``; the fault methods are plain
    (synchronous) calls that take effect at once and raise ``ValueError`` on bad arguments,
    having changed nothing. See the module docstring for what each fault does.
    """

    def __init__(
        self,
        routes: Mapping[str, RouteSpec],
        seed: int = 0,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_connections_per_link: int = MAX_CONNECTIONS_PER_LINK,
        queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        self.seed = seed
        self.max_frame_bytes = max_frame_bytes
        self.max_connections = max_connections_per_link
        self.queue_bytes = queue_bytes
        self._links = {
            name: _LinkState(name, route, {d: _DirectionState(name, d, seed) for d in DIRECTIONS})
            for name, route in make_routes(routes).items()
        }
        self._fault_log = FaultLog()
        self._control = ControlServer(self)
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        listeners = await self._bind_all()
        stack = contextlib.AsyncExitStack()
        nursery = await stack.enter_async_context(trio.open_nursery())
        self._exit_stack, self._nursery = stack, nursery
        for name, listener in listeners.items():
            nursery.start_soon(self._accept_loop, self._links[name], listener, nursery)
        log.info("event=proxy_started links=%s seed=%d", ",".join(self._links), self.seed)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._exit_stack is not None and self._nursery is not None
        self._nursery.cancel_scope.cancel()
        stack, self._exit_stack, self._nursery = self._exit_stack, None, None
        # the body's own exception is not the nursery's: it leaves as it is, not grouped
        await stack.aclose()
        return None

    async def _bind_all(self) -> dict[str, trio.SocketListener]:
        listeners: dict[str, trio.SocketListener] = {}
        try:
            for name, link in self._links.items():
                try:
                    (listener,) = await trio.open_tcp_listeners(link.route.listen_port, host=HOST)
                except OSError as e:
                    where = f"{HOST}:{link.route.listen_port}"
                    raise OSError(e.errno, f"link {name}: cannot listen on {where}: {e}") from e
                listeners[name] = listener
                link.port = listener.socket.getsockname()[1]
        except BaseException:
            for listener in listeners.values():
                listener.socket.close()
            raise
        return listeners

    @property
    def links(self) -> list[str]:
        return list(self._links)

    @property
    def ports(self) -> dict[str, int]:
        """The port each link listens on (known once the proxy has started)."""
        return {name: link.port for name, link in self._links.items()}

    def port(self, link: str) -> int:
        return self._link(link).port

    # -------------------------------------------------------------- forwarding

    async def _accept_loop(
        self, link: _LinkState, listener: trio.SocketListener, nursery: trio.Nursery
    ) -> None:
        async with listener:
            while True:  # ends when the proxy is cancelled
                try:
                    stream = await listener.accept()
                except OSError as e:  # out of file descriptors, most likely
                    log.warning("event=proxy_accept_failed link=%s error=%r", link.name, e)
                    await trio.sleep(0.1)
                    continue
                assert isinstance(stream, trio.SocketStream)
                nursery.start_soon(self._serve_connection, link, stream)

    async def _serve_connection(self, link: _LinkState, client: trio.SocketStream) -> None:
        link.accepted += 1
        if link.refusing() or link.connecting + len(link.connections) >= self.max_connections:
            link.refused += 1
            _reset_stream(client)
            return
        link.connecting += 1
        try:
            upstream = await self._connect_upstream(link)
        except BaseException:  # the proxy is closing
            client.socket.close()
            raise
        finally:
            link.connecting -= 1
        if upstream is None or link.refusing():  # refusing: cut with reset while connecting
            _reset_stream(client)
            if upstream is not None:
                _reset_stream(upstream)
            return
        conn = _Connection(client, upstream)
        link.connections.add(conn)
        try:
            with conn.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, link, conn, client, upstream, "a_to_b")
                    nursery.start_soon(self._pump, link, conn, upstream, client, "b_to_a")
        finally:
            link.connections.discard(conn)
            conn.close()

    async def _connect_upstream(self, link: _LinkState) -> trio.SocketStream | None:
        route = link.route
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                return await trio.open_tcp_stream(route.target_host, route.target_port)
        except (OSError, trio.TooSlowError) as e:
            link.connect_failures += 1
            log.info("event=proxy_connect_failed link=%s error=%r", link.name, e)
            return None

    async def _pump(
        self,
        link: _LinkState,
        conn: _Connection,
        src: trio.SocketStream,
        dst: trio.SocketStream,
        direction: str,
    ) -> None:
        """Forward one direction of a connection until its end of stream; a broken socket
        on either side aborts the whole connection, as it would end a TCP connection."""
        state = link.directions[direction]
        queue = _UnitQueue(self.queue_bytes)
        framer = _Framer(link.route.framed, self.max_frame_bytes)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_read_into, src, queue, framer, link.name)
                await _Writer(dst, queue, state, framer).run()
        except* _STREAM_ERRORS:
            conn.abort()

    # -------------------------------------------------------------- faults

    def cut(self, link: str, *, direction: Direction = "both", reset: bool = False) -> None:
        """Forward nothing on ``direction``; with ``reset``, also reset the link's
        connections and new ones until it is healed."""
        states = self._states(link, direction)
        _check_bool(reset, "reset")
        for state in states:
            state.change(cut=True, refuse=reset)
        closed = self._links[link].abort_all() if reset else 0
        self._fault_log.record(link, "cut", direction, reset=reset, connections_reset=closed)

    def delay(
        self, link: str, ms: float, jitter_ms: float = 0.0, *, direction: Direction = "both"
    ) -> None:
        """Hold each frame ``ms`` +- ``jitter_ms`` (uniform) after it arrived; 0 clears."""
        states = self._states(link, direction)
        ms = _check_range(ms, "ms", 0.0, DELAY_MS_MAX)
        jitter_ms = _check_range(jitter_ms, "jitter_ms", 0.0, DELAY_MS_MAX)
        for state in states:
            state.change(delay_ms=ms, jitter_ms=jitter_ms)
        self._fault_log.record(link, "delay", direction, ms=ms, jitter_ms=jitter_ms)

    def drop(self, link: str, probability: float, *, direction: Direction = "both") -> None:
        """Lose each frame with ``probability``; 0 clears."""
        self._set_probability(link, "drop", probability, direction)

    def duplicate(self, link: str, probability: float, *, direction: Direction = "both") -> None:
        """Send each frame twice with ``probability``; 0 clears."""
        self._set_probability(link, "duplicate", probability, direction)

    def reorder(
        self,
        link: str,
        probability: float,
        window: int = 1,
        *,
        direction: Direction = "both",
        hold_ms: float = 100.0,
    ) -> None:
        """With ``probability`` hold a frame back until ``window`` later frames went (or
        ``hold_ms`` passed); 0 clears."""
        states = self._states(link, direction)
        probability = _check_range(probability, "probability", 0.0, 1.0)
        _check_window(window)
        hold_ms = _check_range(hold_ms, "hold_ms", 0.0, REORDER_HOLD_MS_MAX)
        for state in states:
            state.change(reorder=probability, reorder_window=window, reorder_hold_ms=hold_ms)
        self._fault_log.record(
            link, "reorder", direction, probability=probability, window=window, hold_ms=hold_ms
        )

    def throttle(
        self, link: str, bytes_per_s: int | None, *, direction: Direction = "both"
    ) -> None:
        """Carry at most ``bytes_per_s`` on the link direction; None clears."""
        states = self._states(link, direction)
        _check_bytes_per_s(bytes_per_s)
        for state in states:
            state.change(bytes_per_s=bytes_per_s)
        self._fault_log.record(link, "throttle", direction, bytes_per_s=bytes_per_s)

    def reset_connections(self, link: str) -> int:
        """Close every current connection of ``link`` with an RST; the number closed."""
        closed = self._link(link).abort_all()
        self._fault_log.record(link, "reset_connections", "both", connections_reset=closed)
        return closed

    def heal(self, link: str | None = None, *, direction: Direction = "both") -> None:
        """Clear every fault of ``link`` (of every link when None) on ``direction``."""
        names = [link] if link is not None else list(self._links)
        states = [s for name in names for s in self._states(name, direction)]
        for state in states:
            state.clear()
        self._fault_log.record(link if link is not None else "*", "heal", direction)

    def _set_probability(self, link: str, kind: str, probability: float, direction: str) -> None:
        states = self._states(link, direction)
        probability = _check_range(probability, "probability", 0.0, 1.0)
        for state in states:
            state.change(**{kind: probability})
        self._fault_log.record(link, kind, direction, probability=probability)

    def _link(self, name: str) -> _LinkState:
        link = self._links.get(name) if isinstance(name, str) else None
        if link is None:
            raise ValueError(f"unknown link {name!r}; links: {', '.join(self._links)}")
        return link

    def _states(self, link: str, direction: str) -> list[_DirectionState]:
        state = self._link(link)
        if direction == "both":
            return list(state.directions.values())
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be a_to_b, b_to_a or both, got {direction!r}")
        return [state.directions[direction]]

    # -------------------------------------------------------------- reports

    def stats(self) -> dict[str, Any]:
        """Per link: its port, connection counts, and per direction the frames and bytes
        forwarded, dropped, cut, duplicated, delayed and reordered."""
        return {name: link.stats() for name, link in self._links.items()}

    def faults(self, since: int = 0) -> list[dict[str, Any]]:
        """The fault changes with ``seq >= since``, oldest first (``t``: time.monotonic())."""
        return self._fault_log.since(since)

    def current_faults(self, link: str) -> dict[str, dict[str, Any]]:
        """The faults in force on ``link``, per direction."""
        return {d: dataclasses.asdict(s.faults) for d, s in self._link(link).directions.items()}

    # -------------------------------------------------------------- control protocol

    def handle_command(self, request: object) -> dict[str, Any]:
        """Answer one decoded control request; a bad one changes nothing."""
        return self._control.handle_command(request)

    def handle_line(self, line: bytes) -> dict[str, Any]:
        """Answer one control line (without its newline)."""
        return self._control.handle_line(line)

    async def serve_control(
        self, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve the control protocol on 127.0.0.1:``port`` (0: a free one, reported
        through ``task_status``) until cancelled."""
        await self._control.serve(port, task_status=task_status)


# ---------------------------------------------------------------------------- process


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m raftlog.scenarios.proxy",
        description="raftlog's scenario fault proxy, controlled by JSON lines over TCP.",
    )
    parser.add_argument("--routes", required=True, type=Path, help="routes JSON file")
    parser.add_argument("--control-port", required=True, type=int, help="0: a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _read_routes(path: Path) -> dict[str, Route]:
    with path.open("rb") as f:
        data = f.read(ROUTES_FILE_MAX + 1)
    if len(data) > ROUTES_FILE_MAX:
        raise ValueError(f"{path} is larger than {ROUTES_FILE_MAX} bytes")
    try:
        return load_routes(json.loads(data))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON: {e}") from None


async def _run(routes: Mapping[str, Route], seed: int, control_port: int) -> None:
    async with FaultProxy(routes, seed) as proxy, trio.open_nursery() as nursery:
        port = await nursery.start(proxy.serve_control, control_port)
        ready = {"event": "ready", "control_port": port, "ports": proxy.ports}
        print(json.dumps(ready), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        routes = _read_routes(args.routes)
        _check_port(args.control_port, "--control-port", zero_ok=True)
    except (OSError, ValueError) as e:
        print(f"proxy: {e}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(_run, routes, args.seed, args.control_port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
