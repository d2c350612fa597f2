"""The partition log against a list model, under Hypothesis' stateful testing.

Steps: append as leader and as follower (with conflicts), read with byte limits and upper
bounds, truncate the suffix and the prefix, reset to a new start, retention, flush, a
process crash (reopen with the page cache intact) and power loss (every file cut back to
what was fsynced, sometimes with a torn tail) followed by reopen. After every step the log
must agree with the model on its bounds, the epoch of every offset, and epoch end offsets;
after a power loss it must hold at least everything flushed, and only a prefix of what the
model holds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftlog.config import LogConfig
from raftlog.storage.files import SimFileSystem
from raftlog.storage.log import PartitionLog
from raftlog.storage.record_batch import iter_batches, read_header
from tests.storage_helpers import make_batch

FOLDER = "/data/orders/0"


@dataclass
class MBatch:
    base: int
    last: int
    epoch: int
    timestamp: int
    data: bytes  # as stored (offset and epoch stamped)


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fs = SimFileSystem()
        self.now = 1_000_000
        self.config = LogConfig(segment_bytes=400, index_interval_bytes=90, segment_ms=50_000)
        self.log = self._open()
        self.batches: list[MBatch] = []  # everything at or after the first retained batch
        self.start = 0
        self.before_start_epoch: int | None = None  # epoch of start - 1 when known
        self.epoch = 0
        self.durable = 0  # offsets below are fsynced
        self.rng = random.Random(0)
        self.counter = 0

    def _open(self) -> PartitionLog:
        return PartitionLog.open(self.fs, FOLDER, self.config, clock_ms=lambda: self.now)

    # ------------------------------------------------------------------ helpers
    @property
    def end(self) -> int:
        return self.batches[-1].last + 1 if self.batches else self.start

    def _stored(self, raw: bytes, base: int, epoch: int) -> bytes:
        buf = bytearray(raw)
        buf[0:8] = base.to_bytes(8, "big", signed=True)
        buf[12:16] = epoch.to_bytes(4, "big", signed=True)
        return bytes(buf)

    def _new_batch(self, records: int, payload: int) -> bytes:
        self.counter += 1
        return make_batch(
            records, payload_bytes=payload, timestamp_ms=self.now, fill=0x41 + self.counter % 26
        )

    def _model_epoch_at(self, offset: int) -> int | None:
        for b in self.batches:
            if b.base <= offset <= b.last:
                return b.epoch
        if offset == self.start - 1 and self.before_start_epoch is not None:
            return self.before_start_epoch
        return None

    # ------------------------------------------------------------------ rules
    @rule(records=st.integers(1, 5), payload=st.integers(0, 120), new_epoch=st.booleans())
    def append_as_leader(self, records: int, payload: int, new_epoch: bool) -> None:
        if new_epoch:
            self.epoch += 1
        raw = self._new_batch(records, payload)
        h = self.log.append_as_leader(raw, self.epoch)
        assert h.base_offset == self.end and h.record_count == records
        self.batches.append(
            MBatch(
                h.base_offset,
                h.last_offset,
                self.epoch,
                self.now,
                self._stored(raw, h.base_offset, self.epoch),
            )
        )

    @precondition(lambda self: self.batches)
    @rule(data=st.data(), count=st.integers(1, 3))
    def append_as_follower_with_conflict(self, data: st.DataObject, count: int) -> None:
        # a new leader (newer epoch) overwrites from some batch boundary on
        i = data.draw(st.integers(0, len(self.batches)))
        if i < len(self.batches) and self.batches[i].base < self.start:
            return  # Raft never sends a follower entries below its log start
        self.epoch += 1
        base = self.batches[i].base if i < len(self.batches) else self.end
        payload = bytearray()
        new = []
        off = base
        for _ in range(count):
            raw = self._new_batch(data.draw(st.integers(1, 4)), data.draw(st.integers(0, 60)))
            h = read_header(raw)
            stored = self._stored(raw, off, self.epoch)
            new.append(MBatch(off, off + h.last_offset_delta, self.epoch, self.now, stored))
            payload += stored
            off += h.last_offset_delta + 1
        # also resend one batch we already hold: it must be skipped, not duplicated
        if i > 0:
            payload = bytearray(self.batches[i - 1].data) + payload
        appended = self.log.append_as_follower(bytes(payload))
        assert appended == count
        del self.batches[i:]
        self.batches.extend(new)
        self.durable = min(self.durable, base)

    @rule(data=st.data(), max_bytes=st.integers(1, 700))
    def read(self, data: st.DataObject, max_bytes: int) -> None:
        offset = data.draw(st.integers(self.start, self.end))
        upper = data.draw(st.integers(self.start, self.end + 2))
        got = iter_batches(self.log.read(offset, max_bytes, upper))
        expect = [b for b in self.batches if b.last >= offset and b.last < min(upper, self.end)]
        assert [(h.base_offset, h.last_offset) for h in got] == [
            (b.base, b.last) for b in expect[: len(got)]
        ]
        if expect and offset < upper:
            assert got, "a read with data below the bound must return at least one batch"
        if len(got) > 1:
            assert sum(h.size for h in got) <= max_bytes
        raw = self.log.read(offset, 10_000, upper)
        assert raw == b"".join(b.data for b in expect[: len(iter_batches(raw))])

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def truncate_suffix(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.batches) - 1))
        if self.batches[i].base < self.start:
            return
        self.log.truncate_suffix(self.batches[i].base)
        del self.batches[i:]
        self.durable = min(self.durable, self.end)

    @rule(data=st.data())
    def truncate_prefix(self, data: st.DataObject) -> None:
        new_start = data.draw(st.integers(self.start, self.end))
        self.log.truncate_prefix(new_start)
        self._move_start(new_start)

    def _move_start(self, new_start: int) -> None:
        if new_start <= self.start:
            return
        before = self._model_epoch_at(new_start - 1)
        self.before_start_epoch = before
        self.start = new_start
        self.batches = [b for b in self.batches if b.last >= new_start]

    @rule(gap=st.integers(0, 50))
    def reset_to_leader_start(self, gap: int) -> None:
        new_start = self.end + gap
        prev_epoch = self.epoch
        self.log.reset_to(new_start, prev_epoch)
        self.batches = []
        self.start = new_start
        self.before_start_epoch = prev_epoch
        self.durable = new_start

    @rule(advance_ms=st.integers(0, 60_000), retention_ms=st.integers(0, 100_000))
    def retention(self, advance_ms: int, retention_ms: int) -> None:
        self.now += advance_ms
        hw = self.durable
        self.log.config = LogConfig(
            segment_bytes=400, index_interval_bytes=90, segment_ms=50_000, retention_ms=retention_ms
        )
        self.log.apply_retention(hw)
        new_start = self.log.log_start_offset()
        assert new_start <= max(hw, self.start)
        assert new_start == self.start or any(b.base == new_start for b in self.batches)
        self._move_start(new_start)

    @rule()
    def flush(self) -> None:
        self.durable = self.log.flush()
        assert self.durable == self.end

    @rule()
    def crash_and_reopen(self) -> None:
        # the process dies; the page cache survives
        self.log = self._open()

    @rule(torn=st.booleans(), seed=st.integers(0, 2**16))
    def power_loss_and_reopen(self, torn: bool, seed: int) -> None:
        self.fs.power_loss(random.Random(seed), torn=torn)
        self.log = self._open()
        end = self.log.log_end_offset()
        assert end >= self.durable, f"lost fsynced data: end {end} < durable {self.durable}"
        assert self.log.log_start_offset() >= self.start
        self._move_start(self.log.log_start_offset())
        self.batches = [b for b in self.batches if b.last < end]
        assert self.end == end

    # ------------------------------------------------------------------ invariants
    steps = 0  # counted across examples, to show the step budget in the test output

    @invariant()
    def bounds_and_epochs_agree(self) -> None:
        LogMachine.steps += 1
        assert self.log.log_start_offset() == self.start
        assert self.log.log_end_offset() == self.end
        for offset in range(max(self.start - 1, 0), self.end):
            assert self.log.term_at(offset) == self._model_epoch_at(offset), offset
        for b in self.batches[-3:]:
            epoch, end = self.log.end_offset_for_term(b.epoch)
            assert epoch == b.epoch
            later = [x.base for x in self.batches if x.epoch > b.epoch]
            assert end == (later[0] if later else self.end)


LogMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLogAgainstModel = LogMachine.TestCase


def test_the_machine_ran_thousands_of_steps() -> None:
    """Runs after the machine (same module, file order) and checks it did real work."""
    if LogMachine.steps == 0:
        TestLogAgainstModel("runTest").runTest()
    assert LogMachine.steps >= 2000, LogMachine.steps
