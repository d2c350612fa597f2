"""Frames of the native protocol: a length prefix, a small CBOR envelope, a raw payload.

Layout (big-endian)::

    u32 frame_bytes      bytes after this field (4 + envelope_bytes + payload bytes)
    u32 envelope_bytes   bytes of the CBOR envelope that follows
    envelope             CBOR map {"v": version, "k": api key, "c": correlation id,
                                   "r": 0 request / 1 response, "b": body map}
    payload              the remaining bytes, raw

Record batches and Raft entry data never go through CBOR: they travel in the payload and the
body refers to them by ``[offset, length]`` inside it. A receiver slices them out of the frame
and writes them to disk as they are; a sender hands ``encode_frame``'s pieces (the header and
envelope in one small buffer, then the payload buffers untouched) to one vectored or coalesced
write, with no concatenation of big buffers.

``FrameDecoder`` is sans-io, in the manner of h11: bytes in, frames out. Rules it keeps:

- The declared length is checked against ``max_frame_bytes`` as soon as its 4 bytes are in,
  before a byte of the frame is buffered; above it, ``FrameTooLarge`` and the decoder is dead
  (the connection must be closed). Memory held is what was received of the current frame,
  never more than ``max_frame_bytes`` + 8.
- Every frame gets its own buffer, so the payload it hands out is a writable ``memoryview``
  that stays valid after the next ``feed`` (the broker may stamp offsets into it in place).
- The envelope is decoded with a strict profile: depth 16, no indefinite lengths, no
  duplicate keys, only string keys, no CBOR tag at all, no trailing bytes. A malformed
  envelope raises ``BadFrame`` with the correlation id when it could be read; the frame's
  bytes are consumed and the decoder goes on with the next frame.
- ``feed`` returns every complete frame in order. When it meets a bad frame after good ones,
  it returns the good ones and raises the error from the next call (``feed(b"")`` will do),
  so that responses can keep request order; after a ``BadFrame`` call ``feed(b"")`` again to
  get the frames already received behind it.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from raftlog.wire.errors import BadFrame, FrameTooLarge

Buffer = bytes | bytearray | memoryview
"""What a payload piece or an input chunk may be."""

PROTOCOL_VERSION = 1
"""The one envelope version this code speaks."""
SUPPORTED_VERSIONS: tuple[int, ...] = (PROTOCOL_VERSION,)

HEADER_BYTES = 8
"""The two u32 length fields in front of the envelope."""
DEFAULT_MAX_FRAME_BYTES = 100 * 1024 * 1024
"""Kafka's ``socket.request.max.bytes``; a fetch answers at most 64 MiB of records."""
ENVELOPE_BYTES_MAX = 16 * 1024 * 1024
"""The CBOR part of a frame: enough for a metadata answer about 200,000 partitions."""
U32_MAX = 2**32 - 1
CORRELATION_ID_MAX = 2**31 - 1
API_KEY_MAX = 2**15 - 1
CBOR_DEPTH_MAX = 16

_HEADER = struct.Struct(">II")
_U32 = struct.Struct(">I")
_ENVELOPE_KEYS = frozenset({"v", "k", "c", "r", "b"})

# Every tag cbor2 6.3 decodes by itself (found by trying all tags below 70,000): shared and
# cyclic references (28, 29), string references (25, 256), regexes (35), MIME (36), sets
# (258), IP addresses (52, 54, 260, 261), big numbers (2, 3, 4, 5, 30), dates (0, 1, 100,
# 1004), UUIDs (37), ... The protocol uses none, so each is replaced by a refusal, and any
# other tag reaches ``_reject_tag_hook``.
_BUILTIN_TAGS = (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258)
_BUILTIN_TAGS_MORE = (260, 261, 262, 263, 270, 1004, 43000, 55799)


class _TagRefused(Exception):
    pass


def _reject_semantic(value: object, immutable: bool) -> object:
    raise _TagRefused("CBOR tags are not allowed")


def _reject_tag_hook(tag: cbor2.CBORTag, immutable: bool) -> object:
    raise _TagRefused(f"CBOR tag {tag.tag} is not allowed")


_SEMANTIC_DECODERS = {tag: _reject_semantic for tag in _BUILTIN_TAGS + _BUILTIN_TAGS_MORE}


def loads_strict(data: bytes) -> Any:
    """Decode one CBOR item with the strict profile; ``BadFrame`` on anything else,
    trailing bytes included."""
    fp = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(
        fp,
        max_depth=CBOR_DEPTH_MAX,
        allow_indefinite=False,
        allow_duplicate_keys=False,
        strict_hashable_types=True,
        semantic_decoders=_SEMANTIC_DECODERS,
        tag_hook=_reject_tag_hook,
    )
    try:
        value = decoder.decode()
    except Exception as exc:  # whatever the bytes, only BadFrame leaves
        cause = exc.__cause__
        detail = str(cause) if isinstance(cause, _TagRefused) else str(exc)
        raise BadFrame(f"envelope is not valid CBOR for this protocol: {detail}") from None
    if fp.tell() != len(data):
        raise BadFrame(f"envelope has {len(data) - fp.tell()} bytes after its CBOR item")
    return value


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame. ``body`` is the envelope's body map (checked to be a map with
    string keys only, its fields not yet); ``payload`` the raw bytes after the envelope."""

    version: int
    api_key: int
    correlation_id: int
    response: bool
    body: dict[str, Any]
    payload: memoryview
    size: int
    """Bytes of the whole frame on the wire, both length fields included."""


def _nbytes(piece: Buffer) -> int:
    return piece.nbytes if isinstance(piece, memoryview) else len(piece)


def encode_frame(
    api_key: int,
    correlation_id: int,
    response: bool,
    body: dict[str, Any],
    payload: Sequence[Buffer] = (),
) -> list[Buffer]:
    """The pieces of one frame, ready for a vectored write: the length fields and the
    envelope in one ``bytes``, then the non-empty payload pieces as given (not copied).

    Raises ``ValueError`` for an id out of range or a frame past 4 GiB (a sender's bug).
    """
    if not 0 <= api_key <= API_KEY_MAX:
        raise ValueError(f"api key {api_key} out of 0..{API_KEY_MAX}")
    if not 0 <= correlation_id <= CORRELATION_ID_MAX:
        raise ValueError(f"correlation id {correlation_id} out of 0..{CORRELATION_ID_MAX}")
    envelope = cbor2.dumps(
        {"v": PROTOCOL_VERSION, "k": api_key, "c": correlation_id, "r": int(response), "b": body}
    )
    if len(envelope) > ENVELOPE_BYTES_MAX:
        raise ValueError(f"envelope of {len(envelope)} bytes exceeds {ENVELOPE_BYTES_MAX}")
    pieces: list[Buffer] = [b""]
    payload_bytes = 0
    for piece in payload:
        n = _nbytes(piece)
        if n:
            pieces.append(piece)
            payload_bytes += n
    frame_bytes = 4 + len(envelope) + payload_bytes
    if frame_bytes > U32_MAX:
        raise ValueError(f"frame of {frame_bytes} bytes does not fit a u32 length")
    pieces[0] = _HEADER.pack(frame_bytes, len(envelope)) + envelope
    return pieces


def _read_envelope(envelope: Any) -> tuple[int, int, int, bool, dict[str, Any]]:
    """Check the envelope map; raise ``BadFrame`` carrying what could be read of it."""
    if not isinstance(envelope, dict):
        raise BadFrame(f"envelope must be a CBOR map, got {type(envelope).__name__}")
    c = envelope.get("c")
    correlation_id = c if type(c) is int and 0 <= c <= CORRELATION_ID_MAX else None
    k = envelope.get("k")
    api_key = k if type(k) is int and 0 <= k <= API_KEY_MAX else None

    def bad(message: str) -> BadFrame:
        return BadFrame(message, correlation_id=correlation_id, api_key=api_key)

    if len(envelope) != len(_ENVELOPE_KEYS) or not _ENVELOPE_KEYS.issubset(envelope):
        unknown = sorted(repr(key) for key in envelope if key not in _ENVELOPE_KEYS)
        if unknown:
            raise bad(f"envelope has unknown keys {', '.join(unknown)}")
        raise bad(f"envelope misses {', '.join(sorted(_ENVELOPE_KEYS - envelope.keys()))}")
    if correlation_id is None:
        raise bad(f"envelope correlation id 'c' must be an integer in 0..{CORRELATION_ID_MAX}")
    if api_key is None:
        raise bad(f"envelope api key 'k' must be an integer in 0..{API_KEY_MAX}")
    version = envelope["v"]
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise bad(
            f"protocol version {version!r} is not supported; this side speaks "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    r = envelope["r"]
    if type(r) is not int or r not in (0, 1):
        raise bad("envelope 'r' must be 0 (request) or 1 (response)")
    body = envelope["b"]
    if not isinstance(body, dict):
        raise bad(f"body 'b' must be a map, got {type(body).__name__}")
    if any(type(key) is not str for key in body):
        raise bad("body keys must be text strings")
    return version, api_key, correlation_id, bool(r), body


def decode_frame(frame: bytearray, envelope_bytes: int) -> Frame:
    """A ``Frame`` from the bytes after the first length field (``u32 envelope_bytes``,
    envelope, payload). The payload is a view of ``frame``, not a copy."""
    envelope = loads_strict(bytes(memoryview(frame)[4 : 4 + envelope_bytes]))
    version, api_key, correlation_id, response, body = _read_envelope(envelope)
    payload = memoryview(frame)[4 + envelope_bytes :]
    return Frame(version, api_key, correlation_id, response, body, payload, 4 + len(frame))


_EMPTY = memoryview(b"")


class FrameDecoder:
    """Turns a byte stream into ``Frame``s; see the module docstring for its rules."""

    def __init__(
        self,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        *,
        max_envelope_bytes: int = ENVELOPE_BYTES_MAX,
    ) -> None:
        if not 4 <= max_frame_bytes <= U32_MAX:
            raise ValueError(f"max_frame_bytes must be in 4..{U32_MAX}, got {max_frame_bytes}")
        self.max_frame_bytes = max_frame_bytes
        self.max_envelope_bytes = max_envelope_bytes
        self._input = _EMPTY  # received, not yet consumed
        self._head = bytearray()  # the 8 header bytes of the current frame, as they come
        self._frame: bytearray | None = None  # the current frame after its first u32
        self._frame_bytes = 0
        self._envelope_bytes = 0
        self._skip_bytes = 0  # bytes of a rejected frame still to drop
        self._deferred: BadFrame | None = None
        self._dead: str | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for the current frame (header included), for tests and metrics."""
        return len(self._head) + (len(self._frame) - 4 if self._frame is not None else 0)

    def feed(self, data: Buffer = b"") -> list[Frame]:
        """Take ``data`` and return the frames it completes, in order.

        Raises ``FrameTooLarge`` (close the connection) or ``BadFrame`` (answer it, then call
        ``feed(b"")`` for the frames already received behind it).
        """
        self.receive(data)
        frames: list[Frame] = []
        while True:
            try:
                frame = self.next_frame()
            except BadFrame as exc:
                if frames:
                    self._deferred = exc
                    return frames
                raise
            if frame is None:
                return frames
            frames.append(frame)

    def receive(self, data: Buffer) -> None:
        """Queue ``data`` (copied when the caller might reuse its buffer)."""
        if not _nbytes(data):
            return
        chunk = data if isinstance(data, bytes) else bytes(data)
        if len(self._input):
            chunk = bytes(self._input) + chunk
        self._input = memoryview(chunk)

    def next_frame(self) -> Frame | None:
        """The next complete frame from what was received, or None when more bytes are
        needed. Raises ``BadFrame``/``FrameTooLarge`` as ``feed`` does."""
        if self._dead is not None:
            raise FrameTooLarge(f"connection must be closed: {self._dead}")
        if self._deferred is not None:
            exc, self._deferred = self._deferred, None
            raise exc
        while len(self._input):
            if self._frame is None and not self._head and not self._skip_bytes:
                frame = self._whole_frame()
                if frame is not None:
                    return frame
            if self._skip_bytes:
                n = min(self._skip_bytes, len(self._input))
                self._skip_bytes -= n
                self._input = self._input[n:]
                continue
            if self._frame is None:
                self._read_header()
                continue
            if self._fill_frame():
                return self._complete()
        return None

    def _whole_frame(self) -> Frame | None:
        """The fast path: a valid header and the whole frame are already in the input."""
        if len(self._input) < HEADER_BYTES:
            return None
        frame_bytes, envelope_bytes = _HEADER.unpack_from(self._input)
        if not (
            4 < frame_bytes <= self.max_frame_bytes
            and 0 < envelope_bytes <= min(frame_bytes - 4, self.max_envelope_bytes)
            and len(self._input) >= 4 + frame_bytes
        ):
            return None  # the careful path reports what is wrong, or waits for more
        frame = bytearray(self._input[4 : 4 + frame_bytes])
        self._input = self._input[4 + frame_bytes :]
        return decode_frame(frame, envelope_bytes)

    def _take(self, n: int) -> memoryview:
        piece = self._input[:n]
        self._input = self._input[len(piece) :]
        return piece

    def _read_header(self) -> None:
        before = len(self._head)
        need = (4 if before < 4 else HEADER_BYTES) - before
        self._head += self._take(need)
        if len(self._head) == 4 and before < 4:
            (frame_bytes,) = _U32.unpack_from(self._head)
            if frame_bytes > self.max_frame_bytes:
                self._dead = (
                    f"declared frame of {frame_bytes} bytes exceeds the "
                    f"{self.max_frame_bytes}-byte limit"
                )
                self._head.clear()
                self._input = _EMPTY
                raise FrameTooLarge(self._dead)
            if frame_bytes < 4:
                self._head.clear()
                self._skip_bytes = frame_bytes
                raise BadFrame(f"frame of {frame_bytes} bytes cannot hold its envelope length")
            self._frame_bytes = frame_bytes
        if len(self._head) == HEADER_BYTES:
            (envelope_bytes,) = _U32.unpack_from(self._head, 4)
            self._head.clear()
            rest = self._frame_bytes - 4
            if envelope_bytes == 0 or envelope_bytes > rest:
                self._skip_bytes = rest
                raise BadFrame(
                    f"envelope of {envelope_bytes} bytes does not fit a frame of "
                    f"{self._frame_bytes} bytes"
                )
            if envelope_bytes > self.max_envelope_bytes:
                self._skip_bytes = rest
                raise BadFrame(
                    f"envelope of {envelope_bytes} bytes exceeds the "
                    f"{self.max_envelope_bytes}-byte limit"
                )
            self._envelope_bytes = envelope_bytes
            self._frame = bytearray(_U32.pack(envelope_bytes))

    def _fill_frame(self) -> bool:
        """Copy what is available of the current frame; True once it is whole."""
        assert self._frame is not None
        missing = self._frame_bytes - len(self._frame)
        if missing and len(self._input):
            self._frame += self._take(missing)
            missing = self._frame_bytes - len(self._frame)
        return missing == 0

    def _complete(self) -> Frame:
        frame, self._frame = self._frame, None
        assert frame is not None and len(frame) == self._frame_bytes
        return decode_frame(frame, self._envelope_bytes)
