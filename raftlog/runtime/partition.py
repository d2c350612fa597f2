"""The trio driver of one partition replica: runs the Raft core's loop against the real log.

``PartitionDriver.run`` is the only code that touches the core. Everything else (ticks,
messages from peers, proposals from produce requests) goes through an inbox, because the
core must not change between ``ready()`` and ``advance()``. One loop iteration:

1. apply the inbox to the core (tick / step / propose);
2. while the core has a ``Ready``: send ``messages`` at once; persist (entries are written
   to the page cache on the trio thread, then the cross-partition ``Flusher`` fsyncs; a
   Ready that changes hard state, truncates or resets the log runs wholly, its fsync too,
   on one of the flusher's worker threads, since those writes block); send
   ``messages_after_persist``; publish the commit offset; ``advance``.

Acknowledgements are exact, not guessed: a proposal's waiter resolves when the commit
offset passes its last offset, and then reads back the term of that offset: the same term
means written; another term means the entry was replaced by a new leader's, so it was
definitely *not* written (a committed entry is never replaced). ``acks=1`` resolves when the
leader's own copy is durable. A waiter that hears nothing before its deadline reports
"unknown outcome", never "not written".

Idempotent producers (``raftlog.runtime.producer_state``): before a batch with a producer id
is proposed, the leader checks it against the producers' table plus the core's entries that
are not durable yet. A duplicate is not proposed again: its waiter waits for the first
copy's offsets (and checks that copy's term, like any other waiter). Out-of-order and fenced
batches are refused without being written. The table follows the durable log: after each
Ready is written it applies the Ready's entries, and it is rebuilt from the log when the log
was truncated or reset (and when the replica opens).
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import trio

from raftlog.errors import ErrorCode, RaftlogError
from raftlog.raft import Entry, Message, NotLeaderError, RaftNode, Ready, Role, SoftState
from raftlog.runtime.flusher import Flusher
from raftlog.runtime.producer_state import ProducerBatch, ProducerStates
from raftlog.runtime.replica_log import ReplicaLog, entry_producer_batch
from raftlog.storage.record_batch import read_header
from raftlog.types import NodeId, Offset, Term

log = logging.getLogger("raftlog.partition")


class Acks(Enum):
    NONE = 0
    LEADER = 1
    ALL = -1


class ProduceError(RaftlogError):
    """A proposal that failed; ``code`` NOT_LEADER (with ``leader_hint``) means not
    written, UNKNOWN_OUTCOME means it may or may not have been written."""

    def __init__(self, code: ErrorCode, message: str, leader_hint: NodeId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.leader_hint = leader_hint


@dataclass(order=True)
class _Waiter:
    last_offset: int
    seq: int
    entry: Entry = field(compare=False)
    acks: Acks = field(compare=False)
    done: trio.Event = field(compare=False, default_factory=trio.Event)
    error: ProduceError | None = field(compare=False, default=None)


class PartitionDriver:
    """Drives one ``RaftNode`` over one ``ReplicaLog``; ``send`` delivers messages to peers."""

    def __init__(
        self,
        core: RaftNode,
        store: ReplicaLog,
        flusher: Flusher,
        send: Callable[[Message], None],
    ) -> None:
        self.core = core
        self.store = store
        self.flusher = flusher
        self.send = send
        self._inbox: list[Any] = []
        self._wake = trio.Event()
        self._idle = False  # True while ``run`` waits for input with no Ready out
        self._ticking = True  # ``needs_tick`` as last reported to ``on_needs_tick``
        self.on_needs_tick: Callable[[bool], None] | None = None
        """Called with ``needs_tick`` when it changed (after a loop iteration), so that the
        ticker can skip quiet replicas without looking at each one every tick."""
        self.wakeups = 0  # times ``run`` woke up (a figure for tests and profiles)
        self._seq = itertools.count()
        self._commit_waiters: list[_Waiter] = []
        self._durable_waiters: list[_Waiter] = []
        self._commit_changed = trio.Event()
        self.commit_offset = Offset(core.commit_offset)
        self.durable_end = Offset(store.log_end_offset())
        self.role = core.status.role
        self.leader: NodeId | None = core.status.leader
        self.fenced: BaseException | None = None
        self.on_soft_state: Callable[[SoftState], None] | None = None
        self.vote_barrier: tuple[str, int] | None = None
        """(file, offset) of the replica's vote barrier while its core holds its votes; the
        file is removed once the log is durable up to the offset."""
        self._deposed_ticks: int | None = None
        """Ticks since this replica stopped leading with acks=all waiters still waiting."""
        self.producers = ProducerStates()
        self.producers.rebuild(int(store.log_start_offset()), store.producer_batches())
        # producer fields of this leader's own proposals not yet written, by offset: spares
        # parsing every pending entry's header again for each proposal
        self._proposed: dict[int, ProducerBatch] = {}
        hs = store.hard_state()
        self._logged_vote: tuple[int, int | None] = (
            int(hs.term),
            None if hs.vote is None else int(hs.vote),
        )
        log.info(
            "event=raft_open group=%s node=%s term=%d",
            core.config.group,
            core.config.node_id,
            int(core.status.term),
        )

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        """One tick of the core. An idle driver (waiting for input, no ``Ready`` out, an
        empty inbox) is ticked at once, here, and woken only when the tick made work: most
        ticks of most replicas (followers hearing from their leader) make none, and a task
        switch per replica per tick is a cost a thousand replicas pay ten times a second.
        Otherwise (also while a deposed leader counts down to failing its waiters) the tick
        waits in the inbox behind what came before it."""
        if self._idle and not self._inbox and self._deposed_ticks is None:
            self.core.tick()
            if self.core.has_ready():
                self._wake.set()
            return
        self._inbox.append(("tick",))
        self._wake.set()

    def step(self, msg: Message) -> None:
        self._inbox.append(("step", msg))
        self._wake.set()

    @property
    def needs_tick(self) -> bool:
        """False while ticking would do nothing: the core is quiesced (``raftlog.raft.
        quiesce``) and no deposed leader's waiters are counting down."""
        return not self.core.quiesced or self._deposed_ticks is not None

    def peer_down(self, peer: NodeId) -> None:
        """The failure detector says broker ``peer`` stopped answering; only a quiesced
        core cares (``RaftNode.peer_down``)."""
        if self.core.quiesced:
            self._inbox.append(("peer_down", peer))
            self._wake.set()

    def campaign(self) -> None:
        self._inbox.append(("campaign",))
        self._wake.set()

    def transfer_leadership(self, to: NodeId) -> None:
        self._inbox.append(("transfer", to))
        self._wake.set()

    async def propose(
        self, data: bytes, record_count: int, acks: Acks, *, timeout_s: float = 30.0
    ) -> Entry:
        """Append a batch through Raft and wait per ``acks``; returns the entry with its
        offsets. Raises ``ProduceError``: NOT_LEADER (not written, retry at the hint) or
        UNKNOWN_OUTCOME (may have been written)."""
        if self.fenced is not None:
            raise ProduceError(ErrorCode.KAFKA_STORAGE_ERROR, f"replica fenced: {self.fenced}")
        box: list[Any] = []
        ready = trio.Event()
        self._inbox.append(("propose", data, record_count, acks, box, ready))
        self._wake.set()
        await ready.wait()
        outcome = box[0]
        if isinstance(outcome, BaseException):
            raise outcome
        waiter: _Waiter | None = outcome
        if waiter is None:  # acks=0
            return box[1]  # type: ignore[no-any-return]
        with trio.move_on_after(timeout_s):
            await waiter.done.wait()
        if not waiter.done.is_set():
            self._forget(waiter)
            raise ProduceError(
                ErrorCode.UNKNOWN_OUTCOME,
                f"no acknowledgement within {timeout_s:g} s; the batch may or may not "
                "have been written",
            )
        if waiter.error is not None:
            raise waiter.error
        return waiter.entry

    async def wait_commit_beyond(self, offset: int, timeout_s: float) -> Offset:
        """Long-poll: return once the commit offset (high watermark) is past ``offset``, or
        at the deadline; returns the commit offset either way."""
        with trio.move_on_after(timeout_s):
            while self.commit_offset <= offset:
                await self._commit_changed.wait()
        return self.commit_offset

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        while True:
            # idle: no Ready is out, so ``tick`` may change the core directly
            self._idle = True
            try:
                await self._wake.wait()
            finally:
                self._idle = False
            self.wakeups += 1
            self._wake = trio.Event()
            inbox, self._inbox = self._inbox, []
            for item in inbox:
                self._apply(item)
            while self.core.has_ready():
                rd = self.core.ready()
                assert rd is not None
                await self._handle(rd)
            needs_tick = self.needs_tick
            if needs_tick != self._ticking:
                self._ticking = needs_tick
                if self.on_needs_tick is not None:
                    self.on_needs_tick(needs_tick)

    def _apply(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        core = self.core
        if kind == "tick":
            core.tick()
            self._expire_deposed_waiters()
        elif kind == "step":
            core.step(item[1])
        elif kind == "campaign":
            core.campaign()
        elif kind == "peer_down":
            core.peer_down(item[1])
        elif kind == "transfer":
            try:
                core.transfer_leadership(item[1])
            except RaftlogError as e:
                log.info("event=transfer_refused error=%s", e)
        elif kind == "propose":
            _, data, count, acks, box, ready = item
            try:
                entry = self._propose(data, count)
            except NotLeaderError as e:
                box.append(ProduceError(ErrorCode.NOT_LEADER, str(e), e.leader_hint))
            except ProduceError as e:
                box.append(e)
            else:
                if acks is Acks.NONE:
                    box.extend([None, entry])
                else:
                    w = _Waiter(entry.last_offset, next(self._seq), entry, acks)
                    target = self._commit_waiters if acks is Acks.ALL else self._durable_waiters
                    if w.last_offset < (
                        self.commit_offset if acks is Acks.ALL else self.durable_end
                    ):  # a duplicate of a batch already acknowledged
                        self._resolve([w], w.last_offset + 1)
                    else:
                        bisect.insort(target, w)
                    box.append(w)
            ready.set()

    def _propose(self, data: bytes, count: int) -> Entry:
        """Propose ``data`` unless it is an idempotent producer's duplicate (then the entry
        of its first copy, data left out) or refused (``ProduceError``)."""
        core = self.core
        h = read_header(data)
        if h.producer_id < 0:
            return core.propose(data, count)
        core.check_can_propose()
        pending = core.pending_entries()
        if pending is None:
            raise ProduceError(
                ErrorCode.LEADER_NOT_AVAILABLE,
                "the new leader is still writing its log; nothing was written, retry",
            )
        verdict = self.producers.check(
            h.producer_id,
            h.producer_epoch,
            h.base_sequence,
            count,
            (self._pending_batch(e) for e in pending),
        )
        if verdict.duplicate is not None:
            d = verdict.duplicate
            log.debug("event=duplicate_batch producer=%d seq=%d", h.producer_id, d.first_seq)
            return Entry(Offset(d.base_offset), Offset(d.last_offset), Term(d.term), b"")
        if verdict.error != ErrorCode.NONE:
            raise ProduceError(verdict.error, verdict.message)
        entry = core.propose(data, count)
        self._proposed[int(entry.offset)] = (
            h.producer_id,
            h.producer_epoch,
            h.base_sequence,
            int(entry.offset),
            int(entry.last_offset),
            int(entry.term),
        )
        return entry

    def _pending_batch(self, e: Entry) -> ProducerBatch:
        b = self._proposed.get(int(e.offset))
        if b is not None and b[5] == e.term and b[4] == e.last_offset:
            return b
        return entry_producer_batch(e)

    def _track_producers(self, rd: Ready) -> None:
        """Bring the producers' table in step with the log ``rd`` just wrote."""
        if rd.reset_log_start is not None or (
            rd.truncate_from is not None and rd.truncate_from < self.producers.end
        ):
            self.producers.rebuild(
                int(self.store.log_start_offset()), self.store.producer_batches()
            )
            self._proposed.clear()
            return
        for e in rd.entries:
            self.producers.apply(self._pending_batch(e))
            self._proposed.pop(int(e.offset), None)

    async def _handle(self, rd: Ready) -> None:
        for m in rd.messages:
            self.send(m)
        try:
            if rd.hard_state is not None or rd.truncate_from is not None or rd.reset_log_start:
                # blocking writes: the whole step 1 (write, then fsync the entries) in one
                # worker-thread item, so it costs one flusher round, not two
                await self.flusher.run_in_thread(lambda: self.store.persist(rd))
            elif rd.entries:
                self.store.write(rd)
                await self.flusher.flush(self.store.log)
        except Exception as e:
            # an I/O error fences the replica: it must never acknowledge again
            self.fenced = e
            log.error("event=replica_fenced group=%s error=%r", self.core.config.group, e)
            self._fail_all(ProduceError(ErrorCode.KAFKA_STORAGE_ERROR, f"replica fenced: {e}"))
            raise
        if rd.hard_state is not None:
            self._log_hard_state(rd.hard_state.term, rd.hard_state.vote)
        if self.vote_barrier is not None and self.durable_end >= self.vote_barrier[1]:
            path, self.vote_barrier = self.vote_barrier[0], None
            fs = self.store.log.fs
            if fs.exists(path):
                fs.remove(path)
            log.info("event=votes_released group=%s", self.core.config.group)
        if rd.entries or rd.truncate_from is not None or rd.reset_log_start is not None:
            self._track_producers(rd)
        for m in rd.messages_after_persist:
            self.send(m)
        self.core.advance(rd)
        if rd.soft_state is not None:
            if rd.soft_state.role is Role.LEADER and self.role is not Role.LEADER:
                log.info(
                    "event=raft_leader group=%s node=%s term=%d",
                    self.core.config.group,
                    self.core.config.node_id,
                    int(rd.soft_state.term),
                )
            self.role = rd.soft_state.role
            self.leader = rd.soft_state.leader
            if self.role is not Role.LEADER:
                self._proposed.clear()  # proposals not written by now are the next leader's
                if self._commit_waiters and self._deposed_ticks is None:
                    self._deposed_ticks = 0
            else:
                self._deposed_ticks = None
            if self.on_soft_state is not None:
                self.on_soft_state(rd.soft_state)
        if rd.local_end_offset is not None:
            self.durable_end = rd.local_end_offset
            self._resolve(self._durable_waiters, self.durable_end)
        if rd.commit_offset is not None:
            self.commit_offset = rd.commit_offset
            self._resolve(self._commit_waiters, self.commit_offset)
            self._commit_changed.set()
            self._commit_changed = trio.Event()
        if self.role is not Role.LEADER and self._durable_waiters:
            # acks=1 waiters of a deposed leader: their entries may survive or not
            self._fail(self._durable_waiters, self._unknown("leadership was lost"))

    def _expire_deposed_waiters(self) -> None:
        """acks=all waiters of a leader that lost its leadership: the next leader's commit
        usually reaches this replica within a few ticks (a transfer, a lost election) and
        answers them; a replica cut off from the others hears nothing, and its producers
        would wait their whole request timeout. After two election timeouts they are told
        the outcome is unknown (an idempotent producer resends, deduplicated if the entry
        survived) and go looking for the new leader."""
        if self._deposed_ticks is None:
            return
        if self.role is Role.LEADER or not self._commit_waiters:
            self._deposed_ticks = None
            return
        self._deposed_ticks += 1
        if self._deposed_ticks >= 2 * self.core.config.election_timeout_ticks:
            self._deposed_ticks = None
            waiters, self._commit_waiters = self._commit_waiters, []
            self._fail(waiters, self._unknown("leadership was lost and no commit came since"))

    def _log_hard_state(self, term: int, vote: NodeId | None) -> None:
        """One structured line per durable change of (term, vote), written after it was
        persisted: the scenario checkers look for a node voting twice in one term and for
        a term that went backwards across a restart."""
        key = (int(term), None if vote is None else int(vote))
        if key == self._logged_vote:
            return
        self._logged_vote = key
        log.info(
            "event=raft_hard_state group=%s node=%s term=%d vote=%s",
            self.core.config.group,
            self.core.config.node_id,
            key[0],
            "-" if key[1] is None else key[1],
        )

    def _resolve(self, waiters: list[_Waiter], upto: int) -> None:
        n = 0
        while n < len(waiters) and waiters[n].last_offset < upto:
            w = waiters[n]
            term = self.store.term_at(Offset(w.last_offset))
            if term != w.entry.term:
                w.error = ProduceError(
                    ErrorCode.NOT_LEADER,
                    "the batch was replaced by a new leader's entries: not written; retry",
                    self.leader,
                )
            w.done.set()
            n += 1
        del waiters[:n]

    def _unknown(self, why: str) -> ProduceError:
        return ProduceError(
            ErrorCode.UNKNOWN_OUTCOME, f"{why}; the batch may or may not have been written"
        )

    def _fail(self, waiters: list[_Waiter], error: ProduceError) -> None:
        for w in waiters:
            w.error = error
            w.done.set()
        waiters.clear()

    def fail_pending(self, why: str) -> None:
        """Answer every waiting proposal with "unknown outcome" (the replica is going)."""
        self._fail_all(self._unknown(why))

    def _fail_all(self, error: ProduceError) -> None:
        self._fail(self._commit_waiters, error)
        self._fail(self._durable_waiters, error)

    def _forget(self, waiter: _Waiter) -> None:
        for waiters in (self._commit_waiters, self._durable_waiters):
            if waiter in waiters:
                waiters.remove(waiter)
