"""A bare blocking wire-protocol client for broker tests: one request at a time, a timeout
on every call, no retries of its own (tests decide what to retry). Users want
``raftlog.client``; this one exists so that tests of the broker do not depend on the client
library's own logic."""

from __future__ import annotations

import socket
import time
from typing import Any

from raftlog.storage.records import Record, build_batch, decode_batches
from raftlog.types import Offset, PartitionId
from raftlog.wire import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    FrameDecoder,
    HelloRequest,
    MetadataRequest,
    NewTopic,
    ProducePartition,
    ProduceRequest,
    ProduceTopic,
    decode,
    encode_request,
)
from raftlog.wire.admin import CreateTopicsRequest


class WireClient:
    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.decoder = FrameDecoder(1 << 27)
        self.correlation = 0
        self.call(HelloRequest("client", "test-client"))

    def call(self, request: Any) -> Any:
        self.correlation += 1
        self.sock.sendall(b"".join(encode_request(request, self.correlation)))
        while True:
            frames = self.decoder.feed(b"")
            if not frames:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError("the broker closed the connection")
                frames = self.decoder.feed(data)
            if frames:
                assert len(frames) == 1 and frames[0].correlation_id == self.correlation
                return decode(frames[0])

    def close(self) -> None:
        self.sock.close()

    # ------------------------------------------------------------------ shortcuts

    def create_topic(self, name: str, partitions: int, rf: int) -> Any:
        return self.call(CreateTopicsRequest((NewTopic(name, partitions, rf),))).topics[0]

    def leaders(self, topic: str) -> dict[int, int | None]:
        md = self.call(MetadataRequest((topic,)))
        return {int(p.partition): p.leader for p in md.topics[0].partitions}

    def wait_leaders(self, topic: str, timeout_s: float = 20) -> dict[int, int]:
        end = time.monotonic() + timeout_s
        while True:
            leaders = self.leaders(topic)
            if leaders and all(v is not None for v in leaders.values()):
                return {p: int(v) for p, v in leaders.items() if v is not None}
            if time.monotonic() > end:
                raise TimeoutError(f"no leader for every partition of {topic}: {leaders}")
            time.sleep(0.05)

    def produce(self, topic: str, partition: int, values: list[bytes], acks: int = -1) -> Any:
        batch = build_batch([Record(None, v) for v in values], now_ms=int(time.time() * 1000))
        req = ProduceRequest(
            acks,
            10_000,
            (ProduceTopic(topic, (ProducePartition(PartitionId(partition), (batch,)),)),),
        )
        return self.call(req).topics[0].partitions[0]

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        max_wait_ms: int = 0,
        max_bytes: int = 1 << 20,
    ) -> Any:
        parts = (FetchPartition(PartitionId(partition), Offset(offset), max_bytes),)
        req = FetchRequest(max_wait_ms, 1, max_bytes, (FetchTopic(topic, parts),))
        return self.call(req).topics[0].partitions[0]

    def read_all(self, topic: str, partition: int) -> list[tuple[int, bytes | None]]:
        """Every user record from offset 0 to the high watermark: (offset, value)."""
        out: list[tuple[int, bytes | None]] = []
        offset = 0
        while True:
            r = self.fetch(topic, partition, offset)
            assert r.error == 0, r
            if not r.records:
                return out
            for h, recs in decode_batches(bytes(r.records)):
                if not h.is_control:
                    out.extend((rec.offset, rec.value) for rec in recs if rec.offset >= offset)
                offset = h.last_offset + 1
