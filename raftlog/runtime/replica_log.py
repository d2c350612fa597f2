"""A partition's on-disk log as the Raft core sees it, and the persistence step of ``Ready``.

``raftlog.storage.log.PartitionLog`` speaks Kafka (ints, record batches); the core speaks
Raft (``Entry``, ``HardState``, ``Term``). ``ReplicaLog`` translates, implementing the
core's ``LogStore`` protocol, and performs step 1 of a ``Ready`` in the order the core
documents: reset the log start, truncate, append, write the hard state, fsync.

The fsync is the log's group commit (``PartitionLog.sync_to``): called from a worker thread
by the runtime, one fsync covers every append that arrived while the previous one ran.
"""

from __future__ import annotations

from collections.abc import Iterator

from raftlog.errors import CorruptRecordError
from raftlog.raft.log_store import Entry, HardState
from raftlog.raft.ready import Ready
from raftlog.runtime.producer_state import NO_PRODUCER_ID, ProducerBatch
from raftlog.storage.files import FileSystem, read_whole, write_atomically
from raftlog.storage.log import PartitionLog
from raftlog.storage.record_batch import read_header
from raftlog.types import NO_TERM, NodeId, Offset, Term


class ReplicaLog:
    """``LogStore`` over a ``PartitionLog``; see the module docstring."""

    def __init__(self, log: PartitionLog) -> None:
        self.log = log

    # ------------------------------------------------------------------ LogStore

    def log_start_offset(self) -> Offset:
        return Offset(self.log.log_start_offset())

    def log_end_offset(self) -> Offset:
        return Offset(self.log.log_end_offset())

    def last_term(self) -> Term:
        return Term(self.log.last_term())

    def term_at(self, offset: Offset) -> Term | None:
        term = self.log.term_at(offset)
        return None if term is None else Term(term)

    def end_offset_for_term(self, term: Term) -> tuple[Term, Offset]:
        found, end = self.log.end_offset_for_term(term)
        return Term(found), Offset(end)

    def entries(self, offset: Offset, max_bytes: int) -> list[Entry]:
        return [
            Entry(Offset(b.offset), Offset(b.last_offset), Term(b.term), b.data)
            for b in self.log.read_batches(offset, max_bytes)
        ]

    def producer_batches(self, chunk_bytes: int = 1 << 20) -> Iterator[ProducerBatch]:
        """The producer fields of every batch in the log, in order (rebuilds the table of
        idempotent producers; reads the whole log, ``chunk_bytes`` at a time)."""
        offset = self.log.log_start_offset()
        end = self.log.log_end_offset()
        while offset < end:
            batches = self.log.read_batches(offset, chunk_bytes)
            if not batches:
                return
            for b in batches:
                yield producer_batch(b.data, b.offset, b.last_offset, b.term)
            offset = batches[-1].last_offset + 1

    def hard_state(self) -> HardState:
        stored = self.log.hard_state()
        return HardState(Term(stored.term), None if stored.vote is None else NodeId(stored.vote))

    # ------------------------------------------------------------------ Ready, step 1

    def write(self, rd: Ready) -> None:
        """Write what ``rd`` asks (page cache; the hard state is durable at once)."""
        log = self.log
        if rd.reset_log_start is not None:
            offset, term = rd.reset_log_start
            log.reset_to(offset, term if term >= 0 else NO_TERM)
        if rd.truncate_from is not None:
            log.truncate_suffix(rd.truncate_from)
        for e in rd.entries:
            h = log.append_batch(e.data, e.offset, e.term)
            assert h.last_offset == e.last_offset, (h.last_offset, e.last_offset)
        if rd.hard_state is not None:
            vote = rd.hard_state.vote
            log.save_hard_state(rd.hard_state.term, None if vote is None else int(vote))

    def persist(self, rd: Ready) -> None:
        """Step 1 of ``rd`` in full: write, then make it durable (group commit). The log
        is synced whatever ``rd`` held: nothing is left to fsync when it was durable."""
        self.write(rd)
        self.log.sync_to(self.log.log_end_offset())


def producer_batch(data: bytes, offset: int, last_offset: int, term: int) -> ProducerBatch:
    """The producer fields of one batch (its header) with where the log holds it; an entry
    that is not a record batch has no producer."""
    try:
        h = read_header(data)
    except CorruptRecordError:
        return (NO_PRODUCER_ID, -1, -1, offset, last_offset, term)
    return (h.producer_id, h.producer_epoch, h.base_sequence, offset, last_offset, term)


def entry_producer_batch(e: Entry) -> ProducerBatch:
    return producer_batch(e.data, int(e.offset), int(e.last_offset), int(e.term))


SCAN_CHUNK_BYTES = 4 * 1024 * 1024


VOTE_BARRIER_NAME = "vote-barrier"
"""A partition folder's file holding the log end offset a replica had before it cut a
corrupt suffix: until its log is back there it must not vote (``RaftNode.hold_votes_until``)."""


def read_vote_barrier(fs: FileSystem, folder: str) -> int | None:
    path = f"{folder}/{VOTE_BARRIER_NAME}"
    if not fs.exists(path):
        return None
    try:
        return int(read_whole(fs, path, max_bytes=64).decode())
    except (ValueError, UnicodeDecodeError):
        return None


def drop_corrupt_suffix(plog: PartitionLog) -> int | None:
    """A replica's answer to a corrupt batch inside its log (a bit flip the storage layer
    kept in place because valid batches follow it, or one in a closed segment, which is
    only caught when read): cut the log from that batch on, so the Raft group replicates
    the suffix again from the leader, as after a torn tail. Returns the offset cut from, or
    None when every batch reads back with a good CRC.

    A Raft replica cannot serve or replicate an entry it cannot read, and the core reads its
    log at start-up (membership, terms): keeping the batch would stop the replica there.
    What it costs: this replica forgets entries it may have acknowledged; with a majority of
    intact replicas nothing committed is lost (the others refuse to vote for a candidate
    that lacks them). The scan reads the whole log once (CRC-checked) at every open."""
    offset = plog.log_start_offset()
    end = plog.log_end_offset()
    step = SCAN_CHUNK_BYTES
    while offset < end:
        try:
            batches = plog.read_batches(offset, step)
        except CorruptRecordError:
            if step > 1:
                step = 1  # find the bad batch itself: one batch per read from here
                continue
            # first the barrier (durable), then the cut: a crash in between leaves a replica
            # that refuses to vote a little longer than needed, never one that votes early
            barrier = max(end, read_vote_barrier(plog.fs, plog.folder) or 0)
            write_atomically(plog.fs, f"{plog.folder}/{VOTE_BARRIER_NAME}", str(barrier).encode())
            plog.truncate_suffix(offset)
            return offset
        if not batches:
            break
        offset = batches[-1].last_offset + 1
        step = SCAN_CHUNK_BYTES
    return None
