"""Three brokers' replica managers talking Raft over real TCP on 127.0.0.1 through the
peer transport: authenticated handshakes, coalesced frames, replication, and a dialler
with the wrong secret that gets nothing in."""

from __future__ import annotations

import os
from typing import Any

import trio

from raftlog.metadata.model import MetadataModel
from raftlog.raft.messages import Message, VoteRequest
from raftlog.runtime.flusher import Flusher
from raftlog.runtime.partition import Acks, ProduceError
from raftlog.runtime.replicas import RaftTimings, ReplicaManager
from raftlog.runtime.transport import PeerTransport, serve_first_hello
from raftlog.storage.files import OsFileSystem
from raftlog.storage.records import Record, build_batch
from raftlog.testing.procs import free_ports
from raftlog.types import NodeId, Offset, Term

SECRET = b"transport-test-secret-0123456789"
BROKERS = (1, 2, 3)


def apply_ok(model: MetadataModel, cmd: dict[str, Any]) -> None:
    result = model.apply(cmd)
    assert result["ok"], result


async def listener(port: int, transport: PeerTransport, *, task_status: Any) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        first = await serve_first_hello(stream)
        if first is not None and first[2].role == "peer":
            await transport.serve_peer(stream, *first)

    await trio.serve_tcp(handle, port, host="127.0.0.1", task_status=task_status)


async def test_replication_over_tcp_and_authentication(tmp_path: Any) -> None:
    ports = dict(zip(BROKERS, free_ports(3), strict=True))
    peers = {b: ("127.0.0.1", p) for b, p in ports.items()}
    model = MetadataModel()
    for b in BROKERS:
        apply_ok(model, {"op": "register_broker", "rid": f"r{b}", "broker_id": b,
                         "client_address": f"127.0.0.1:{ports[b]}",
                         "internal_address": f"127.0.0.1:{ports[b]}", "now_ms": 1})  # fmt: skip
    apply_ok(model, {"op": "create_topic", "rid": "c", "topic": "orders", "partitions": 24,
                     "replication_factor": 3})  # fmt: skip
    managers: dict[int, ReplicaManager] = {}
    transports: dict[int, PeerTransport] = {}
    flusher = Flusher()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flusher.run)
        for b in BROKERS:

            def deliver(msg: Message, b: int = b) -> None:
                managers[b].route(msg)

            transports[b] = PeerTransport(b, peers, SECRET, "test-cluster", deliver)
            managers[b] = ReplicaManager(b, os.path.join(str(tmp_path), f"b{b}"), OsFileSystem(),
                                         flusher, transports[b].send,
                                         timings=RaftTimings(tick_ms=20), seed=b)  # fmt: skip
            await nursery.start(listener, ports[b], transports[b])
            nursery.start_soon(transports[b].run)
            await nursery.start(managers[b].run)
        image = model.image()
        for m in managers.values():
            m.reconcile(image)

        async def leader_of(partition: int) -> Any:
            with trio.fail_after(15):
                while True:
                    leaders = [
                        r
                        for m in managers.values()
                        if (r := m.get("orders", partition)) is not None
                        and r.driver.role.value == "leader"
                    ]
                    if len(leaders) == 1:
                        return leaders[0]
                    await trio.sleep(0.02)

        for p in range(24):
            with trio.fail_after(30):
                while True:  # on a loaded machine a 20 ms-tick leader may change meanwhile
                    leader = await leader_of(p)
                    try:
                        e = await leader.driver.propose(
                            build_batch([Record(b"k", b"v%d" % p)], now_ms=1), 1, Acks.ALL
                        )
                        break
                    except ProduceError:
                        continue
            assert e.offset >= 1

        # at rest, the heartbeats (and their answers) of 24 partitions share frames
        def counts() -> tuple[int, int]:
            frames = sum(q.frames_sent for t in transports.values() for q in t.queues.values())
            return frames, sum(t.received for t in transports.values())

        frames0, received0 = counts()
        await trio.sleep(0.5)
        frames1, received1 = counts()
        frames, received = frames1 - frames0, received1 - received0
        assert received > 3 * frames, (received, frames)

        # a dialler that does not know the secret gets no message delivered
        before = transports[1].received
        intruder = PeerTransport(2, {1: peers[1]}, b"wrong-secret-0123456789abcdef", "x",
                                 lambda m: None)  # fmt: skip
        intruder.send(VoteRequest("orders/0", NodeId(2), NodeId(1), Term(99), Term(99),
                                  Offset(10**6), False))  # fmt: skip
        async with trio.open_nursery() as n:
            n.start_soon(intruder.run)
            with trio.fail_after(10):
                while transports[1].rejected_handshakes == 0:
                    await trio.sleep(0.02)
            n.cancel_scope.cancel()
        assert intruder.queues[1].frames_sent == 0
        r0 = managers[1].get("orders", 0)
        assert r0 is not None and r0.driver.core.status.term < 99
        assert transports[1].received >= before
        for m in managers.values():
            await m.close()
        nursery.cancel_scope.cancel()


async def test_every_message_of_every_frame_arrives() -> None:
    """Regression: a receive loop that read twice per turn dropped every other chunk;
    Raft survived it, slowly, so only a count shows it."""
    ports = dict(zip(BROKERS, free_ports(3), strict=True))
    peers = {b: ("127.0.0.1", p) for b, p in ports.items()}
    got: dict[int, list[Message]] = {b: [] for b in BROKERS}
    transports = {
        b: PeerTransport(b, peers, SECRET, "c", lambda m, b=b: got[b].append(m)) for b in BROKERS
    }
    async with trio.open_nursery() as nursery:
        for b in BROKERS:
            await nursery.start(listener, ports[b], transports[b])
            nursery.start_soon(transports[b].run)
        sent = 0
        for burst in range(50):
            for s in BROKERS:
                for d in BROKERS:
                    if s != d:
                        for k in range(3):
                            transports[s].send(
                                VoteRequest(
                                    f"t/{k}",
                                    NodeId(s),
                                    NodeId(d),
                                    Term(burst + 1),
                                    Term(0),
                                    Offset(0),
                                    False,
                                )
                            )
                            sent += 1
            await trio.sleep(0.005)
        with trio.fail_after(10):
            while sum(len(v) for v in got.values()) < sent:
                await trio.sleep(0.01)
        assert sum(len(v) for v in got.values()) == sent
        nursery.cancel_scope.cancel()


async def test_an_idle_peer_sends_empty_frames_and_is_heard() -> None:
    # quiet partitions send nothing: the failure detector (``ReplicaManager``) relies on
    # these frames to tell a quiet peer from a dead one
    ports = dict(zip((1, 2), free_ports(2), strict=True))
    peers = {b: ("127.0.0.1", p) for b, p in ports.items()}
    got: list[Message] = []
    transports = {
        b: PeerTransport(b, peers, SECRET, "test-cluster", got.append, ping_interval_s=0.05)
        for b in ports
    }
    async with trio.open_nursery() as nursery:
        for b, t in transports.items():
            await nursery.start(listener, ports[b], t)
        async with trio.open_nursery() as senders:
            for t in transports.values():
                senders.start_soon(t.run)
            with trio.fail_after(10):
                while len(transports[1].last_heard) < 1 or len(transports[2].last_heard) < 1:
                    await trio.sleep(0.01)
            first = transports[1].last_heard[2]
            await trio.sleep(0.3)
            assert transports[1].last_heard[2] > first  # heard again, with nothing to say
            assert transports[2].queues[1].frames_sent >= 3
            assert got == [] and transports[1].received == 0
            senders.cancel_scope.cancel()  # broker 2 stops sending
        silent_since = transports[1].last_heard[2]
        await trio.sleep(0.3)
        assert transports[1].last_heard[2] == silent_since
        nursery.cancel_scope.cancel()
