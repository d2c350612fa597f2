"""The metadata quorum: pysyncobj's Raft around ``MetadataModel``, with its guards.

Every broker embeds one ``MetadataQuorum``. Commands (plain dicts) are CBOR-encoded and
go through one replicated method, ``apply_command``, which runs on every member in log
order and hands them to the pure model. Results come back through a callback on
pysyncobj's thread; ``bridge.py`` carries them to trio.

This is the only module that imports pysyncobj, and the only one that reaches into its
internals. Each reach is listed here, pinned to the version range in pyproject.toml, and
checked by ``tests/unit/test_metadata_quorum.py::test_pysyncobj_internals_we_rely_on``:

1. ``pysyncobj.syncobj.createJournal`` is swapped, only while our ``SyncObj`` is being
   constructed, for a factory returning ``DurableJournal`` (journal.py): pysyncobj's own
   journal neither fsyncs entries nor its term and vote.
2. ``TcpConnection`` in ``pysyncobj.tcp_server`` and ``pysyncobj.transport`` is replaced
   by a subclass whose read path (``_TcpConnection__processRead``) refuses a declared
   frame length over ``frame_bytes_max`` and a read buffer over twice that, before
   anything is decrypted or unpickled.

Through public hooks: a ``TCPTransport`` subclass (``transportClass``) fsyncs the journal
before any message leaves the node; a tick callback (``addOnTickCallback``) fsyncs it
once per tick, so a leader's own entries are durable before the next tick counts them
towards a majority, and publishes the model's immutable image once per tick when the
version moved; ``serializer``/``deserializer`` write the snapshot as CBOR (not pickle),
fsynced, and restore the model from it.

Guards that need no internals: a cluster secret is mandatory (pysyncobj then
authenticates every frame with Fernet before unpickling it; without it one TCP packet
runs code in the broker), the port binds to the internal address only, compaction runs
without fork, and the replicated method catches everything (an entry that raises would
be retried forever and wedge the group).
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cbor2
import pysyncobj.syncobj as _syncobj_module
import pysyncobj.tcp_server as _tcp_server_module
import pysyncobj.transport as _transport_module
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.tcp_connection import TcpConnection
from pysyncobj.transport import TCPTransport

from raftlog.errors import ErrorCode, RaftlogError
from raftlog.metadata.journal import DurableJournal
from raftlog.metadata.model import MetadataModel
from raftlog.storage.files import FileSystem, OsFileSystem, read_whole

log = logging.getLogger("raftlog.metadata")

SNAPSHOT_NAME = "metadata.snapshot"
SECRET_CHARS_MIN = 16
COMMAND_BYTES_MAX = 1024 * 1024
SNAPSHOT_BYTES_MAX = 1 << 30


class QuorumError(RaftlogError):
    """A command that did not (or may not have) applied. ``code`` says which:
    LEADER_NOT_AVAILABLE means "not applied, retry"; UNKNOWN_OUTCOME means "may or may not
    have applied": retry only with the same request id (commands are idempotent under it)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


_NOT_APPLIED = {
    FAIL_REASON.QUEUE_FULL: "the metadata command queue is full",
    FAIL_REASON.MISSING_LEADER: "the metadata group has no leader right now",
    FAIL_REASON.REQUEST_DENIED: "the metadata leader denied the command",
}
_UNKNOWN = {
    FAIL_REASON.DISCARDED: "a new metadata leader discarded the command",
    FAIL_REASON.NOT_LEADER: "the metadata leader changed before the command committed",
    FAIL_REASON.LEADER_CHANGED: "the metadata leader changed before the command committed",
    FAIL_REASON.UNKNOWN_OUTCOME: "the command's outcome could not be tracked",
}


def error_for(reason: int) -> QuorumError:
    """The QuorumError for one of pysyncobj's FAIL_REASON codes."""
    if reason in _NOT_APPLIED:
        return QuorumError(ErrorCode.LEADER_NOT_AVAILABLE, _NOT_APPLIED[reason] + "; retry")
    text = _UNKNOWN.get(reason, f"pysyncobj failure reason {reason}")
    return QuorumError(ErrorCode.UNKNOWN_OUTCOME, text + "; it may or may not have applied")


# ------------------------------------------------------------------------- codec


def encode_command(command: dict[str, Any]) -> bytes:
    data: bytes = cbor2.dumps(command)
    if len(data) > COMMAND_BYTES_MAX:
        raise QuorumError(
            ErrorCode.RECORD_TOO_LARGE,
            f"metadata command of {len(data)} bytes exceeds {COMMAND_BYTES_MAX}; split it",
        )
    return data


def _decode(data: bytes) -> Any:
    # Commands come from our own members (authenticated), but decode strictly anyway.
    return cbor2.loads(data, max_depth=32, allow_indefinite=False)


# ------------------------------------------------------------------------- the guards


class _CappedTcpConnection(TcpConnection):  # type: ignore[misc]
    """Refuses oversized frames before buffering them whole (internals, see docstring)."""

    frame_bytes_max = 8 * 1024 * 1024

    def _TcpConnection__processRead(self) -> bool:
        ok: bool = TcpConnection._TcpConnection__processRead(self)
        buf = self._TcpConnection__readBuffer
        if len(buf) >= 4:
            (length,) = struct.unpack("i", buf[:4])
            if length < 0 or length > self.frame_bytes_max or len(buf) > 2 * self.frame_bytes_max:
                log.warning(
                    "event=metadata_frame_refused declared_bytes=%d buffered=%d", length, len(buf)
                )
                self.disconnect()
                return False
        return ok


_tcp_server_module.TcpConnection = _CappedTcpConnection
_transport_module.TcpConnection = _CappedTcpConnection


class _DurableTransport(TCPTransport):  # type: ignore[misc]
    """Fsyncs the journal before any message leaves this node (a follower's append
    response, a vote, a leader's entries)."""

    def send(self, node: Any, message: Any) -> Any:
        journal = getattr(self._syncObj, "raftlog_journal", None)
        if journal is not None:
            journal.sync()
        return super().send(node, message)


_JOURNAL_PATCH_LOCK = threading.Lock()


# ------------------------------------------------------------------------- the quorum


@dataclass(frozen=True, slots=True)
class QuorumConfig:
    """``self_address`` and ``peers`` are metadata-port addresses ("host:port"); ``peers``
    lists every member, this one included. Timings are pysyncobj's, tuned for failover in
    about a second (NOTES-dependencies.md)."""

    self_address: str
    peers: tuple[str, ...]
    data_dir: str
    secret: str
    tick_s: float = 0.01
    append_period_s: float = 0.02
    election_timeout_min_s: float = 0.4
    election_timeout_max_s: float = 0.8
    leader_fallback_s: float = 0.6
    connection_retry_s: float = 0.5
    frame_bytes_max: int = 8 * 1024 * 1024
    compaction_min_entries: int = 5000
    compaction_min_s: float = 300.0
    fs: FileSystem = field(default_factory=OsFileSystem)

    def __post_init__(self) -> None:
        if not self.secret or len(self.secret) < SECRET_CHARS_MIN:
            raise QuorumError(
                ErrorCode.INVALID_CONFIG,
                f"a cluster secret of at least {SECRET_CHARS_MIN} characters is required: "
                "without it any process that reaches the metadata port can run code in "
                "the broker (use --cluster-secret-file)",
            )
        if self.self_address not in self.peers:
            raise QuorumError(
                ErrorCode.INVALID_CONFIG,
                f"the peer list {list(self.peers)} must include this node {self.self_address}",
            )


Callback = Callable[[dict[str, Any] | None, QuorumError | None], None]


class _MetadataSyncObj(SyncObj):  # type: ignore[misc]
    """pysyncobj's Raft with exactly one replicated method."""

    def __init__(self, quorum: MetadataQuorum, conf: SyncObjConf, journal: DurableJournal) -> None:
        self.raftlog_quorum = quorum
        self.raftlog_journal = journal
        cfg = quorum.config
        others = [p for p in cfg.peers if p != cfg.self_address]
        with _JOURNAL_PATCH_LOCK:
            original = _syncobj_module.createJournal
            _syncobj_module.createJournal = lambda _path: journal
            try:
                super().__init__(cfg.self_address, others, conf, transportClass=_DurableTransport)
            finally:
                _syncobj_module.createJournal = original

    @replicated  # type: ignore[untyped-decorator]
    def apply_command(self, data: bytes) -> dict[str, Any]:
        return self.raftlog_quorum._apply(data)


class MetadataQuorum:
    """One member of the metadata Raft group. Thread-safe entry points: ``submit``,
    ``image``, ``status``, ``close``; callbacks run on pysyncobj's thread."""

    def __init__(
        self,
        config: QuorumConfig,
        *,
        on_image: Callable[[Any], None] | None = None,
        on_disk_failure: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self.config = config
        self._on_disk_failure = on_disk_failure
        """Called with (where, error) when the journal cannot be written or synced (the
        broker halts there, see ``raftlog.storage.failure``): pysyncobj would otherwise
        go on ticking and count entries that are not durable."""
        self.fs = config.fs
        self.model = MetadataModel()
        self._image = self.model.image()
        self._published_version = self._image.version
        self._on_image = on_image
        self.applied = 0
        self.fs.makedirs(config.data_dir)
        self.snapshot_path = f"{config.data_dir}/{SNAPSHOT_NAME}"
        self.journal = DurableJournal(self.fs, config.data_dir, snapshot_path=self.snapshot_path)
        self.journal.on_write_failure = on_disk_failure
        _CappedTcpConnection.frame_bytes_max = config.frame_bytes_max
        conf = SyncObjConf(
            password=config.secret,
            bindAddress=config.self_address,
            autoTick=True,
            autoTickPeriod=config.tick_s,
            appendEntriesPeriod=config.append_period_s,
            appendEntriesUseBatch=True,
            appendEntriesBatchSizeBytes=1024 * 1024,
            raftMinTimeout=config.election_timeout_min_s,
            raftMaxTimeout=config.election_timeout_max_s,
            leaderFallbackTimeout=config.leader_fallback_s,
            connectionRetryTime=config.connection_retry_s,
            connectionTimeout=max(1.0, config.election_timeout_max_s * 2),
            journalFile=self.journal.path,
            fullDumpFile=self.snapshot_path,
            serializer=self._write_snapshot,
            deserializer=self._read_snapshot,
            useFork=False,
            logCompactionMinEntries=config.compaction_min_entries,
            logCompactionMinTime=config.compaction_min_s,
            dynamicMembershipChange=False,
            commandsWaitLeader=True,
        )
        self._sync = _MetadataSyncObj(self, conf, self.journal)
        self._sync.addOnTickCallback(self._on_tick)
        self._closed = False

    # -------------------------------------------------------------- pysyncobj thread

    def _apply(self, data: bytes) -> dict[str, Any]:
        """The one replicated method's body: never raises (an entry that raises would be
        retried forever and wedge the group)."""
        try:
            command = _decode(data)
            if not isinstance(command, dict):
                return {"ok": False, "code": int(ErrorCode.INVALID_REQUEST), "message": "not a map"}
            result = self.model.apply(command)
        except Exception as e:
            log.error("event=metadata_apply_failed error=%r", e)
            result = {"ok": False, "code": int(ErrorCode.UNKNOWN), "message": f"apply: {e}"}
        self.applied += 1
        return result

    def _on_tick(self) -> None:
        # runs after this tick's applies and appends: make our entries durable, then
        # publish one immutable image when the version moved
        try:
            self.journal.sync()
        except OSError as e:
            log.critical("event=metadata_journal_fsync_failed error=%r", e)
            if self._on_disk_failure is not None:
                self._on_disk_failure("metadata journal sync", e)
            raise
        version = self.model.version
        if version != self._published_version:
            self._image = self.model.image()
            self._published_version = version
            if self._on_image is not None:
                self._on_image(self._image)

    def _write_snapshot(self, path: str, data: tuple[Any, Any, Any]) -> None:
        last, prev, cluster = data
        body = cbor2.dumps(
            {
                "v": 1,
                "model": self.model.to_snapshot(),
                "last": list(last),
                "prev": list(prev),
                "cluster": sorted(getattr(n, "address", str(n)) for n in cluster),
            }
        )
        f = self.fs.open(path)
        try:
            f.truncate(0)
            f.pwrite(body, 0)
            f.fsync()
        finally:
            f.close()
        # pysyncobj renames the file into place itself, outside the file seam: say so to a
        # seam that records renames (the power-loss ledger of tests and scenarios)
        note = getattr(self.fs, "record_external_rename", None)
        if note is not None:
            note(path, self.snapshot_path)

    def _read_snapshot(self, path: str) -> tuple[Any, Any, Any]:
        # called by pysyncobj at start-up and when a leader sent us a snapshot, right
        # before it clears the journal: make the snapshot durable first
        f = self.fs.open(path, create=False)
        try:
            f.fsync()
        finally:
            f.close()
        self.fs.fsync_dir(self.config.data_dir)
        raw = read_whole(self.fs, path, max_bytes=SNAPSHOT_BYTES_MAX)
        doc = cbor2.loads(raw, max_depth=64, allow_indefinite=False)
        if not isinstance(doc, dict) or doc.get("v") != 1:
            raise ValueError(f"{path} is not a raftlog metadata snapshot")
        self.model = MetadataModel.from_snapshot(doc["model"])
        last = (bytes(doc["last"][0]), int(doc["last"][1]), int(doc["last"][2]))
        prev = (bytes(doc["prev"][0]), int(doc["prev"][1]), int(doc["prev"][2]))
        return last, prev, list(doc["cluster"])

    # -------------------------------------------------------------- any thread

    def submit(self, command: dict[str, Any], callback: Callback) -> None:
        """Queue ``command`` for the group; ``callback(result, None)`` once applied here,
        or ``callback(None, QuorumError)``. Raises QuorumError for an oversized command."""
        data = encode_command(command)

        def done(result: Any, reason: int) -> None:
            if reason == FAIL_REASON.SUCCESS:
                callback(result, None)
            else:
                callback(None, error_for(reason))

        self._sync.apply_command(data, callback=done)

    def image(self) -> Any:
        """The newest published immutable image of the metadata."""
        return self._image

    def status(self) -> dict[str, Any]:
        leader = self._sync._getLeader()
        return {
            "self": self.config.self_address,
            "leader": None if leader is None else getattr(leader, "address", str(leader)),
            "is_leader": bool(self._sync._isLeader()),
            "term": int(self._sync.raftCurrentTerm),
            "commit_index": int(self._sync.raftCommitIndex),
            "last_applied": int(self._sync.raftLastApplied),
            "has_quorum": bool(self._sync.hasQuorum),
            # caught up with the group once since start-up (pysyncobj's onReady)
            "ready": bool(self._sync.isReady()),
            "version": self._published_version,
        }

    @property
    def is_leader(self) -> bool:
        return bool(self._sync._isLeader())

    def close(self) -> None:
        """Stop the tick thread and close the journal. Blocks until pysyncobj stopped."""
        if self._closed:
            return
        self._closed = True
        self._sync.destroy_synchronous()
