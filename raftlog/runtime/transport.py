"""Broker-to-broker Raft traffic: one authenticated connection per peer, coalesced frames.

Every partition's Raft driver hands its messages to ``PeerTransport.send``. Messages for
one peer are queued and written as one RAFT frame per wake-up of that peer's sender task:
all the heartbeats that every partition produced on one tick leave as one frame, so a
thousand partitions cost one frame per tick per broker pair, not a thousand.

Connections: each broker dials every other one (its *outbound* connection, which carries
what it sends) and accepts the others' dials (*inbound*, which carry what it receives). A
dial is authenticated both ways with the cluster secret, by challenge and response (no
clock is involved, so a skewed clock cannot lock a broker out)::

    peer   -> HELLO(role=peer, node_id, nonce=Np)
    broker -> HELLO(broker_id, nonce=Nb, proof=HMAC(secret, "broker" | Np | Nb | broker_id))
    peer   -> HELLO(role=peer, node_id, proof=HMAC(secret, "peer" | Nb | Np | node_id))

Nothing but this handshake is read from a connection before it completes, and a broker
that fails it is dropped without an answer that could help a guesser.

Liveness: a sender with nothing to send for ``ping_interval_s`` sends an empty RAFT frame,
and ``last_heard`` keeps when each peer's last frame arrived. Quiesced partitions send
nothing at all (``raftlog.raft.quiesce``); the replica manager's failure detector reads
``last_heard`` to wake them when a peer falls silent.

Bounded memory: a peer's queue holds at most ``queue_bytes_max`` of entry data; past that,
new messages to it are dropped and counted (Raft resends what a follower did not
acknowledge, and the leader's in-flight window bounds what it sends unacknowledged). A
broken connection drops its queue and is dialled again with backoff.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from raftlog.errors import ErrorCode
from raftlog.raft.messages import AppendEntriesRequest, Message
from raftlog.types import NodeId
from raftlog.wire import (
    BadFrame,
    ErrorResponse,
    Frame,
    FrameDecoder,
    FrameTooLarge,
    HelloRequest,
    HelloResponse,
    RaftRequest,
    WireError,
    decode,
    encode_request,
    encode_response,
    error_frame,
)

log = logging.getLogger("raftlog.transport")

NONCE_BYTES = 32
HANDSHAKE_TIMEOUT_S = 5.0
RECEIVE_BYTES = 256 * 1024
PEER_FRAME_BYTES_MAX = 128 * 1024 * 1024
COALESCE_ROUNDS = 3
PING_INTERVAL_S = 0.1


def _proof(secret: bytes, role: bytes, first: bytes, second: bytes, node_id: int) -> bytes:
    msg = role + b"|" + bytes(first) + b"|" + bytes(second) + b"|" + str(node_id).encode()
    return hmac.new(secret, msg, hashlib.sha256).digest()


def _message_bytes(msg: Message) -> int:
    if isinstance(msg, AppendEntriesRequest):
        return 64 + sum(len(e.data) for e in msg.entries)
    return 64


class HandshakeError(Exception):
    """A peer that did not prove it knows the cluster secret."""


async def _read_frame(stream: trio.abc.Stream, decoder: FrameDecoder) -> Frame:
    """The next frame; frames behind it stay buffered in ``decoder`` (a client may
    pipeline requests right behind its HELLO)."""
    while True:
        frame = decoder.next_frame()
        if frame is not None:
            return frame
        data = await stream.receive_some(RECEIVE_BYTES)
        if not data:
            raise HandshakeError("connection closed during the handshake")
        decoder.receive(data)


@dataclass
class _PeerQueue:
    messages: list[Message] = field(default_factory=list)
    bytes: int = 0
    wake: trio.Event = field(default_factory=trio.Event)
    dropped: int = 0
    frames_sent: int = 0
    connected: bool = False


class PeerTransport:
    """See the module docstring. ``deliver`` gets every authenticated inbound message."""

    def __init__(
        self,
        node_id: int,
        peers: dict[int, tuple[str, int]],
        secret: bytes,
        cluster_id: str,
        deliver: Callable[[Message], None],
        *,
        queue_bytes_max: int = 64 * 1024 * 1024,
        connect: Callable[[str, int], Any] | None = None,
        ping_interval_s: float = PING_INTERVAL_S,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the cluster secret must be at least 16 bytes")
        self.node_id = node_id
        self.peers = {p: a for p, a in peers.items() if p != node_id}
        self.secret = secret
        self.cluster_id = cluster_id
        self.deliver = deliver
        self.queue_bytes_max = queue_bytes_max
        self._connect = connect or trio.open_tcp_stream
        self.queues = {p: _PeerQueue() for p in self.peers}
        self.ping_interval_s = ping_interval_s
        self.last_heard: dict[int, float] = {}
        """Peer -> ``trio.current_time()`` of its last frame: the failure detector's input."""
        self.received = 0
        self.rejected_handshakes = 0

    # ------------------------------------------------------------------ sending

    def send(self, msg: Message) -> None:
        """Queue ``msg`` for its destination (never blocks; drops past the byte bound)."""
        q = self.queues.get(int(msg.dst))
        if q is None:
            return
        size = _message_bytes(msg)
        if q.bytes + size > self.queue_bytes_max:
            q.dropped += 1
            return
        q.messages.append(msg)
        q.bytes += size
        q.wake.set()

    async def run(self) -> None:
        """Dial and feed every peer until cancelled."""
        async with trio.open_nursery() as nursery:
            for peer in sorted(self.peers):
                nursery.start_soon(self._sender, peer)

    async def _sender(self, peer: int) -> None:
        host, port = self.peers[peer]
        q = self.queues[peer]
        backoff = 0.05
        while True:
            try:
                stream = await self._connect(host, port)
            except OSError:
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            try:
                async with stream:
                    with trio.fail_after(HANDSHAKE_TIMEOUT_S):
                        await self._dial_handshake(stream, peer)
                    q.connected = True
                    backoff = 0.05
                    log.info("event=peer_connected peer=%d", peer)
                    await self._send_loop(stream, q)
            except (OSError, trio.BrokenResourceError, trio.TooSlowError, HandshakeError) as e:
                log.info("event=peer_disconnected peer=%d error=%r", peer, e)
            q.connected = False
            q.messages.clear()
            q.bytes = 0
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _dial_handshake(self, stream: trio.abc.Stream, peer: int) -> None:
        nonce = os.urandom(NONCE_BYTES)
        hello = HelloRequest("peer", f"broker-{self.node_id}", node_id=NodeId(self.node_id),
                             nonce=nonce)  # fmt: skip
        await stream.send_all(b"".join(encode_request(hello, 0)))
        reply = decode(await _read_frame(stream, FrameDecoder(1 << 16)))
        if not isinstance(reply, HelloResponse) or reply.nonce is None or reply.proof is None:
            raise HandshakeError(f"peer {peer} did not answer the handshake")
        expected = _proof(self.secret, b"broker", nonce, bytes(reply.nonce), int(reply.broker_id))
        if int(reply.broker_id) != peer or not hmac.compare_digest(bytes(reply.proof), expected):
            raise HandshakeError(f"peer {peer} failed to prove the cluster secret")
        proof = _proof(self.secret, b"peer", bytes(reply.nonce), nonce, self.node_id)
        done = HelloRequest("peer", f"broker-{self.node_id}", node_id=NodeId(self.node_id),
                            proof=proof)  # fmt: skip
        await stream.send_all(b"".join(encode_request(done, 1)))

    async def _send_loop(self, stream: trio.abc.Stream, q: _PeerQueue) -> None:
        correlation = 2
        while True:
            with trio.move_on_after(self.ping_interval_s) as idle:
                await q.wake.wait()
            if not idle.cancelled_caught:
                # let the other partitions of this tick add theirs: a few scheduling rounds
                # (each partition's driver needs two or three to turn a tick into messages)
                for _ in range(COALESCE_ROUNDS):
                    await trio.sleep(0)
                q.wake = trio.Event()
            messages, q.messages, q.bytes = q.messages, [], 0
            if not messages and not idle.cancelled_caught:
                continue
            # after a quiet ping interval an empty frame says "alive" (a quiesced group
            # sends nothing, and the peer's failure detector needs a word)
            pieces = encode_request(RaftRequest(tuple(messages)), correlation)
            correlation = correlation + 1 if correlation < 2**31 - 1 else 2
            await stream.send_all(b"".join(pieces))
            q.frames_sent += 1

    # ------------------------------------------------------------------ receiving

    async def serve_peer(self, stream: trio.abc.Stream, decoder: FrameDecoder, first: Frame,
                         hello: HelloRequest) -> None:  # fmt: skip
        """Serve an inbound peer connection whose first frame (``hello``) was read by the
        broker's listener; returns when the connection ends."""
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT_S):
                peer = await self._accept_handshake(stream, decoder, first, hello)
        except (HandshakeError, WireError, trio.TooSlowError, trio.BrokenResourceError) as e:
            self.rejected_handshakes += 1
            log.warning("event=peer_handshake_refused error=%s", e)
            return
        await self._receive_loop(stream, decoder, peer)

    async def _accept_handshake(self, stream: trio.abc.Stream, decoder: FrameDecoder,
                                first: Frame, hello: HelloRequest) -> int:  # fmt: skip
        peer = int(hello.node_id) if hello.node_id is not None else -1
        if peer not in self.peers or hello.nonce is None or len(hello.nonce) != NONCE_BYTES:
            raise HandshakeError(f"unknown peer {peer} or no nonce")
        nonce = os.urandom(NONCE_BYTES)
        proof = _proof(self.secret, b"broker", bytes(hello.nonce), nonce, self.node_id)
        reply = HelloResponse(NodeId(self.node_id), self.cluster_id, 1, nonce=nonce, proof=proof)
        await stream.send_all(b"".join(encode_response(reply, first.correlation_id)))
        second = decode(await _read_frame(stream, decoder))
        expected = _proof(self.secret, b"peer", nonce, bytes(hello.nonce), peer)
        if (
            not isinstance(second, HelloRequest)
            or second.node_id != hello.node_id
            or second.proof is None
            or not hmac.compare_digest(bytes(second.proof), expected)
        ):
            raise HandshakeError(f"peer {peer} failed to prove the cluster secret")
        return peer

    async def _receive_loop(
        self, stream: trio.abc.Stream, decoder: FrameDecoder, peer: int
    ) -> None:
        data: bytes | bytearray = b""  # first, whatever the handshake left buffered
        while True:
            try:
                frames = decoder.feed(data)
            except FrameTooLarge:
                log.warning("event=peer_frame_too_large peer=%d", peer)
                return
            except BadFrame as e:
                log.warning("event=peer_bad_frame peer=%d error=%s", peer, e)
                frames = decoder.feed(b"")
            for frame in frames:
                self._deliver_frame(frame, peer)
            try:
                data = await stream.receive_some(RECEIVE_BYTES)
            except trio.BrokenResourceError:
                return
            if not data:
                return

    def _deliver_frame(self, frame: Frame, peer: int) -> None:
        try:
            msg = decode(frame)
        except WireError as e:  # a peer's bad frame is logged, never fatal to the broker
            log.warning("event=peer_bad_request peer=%d error=%s", peer, e)
            return
        if not isinstance(msg, RaftRequest):
            return
        self.last_heard[peer] = trio.current_time()
        for m in msg.messages:
            # a peer speaks only for itself, to us
            if int(m.src) != peer or int(m.dst) != self.node_id:
                continue
            self.received += 1
            self.deliver(m)


async def serve_first_hello(
    stream: trio.abc.Stream, max_frame_bytes: int = PEER_FRAME_BYTES_MAX
) -> tuple[FrameDecoder, Frame, HelloRequest] | None:
    """Read a connection's first frame, which must be a HELLO. None when it is not: the
    caller closes the connection (after an error answer here, when one can be given)."""
    decoder = FrameDecoder(max_frame_bytes)
    try:
        with trio.fail_after(HANDSHAKE_TIMEOUT_S):
            frame = await _read_frame(stream, decoder)
            hello = decode(frame)
            if not isinstance(hello, HelloRequest):
                why = "the first request on a connection must be HELLO"
                refusal = ErrorResponse(ErrorCode.INVALID_REQUEST, why)
                pieces = encode_response(refusal, frame.correlation_id, frame.api_key)
                await stream.send_all(b"".join(pieces))
                return None
    except WireError as e:
        answer = error_frame(e)
        if answer is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(b"".join(answer))
        return None
    except (HandshakeError, trio.TooSlowError, trio.BrokenResourceError, OSError):
        return None
    return decoder, frame, hello
