"""One direction of one proxied connection: reader, framer, bounded queue, faulty writer.

``_read_into`` reads the source socket, cuts the bytes into whole frames with a ``_Framer``
(raw chunks for an unframed route, or once a declared length shows the bytes are not
frames) and puts them on a ``_UnitQueue``, where it waits while ``queue_bytes`` are queued.
The ``_Writer`` takes them off, applies the faults in force on the link direction -- read
again for every frame, so a change acts at once, also on frames already queued or waiting --
and writes what is left to the destination. No fault splits or changes a frame; the
semantics of each fault are in the docstring of ``raftlog.scenarios.proxy``.
"""

from __future__ import annotations

import logging
import struct
from collections import deque
from dataclasses import dataclass

import trio

from raftlog.scenarios.proxy_faults import _DirectionState

log = logging.getLogger("raftlog.proxy")

READ_BYTES = 64 * 1024
"""One read from a socket; also the size of a raw chunk."""
THROTTLE_PIECE_BYTES = 16 * 1024
"""A throttled frame trickles out in pieces of this size."""

_U32 = struct.Struct(">I")
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


@dataclass(slots=True)
class _Unit:
    """What the reader hands the writer: whole frames (or raw chunks) read at once."""

    frames: list[bytes]
    arrival: float  # trio time
    nbytes: int
    eof: bool = False


class _UnitQueue:
    """A FIFO bounded by bytes: ``put`` waits while ``max_bytes`` are queued."""

    def __init__(self, max_bytes: int) -> None:
        self._items: deque[_Unit] = deque()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._not_empty = trio.lowlevel.ParkingLot()
        self._not_full = trio.lowlevel.ParkingLot()

    async def put(self, unit: _Unit) -> None:
        while self._items and self._bytes >= self._max_bytes:
            await self._not_full.park()
        self._items.append(unit)
        self._bytes += unit.nbytes
        self._not_empty.unpark_all()

    async def get(self) -> _Unit:
        while not self._items:
            await self._not_empty.park()
        unit = self._items.popleft()
        self._bytes -= unit.nbytes
        self._not_full.unpark_all()
        return unit


class _Framer:
    """Cuts a byte stream into whole length-prefixed frames; raw chunks once it is not."""

    def __init__(self, framed: bool, max_frame_bytes: int) -> None:
        self.raw = not framed
        self._max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        if self.raw:
            return [data]
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        while len(buffer) - start >= 4:
            (length,) = _U32.unpack_from(buffer, start)
            if length > self._max_frame_bytes:
                self.raw = True
                frames.append(bytes(buffer[start:]))
                buffer.clear()
                return frames
            end = start + 4 + length
            if end > len(buffer):
                break
            frames.append(bytes(buffer[start:end]))
            start = end
        del buffer[:start]
        return frames

    def rest(self) -> bytes:
        """The bytes of an unfinished frame at the end of the stream."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


@dataclass(slots=True)
class _Held:
    """A frame the reorder fault holds back."""

    frame: bytes
    copies: int
    deadline: float
    window: int
    passed: int = 0


class _Writer:
    """Takes units off the queue, applies the direction's faults, writes to ``dst``."""

    def __init__(
        self,
        dst: trio.SocketStream,
        queue: _UnitQueue,
        state: _DirectionState,
        framer: _Framer | None = None,
    ) -> None:
        self.dst = dst
        self.queue = queue
        self.state = state
        self.framer = framer
        self.held: _Held | None = None

    async def run(self) -> None:
        while True:
            unit = await self._next_unit()
            if unit is None:  # the held frame waited long enough
                await self._release_held()
            elif unit.eof:
                await self._finish()
                return
            else:
                await self._handle(unit)

    async def _next_unit(self) -> _Unit | None:
        if self.held is None:
            return await self.queue.get()
        with trio.move_on_at(self.held.deadline):
            return await self.queue.get()
        return None

    async def _handle(self, unit: _Unit) -> None:
        faults = self.state.faults
        if faults.cut and self.framer is not None and self.framer.raw:
            # bytes that are not frames cannot lose a piece from the middle of the stream
            # (TCP never does): a cut stalls them, as a dead path stalls a TCP connection,
            # and the queue's bound pushes back on the sender until the link heals or the
            # connection is reset
            await self._wait_until_not_cut()
            faults = self.state.faults
        if faults.cut:
            self._discard(len(unit.frames))
        elif not faults.per_frame and self.held is None:
            await self._send(b"".join(unit.frames), len(unit.frames))
        else:
            for frame in unit.frames:
                await self._handle_frame(frame, unit.arrival)

    async def _handle_frame(self, frame: bytes, arrival: float) -> None:
        faults, rng, stats = self.state.faults, self.state.rng, self.state.stats
        if faults.cut:
            self._discard(1)
            return
        if faults.drop and rng.random() < faults.drop:
            stats.frames_dropped += 1
            return
        copies = 2 if faults.duplicate and rng.random() < faults.duplicate else 1
        if self.held is None and faults.reorder and rng.random() < faults.reorder:
            deadline = trio.current_time() + faults.reorder_hold_ms / 1000
            self.held = _Held(frame, copies, deadline, faults.reorder_window)
            stats.frames_reordered += 1
            return
        if faults.delay_ms or faults.jitter_ms:
            spread = rng.uniform(-1.0, 1.0) if faults.jitter_ms else 0.0
            stats.frames_delayed += 1
            await self._wait_delay(arrival, spread)
        if self.state.faults.cut:  # cut while it waited
            self._discard(1)
            return
        await self._send_copies(frame, copies)
        if self.held is not None:
            self.held.passed += 1
            if self.held.passed >= self.held.window:
                await self._release_held()

    async def _wait_until_not_cut(self) -> None:
        while self.state.faults.cut:
            self.state.stats.stalls += 1
            await self.state.changed.wait()

    async def _wait_delay(self, arrival: float, spread: float) -> None:
        """Wait until ``arrival`` + delay + ``spread`` x jitter, by the faults in force: a
        change (heal, a shorter delay, a cut) takes effect on frames already waiting."""
        while True:  # once more per fault change at most
            faults = self.state.faults
            if faults.cut or not (faults.delay_ms or faults.jitter_ms):
                return
            delay_ms = max(0.0, faults.delay_ms + spread * faults.jitter_ms)
            if await self._sleep_until(arrival + delay_ms / 1000):
                return

    async def _sleep_until(self, deadline: float) -> bool:
        """Sleep until ``deadline``: True, or False as soon as the faults change."""
        changed = self.state.changed
        with trio.move_on_at(deadline):
            await changed.wait()
            return False
        return True

    async def _release_held(self) -> None:
        held, self.held = self.held, None
        if held is None:
            return
        if self.state.faults.cut:
            self._discard(1)
        else:
            await self._send_copies(held.frame, held.copies)

    async def _send_copies(self, frame: bytes, copies: int) -> None:
        for _ in range(copies):
            await self._send(frame, 1)
        self.state.stats.frames_duplicated += copies - 1

    async def _send(self, data: bytes, frames: int) -> None:
        view = memoryview(data)
        while len(view):
            rate = self.state.faults.bytes_per_s
            if rate is None:
                await self.dst.send_all(view)
                break
            piece = view[:THROTTLE_PIECE_BYTES]
            if await self._sleep_until(self.state.pacer.reserve(len(piece), rate)):
                await self.dst.send_all(piece)
                view = view[len(piece) :]
            # else the faults changed: pace the piece again by the new rate, if any
        self.state.stats.bytes_forwarded += len(data)
        self.state.stats.frames_forwarded += frames

    def _discard(self, frames: int) -> None:
        self.state.stats.frames_cut += frames + (self.held is not None)
        self.held = None

    async def _finish(self) -> None:
        """The source ended: pass on the held frame and the end of stream, unless cut."""
        await self._release_held()
        if not self.state.faults.cut:
            await self.dst.send_eof()


async def _read_into(src: trio.SocketStream, queue: _UnitQueue, framer: _Framer, link: str) -> None:
    """Read ``src`` into ``queue`` as whole frames (or raw chunks) until its end of stream,
    then the bytes of an unfinished last frame, if any, then an end-of-stream unit."""
    was_raw = framer.raw
    while data := await src.receive_some(READ_BYTES):
        frames = framer.feed(data)
        if framer.raw and not was_raw:
            was_raw = True
            log.info("event=proxy_unframed link=%s reason=declared_length", link)
        if frames:
            await queue.put(_Unit(frames, trio.current_time(), sum(map(len, frames))))
    rest = framer.rest()
    if rest:
        await queue.put(_Unit([rest], trio.current_time(), len(rest)))
    await queue.put(_Unit([], trio.current_time(), 0, eof=True))
