"""The trio producer against the fake cluster: the same engine as the blocking one, awaited.

The fake cluster runs in a thread of its own and is driven from plain (non-trio) code, so
each test sets it up, then runs its trio part with ``trio.run``."""

from __future__ import annotations

import pytest
import trio

from raftlog.client import AsyncProducer, BufferFullError, ClientClosedError, RecordMetadata
from raftlog.errors import ErrorCode
from raftlog.testing.fake_broker import running_fake_cluster
from raftlog.wire import ApiKey


def test_send_and_wait_and_deliveries_in_order() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 2)

        async def main() -> tuple[RecordMetadata, list[RecordMetadata]]:
            async with AsyncProducer(fake.bootstrap, linger_ms=1, compression="zstd") as p:
                first = await p.send_and_wait("t", b"a", key=b"k")
                deliveries = [await p.send("t", b"v%d" % i, key=b"k") for i in range(200)]
                return first, [await d for d in deliveries]

        first, metas = trio.run(main)
        assert [m.offset for m in metas] == list(range(first.offset + 1, first.offset + 201))
        values = [v for _, v in fake.call(fake.values, "t", first.partition)]
        assert values == [b"a"] + [b"v%d" % i for i in range(200)]


def test_retries_are_deduplicated_and_flush_waits() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.swallow[ApiKey.PRODUCE] = 1
        fake.produce_errors.append(ErrorCode.NOT_LEADER)

        async def main() -> None:
            async with AsyncProducer(
                fake.bootstrap, request_timeout_ms=200, retry_backoff_ms=5
            ) as p:
                ds = [await p.send("t", b"x%d" % i) for i in range(3)]
                await p.flush(10)
                assert all(d.done() for d in ds)

        trio.run(main)
        assert [v for _, v in fake.call(fake.values, "t", 0)] == [b"x0", b"x1", b"x2"]


def test_a_full_buffer_waits_without_blocking_the_loop_then_raises() -> None:
    with running_fake_cluster() as fake:
        fake.call(fake.create_topic, "t", 1)
        fake.delay_ms[ApiKey.PRODUCE] = 3000
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await trio.sleep(0.01)
                ticks += 1

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker)
                async with AsyncProducer(
                    fake.bootstrap,
                    buffer_bytes=4096,
                    batch_bytes=1024,
                    max_block_ms=300,
                    linger_ms=0,
                ) as p:
                    with pytest.raises(BufferFullError):
                        for _ in range(100):
                            await p.send("t", b"x" * 200)
                    await p.close(timeout=0)
                nursery.cancel_scope.cancel()

        trio.run(main)
        assert ticks >= 10, "the loop was blocked while the buffer was full"


async def test_use_outside_async_with_is_a_clear_error() -> None:
    p = AsyncProducer("127.0.0.1:1")
    with pytest.raises(ClientClosedError, match="async with"):
        await p.send("t", b"x")
