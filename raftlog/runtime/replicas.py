"""The replica manager: which partitions this broker holds, reconciled from the metadata.

Each broker runs one ``ReplicaManager``. Given a metadata image, ``reconcile`` makes the
local replicas match the assignments: a partition assigned to this broker gets its log
opened (created when new) and a ``PartitionDriver`` started; a partition no longer assigned
here (or whose topic was deleted, or deleted and created again under the same name) has its
driver stopped and its folder removed. It also ticks every driver, routes Raft messages
from peers to the right driver, reports leadership changes (term-fenced by the metadata
model), and applies retention in the background.

A partition's folder holds ``replica.meta``: the topic id (the metadata version that created
the topic) and the voters the group started with, so that a restart neither mistakes an
older topic of the same name for the current one nor forgets the membership in effect at
the log start (the core needs it: retention may have removed the entries that set it).

Raft group ids are ``"<topic>/<partition>"`` (a topic name never contains ``/``).

Opening a replica blocks on the disk (the log's recovery fsyncs its segments and writes its
epoch checkpoint; ``replica.meta`` is written with temp file, fsync, rename and folder
fsync): five or so fsyncs per replica. Done on the trio thread, a topic of fifty partitions
stalled every partition's driver (heartbeats, votes) for a quarter of a second or more, and
elections timed out. So ``reconcile`` only starts an *open*: the blocking part runs on a
worker thread (at most ``OPENS_AT_ONCE`` at a time, so their fsyncs share journal commits),
then the driver is built and started on the trio thread. Until then ``get`` does not know
the replica (requests for it answer "not leader", retriable); ``wait_opened`` waits for the
opens in progress. A replica that is removed while it opens is removed once its open ends.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from raftlog.config import LogConfig, topic_log_config
from raftlog.raft import Membership, Message, RaftConfig, RaftNode, SoftState
from raftlog.runtime.flusher import Flusher
from raftlog.runtime.partition import PartitionDriver
from raftlog.runtime.replica_log import (
    VOTE_BARRIER_NAME,
    ReplicaLog,
    drop_corrupt_suffix,
    read_vote_barrier,
)
from raftlog.storage.files import FileSystem, read_whole, write_atomically
from raftlog.storage.log import PartitionLog
from raftlog.storage.paths import partition_dir
from raftlog.storage.records import ControlType, control_batch
from raftlog.types import NodeId, Offset

log = logging.getLogger("raftlog.replicas")

META_NAME = "replica.meta"
OPENS_AT_ONCE = 8
CLOSE_FLUSH_WAIT_S = 10.0


def group_id(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def parse_group(group: str | int) -> tuple[str, int]:
    topic, _, partition = str(group).rpartition("/")
    return topic, int(partition)


@dataclass(frozen=True, slots=True)
class RaftTimings:
    """Ticks and their length. Defaults: 100 ms ticks, elections after 0.6-1.2 s of
    silence, a heartbeat every second tick (200 ms: three missed heartbeats at least before
    an election).

    Why every second tick, not every tick: idle partitions cost a broker one heartbeat and
    one answer per follower per heartbeat; halving them cut the idle CPU of 900 replicas
    in one process from 24 % to 15 % of a core, and with 1,000 RF=3 partitions on three
    brokers (a shared, loaded 2-core machine) every partition had a leader after 50 s at
    term 3, where a heartbeat every tick left 105 without one after 228 s at term 22."""

    tick_ms: int = 100
    election_timeout_ticks: int = 6
    heartbeat_interval_ticks: int = 2
    quiesce: bool = True
    """Idle groups go quiet (``raftlog.raft.quiesce``); only with a ``PeerLiveness``."""


class PeerLiveness(Protocol):
    """What the failure detector reads (``PeerTransport`` provides it): the peer brokers,
    and when (``trio.current_time()``) each was last heard from."""

    @property
    def peers(self) -> Mapping[int, Any]: ...

    @property
    def last_heard(self) -> Mapping[int, float]: ...


class LocalReplica:
    def __init__(
        self,
        topic: str,
        partition: int,
        topic_id: int,
        plog: PartitionLog,
        driver: PartitionDriver,
        log_config: LogConfig,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.topic_id = topic_id
        self.log = plog
        self.driver = driver
        self.log_config = log_config
        self.scope = trio.CancelScope()


class ReplicaManager:
    """See the module docstring. Call ``reconcile`` from the trio thread; run ``run`` in
    the broker's nursery."""

    def __init__(
        self,
        broker_id: int,
        data_dir: str,
        fs: FileSystem,
        flusher: Flusher,
        send: Callable[[Message], None],
        *,
        timings: RaftTimings | None = None,
        on_leader: Callable[[str, int, int, int | None, int], None] | None = None,
        clock_ms: Callable[[], int] | None = None,
        seed: int | None = None,
        on_disk_failure: Callable[[str, BaseException], None] | None = None,
        liveness: PeerLiveness | None = None,
    ) -> None:
        self.broker_id = broker_id
        self.liveness = liveness
        """When and whether each peer broker was last heard from: the failure detector that
        quiesced groups rely on (``raftlog.raft.quiesce``). None: groups never quiesce."""
        self.peers_down: set[int] = set()
        self.on_disk_failure = on_disk_failure
        """Called with (where, error) when a replica fenced itself on a disk error (the
        broker halts there, see ``raftlog.storage.failure``); None: the error propagates."""
        self.data_dir = data_dir
        self.fs = fs
        self.flusher = flusher
        self.send = send
        self.timings = timings or RaftTimings()
        self.on_leader = on_leader
        self.clock_ms = clock_ms
        self.replicas: dict[str, LocalReplica] = {}
        # the drivers the ticker ticks: every one but the quiet (``PartitionDriver.
        # needs_tick``), so that a thousand quiet replicas cost the ticker nothing
        self._ticking: dict[str, PartitionDriver] = {}
        self._rng = random.Random(seed)
        self._nursery: trio.Nursery | None = None
        # group -> topic id of a replica being opened on a worker thread
        self._opening: dict[str, int] = {}
        self._opened = trio.Event()
        self._open_limiter = trio.CapacityLimiter(OPENS_AT_ONCE)
        self._image: Any = None
        self._closed = False

    # ------------------------------------------------------------------ lookups

    def get(self, topic: str, partition: int) -> LocalReplica | None:
        return self.replicas.get(group_id(topic, partition))

    def route(self, msg: Message) -> None:
        """Hand a Raft message from a peer to its partition (dropped when not held)."""
        replica = self.replicas.get(str(msg.group))
        if replica is not None:
            replica.driver.step(msg)

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._ticker)
            task_status.started()
            await trio.sleep_forever()

    async def _ticker(self) -> None:
        period = self.timings.tick_ms / 1000
        started = trio.current_time()
        while True:
            await trio.sleep(period)
            if self.liveness is not None:
                self._detect_failures(started)
            for driver in list(self._ticking.values()):
                driver.tick()

    def _detect_failures(self, started: float) -> None:
        """A peer broker not heard from for an election timeout is down: tell every
        replica (a quiesced one wakes, ``raftlog.raft.quiesce``). Reported once per
        outage; a frame from the peer ends it."""
        assert self.liveness is not None
        t = self.timings
        limit = t.election_timeout_ticks * t.tick_ms / 1000
        now = trio.current_time()
        for peer in self.liveness.peers:
            silent = now - self.liveness.last_heard.get(peer, started)
            if silent < limit:
                self.peers_down.discard(peer)
            elif peer not in self.peers_down:
                self.peers_down.add(peer)
                log.info("event=peer_down peer=%d silent_s=%.2f", peer, silent)
                for replica in list(self.replicas.values()):
                    replica.driver.peer_down(NodeId(peer))

    async def retention_loop(self, interval_s: float = 60.0) -> None:
        """Delete what retention allows, below each partition's high watermark."""
        while True:
            await trio.sleep(interval_s)
            for replica in list(self.replicas.values()):
                try:
                    replica.log.config = replica.log_config
                    await trio.to_thread.run_sync(
                        replica.log.apply_retention, replica.driver.commit_offset
                    )
                except Exception as e:  # a fenced log stays fenced; the others go on
                    log.warning(
                        "event=retention_failed group=%s error=%r",
                        group_id(replica.topic, replica.partition),
                        e,
                    )

    # ------------------------------------------------------------------ reconcile

    def reconcile(self, image: Any) -> None:
        """Make the local replicas match ``image``'s assignments for this broker: remove
        what is no longer assigned here at once, start opening what is new (see the module
        docstring; ``wait_opened`` waits for the opens)."""
        assert self._nursery is not None, "run() first"
        self._image = image
        wanted: dict[str, tuple[Any, Any]] = {}
        for topic in image.topics.values():
            for p in topic.partitions:
                if self.broker_id in p.replicas:
                    wanted[group_id(topic.name, p.partition)] = (topic, p)
        for group, replica in list(self.replicas.items()):
            target = wanted.get(group)
            if target is None or target[0].topic_id != replica.topic_id:
                self._remove(group)
            else:
                replica.log_config = topic_log_config(target[0].configs)
        for group, (topic, p) in sorted(wanted.items()):
            if group not in self.replicas and group not in self._opening:
                self._opening[group] = topic.topic_id
                self._nursery.start_soon(self._create, topic, p)

    async def wait_opened(self) -> None:
        """Return once no replica is being opened."""
        while self._opening:
            await self._opened.wait()

    async def _create(self, topic: Any, p: Any) -> None:
        group = group_id(topic.name, p.partition)
        log_config = topic_log_config(topic.configs)
        try:
            plog, voters, barrier = await trio.to_thread.run_sync(
                self._open_blocking, topic, p, log_config, limiter=self._open_limiter
            )
        finally:
            del self._opening[group]
            self._opened.set()
            self._opened = trio.Event()
        image = self._image
        current = None if image is None else image.topics.get(topic.name)
        still = None
        if current is not None and current.topic_id == topic.topic_id:
            still = next(
                (
                    q
                    for q in current.partitions
                    if q.partition == p.partition and self.broker_id in q.replicas
                ),
                None,
            )
        if self._closed or current is None or still is None:
            # no longer wanted here (removed, or re-created, while it opened)
            plog.close()
            if not self._closed:
                remove_tree(self.fs, plog.folder)
                log.info("event=replica_removed group=%s", group)
                self.reconcile(image)
            return
        self._start_driver(current, still, plog, voters, barrier, topic_log_config(current.configs))

    def _open_blocking(
        self, topic: Any, p: Any, log_config: LogConfig
    ) -> tuple[PartitionLog, tuple[int, ...], int | None]:
        """Open (create) the replica's log and its ``replica.meta``, and read its vote
        barrier (``read_vote_barrier``); on a worker thread."""
        folder = partition_dir(self.data_dir, topic.name, p.partition)
        meta_path = f"{folder}/{META_NAME}"
        voters = tuple(sorted(p.replicas))
        if self.fs.exists(meta_path):
            meta = json.loads(read_whole(self.fs, meta_path, max_bytes=65536))
            if meta.get("topic_id") != topic.topic_id:
                log.info("event=stale_replica_removed group=%s", group_id(topic.name, p.partition))
                remove_tree(self.fs, folder)
            else:
                voters = tuple(meta["voters"])
        if self.clock_ms is None:
            plog = PartitionLog.open(self.fs, folder, log_config)
        else:
            plog = PartitionLog.open(self.fs, folder, log_config, clock_ms=self.clock_ms)
        cut_from = drop_corrupt_suffix(plog)
        if cut_from is not None:
            log.warning(
                "event=corrupt_log_truncated group=%s from_offset=%d",
                group_id(topic.name, p.partition),
                cut_from,
            )
        if not self.fs.exists(meta_path):
            meta_doc = {"topic_id": topic.topic_id, "voters": list(voters)}
            write_atomically(self.fs, meta_path, json.dumps(meta_doc).encode())
        return plog, voters, read_vote_barrier(self.fs, folder)

    def _start_driver(
        self,
        topic: Any,
        p: Any,
        plog: PartitionLog,
        voters: tuple[int, ...],
        barrier: int | None,
        log_config: LogConfig,
    ) -> None:
        group = group_id(topic.name, p.partition)
        folder = plog.folder
        t = self.timings
        config = RaftConfig(
            node_id=NodeId(self.broker_id),
            group=group,
            membership=Membership(tuple(NodeId(v) for v in voters)),
            election_timeout_ticks=t.election_timeout_ticks,
            heartbeat_interval_ticks=t.heartbeat_interval_ticks,
            quiesce=t.quiesce and self.liveness is not None,
            noop_data=control_batch(ControlType.LEADER_CHANGE, now_ms=0),
        )
        store = ReplicaLog(plog)
        core = RaftNode(config, store, random.Random(self._rng.getrandbits(64)))
        if barrier is not None:
            core.hold_votes_until(Offset(barrier))
            if core.vote_barrier is None:  # already back there
                self.fs.remove(f"{folder}/{VOTE_BARRIER_NAME}")
            else:
                log.warning(
                    "event=votes_held group=%s until_offset=%d log_end=%d",
                    group_id(topic.name, p.partition),
                    barrier,
                    plog.log_end_offset(),
                )
        driver = PartitionDriver(core, store, self.flusher, self.send)
        if core.vote_barrier is not None:
            driver.vote_barrier = (f"{folder}/{VOTE_BARRIER_NAME}", int(core.vote_barrier))
        driver.on_soft_state = self._soft_state_hook(topic.name, p.partition, topic.topic_id)
        replica = LocalReplica(topic.name, p.partition, topic.topic_id, plog, driver, log_config)
        self.replicas[group] = replica
        self._ticking[group] = driver
        driver.on_needs_tick = self._needs_tick_hook(group, driver)
        assert self._nursery is not None
        self._nursery.start_soon(self._run_driver, replica)
        # No need to wait an election timeout when the answer is obvious: the only voter,
        # or the preferred leader of a brand-new partition (pre-vote settles any race).
        if voters == (self.broker_id,) or (
            p.replicas[0] == self.broker_id and plog.log_end_offset() == 0
        ):
            driver.campaign()

    async def _run_driver(self, replica: LocalReplica) -> None:
        with replica.scope:
            try:
                await replica.driver.run()
            except Exception:
                fenced = replica.driver.fenced
                if fenced is None or self.on_disk_failure is None:
                    raise
                self.on_disk_failure(f"partition {replica.driver.core.config.group}", fenced)
                raise

    def _needs_tick_hook(self, group: str, driver: PartitionDriver) -> Callable[[bool], None]:
        def hook(needs_tick: bool) -> None:
            current = self.replicas.get(group)
            if current is None or current.driver is not driver:
                return  # removed (or replaced) since
            if needs_tick:
                self._ticking[group] = driver
            else:
                self._ticking.pop(group, None)

        return hook

    def _soft_state_hook(
        self, topic: str, partition: int, topic_id: int
    ) -> Callable[[SoftState], None]:
        """Reports ``(topic, partition, topic_id, leader, term)`` when this broker becomes
        leader; the metadata model fences reports by term."""

        def hook(soft: SoftState) -> None:
            if self.on_leader is not None and soft.leader == self.broker_id:
                self.on_leader(topic, partition, topic_id, soft.leader, int(soft.term))

        return hook

    def _remove(self, group: str) -> None:
        replica = self.replicas.pop(group)
        self._ticking.pop(group, None)
        replica.scope.cancel()
        replica.driver.fail_pending("the partition was removed from this broker")
        folder = replica.log.folder
        replica.log.close()
        remove_tree(self.fs, folder)
        log.info("event=replica_removed group=%s", group)

    async def close(self) -> None:
        """Stop every driver, let the flusher finish the round it runs (its threads may
        be writing these logs), then close the logs."""
        self._closed = True
        for replica in self.replicas.values():
            replica.scope.cancel()
        with trio.move_on_after(CLOSE_FLUSH_WAIT_S):
            await self.flusher.wait_round_done()
        for replica in self.replicas.values():
            replica.log.close()


def remove_tree(fs: FileSystem, folder: str) -> None:
    """Delete a partition folder and what is in it (files only, as partitions hold)."""
    if not fs.exists(folder):
        return
    for name in fs.listdir(folder):
        fs.remove(f"{folder}/{name}")
    fs.rmdir(folder)
    parent = folder.rsplit("/", 1)[0]
    fs.fsync_dir(parent)
