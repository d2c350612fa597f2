"""Framing of the native protocol: length checks before buffering, the strict CBOR profile,
and a decoder that stays in step after a bad frame."""

from __future__ import annotations

import struct
import tracemalloc

import cbor2
import pytest

from raftlog.wire import (
    BadFrame,
    FrameDecoder,
    FrameTooLarge,
    encode_frame,
)
from raftlog.wire.frames import HEADER_BYTES, PROTOCOL_VERSION, loads_strict
from tests.wire_helpers import joined


def frame_bytes(
    correlation_id: int = 1, body: dict[str, object] | None = None, payload: bytes = b""
) -> bytes:
    return joined(encode_frame(3, correlation_id, False, body or {"x": 1}, [payload]))


def raw_frame(envelope: bytes, payload: bytes = b"") -> bytes:
    """A frame around arbitrary envelope bytes (the length fields are right)."""
    return struct.pack(">II", 4 + len(envelope) + len(payload), len(envelope)) + envelope + payload


def envelope(**overrides: object) -> bytes:
    env: dict[str, object] = {"v": PROTOCOL_VERSION, "k": 1, "c": 7, "r": 0, "b": {}}
    env.update(overrides)
    return cbor2.dumps({k: v for k, v in env.items() if v is not DROP})


DROP = object()


def test_layout_is_length_envelope_length_envelope_payload() -> None:
    data = frame_bytes(5, {"a": 1}, b"PAYLOAD")
    total, env_len = struct.unpack_from(">II", data)
    assert total == len(data) - 4
    env = cbor2.loads(data[8 : 8 + env_len])
    assert env == {"v": 1, "k": 3, "c": 5, "r": 0, "b": {"a": 1}}
    assert data[8 + env_len :] == b"PAYLOAD"


def test_encode_frame_returns_pieces_without_copying_the_payload() -> None:
    big = b"z" * 100_000
    view = memoryview(big)
    pieces = encode_frame(2, 1, False, {}, [big, b"", view])
    assert len(pieces) == 3 and pieces[1] is big and pieces[2] is view


def test_encode_frame_checks_ids() -> None:
    with pytest.raises(ValueError):
        encode_frame(2, 2**31, False, {})
    with pytest.raises(ValueError):
        encode_frame(-1, 1, False, {})


def test_many_frames_in_one_chunk_and_split_at_every_byte() -> None:
    frames = [frame_bytes(i, {"i": i}, bytes([i]) * i) for i in range(6)]
    stream = b"".join(frames)
    got = FrameDecoder().feed(stream)
    assert [(f.correlation_id, f.body, bytes(f.payload)) for f in got] == [
        (i, {"i": i}, bytes([i]) * i) for i in range(6)
    ]
    assert [f.size for f in got] == [len(f) for f in frames]
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert [f.correlation_id for f in got] == list(range(6)), cut
        assert decoder.buffered_bytes == 0


def test_byte_by_byte() -> None:
    stream = frame_bytes(1, payload=b"abc") + frame_bytes(2)
    decoder = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i : i + 1])
    assert [f.correlation_id for f in got] == [1, 2]
    assert bytes(got[0].payload) == b"abc"


def test_payload_survives_later_feeds_even_from_a_reused_buffer() -> None:
    buf = bytearray(frame_bytes(1, payload=b"first"))
    decoder = FrameDecoder()
    (frame,) = decoder.feed(buf)
    buf[:] = b"\x00" * len(buf)  # the caller reuses its receive buffer
    assert bytes(frame.payload) == b"first"


def test_declared_length_over_the_cap_fails_at_once_without_buffering() -> None:
    decoder = FrameDecoder(max_frame_bytes=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge) as info:
            decoder.feed(struct.pack(">I", 1 << 30))  # claims 1 GiB
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    assert info.value.fatal
    assert "1073741824" in info.value.message
    assert decoder.buffered_bytes == 0
    with pytest.raises(FrameTooLarge):  # the decoder stays dead: close the connection
        decoder.feed(frame_bytes())


def test_a_frame_of_exactly_the_cap_is_accepted() -> None:
    data = frame_bytes(payload=b"p" * 100)
    cap = len(data) - 4
    assert len(FrameDecoder(max_frame_bytes=cap).feed(data)) == 1
    with pytest.raises(FrameTooLarge):
        FrameDecoder(max_frame_bytes=cap - 1).feed(data)


def test_buffer_never_grows_past_the_frame() -> None:
    cap = 10_000
    decoder = FrameDecoder(max_frame_bytes=cap)
    data = frame_bytes(payload=b"q" * (cap - 200))
    for i in range(0, len(data) - 1, 97):
        decoder.feed(data[i : i + 97] if i + 97 < len(data) else data[i:-1])
        assert decoder.buffered_bytes <= cap + HEADER_BYTES
    assert len(decoder.feed(data[-1:])) == 1


def test_bad_envelope_is_reported_and_the_next_frame_still_decodes() -> None:
    bad = raw_frame(b"\xff\xff")
    decoder = FrameDecoder()
    with pytest.raises(BadFrame) as info:
        decoder.feed(bad + frame_bytes(9))
    assert not info.value.fatal
    (frame,) = decoder.feed(b"")
    assert frame.correlation_id == 9


def test_good_frames_before_a_bad_one_are_returned_first() -> None:
    decoder = FrameDecoder()
    stream = frame_bytes(1) + raw_frame(envelope(v=2)) + frame_bytes(3)
    assert [f.correlation_id for f in decoder.feed(stream)] == [1]
    with pytest.raises(BadFrame, match="version 2") as info:
        decoder.feed(b"")
    assert info.value.correlation_id == 7 and info.value.api_key == 1
    assert [f.correlation_id for f in decoder.feed(b"")] == [3]


@pytest.mark.parametrize(
    ("env", "match", "correlation_id"),
    [
        (cbor2.dumps([1, 2]), "must be a CBOR map", None),
        (envelope(c=DROP), "misses c", None),
        (envelope(c=-1), "correlation id", None),
        (envelope(c=2**31), "correlation id", None),
        (envelope(c="7"), "correlation id", None),
        (envelope(k=-1), "api key", 7),
        (envelope(k=True), "api key", 7),
        (envelope(v=DROP), "misses v", 7),
        (envelope(v=2), "version 2", 7),
        (envelope(r=2), "'r' must be 0", 7),
        (envelope(r=False), "'r' must be 0", 7),
        (envelope(b=[1]), "body 'b' must be a map", 7),
        (envelope(b={b"k": 1}), "body keys", 7),
        (envelope(extra=1), "unknown keys", 7),
        (envelope() + b"\x00", "1 bytes after", None),
        (b"\x00", "must be a CBOR map", None),
    ],
)
def test_envelope_rules(env: bytes, match: str, correlation_id: int | None) -> None:
    decoder = FrameDecoder()
    with pytest.raises(BadFrame, match=match) as info:
        decoder.feed(raw_frame(env))
    assert info.value.correlation_id == correlation_id
    assert decoder.feed(frame_bytes(4))[0].correlation_id == 4


@pytest.mark.parametrize(
    ("header", "skip"),
    [
        (struct.pack(">I", 2), b"ab"),  # too short to hold the envelope length
        (struct.pack(">II", 10, 0), b"abcdef"),  # empty envelope
        (struct.pack(">II", 10, 7), b"abcdef"),  # envelope longer than the frame
    ],
)
def test_impossible_envelope_lengths_are_skipped(header: bytes, skip: bytes) -> None:
    decoder = FrameDecoder()
    with pytest.raises(BadFrame):
        decoder.feed(header + skip + frame_bytes(5))
    assert decoder.feed(b"")[0].correlation_id == 5


def test_envelope_over_its_own_cap_is_skipped_without_buffering() -> None:
    decoder = FrameDecoder(max_envelope_bytes=100)
    env = envelope(b={"pad": "x" * 200})
    with pytest.raises(BadFrame, match="exceeds the 100-byte limit"):
        decoder.feed(raw_frame(env)[:12])
    assert decoder.buffered_bytes == 0
    assert decoder.feed(raw_frame(env)[12:] + frame_bytes(2))[0].correlation_id == 2


# ------------------------------------------------------------------ the strict CBOR profile


def nested(depth: int) -> bytes:
    return b"\x81" * depth + b"\x01"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xa1\x61b" + nested(1000), "depth"),
        (b"\xa1\x61b\x9f\x01\xff", "indefinite"),  # indefinite array
        (b"\xa1\x61b\x7f\x61a\xff", "indefinite"),  # indefinite text
        (b"\xa1\x61b\xbf\xff", "indefinite"),  # indefinite map
        (b"\xa2\x61a\x01\x61a\x02", "Duplicate"),
        (b"\xa1\x01\x01", "text string or byte string"),  # integer key
        (b"\xa1\x61b\xd8\x1c\x81\xd8\x1d\x00", "tag"),  # 28/29 shared references
        (b"\xa1\x61b\xd8\x23\x63a+b", "tag"),  # 35 regex
        (b"\xa1\x61b\xd8\x24\x63a/b", "tag"),  # 36 MIME
        (b"\xa1\x61b\xc2\x41\x01", "tag"),  # 2 bignum
        (b"\xa1\x61b\xc1\x01", "tag"),  # 1 epoch date
        (b"\xa1\x61b\xd9\x01\x02\x80", "tag"),  # 258 set
        (b"\xa1\x61b\xd9\x03\xe7\x01", "tag"),  # 999, unknown
        (b"\xd9\xd9\xf7\xa0", "tag"),  # 55799 self-describe
        (b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff", "premature end"),  # huge declared bytes
        (b"\x62\xff\xfe", "text string"),  # invalid UTF-8
        (b"", "premature end"),
    ],
)
def test_strict_cbor_profile(data: bytes, match: str) -> None:
    with pytest.raises(BadFrame, match=match):
        loads_strict(data)
    if not data:
        return  # an empty envelope never reaches CBOR (test_impossible_envelope_lengths...)
    # the same inside a frame: a BadFrame, and the stream stays in step
    decoder = FrameDecoder()
    with pytest.raises(BadFrame, match=match) as info:
        decoder.feed(raw_frame(data) + frame_bytes(6))
    assert not info.value.fatal
    assert [f.correlation_id for f in decoder.feed(b"")] == [6]


def test_depth_sixteen_is_the_limit() -> None:
    assert loads_strict(nested(15)) == [[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]
    with pytest.raises(BadFrame):
        loads_strict(nested(17))


def test_every_tag_cbor2_knows_and_some_it_does_not_are_refused() -> None:
    for tag in [*range(0, 300), 1004, 43000, 55799, 65535, 2**20]:
        item = cbor2.dumps(cbor2.CBORTag(tag, 1))
        with pytest.raises(BadFrame, match="tag"):
            loads_strict(item)


def test_tags_inside_a_frame_are_a_bad_frame_with_the_stream_in_step() -> None:
    env = envelope(b={"x": cbor2.CBORTag(35, "a+")})
    decoder = FrameDecoder()
    with pytest.raises(BadFrame, match="tag"):
        decoder.feed(raw_frame(env) + frame_bytes(8))
    assert decoder.feed(b"")[0].correlation_id == 8
