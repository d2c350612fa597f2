"""One broker process: the metadata quorum, the partition replicas, the peer transport and
the client port, put together and run on trio.

Start-up: open (or create) the data folder; load the cluster secret (a one-node cluster
makes its own, ``<data>/cluster.secret``, mode 0600); start the metadata quorum in
``<data>/@metadata`` (a name no topic can take); register this broker (retrying until the
metadata group answers) and heartbeat it every few seconds; reconcile the local replicas
with every new metadata image; serve the native port.

Shutdown (SIGTERM or Ctrl-C): hand every partition this broker leads to another replica
(Raft leadership transfer), wait a little for the hand-overs, then stop everything and close
the quorum; a second signal stops at once.

Scenario mode (``run_broker``; the fault-injection harness sets these, never production):

- ``RAFTLOG_SCENARIO_LEDGER=path``: write through a ``LedgerFileSystem`` that appends to
  ``path`` what each fsync made durable (``apply_power_loss`` replays a power loss from it;
  the same path keeps working across restarts).
- ``RAFTLOG_SCENARIO_DISK_FAULTS=path``: fail disk operations as the JSON file ``path``
  says (``{"fsync": "EIO", "pwrite": "ENOSPC", "path_contains": ""}``, see
  ``storage.files.parse_disk_faults``); re-read at start-up and every 100 ms when its
  mtime or size changed, a missing file = no faults.
- ``RAFTLOG_SCENARIO_CLOCK=path``: run trio on a ``ScenarioClock`` (rate, forward jumps,
  wall-clock offset) controlled by the JSON file ``path`` (see ``runtime/clock.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import trio

from raftlog.broker.admin_http import AdminHttp
from raftlog.broker.coordinator import Coordinator
from raftlog.broker.handlers import Handlers
from raftlog.broker.server import Server
from raftlog.config import BrokerConfig
from raftlog.errors import ErrorCode
from raftlog.metadata.bridge import MetadataBridge
from raftlog.metadata.quorum import MetadataQuorum, QuorumConfig
from raftlog.raft import Role
from raftlog.runtime.clock import ClockFileWatcher, ScenarioClock
from raftlog.runtime.flusher import Flusher
from raftlog.runtime.replicas import RaftTimings, ReplicaManager
from raftlog.runtime.transport import PeerTransport
from raftlog.storage.failure import halt_on_disk_failure
from raftlog.storage.files import (
    FaultInjectingFileSystem,
    FileSystem,
    LedgerFileSystem,
    OsFileSystem,
)
from raftlog.types import NodeId

log = logging.getLogger("raftlog.broker")

METADATA_FOLDER = "@metadata"
SECRET_FILE = "cluster.secret"
HEARTBEAT_S = 2.0
SHUTDOWN_TRANSFER_S = 2.0
ENV_LEDGER = "RAFTLOG_SCENARIO_LEDGER"
ENV_DISK_FAULTS = "RAFTLOG_SCENARIO_DISK_FAULTS"
ENV_CLOCK = "RAFTLOG_SCENARIO_CLOCK"
SCENARIO_POLL_S = 0.1


def load_secret(config: BrokerConfig) -> str:
    """The cluster secret: from ``--cluster-secret-file``, or for a one-node cluster with
    none given, made once in the data folder."""
    path = config.cluster_secret_file
    if path is None:
        path = os.path.join(config.data_dir, SECRET_FILE)
        if not os.path.exists(path):
            os.makedirs(config.data_dir, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(os.urandom(32).hex())
                f.flush()
                os.fsync(f.fileno())
    with open(path, encoding="utf-8") as f:
        secret = f.read(4096).strip()
    if len(secret) < 16:
        raise ValueError(f"the cluster secret in {path} is shorter than 16 characters")
    return secret


def cluster_id_of(secret: str) -> str:
    """Every member derives the same id from the shared secret, without revealing it."""
    return hmac.new(secret.encode(), b"raftlog-cluster-id", hashlib.sha256).hexdigest()[:16]


def _system_wall_ms() -> int:
    return int(time.time() * 1000)


class Broker:
    """``wall_ms`` is the wall clock the broker stamps and ages records with (default
    ``time.time()``; scenarios shift it)."""

    def __init__(
        self,
        config: BrokerConfig,
        *,
        fs: FileSystem | None = None,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        self.config = config
        self.fs = fs or OsFileSystem()
        self.wall_ms = wall_ms or _system_wall_ms
        self.secret = load_secret(config)
        self.cluster_id = cluster_id_of(self.secret)
        self.bridge: MetadataBridge | None = None
        self.quorum: MetadataQuorum | None = None
        self._stopping = trio.Event()
        me = config.member(config.node_id)
        self._self_metadata = config.metadata_address_of(me)
        # pysyncobj's member list here: a peer's metadata_dial override replaces its real
        # address (BrokerConfig explains when that works)
        self._metadata_partners = tuple(
            sorted(
                self._self_metadata if m.node_id == me.node_id else config.metadata_dial_of(m)
                for m in config.members
            )
        )
        # metadata address -> broker id, for both forms: pysyncobj names a leader by the
        # entry it knows it by (the override for a peer this broker dials)
        self._metadata_addr = {config.metadata_address_of(m): m.node_id for m in config.members}
        self._metadata_addr.update({config.metadata_dial_of(m): m.node_id for m in config.members})

    def _disk_failure(self, where: str, error: BaseException) -> None:
        """A write or fsync failed: halt (``raftlog.storage.failure``), unless the broker is
        already stopping and closed the files under a write still in flight."""
        if self._stopping.is_set():
            log.warning("event=write_failed_while_stopping where=%s error=%r", where, error)
            return
        halt_on_disk_failure(where, error)

    def metadata_leader(self) -> int | None:
        if self.quorum is None:
            return None
        leader = self.quorum.status()["leader"]
        return None if leader is None else self._metadata_addr.get(leader)

    def metadata_ready(self) -> bool:
        return self.quorum is not None and bool(self.quorum.status()["ready"])

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        os.makedirs(cfg.data_dir, exist_ok=True)
        box: list[MetadataBridge] = []
        self.quorum = MetadataQuorum(
            QuorumConfig(
                self._self_metadata,
                self._metadata_partners,
                os.path.join(cfg.data_dir, METADATA_FOLDER),
                self.secret,
                fs=self.fs,
            ),
            on_image=lambda image: box[0].on_image(image) if box else None,
            on_disk_failure=self._disk_failure,
        )
        try:
            self.bridge = MetadataBridge(self.quorum)
            box.append(self.bridge)
            await self._serve(task_status)
        finally:
            self.quorum.close()

    async def _serve(self, task_status: Any) -> None:
        cfg = self.config
        assert self.bridge is not None
        flusher = Flusher()
        # where to dial each peer (a --dial override, else its --peer address); peers are
        # known by node id and authenticated by the secret, never by address
        peers = {m.node_id: cfg.dial_address_of(m) for m in cfg.members}
        replicas_box: list[ReplicaManager] = []
        transport = PeerTransport(
            cfg.node_id,
            peers,
            self.secret.encode(),
            self.cluster_id,
            lambda msg: replicas_box[0].route(msg),
        )
        replicas = ReplicaManager(
            cfg.node_id,
            cfg.data_dir,
            self.fs,
            flusher,
            transport.send,
            timings=RaftTimings(tick_ms=cfg.tick_ms),
            on_leader=self._report_leader,
            clock_ms=self.wall_ms,
            on_disk_failure=self._disk_failure,
            liveness=transport,
        )
        replicas_box.append(replicas)
        self.replicas = replicas
        handlers = Handlers(
            cfg.node_id,
            replicas,
            self.bridge,
            self.metadata_leader,
            self.wall_ms,
            metadata_ready=self.metadata_ready,
        )
        coordinator = Coordinator(
            cfg.node_id,
            self.bridge,
            lambda: self.metadata_leader() == cfg.node_id,
            self.wall_ms,
        )
        handlers.coordinator = coordinator
        self.coordinator = coordinator
        server = Server(cfg.node_id, self.cluster_id, handlers, transport)
        host, port = cfg.listen_address
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(flusher.run)
            nursery.start_soon(transport.run)
            nursery.start_soon(self.bridge.run_commit_folder)
            nursery.start_soon(coordinator.run)
            await nursery.start(replicas.run)
            nursery.start_soon(replicas.retention_loop, cfg.retention_check_ms / 1000)
            listeners = await trio.open_tcp_listeners(port, host=host)
            nursery.start_soon(trio.serve_listeners, server.handle_connection, listeners)
            admin = AdminHttp(self._health, lambda: self._metrics(server))
            admin_host, admin_port = cfg.admin_address
            admin_listeners = await trio.open_tcp_listeners(admin_port, host=admin_host)
            nursery.start_soon(trio.serve_listeners, admin.handle, admin_listeners)
            nursery.start_soon(self._register_and_heartbeat)
            nursery.start_soon(self._reconcile_loop, replicas)
            log.info("event=broker_started id=%d listen=%s:%d cluster=%s", cfg.node_id, host,
                     port, self.cluster_id)  # fmt: skip
            task_status.started()
            await self._stopping.wait()
            await self._hand_over(replicas)
            await replicas.close()
            nursery.cancel_scope.cancel()

    def _health(self) -> tuple[bool, dict[str, Any]]:
        replicas = self.replicas.replicas.values()
        doc = {
            "broker_id": self.config.node_id,
            "cluster_id": self.cluster_id,
            "metadata_ready": self.metadata_ready(),
            "metadata_leader": self.metadata_leader(),
            "replicas": len(replicas),
            "leading": sum(1 for r in replicas if r.driver.role is Role.LEADER),
            "fenced": sum(1 for r in replicas if r.driver.fenced is not None),
        }
        return bool(doc["metadata_ready"]), doc

    def _metrics(self, server: Server) -> str:
        lines = [
            "# TYPE raftlog_replicas gauge",
            f"raftlog_replicas {len(self.replicas.replicas)}",
            "# TYPE raftlog_replicas_leading gauge",
            "raftlog_replicas_leading "
            f"{sum(1 for r in self.replicas.replicas.values() if r.driver.role is Role.LEADER)}",
            "# TYPE raftlog_connections gauge",
            f"raftlog_connections {server.connections}",
            "# TYPE raftlog_high_watermark gauge",
            "# TYPE raftlog_log_end_offset gauge",
        ]
        for r in sorted(self.replicas.replicas.values(), key=lambda r: (r.topic, r.partition)):
            labels = f'topic="{r.topic}",partition="{r.partition}"'
            lines.append(f"raftlog_high_watermark{{{labels}}} {int(r.driver.commit_offset)}")
            lines.append(f"raftlog_log_end_offset{{{labels}}} {r.log.log_end_offset()}")
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        self._stopping.set()

    async def _hand_over(self, replicas: ReplicaManager) -> None:
        """Transfer the leadership of every partition led here, then wait a little."""
        led = [r for r in replicas.replicas.values() if r.driver.role is Role.LEADER]
        for r in led:
            voters = [v for v in r.driver.core.membership.voters if v != self.config.node_id]
            if voters:
                r.driver.transfer_leadership(NodeId(voters[0]))
        with trio.move_on_after(SHUTDOWN_TRANSFER_S):
            while any(r.driver.role is Role.LEADER for r in led):
                await trio.sleep(0.02)

    def _report_leader(self, topic: str, partition: int, topic_id: int, leader: int | None,
                       term: int) -> None:  # fmt: skip
        async def report() -> None:
            assert self.bridge is not None
            cmd = {"op": "report_leader", "topic": topic, "partition": partition,
                   "leader": leader, "term": term}  # fmt: skip
            for _ in range(20):
                try:
                    result = await self.bridge.submit(cmd, timeout_s=5)
                    if result.get("ok") or result.get("code") != ErrorCode.LEADER_NOT_AVAILABLE:
                        return
                except Exception as e:  # retried; the metadata group may be electing
                    log.info("event=leader_report_retry group=%s/%d error=%s", topic, partition, e)
                await trio.sleep(0.2)

        self._nursery.start_soon(report)

    async def _register_and_heartbeat(self) -> None:
        assert self.bridge is not None
        cfg = self.config
        host, port = cfg.advertised
        registered = False
        while True:
            now = self.wall_ms()
            if registered:
                cmd: dict[str, Any] = {"op": "broker_heartbeat", "broker_id": cfg.node_id,
                                       "now_ms": now}  # fmt: skip
            else:
                cmd = {"op": "register_broker", "broker_id": cfg.node_id,
                       "client_address": f"{host}:{port}", "internal_address": f"{host}:{port}",
                       "now_ms": now}  # fmt: skip
            try:
                result = await self.bridge.submit(cmd, timeout_s=5)
                if result.get("ok"):
                    if not registered:
                        log.info("event=broker_registered id=%d", cfg.node_id)
                    registered = True
            except Exception as e:  # the metadata group may be electing: try again
                log.info("event=metadata_unavailable error=%s", e)
            await trio.sleep(HEARTBEAT_S if registered else 0.2)

    async def _reconcile_loop(self, replicas: ReplicaManager) -> None:
        assert self.bridge is not None
        version = -1
        while True:
            image = await self.bridge.next_image(version)
            version = image.version
            replicas.reconcile(image)


def scenario_file_system(env: dict[str, str]) -> FileSystem | None:
    """The file system scenario mode asks for through ``env`` (see the module docstring),
    or None for the plain disk. The faults file is read once here (start-up)."""
    ledger, faults = env.get(ENV_LEDGER), env.get(ENV_DISK_FAULTS)
    if not ledger and not faults:
        return None
    inner: FileSystem = LedgerFileSystem(ledger) if ledger else OsFileSystem()
    if ledger:
        log.info("event=scenario_ledger path=%s", ledger)
    if not faults:
        return inner
    fs = FaultInjectingFileSystem(inner)
    try:
        fs.reload(faults)
    except (OSError, ValueError) as e:
        log.warning("event=disk_faults_invalid path=%s error=%s", faults, e)
    log.info("event=disk_faults_changed faults=%s", fs.faults.describe())
    return fs


async def watch_disk_faults(fs: FaultInjectingFileSystem, path: str) -> None:
    """Re-read the faults file every ``SCENARIO_POLL_S`` (when it changed) until cancelled;
    a file that cannot be used is logged and leaves the faults as they were."""
    while True:
        try:
            if fs.reload(path):
                log.warning("event=disk_faults_changed faults=%s", fs.faults.describe())
        except (OSError, ValueError) as e:
            log.warning("event=disk_faults_invalid path=%s error=%s", path, e)
        await trio.sleep(SCENARIO_POLL_S)


def scenario_clock(env: dict[str, str]) -> tuple[ScenarioClock, ClockFileWatcher] | None:
    """The injected clock scenario mode asks for (``RAFTLOG_SCENARIO_CLOCK``), set from
    its file as it is at start-up, or None for trio's own clock."""
    path = env.get(ENV_CLOCK)
    if not path:
        return None
    clock = ScenarioClock()
    watcher = ClockFileWatcher(path, clock)
    watcher.poll()
    log.info(
        "event=scenario_clock path=%s rate=%g jump_s=%g wall_offset_s=%g",
        path,
        clock.rate,
        clock.jump_s,
        clock.wall_offset_s,
    )
    return clock, watcher


def run_broker(config: BrokerConfig) -> None:
    """Run a broker in the foreground until SIGTERM or Ctrl-C (systemd-friendly): the first
    signal hands leaderships over and stops, a second one stops at once. The scenario
    environment variables of the module docstring switch on the scenario seams."""
    env = dict(os.environ)
    fs = scenario_file_system(env)
    faults_path = env.get(ENV_DISK_FAULTS)
    clocked = scenario_clock(env)

    async def main() -> None:
        broker = Broker(config, fs=fs, wall_ms=clocked[0].wall_ms if clocked else None)
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        if broker._stopping.is_set():
                            nursery.cancel_scope.cancel()
                            return
                        log.info("event=broker_stopping")
                        broker.stop()

            nursery.start_soon(watch_signals)
            if isinstance(fs, FaultInjectingFileSystem) and faults_path:
                nursery.start_soon(watch_disk_faults, fs, faults_path)
            if clocked is not None:
                nursery.start_soon(clocked[1].run, SCENARIO_POLL_S)
            await broker.run()
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clocked[0] if clocked else None)
