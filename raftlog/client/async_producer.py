"""``AsyncProducer``: the producer for trio programs, the same engine without a thread.

The blocking ``Producer`` runs the ``Sender`` in a loop thread of its own; ``AsyncProducer``
runs it in the caller's trio loop, in a nursery that ``async with`` opens and closes. Every
behaviour (batching, murmur2 partitioning, idempotence, retries, delivery timeout) is the
same code, see ``raftlog.client.producer``. Only waiting differs: a full buffer makes
``send`` wait (without blocking the loop) up to ``max_block_ms``, and ``await delivery``
waits for the acknowledgement.

Example::

    async with AsyncProducer("127.0.0.1:9092") as producer:
        meta = await producer.send_and_wait("orders", b"hello", key="k1")
        delivery = await producer.send("orders", b"world")  # queued, not yet acknowledged
        meta = await delivery
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Any, Self

import trio

from raftlog.client.accumulator import BatchCompletion, RecordMetadata, SendFuture
from raftlog.client.cluster import Cluster
from raftlog.client.errors import BufferFullError, ClientClosedError, RequestTimedOutError
from raftlog.client.producer import (
    Headers,
    ProducerSettings,
    Sender,
    choose_partition,
    make_record,
)


class Delivery:
    """A queued record: ``await delivery`` returns its ``RecordMetadata`` or raises what
    the send failed with (``UnknownOutcomeError``, ``DeliveryTimeoutError``, ...)."""

    __slots__ = ("_event", "future")

    def __init__(self, future: SendFuture) -> None:
        self.future = future
        self._event = trio.Event()
        # the sender completes futures in this same trio thread
        future.add_done_callback(lambda _: self._event.set())

    def done(self) -> bool:
        return self.future.done()

    async def wait(self) -> RecordMetadata:
        await self._event.wait()
        return self.future.result(0)

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        return self.wait().__await__()


async def _wait_batches(pending: Sequence[BatchCompletion]) -> None:
    """Wait (in trio) until every batch of ``pending`` is done; the sender completes them
    in this same trio thread."""
    for completion in pending:
        if completion.done:
            continue
        event = trio.Event()
        completion.add_done_callback(trio.Event.set, event)
        await event.wait()


class AsyncProducer:
    """A producer for trio code; options are ``Producer``'s. Use it as ``async with``."""

    def __init__(self, bootstrap: str | Sequence[str], **options: Any) -> None:
        self._bootstrap = bootstrap
        self._settings = ProducerSettings(**options)
        self._acc = self._settings.accumulator()
        self._room = trio.Event()
        self._acc.on_release = self._room.set
        self._sender: Sender | None = None
        self._nursery_cm: Any = None
        self._nursery: trio.Nursery | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        self._nursery_cm = trio.open_nursery()
        nursery = self._nursery = await self._nursery_cm.__aenter__()
        cluster = Cluster(self._bootstrap, nursery, self._settings.client_config())
        self._sender = Sender(
            cluster, self._acc, self._settings.acks, compression=self._settings.compression
        )
        nursery.start_soon(self._sender.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            if exc is None:
                await self.close()
            else:
                await self.close(timeout=0)
        finally:
            assert self._nursery_cm is not None and self._nursery is not None
            assert self._sender is not None
            self._sender.cluster.close()
            self._nursery.cancel_scope.cancel()
            result: bool | None = await self._nursery_cm.__aexit__(exc_type, exc, tb)
        return result

    def _running(self) -> Sender:
        if self._closed or self._sender is None:
            raise ClientClosedError(
                "the producer is not open: use 'async with AsyncProducer(...) as producer'"
            )
        return self._sender

    async def partitions_for(self, topic: str) -> int:
        """The partition count of ``topic`` (from the cache, else the cluster)."""
        count = self._acc.partition_counts.get(topic)
        if count is None:
            count = await self._running().partition_count(topic)
        return count

    async def send(
        self,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> Delivery:
        """Queue one record; returns its ``Delivery`` (await it for the ``RecordMetadata``).
        Waits only for a new topic's partition count or for room in the buffer (up to
        ``max_block_ms``, then ``BufferFullError``)."""
        sender = self._running()
        record = make_record(value, key, headers, timestamp)
        count = await self.partitions_for(topic)
        partition = choose_partition(self._acc, topic, count, partition, record.key)
        deadline = time.monotonic() + self._settings.max_block_ms / 1000
        while True:
            try:
                future, wake = self._acc.append(topic, partition, record, 0)
                break
            except BufferFullError:
                if time.monotonic() >= deadline:
                    raise
                self._room = trio.Event()
                self._acc.on_release = self._room.set
                with trio.move_on_at(trio.current_time() + deadline - time.monotonic()):
                    await self._room.wait()
        if wake:
            sender.wake()
        return Delivery(future)

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | str | None,
        key: bytes | str | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordMetadata:
        """``send`` and wait for the acknowledgement."""
        delivery = await self.send(topic, value, key, headers, partition, timestamp)
        return await delivery

    async def flush(self, timeout: float | None = None) -> None:
        """Send everything queued now and wait until every record sent so far is done.
        ``RequestTimedOutError`` when ``timeout`` s pass first."""
        sender = self._running()
        self._acc.begin_flush()
        try:
            sender.wake()
            pending = self._acc.incomplete()
            with trio.move_on_after(float("inf") if timeout is None else timeout):
                await _wait_batches(pending)
        finally:
            self._acc.end_flush()
        left = sum(c.pending_records() for c in pending if not c.done)
        if left:
            raise RequestTimedOutError(
                f"flush: {left} record(s) still unacknowledged after {timeout} s"
            )

    async def close(self, timeout: float | None = None) -> None:
        """Send what is queued and wait for it (at most ``timeout`` s, by default the
        delivery timeout); records still pending then fail with ``ClientClosedError``."""
        if self._closed or self._sender is None:
            return
        sender = self._sender
        if timeout is None:
            timeout = self._settings.delivery_timeout_ms / 1000
        self._acc.close()
        sender.wake()
        pending = self._acc.incomplete()
        with trio.move_on_after(timeout):
            await _wait_batches(pending)
        self._closed = True
        error = ClientClosedError("the producer was closed before the record was sent")
        for batch in self._acc.abandon():
            self._acc.release(batch, in_flight=False)
            batch.completion.fail(error)
        for completion in self._acc.incomplete():
            completion.fail(error)  # no-op when already done
