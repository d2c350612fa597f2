"""Properties of the native protocol's framing and codec under Hypothesis.

- A stream of random valid frames, cut at arbitrary byte positions, decodes to the same
  frames in the same order, and the decoder holds nothing afterwards.
- Random bytes, random envelopes, random bodies and mutated valid frames never raise
  anything but ``FrameTooLarge``/``BadFrame``/``BadRequest``; after a ``BadFrame`` that is not
  fatal, a valid frame behind it still decodes.
- Every sample message survives any cut of its bytes.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import cbor2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from raftlog.wire import BadFrame, BadRequest, FrameDecoder, FrameTooLarge, decode, encode_frame
from raftlog.wire.codec import REQUEST_TYPES, RESPONSE_TYPES
from raftlog.wire.schema import WireMessage
from tests.wire_helpers import joined, samples

SAMPLES = samples()
WIRE_ERRORS = (FrameTooLarge, BadFrame, BadRequest)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64 - 1),  # what CBOR holds without a bignum tag
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
cbor_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
bodies = st.dictionaries(st.text(max_size=10), cbor_values, max_size=5)
frames = st.tuples(
    st.integers(0, 2**15 - 1),
    st.integers(0, 2**31 - 1),
    st.booleans(),
    bodies,
    st.lists(st.binary(max_size=300), max_size=3),
)


def _normal(body: Any) -> Any:
    return cbor2.loads(cbor2.dumps(body))  # what CBOR gives back (tuples become lists...)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=8), st.data())
def test_split_stream_decodes_to_the_same_frames(specs: list[Any], data: st.DataObject) -> None:
    stream = b"".join(joined(encode_frame(*spec)) for spec in specs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder()
    got = []
    start = 0
    for cut in [*cuts, len(stream)]:
        got += decoder.feed(stream[start:cut])
        start = cut
    assert len(got) == len(specs)
    for frame, (api_key, cid, response, body, payload) in zip(got, specs, strict=True):
        assert (frame.api_key, frame.correlation_id, frame.response) == (api_key, cid, response)
        assert frame.body == _normal(body)
        assert bytes(frame.payload) == b"".join(payload)
    assert decoder.buffered_bytes == 0


def _drain(decoder: FrameDecoder, data: bytes) -> None:
    """Feed like a connection does: answer bad frames, stop on fatal ones."""
    pending = data
    for _ in range(len(data) + 2):
        try:
            for frame in decoder.feed(pending):
                with contextlib.suppress(BadRequest):
                    decode(frame)
            return
        except FrameTooLarge:
            return
        except BadFrame as exc:
            assert not exc.fatal
            pending = b""
    raise AssertionError("decoder did not make progress")


@settings(max_examples=300)
@given(st.binary(max_size=400), st.integers(4, 1 << 16))
def test_garbage_never_raises_anything_else(data: bytes, cap: int) -> None:
    _drain(FrameDecoder(max_frame_bytes=cap), data)


@settings(max_examples=300)
@given(st.binary(max_size=400), st.integers(0, 500), st.binary(max_size=100))
def test_garbage_inside_well_framed_frames_never_raises_anything_else(
    data: bytes, envelope_bytes: int, after: bytes
) -> None:
    header = struct.pack(">II", 4 + len(data), min(envelope_bytes, len(data) + 1))
    _drain(FrameDecoder(), header + data + after)


@settings(max_examples=300)
@given(cbor_values, st.binary(max_size=50))
def test_random_envelopes_never_raise_anything_else(env: Any, payload: bytes) -> None:
    try:
        envelope = cbor2.dumps(env)
    except Exception:
        assume(False)
    data = struct.pack(">II", 4 + len(envelope) + len(payload), len(envelope)) + envelope
    _drain(FrameDecoder(), data + payload)


@settings(max_examples=300)
@given(st.integers(0, 12), st.booleans(), bodies, st.binary(max_size=200))
def test_random_bodies_for_every_api_never_raise_anything_else(
    api_key: int, response: bool, body: dict[str, Any], payload: bytes
) -> None:
    data = joined(encode_frame(api_key, 1, response, body, [payload]))
    _drain(FrameDecoder(), data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_valid_frames_never_raise_anything_else(sample: Any, data: st.DataObject) -> None:
    _, msg = sample
    assert isinstance(msg, WireMessage)
    body, payload = msg.to_body()
    key = getattr(msg, "API_KEY", 3)
    response = type(msg) not in REQUEST_TYPES.values()
    stream = bytearray(joined(encode_frame(key, 1, response, body, payload)))
    for _ in range(data.draw(st.integers(1, 5))):
        pos = data.draw(st.integers(0, len(stream) - 1))
        stream[pos] = data.draw(st.integers(0, 255))
    _drain(FrameDecoder(), bytes(stream))


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.lists(st.integers(0, 10_000), max_size=6))
def test_sample_messages_survive_any_cut(sample: Any, cuts: list[int]) -> None:
    _, msg = sample
    body, payload = msg.to_body()
    key = getattr(msg, "API_KEY", 3)
    response = type(msg) in RESPONSE_TYPES.values() or not hasattr(msg, "API_KEY")
    stream = joined(encode_frame(key, 1, response, body, payload)) * 2
    decoder = FrameDecoder()
    got = []
    start = 0
    for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
        got += decoder.feed(stream[start:cut])
        start = cut
    assert [decode(f) for f in got] == [msg, msg]
