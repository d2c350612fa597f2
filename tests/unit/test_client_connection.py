"""One connection to one broker, against the fake broker: handshake, pipelining, timeouts,
lost connections, and errors a person can act on."""

from __future__ import annotations

import socket

import pytest
import trio

from raftlog.client.connection import Connection
from raftlog.client.errors import (
    BrokerUnreachableError,
    ConnectionLostError,
    RequestTimedOutError,
)
from raftlog.errors import ErrorCode, RaftlogError
from raftlog.storage.records import Record, build_batch
from raftlog.testing.fake_broker import FakeCluster
from raftlog.types import PartitionId
from raftlog.wire import (
    ApiKey,
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListOffsetsTopic,
    MetadataRequest,
    MetadataResponse,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
)

TEST_DEADLINE_S = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def open_conn(nursery: trio.Nursery, fake: FakeCluster, broker: int = 1) -> Connection:
    return await Connection.open(
        nursery, "127.0.0.1", fake.ports[broker], client_id="test", connect_timeout_ms=2000
    )


def produce(topic: str, value: bytes) -> ProduceRequest:
    batch = build_batch([Record(None, value)], now_ms=1)
    part = ProducePartition(PartitionId(0), (batch,))
    return ProduceRequest(acks=-1, timeout_ms=1000, topics=(ProduceTopic(topic, (part,)),))


async def test_refused_connection_says_what_to_do() -> None:
    port = free_port()
    async with trio.open_nursery() as nursery:
        with pytest.raises(BrokerUnreachableError) as info:
            await Connection.open(
                nursery, "127.0.0.1", port, client_id="t", connect_timeout_ms=2000
            )
    message = str(info.value)
    assert f"cannot reach broker 127.0.0.1:{port}: connection refused" in message
    assert "raftlog node start" in message
    assert info.value.code == ErrorCode.BROKER_NOT_AVAILABLE
    assert info.value.retriable


async def test_hello_then_requests_get_their_answers() -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with FakeCluster(brokers=2).serving() as fake, trio.open_nursery() as nursery:
            fake.create_topic("t", 2)
            conn = await open_conn(nursery, fake, broker=2)
            assert conn.broker_id == 2
            answer = await conn.request(MetadataRequest(), timeout_ms=2000)
            assert isinstance(answer, MetadataResponse)
            assert [t.name for t in answer.topics] == ["t"]
            assert fake.requests[0] == (2, ApiKey.HELLO)
            conn.close()
            nursery.cancel_scope.cancel()


async def test_many_requests_in_flight_on_one_connection_are_answered_in_order() -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with FakeCluster().serving() as fake, trio.open_nursery() as nursery:
            topics = [f"t{i}" for i in range(40)]
            for i, name in enumerate(topics):
                fake.create_topic(name)
                fake.topics[name][0].end = i  # a distinct answer per topic
            fake.delay_ms[ApiKey.LIST_OFFSETS] = 5
            conn = await open_conn(nursery, fake)
            answers: dict[str, int] = {}

            async def ask(name: str) -> None:
                req = ListOffsetsRequest(
                    topics=(ListOffsetsTopic(name, (ListOffsetsPartition(PartitionId(0), -1),)),)
                )
                answer = await conn.request(req, timeout_ms=5000)
                assert isinstance(answer, ListOffsetsResponse)
                assert answer.topics[0].name == name
                answers[name] = answer.topics[0].partitions[0].offset

            async with trio.open_nursery() as inner:
                for name in topics:
                    inner.start_soon(ask, name)
            assert answers == {name: i for i, name in enumerate(topics)}
            assert fake.connections == 1
            assert fake.max_pipelined > 10, "requests did not pipeline"
            conn.close()
            nursery.cancel_scope.cancel()


async def test_timeout_is_request_timed_out_and_produce_says_unknown_outcome() -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with FakeCluster().serving() as fake, trio.open_nursery() as nursery:
            fake.create_topic("t")
            conn = await open_conn(nursery, fake)
            fake.swallow[ApiKey.METADATA] = 1
            with pytest.raises(RequestTimedOutError) as info:
                await conn.request(MetadataRequest(), timeout_ms=100)
            assert info.value.code == ErrorCode.REQUEST_TIMED_OUT
            assert "unknown outcome" not in str(info.value)
            fake.swallow[ApiKey.PRODUCE] = 1
            with pytest.raises(RequestTimedOutError) as info:
                await conn.request(produce("t", b"x"), timeout_ms=100)
            assert "unknown outcome" in str(info.value)
            # the connection goes on: the next request gets its own answer
            answer = await conn.request(MetadataRequest(), timeout_ms=2000)
            assert isinstance(answer, MetadataResponse)
            conn.close()
            nursery.cancel_scope.cancel()


async def test_a_late_answer_is_not_taken_for_the_next_request() -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with FakeCluster().serving() as fake, trio.open_nursery() as nursery:
            fake.create_topic("t")
            fake.topics["t"][0].end = 42
            conn = await open_conn(nursery, fake)
            fake.delay_ms[ApiKey.METADATA] = 300
            with pytest.raises(RequestTimedOutError):
                await conn.request(MetadataRequest(), timeout_ms=50)
            req = ListOffsetsRequest(
                topics=(ListOffsetsTopic("t", (ListOffsetsPartition(PartitionId(0), -1),)),)
            )
            answer = await conn.request(req, timeout_ms=2000)
            assert isinstance(answer, ListOffsetsResponse)
            assert answer.topics[0].partitions[0].offset == 42
            conn.close()
            nursery.cancel_scope.cancel()


async def test_dropped_connection_fails_requests_in_flight() -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with FakeCluster().serving() as fake, trio.open_nursery() as nursery:
            conn = await open_conn(nursery, fake)
            fake.drop[ApiKey.METADATA] = 1
            with pytest.raises(ConnectionLostError) as info:
                await conn.request(MetadataRequest(), timeout_ms=2000)
            assert "in flight" in str(info.value) or "lost connection" in str(info.value)
            assert conn.closed
            with pytest.raises(RaftlogError):
                await conn.request(MetadataRequest(), timeout_ms=2000)
            nursery.cancel_scope.cancel()


async def test_an_oversized_frame_closes_the_connection_with_an_error() -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with FakeCluster().serving() as fake, trio.open_nursery() as nursery:
            for i in range(50):
                fake.create_topic(f"topic-with-a-long-name-{i}", 20)
            conn = await Connection.open(
                nursery,
                "127.0.0.1",
                fake.ports[1],
                client_id="t",
                connect_timeout_ms=2000,
                max_frame_bytes=1024,
            )
            with pytest.raises(RaftlogError) as info:
                await conn.request(MetadataRequest(), timeout_ms=2000)
            assert "1024-byte limit" in str(info.value)
            assert conn.closed
            nursery.cancel_scope.cancel()
