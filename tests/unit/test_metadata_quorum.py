"""The metadata quorum's guards, in process: the pysyncobj internals it relies on, the
mandatory secret, a raw pickle at the port, oversized frames, the bind address, and the
trio bridge (real clock: trio's autojump clock misfires on wake-ups from other threads)."""

from __future__ import annotations

import inspect
import os
import pickle
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from importlib.metadata import version

import pysyncobj
import pysyncobj.syncobj
import pysyncobj.tcp_connection
import pysyncobj.tcp_server
import pysyncobj.transport
import pytest
import trio

from raftlog.errors import ErrorCode
from raftlog.metadata.bridge import MetadataBridge
from raftlog.metadata.quorum import (
    MetadataQuorum,
    QuorumConfig,
    QuorumError,
    _CappedTcpConnection,
)
from raftlog.testing.procs import free_ports, wait_until

SECRET = "test-secret-0123456789"


def test_pysyncobj_internals_we_rely_on() -> None:
    """Fails when a pysyncobj upgrade moves what quorum.py reaches into."""
    major, minor, patch = (int(x) for x in version("pysyncobj").split(".")[:3])
    assert (major, minor) == (0, 3) and patch >= 17, "quorum.py was tested with 0.3.17"
    assert callable(pysyncobj.syncobj.createJournal)
    src = inspect.getsource(pysyncobj.syncobj.SyncObj.__init__)
    assert "createJournal(self.__conf.journalFile)" in src
    tc = pysyncobj.tcp_connection.TcpConnection
    assert callable(tc._TcpConnection__processRead)
    assert "self.__readBuffer += incoming" in inspect.getsource(tc._TcpConnection__processRead)
    assert "struct.unpack('i', self.__readBuffer[:4])" in inspect.getsource(
        tc._TcpConnection__processParseMessage
    )
    assert pysyncobj.tcp_server.TcpConnection is _CappedTcpConnection
    assert pysyncobj.transport.TcpConnection is _CappedTcpConnection
    send_src = inspect.getsource(pysyncobj.transport.TCPTransport.send)
    assert "def send(self, node, message)" in send_src
    for name in ("_getLeader", "_isLeader", "destroy_synchronous", "addOnTickCallback"):
        assert callable(getattr(pysyncobj.SyncObj, name))
    conf = pysyncobj.SyncObjConf(serializer=lambda *a: None, deserializer=lambda *a: None)
    assert conf.serializer is not None and conf.deserializer is not None


@pytest.mark.parametrize("secret", ["", "short"])
def test_a_cluster_secret_is_mandatory(secret: str, tmp_path: object) -> None:
    with pytest.raises(QuorumError) as e:
        QuorumConfig("127.0.0.1:1", ("127.0.0.1:1",), str(tmp_path), secret)
    assert e.value.code == ErrorCode.INVALID_CONFIG and "secret" in e.value.message


@pytest.fixture
def one_node(tmp_path: object) -> Iterator[MetadataQuorum]:
    (port,) = free_ports(1)
    addr = f"127.0.0.1:{port}"
    q = MetadataQuorum(QuorumConfig(addr, (addr,), str(tmp_path), SECRET))
    try:
        wait_until(lambda: q.status()["is_leader"], timeout_s=10, what="a one-node leader")
        yield q
    finally:
        q.close()


def _malicious_frame(marker: str) -> bytes:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    data = zlib.compress(pickle.dumps(Evil()))
    return struct.pack("i", len(data)) + data


def _send_raw(addr: str, payload: bytes) -> None:
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(payload)
        s.settimeout(2)
        try:
            while s.recv(65536):
                pass
        except (TimeoutError, ConnectionError):
            pass


def _submit_sync(q: MetadataQuorum, command: dict[str, object]) -> dict[str, object]:
    box: list[object] = []
    q.submit(command, lambda r, e: box.append(e or r))
    wait_until(lambda: box, timeout_s=10, what=f"result of {command['op']}")
    assert isinstance(box[0], dict), box[0]
    return box[0]


def test_a_raw_pickle_at_the_metadata_port_does_not_run(
    one_node: MetadataQuorum, tmp_path: object
) -> None:
    marker = os.path.join(str(tmp_path), "pwned")
    _send_raw(one_node.config.self_address, _malicious_frame(marker))
    time.sleep(0.3)  # give a (wrongly) unpickling node time to run the payload
    assert not os.path.exists(marker), "an unauthenticated pickle ran code in the broker"
    assert _submit_sync(one_node, {"op": "barrier", "rid": "r1"})["ok"]


def test_the_same_pickle_runs_on_pysyncobj_without_a_secret(tmp_path: object) -> None:
    """Shows the test above can fail: plain pysyncobj with no password runs the payload."""
    (port,) = free_ports(1)
    addr = f"127.0.0.1:{port}"
    plain = pysyncobj.SyncObj(addr, [], pysyncobj.SyncObjConf(autoTickPeriod=0.01))
    try:
        wait_until(lambda: plain._isReady() or plain._isLeader(), timeout_s=10, what="plain node")
        marker = os.path.join(str(tmp_path), "pwned")
        _send_raw(addr, _malicious_frame(marker))
        wait_until(lambda: os.path.exists(marker), timeout_s=5, what="the payload to run")
    finally:
        plain.destroy_synchronous()


def test_an_oversized_frame_is_refused_before_it_is_buffered(one_node: MetadataQuorum) -> None:
    host, port = one_node.config.self_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(struct.pack("i", 512 * 1024 * 1024))
        sent = 0
        chunk = b"\0" * 65536
        with pytest.raises((ConnectionError, BrokenPipeError, OSError)):
            for _ in range(2000):  # 128 MiB at most: the node must cut us off long before
                s.sendall(chunk)
                sent += len(chunk)
        assert sent < 64 * 1024 * 1024
    assert _submit_sync(one_node, {"op": "barrier", "rid": "r2"})["ok"]


def test_the_port_binds_to_the_internal_address_only(one_node: MetadataQuorum) -> None:
    port = int(one_node.config.self_address.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()


def test_the_trio_bridge_submits_and_waits_for_the_image(tmp_path: object) -> None:
    (port,) = free_ports(1)
    addr = f"127.0.0.1:{port}"
    box: list[MetadataBridge] = []
    q = MetadataQuorum(
        QuorumConfig(addr, (addr,), str(tmp_path), SECRET),
        on_image=lambda image: box[0].on_image(image) if box else None,
    )

    async def main() -> None:
        bridge = MetadataBridge(q)
        box.append(bridge)
        with trio.fail_after(10):
            while not q.status()["is_leader"]:
                await trio.sleep(0.01)
        start = bridge.image().version
        result = await bridge.submit({"op": "barrier"})
        assert result["ok"]
        image = await bridge.barrier()
        assert image.version >= start
        t0 = time.perf_counter()
        results = []
        async with trio.open_nursery() as n:

            async def one(i: int) -> None:
                results.append(await bridge.submit({"op": "barrier"}))

            for i in range(200):
                n.start_soon(one, i)
        assert len(results) == 200 and all(r["ok"] for r in results)
        assert time.perf_counter() - t0 < 10

    try:
        trio.run(main)
    finally:
        q.close()


def test_a_command_that_cannot_apply_does_not_wedge_the_group(one_node: MetadataQuorum) -> None:
    box: list[object] = []
    one_node._sync.apply_command(b"\xff\x00 not cbor", callback=lambda r, e: box.append(r))
    wait_until(lambda: box, timeout_s=10, what="the bad command's result")
    assert box[0]["ok"] is False  # type: ignore[index]
    r = _submit_sync(one_node, {"op": "register_broker", "rid": "b0", "broker_id": 0,
                                "client_address": "127.0.0.1:1", "internal_address": "127.0.0.1:1",
                                "now_ms": 1})  # fmt: skip
    assert r["ok"], r


def test_a_restart_replays_the_journal_into_the_same_state(tmp_path: object) -> None:
    (port,) = free_ports(1)
    addr = f"127.0.0.1:{port}"
    cfg = QuorumConfig(addr, (addr,), str(tmp_path), SECRET, compaction_min_entries=20)
    q = MetadataQuorum(cfg)
    try:
        wait_until(lambda: q.status()["is_leader"], timeout_s=10, what="leader")
        _submit_sync(q, {"op": "register_broker", "rid": "b0", "broker_id": 0,
                         "client_address": "127.0.0.1:1", "internal_address": "127.0.0.1:1",
                         "now_ms": 1})  # fmt: skip
        for i in range(50):  # past the compaction threshold: snapshot + journal on restart
            r = _submit_sync(q, {"op": "create_topic", "rid": f"t{i}", "topic": f"t{i}",
                                 "partitions": 1, "replication_factor": 1})  # fmt: skip
            assert r["ok"], r
        wait_until(lambda: q.image().version == 51, timeout_s=5, what="image 51")
        before = q.model.to_snapshot()
        wait_until(
            lambda: os.path.exists(os.path.join(str(tmp_path), "metadata.snapshot")),
            timeout_s=10,
            what="a compaction snapshot",
        )
    finally:
        q.close()
    q = MetadataQuorum(cfg)
    try:
        wait_until(lambda: q.image().version == 51, timeout_s=10, what="replayed image")
        assert q.model.to_snapshot() == before
        # a retried request id still answers its first result, applying nothing twice
        again = _submit_sync(q, {"op": "create_topic", "rid": "t3", "topic": "t3",
                                 "partitions": 1, "replication_factor": 1})  # fmt: skip
        assert again["ok"] and again["version"] == 5
        assert q.model.version == 51
    finally:
        q.close()


def test_watchers_wake_on_new_versions_and_commits_are_folded(tmp_path: object) -> None:
    (port,) = free_ports(1)
    addr = f"127.0.0.1:{port}"
    box: list[MetadataBridge] = []
    q = MetadataQuorum(
        QuorumConfig(addr, (addr,), str(tmp_path), SECRET),
        on_image=lambda image: box[0].on_image(image) if box else None,
    )

    async def main() -> None:
        bridge = MetadataBridge(q, fold_ms=5)
        box.append(bridge)
        with trio.fail_after(10):
            while not q.status()["is_leader"]:
                await trio.sleep(0.01)
        r = await bridge.submit(
            {"op": "register_broker", "broker_id": 0, "client_address": "127.0.0.1:1",
             "internal_address": "127.0.0.1:1", "now_ms": 1}
        )  # fmt: skip
        assert r["ok"], r
        await bridge.submit({"op": "create_topic", "topic": "t", "partitions": 1,
                             "replication_factor": 1})  # fmt: skip
        seen: list[int] = []

        async def watcher(after: int) -> None:
            image = await bridge.next_image(after)
            seen.append(image.version)

        async with trio.open_nursery() as n:
            start = bridge.image().version
            n.start_soon(watcher, start)
            await trio.sleep(0.05)
            assert not seen, "a watcher woke without a new version"
            await bridge.submit({"op": "broker_heartbeat", "broker_id": 0, "now_ms": 5})
        assert seen == [start + 1]

        applied_before = q.applied
        results: list[dict[str, object]] = []
        async with trio.open_nursery() as n:
            n.start_soon(bridge.run_commit_folder)
            async with trio.open_nursery() as members:
                for m in range(50):

                    async def commit(m: int = m) -> None:
                        results.append(await bridge.commit_offsets({
                            "group_id": f"g{m}", "generation": -1, "member_id": "",
                            "offsets": [{"topic": "t", "partition": 0, "offset": m, "commit_ms": 1,
                                         "metadata": ""}],
                        }))  # fmt: skip

                    members.start_soon(commit)
            n.cancel_scope.cancel()
        assert len(results) == 50 and all(r["ok"] for r in results), results[:3]
        commands = q.applied - applied_before
        assert commands <= 5, f"50 commits took {commands} commands: not folded"
        image = await bridge.barrier()
        assert image.committed("g7", "t", 0).offset == 7

    try:
        trio.run(main)
    finally:
        q.close()
