"""Group commit across partitions: one worker-thread hop fsyncs every log that asked.

Partition drivers write to the page cache on the trio thread (a ``pwrite`` is cheap) and
then ``await flusher.flush(log)``. The flusher runs rounds: a round takes every log that
asked since the last round began, fsyncs them all in one worker thread (a thread hop costs
0.1-0.17 ms, NOTES-dependencies.md: once per round, not once per append), and wakes every
waiter of the round. Requests that arrive while a round runs go into the next one, so one
fsync per log covers everything appended while the previous fsync ran.

An fsync error fences that log (``PartitionLog`` raises ``LogFencedError``): its waiters get
the error and never an acknowledgement; other logs of the round are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from raftlog.storage.log import PartitionLog


class _Round:
    def __init__(self) -> None:
        self.logs: dict[int, PartitionLog] = {}
        self.jobs: list[Callable[[], None]] = []
        self.done = trio.Event()
        self.errors: dict[int, BaseException] = {}


class Flusher:
    """Run ``run()`` in a nursery for the broker's lifetime."""

    def __init__(self) -> None:
        self._next = _Round()
        self._wake = trio.Event()
        self.rounds = 0
        self.flushed_logs = 0

    async def flush(self, log: PartitionLog) -> None:
        """Return once everything written to ``log`` before this call is durable; raise
        the log's error (``LogFencedError``) if its fsync failed."""
        rnd = self._next
        rnd.logs[id(log)] = log
        self._wake.set()
        await rnd.done.wait()
        err = rnd.errors.get(id(log))
        if err is not None:
            raise err

    async def run_in_thread(self, job: Callable[[], None]) -> None:
        """Run a blocking storage job (hard state, truncation) in the next round's thread
        hop, in submission order; raises what it raised."""
        rnd = self._next
        box: list[BaseException] = []

        def wrapped() -> None:
            try:
                job()
            except BaseException as e:  # handed back to the waiter
                box.append(e)

        rnd.jobs.append(wrapped)
        self._wake.set()
        await rnd.done.wait()
        if box:
            raise box[0]

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            rnd, self._next = self._next, _Round()
            await trio.to_thread.run_sync(self._flush_round, rnd, abandon_on_cancel=False)
            self.rounds += 1
            self.flushed_logs += len(rnd.logs)
            rnd.done.set()

    @staticmethod
    def _flush_round(rnd: _Round) -> None:
        for job in rnd.jobs:
            job()
        for key, log in rnd.logs.items():
            try:
                log.flush()
            except Exception as e:  # the waiter of this log gets it
                rnd.errors[key] = e
