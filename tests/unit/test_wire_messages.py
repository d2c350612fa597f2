"""Messages of the native protocol: round trips, zero-copy payloads, and rejection of every
malformed field of every message type.

The malformation test walks each fully populated sample alongside its schema and, for every
field at every depth, tries: removing it, the wrong type, out of range, too long, too many
items, repeats where items must be unique, an unknown extra field, and payload regions out of
order or out of bounds. Each must fail with ``BadRequest(INVALID_REQUEST)`` naming the field.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from raftlog.errors import RETRIABLE_CODES, ErrorCode
from raftlog.raft.messages import describe
from raftlog.types import PartitionId
from raftlog.wire import (
    RESPONSE_TYPES,
    ApiKey,
    BadFrame,
    BadRequest,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    ErrorResponse,
    FetchPartitionResult,
    FetchResponse,
    FetchTopicResult,
    Frame,
    HelloRequest,
    MetadataRequest,
    NewPartitions,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
    RaftRequest,
    decode,
    encode_frame,
    encode_request,
    encode_response,
    error_frame,
    parse_partition_group,
    partition_group,
)
from raftlog.wire.codec import REQUEST_TYPES
from raftlog.wire.messages import BATCHES_PER_PARTITION_MAX
from raftlog.wire.peer import RAFT_MESSAGE_TYPES
from raftlog.wire.schema import (
    Bool,
    Bytes,
    Code,
    Int,
    ListOf,
    MapOf,
    OneOf,
    Opt,
    Spec,
    Str,
    Struct,
    Topic,
)
from tests.wire_helpers import BATCH_A, BATCH_B, BATCH_C, joined, one_frame, samples

SAMPLES = samples()
IDS = [name for name, _ in SAMPLES]


def encode(msg: Any, correlation_id: int = 77) -> bytes:
    if isinstance(msg, ErrorResponse):
        return joined(encode_response(msg, correlation_id, ApiKey.FETCH))
    if type(msg) in REQUEST_TYPES.values():
        return joined(encode_request(msg, correlation_id))
    return joined(encode_response(msg, correlation_id))


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize(("name", "msg"), SAMPLES, ids=IDS)
def test_every_message_round_trips(name: str, msg: Any) -> None:
    frame = one_frame(encode(msg, 1234))
    assert frame.correlation_id == 1234
    assert frame.response == (type(msg) not in REQUEST_TYPES.values())
    back = decode(frame)
    assert type(back) is type(msg)
    assert back == msg


def test_every_api_and_raft_message_type_has_a_sample() -> None:
    types = {type(m) for _, m in SAMPLES}
    assert set(REQUEST_TYPES.values()) <= types
    assert set(RESPONSE_TYPES.values()) <= types
    raft = next(m for _, m in SAMPLES if isinstance(m, RaftRequest))
    assert {type(m) for m in raft.messages} == set(RAFT_MESSAGE_TYPES)


def test_raft_messages_round_trip_exactly_in_order() -> None:
    raft = next(m for _, m in SAMPLES if isinstance(m, RaftRequest))
    back = decode(one_frame(encode(raft)))
    assert isinstance(back, RaftRequest)
    assert [describe(m) for m in back.messages] == [describe(m) for m in raft.messages]
    for ours, theirs in zip(back.messages, raft.messages, strict=True):
        assert ours == theirs and ours.group == theirs.group
        for e in getattr(ours, "entries", ()):
            assert type(e.data) is bytes  # Entry.data stays bytes for the core and storage


def test_raft_entry_data_travels_in_the_payload_not_in_cbor() -> None:
    raft = next(m for _, m in SAMPLES if isinstance(m, RaftRequest))
    frame = one_frame(encode(raft))
    assert bytes(frame.payload) == BATCH_A + BATCH_B  # the two non-empty entries
    assert BATCH_B not in encode_frame(9, 1, False, frame.body)[0]


def test_produce_batches_come_back_identical_as_slices_of_the_payload() -> None:
    msg = next(m for _, m in SAMPLES if isinstance(m, ProduceRequest))
    pieces = encode_request(msg, 5)
    # the sender's batch objects are handed through as they are: no concatenation
    assert pieces[1] is BATCH_A and pieces[2] is BATCH_B and pieces[3] is BATCH_C
    frame = one_frame(joined(pieces))
    back = decode(frame)
    assert isinstance(back, ProduceRequest)
    got = [b for t in back.topics for p in t.partitions for b in p.batches]
    assert [bytes(b) for b in got] == [BATCH_A, BATCH_B, BATCH_C, BATCH_B]
    for b in got:
        assert isinstance(b, memoryview) and b.obj is frame.payload.obj  # no copy
    # the payload is writable: the leader may stamp offsets in place
    assert isinstance(got[0], memoryview) and not got[0].readonly


def test_fetch_records_come_back_as_payload_slices() -> None:
    msg = FetchResponse(
        (
            FetchTopicResult(
                "t",
                (
                    FetchPartitionResult(PartitionId(0), records=BATCH_A + BATCH_B),
                    FetchPartitionResult(PartitionId(1)),
                    FetchPartitionResult(PartitionId(2), records=memoryview(BATCH_C)),
                ),
            ),
        )
    )
    frame = one_frame(encode(msg))
    back = decode(frame)
    assert isinstance(back, FetchResponse)
    records = [p.records for p in back.topics[0].partitions]
    assert [bytes(r) for r in records] == [BATCH_A + BATCH_B, b"", BATCH_C]
    assert all(isinstance(r, memoryview) for r in records)


def test_partition_group_ids() -> None:
    assert partition_group("orders", 3) == "orders/3"
    assert parse_partition_group("a.b-c/12") == ("a.b-c", 12)
    for bad in ("orders", "orders/x", "orders/-1", "orders/01", 5, "orders/"):
        with pytest.raises(ValueError):
            parse_partition_group(bad)


def test_error_response_carries_code_message_and_retriable() -> None:
    for code in ErrorCode:
        msg = ErrorResponse(code, f"because {code.name}")
        back = decode(one_frame(joined(encode_response(msg, 9, 42))))
        assert back == msg
        assert isinstance(back, ErrorResponse)
        assert back.retriable == (code in RETRIABLE_CODES)
    # an unknown code from a newer peer reads as UNKNOWN rather than failing the answer
    frame = one_frame(joined(encode_frame(1, 3, True, {"error": 999, "message": "new"})))
    assert decode(frame) == ErrorResponse(ErrorCode.UNKNOWN, "new")


def test_error_frame_never_leaks_a_traceback() -> None:
    pieces = error_frame(KeyError("secret internals"), 4, 3)
    assert pieces is not None
    frame = one_frame(joined(pieces))
    msg = decode(frame)
    assert isinstance(msg, ErrorResponse) and msg.error == ErrorCode.UNKNOWN
    assert "secret" not in msg.message and "Traceback" not in msg.message
    # long messages are cut to fit, never refused
    long = ErrorResponse(ErrorCode.UNKNOWN, "x" * 5000)
    back = decode(one_frame(joined(encode_response(long, 1, 1))))
    assert isinstance(back, ErrorResponse) and len(back.message) == 1024


def test_unknown_api_key_is_a_bad_request_with_the_correlation_id() -> None:
    frame = one_frame(joined(encode_frame(999, 31, False, {})))
    with pytest.raises(BadRequest) as info:
        decode(frame)
    assert info.value.correlation_id == 31 and info.value.api_key == 999
    assert info.value.code == ErrorCode.INVALID_REQUEST
    assert "unknown API key 999" in info.value.message
    # the caller can answer it from the exception alone
    pieces = error_frame(info.value)
    assert pieces is not None
    answer = one_frame(joined(pieces))
    assert (answer.correlation_id, answer.api_key, answer.response) == (31, 999, True)
    assert decode(answer) == ErrorResponse(ErrorCode.INVALID_REQUEST, info.value.message)


def test_error_frame_needs_a_correlation_id() -> None:
    assert error_frame(BadFrame("not CBOR")) is None
    pieces = error_frame(BadFrame("bad version", correlation_id=8))
    assert pieces is not None
    frame = one_frame(joined(pieces))
    assert (frame.correlation_id, frame.api_key) == (8, 0)


def test_no_response_has_a_top_level_error_field() -> None:
    # decode() takes a response body holding "error" for an ErrorResponse
    for cls in RESPONSE_TYPES.values():
        assert "error" not in {f.name for f in dataclasses.fields(cls)}, cls


def test_raft_has_no_response() -> None:
    frame = one_frame(joined(encode_frame(ApiKey.RAFT, 1, True, {"messages": []})))
    with pytest.raises(BadRequest, match="RAFT has no response"):
        decode(frame)


def test_hello_cross_field_rules() -> None:
    for body in (
        {"role": "peer", "client_id": "b", "versions": [1]},
        {"role": "client", "client_id": "c", "versions": [1], "node_id": 3},
        {"role": "admin", "client_id": "c", "versions": [1]},
        {"role": "client", "client_id": "c", "versions": []},
    ):
        with pytest.raises(BadRequest):
            HelloRequest.from_body(body)
    with pytest.raises(ValueError, match="peer must give"):
        encode_request(HelloRequest("peer", "b"), 1)


def test_partitions_budget_spans_topics() -> None:
    batch = memoryview(BATCH_A)
    topics = tuple(
        ProduceTopic(
            f"t{i}", tuple(ProducePartition(PartitionId(p), (batch,)) for p in range(5_001))
        )
        for i in range(2)
    )
    with pytest.raises(BadRequest, match="more than 10000 partitions"):
        decode(one_frame(encode(ProduceRequest(1, 100, topics[:1] + topics[1:]))))
    decode(one_frame(encode(ProduceRequest(1, 100, topics[:1]))))  # 5,001 alone is fine


def test_payload_bytes_no_field_refers_to_are_rejected() -> None:
    body, _ = MetadataRequest().to_body()
    frame = one_frame(joined(encode_frame(ApiKey.METADATA, 1, False, body, [b"junk"])))
    with pytest.raises(BadRequest, match="4 bytes no field refers to"):
        decode(frame)


def test_a_region_that_is_not_one_whole_batch_is_rejected() -> None:
    body = {
        "acks": 1,
        "timeout_ms": 10,
        "topics": [{"name": "t", "partitions": [{"partition": 0, "batches": [[0, 0]]}]}],
    }
    for payload, refs in (
        (BATCH_A + BATCH_B, [[0, len(BATCH_A) + len(BATCH_B)]]),  # two batches in one region
        (BATCH_A[:-1], [[0, len(BATCH_A) - 1]]),  # truncated
        (b"x" * 10, [[0, 10]]),  # shorter than a header
    ):
        body["topics"][0]["partitions"][0]["batches"] = refs  # type: ignore[index]
        frame = one_frame(joined(encode_frame(ApiKey.PRODUCE, 1, False, body, [payload])))
        with pytest.raises(BadRequest, match="batch"):
            decode(frame)


def test_encoding_a_message_that_breaks_the_schema_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="acks"):
        encode_request(ProduceRequest(2, 10, ()), 1)
    with pytest.raises(ValueError, match="not a request"):
        encode_request(ErrorResponse(ErrorCode.NONE, ""), 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="api key"):
        encode_response(ErrorResponse(ErrorCode.NONE, ""), 1)


# ------------------------------------------------------------------ malformed fields

DELETE = object()
WRONG_TYPES: tuple[object, ...] = (1.5, {"zz": 1.5}, [1.5])


def _spec_cases(spec: Spec, value: Any, raw: Any, path: tuple[Any, ...]) -> Iterator[Any]:
    """(path, replacement, what) cases that must all be rejected."""
    if isinstance(spec, Opt):
        spec = spec.inner
    if isinstance(spec, Int):
        yield path, spec.lo - 1, "below range"
        yield path, spec.hi + 1, "above range"
        yield path, True, "a bool for an int"
        yield path, str(raw), "a string for an int"
    elif isinstance(spec, OneOf):
        yield path, max(spec.values) + 1, "not one of"
    elif isinstance(spec, Code):
        yield path, -1, "negative code"
        yield path, 2**15, "code too large"
    elif isinstance(spec, Bool):
        yield path, 1, "an int for a bool"
    elif isinstance(spec, Topic):
        yield path, "bad topic!", "bad topic name"
        yield path, "", "empty topic name"
        yield path, "x" * 250, "topic name too long"
    elif isinstance(spec, Str):
        yield path, "x" * (spec.max_chars + 1), "string too long"
        yield path, b"bytes", "bytes for a string"
        if spec.min_chars:
            yield path, "", "empty string"
        if spec.choices:
            yield path, "nope", "not a choice"
    elif isinstance(spec, Bytes):
        offset, length = raw
        yield path, [offset + 1, length], "region out of order"
        yield path, [offset, length + 10**9], "region past the payload"
        yield path, [offset], "region of one number"
        yield path, [offset, -1], "negative length"
    elif isinstance(spec, ListOf):
        first = raw[0] if raw else 1.5
        yield path, [first] * (spec.max_items + 1), "too many items"
        if spec.min_items:
            yield path, [], "too few items"
        if spec.unique is not None and raw:
            yield path, [raw[0], raw[0]], "repeated item"
        for i, (v, r) in enumerate(zip(value, raw, strict=True)):
            yield from _spec_cases(spec.inner, v, r, (*path, i))
    elif isinstance(spec, MapOf):
        yield path, {f"k{i}": "v" for i in range(spec.max_items + 1)}, "too many entries"
        yield path, {"k": 1}, "a non-string value"
        yield path, {"x" * 300: "v"}, "key too long"
    elif isinstance(spec, Struct):
        yield from _field_cases(value, raw, path)
    else:
        raise AssertionError(f"no malformation cases for {spec!r}")


def _field_cases(obj: Any, body: dict[str, Any], path: tuple[Any, ...]) -> Iterator[Any]:
    yield (*path, "surprise"), 1, "an unknown field"
    for f in dataclasses.fields(obj):
        spec = f.metadata["wire"]
        p = (*path, f.name)
        if f.name not in body:
            continue
        if not isinstance(spec, Opt):
            yield p, DELETE, "missing"
            yield p, None, "null"
        for wrong in WRONG_TYPES:
            yield p, wrong, "wrong type"
        yield from _spec_cases(spec, getattr(obj, f.name), body[f.name], p)


def _raft_cases(body: Any, path: tuple[Any, ...] = ()) -> Iterator[Any]:
    """Raft bodies: every key is required, every value typed, every int bounded."""
    if isinstance(body, dict):
        yield (*path, "surprise"), 1, "an unknown field"
        for key, value in body.items():
            p = (*path, key)
            yield p, DELETE, "missing"
            for wrong in WRONG_TYPES:
                yield p, wrong, "wrong type"
            if type(value) is int and key != "type":
                yield p, 2**63, "above range"
                yield p, -2, "below range"
            if type(value) is bool:
                yield p, 0, "an int for a bool"
            if key == "type":
                yield p, 99, "unknown message type"
            if key == "term":
                yield p, -1, "negative term"
            yield from _raft_cases(value, p)
    elif isinstance(body, list) and body and not all(type(x) is int for x in body):
        yield path, [body[0]] * 100_001, "too many items"
        for i, item in enumerate(body):
            yield from _raft_cases(item, (*path, i))


def _apply(body: dict[str, Any], path: tuple[Any, ...], replacement: object) -> dict[str, Any]:
    out = copy.deepcopy(body)
    target: Any = out
    for step in path[:-1]:
        target = target[step]
    if replacement is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = replacement
    return out


def _cases(msg: Any, body: dict[str, Any]) -> list[Any]:
    if isinstance(msg, RaftRequest):
        return list(_raft_cases(body))
    return list(_field_cases(msg, body, ()))


@pytest.mark.parametrize(("name", "msg"), SAMPLES, ids=IDS)
def test_every_malformed_field_is_rejected(name: str, msg: Any) -> None:
    frame = one_frame(encode(msg, 55))
    cases = _cases(msg, frame.body)
    assert cases
    for path, replacement, what in cases:
        bad = Frame(
            frame.version,
            frame.api_key,
            55,
            frame.response,
            _apply(frame.body, path, replacement),
            frame.payload,
            frame.size,
        )
        with pytest.raises(BadRequest) as info:
            decode(bad)
            pytest.fail(f"{name}: {what} at {path} was accepted")
        assert info.value.code == ErrorCode.INVALID_REQUEST
        assert info.value.correlation_id == 55
        last_key = next(p for p in reversed(path) if isinstance(p, str))
        if last_key != "surprise" and replacement is not DELETE:
            assert last_key in info.value.message, (what, path, info.value.message)


def test_optional_fields_may_be_left_out() -> None:
    msg = next(m for n, m in SAMPLES if n == "fetch_resp")
    assert isinstance(msg, FetchResponse)
    body, _ = msg.to_body()
    partition = body["topics"][0]["partitions"][0]
    for key in ("leader_hint", "message"):
        del partition[key]
    back = FetchResponse.from_body(body, memoryview(BATCH_A + BATCH_B + BATCH_C))
    assert back.topics[0].partitions[0].leader_hint is None
    assert back.topics[0].partitions[0].message is None


def test_batches_per_partition_cap() -> None:
    batches = (memoryview(BATCH_A),) * (BATCHES_PER_PARTITION_MAX + 1)
    msg = ProduceRequest(1, 10, (ProduceTopic("t", (ProducePartition(PartitionId(0), batches),)),))
    with pytest.raises(ValueError, match="items"):
        encode_request(msg, 1)


def test_the_package_exports_every_message_and_nothing_missing() -> None:
    import raftlog.wire as wire_package

    for name in wire_package.__all__:
        assert hasattr(wire_package, name), name
    exported = [getattr(wire_package, n) for n in wire_package.__all__]
    for cls in [*REQUEST_TYPES.values(), *RESPONSE_TYPES.values(), ErrorResponse]:
        assert any(cls is e for e in exported), cls


# ------------------------------------------------------------------ CREATE_PARTITIONS


def _create_partitions_body(topics: int, lists: int, width: int = 1) -> dict[str, Any]:
    return {
        "topics": [
            {"name": f"t{i}", "count": lists + 1, "assignments": [list(range(width))] * lists}
            for i in range(topics)
        ],
        "timeout_ms": 1000,
        "validate_only": False,
    }


def test_create_partitions_is_api_11_and_round_trips_without_assignments() -> None:
    assert int(ApiKey.CREATE_PARTITIONS) == 11
    assert REQUEST_TYPES[ApiKey.CREATE_PARTITIONS] is CreatePartitionsRequest
    assert RESPONSE_TYPES[ApiKey.CREATE_PARTITIONS] is CreatePartitionsResponse
    msg = CreatePartitionsRequest((NewPartitions("orders", 5),))
    frame = one_frame(encode(msg))
    assert frame.api_key == 11
    assert "assignments" not in frame.body["topics"][0]  # None is left out
    back = decode(frame)
    assert back == msg
    assert isinstance(back, CreatePartitionsRequest)
    assert (back.timeout_ms, back.validate_only) == (30_000, False)


def test_create_partitions_assignments_share_the_partitions_budget_across_topics() -> None:
    # 5,000 replica lists in one topic are fine; 2 x 5,001 pass the 10,000 per request
    CreatePartitionsRequest.from_body(_create_partitions_body(1, 5_000))
    with pytest.raises(BadRequest, match="more than 10000 partitions"):
        CreatePartitionsRequest.from_body(_create_partitions_body(2, 5_001))


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda t: t.update(count=0), "count"),
        (lambda t: t.update(count=10_001), "count"),
        (lambda t: t.update(count=2**64), "count"),
        (lambda t: t.update(assignments=[]), "assignments"),
        (lambda t: t.update(assignments=[[]]), "assignments[0]"),
        (lambda t: t.update(assignments=[list(range(17))]), "assignments[0]"),
        (lambda t: t.update(assignments=[[1, 1]]), "assignments[0]"),
        (lambda t: t.update(assignments=[[-1]]), "assignments[0][0]"),
        (lambda t: t.update(assignments=[[2**31]]), "assignments[0][0]"),
        (lambda t: t.update(assignments=[["1"]]), "assignments[0][0]"),
        (lambda t: t.update(assignments=[[1]] * 10_001), "assignments"),
        (lambda t: t.update(assignments={"0": [1]}), "assignments"),
    ],
)
def test_hostile_create_partitions_bodies_are_rejected(change: Any, where: str) -> None:
    body = _create_partitions_body(1, 1)
    change(body["topics"][0])
    with pytest.raises(BadRequest) as info:
        CreatePartitionsRequest.from_body(body)
    assert info.value.code == ErrorCode.INVALID_REQUEST
    assert f"topics[0].{where}:" in info.value.message


def test_create_partitions_request_caps_topics_and_repeats() -> None:
    body = _create_partitions_body(1, 1)
    body["topics"] = body["topics"] * 2  # the same topic twice
    with pytest.raises(BadRequest, match="more than once"):
        CreatePartitionsRequest.from_body(body)
    body["topics"] = []
    with pytest.raises(BadRequest, match="topics"):
        CreatePartitionsRequest.from_body(body)
    with pytest.raises(ValueError, match="count"):
        encode_request(CreatePartitionsRequest((NewPartitions("t", 0),)), 1)
