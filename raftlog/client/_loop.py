"""The blocking API's engine: one trio event loop in a background thread per client object.

Why a thread that owns the loop, rather than ``trio.run`` per call: a producer has work that
must go on between the user's calls (linger timers, the sender, retries, long-lived
connections and their reader tasks), so the loop must outlive any one call. The user's
thread talks to it through trio's own portal (``trio.from_thread.run`` with the loop's
token), and the producer's hot path (``send``) does not cross threads at all: it appends to a
lock-protected accumulator and only pokes the loop (``run_sync_soon``) when a batch is new or
full. The trio-native classes (``AsyncAdmin``, the sender, ``Connection``) are what runs in
the loop, so the trio API of the full client is the same code without this thread.

Rules: every task started here is guarded (an exception is logged, never kills the loop);
``close`` stops the loop and joins the thread with a deadline; a call after the loop ended
raises ``ClientClosedError``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar

import trio

from raftlog.client.errors import ClientClosedError
from raftlog.errors import RaftlogError

log = logging.getLogger("raftlog.client")

T = TypeVar("T")

LOOP_START_TIMEOUT_S = 10.0
LOOP_JOIN_TIMEOUT_S = 10.0


class ClosesOnExit:
    """``with Client(...) as c:`` closes the client on the way out (the blocking clients)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LoopThread:
    """A trio loop running in a daemon thread, with a nursery for background tasks."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        if not self._ready.wait(LOOP_START_TIMEOUT_S):
            raise ClientClosedError(f"{name}: the client's event loop did not start")

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # the loop's end must never print a traceback
            log.error("event=loop_crashed loop=%s error=%r", self._name, exc)
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    @property
    def nursery(self) -> trio.Nursery:
        """The loop's nursery (use from inside the loop only)."""
        assert self._nursery is not None
        return self._nursery

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the loop and return its result (from another thread)."""
        if self._token is None or not self._thread.is_alive():
            raise ClientClosedError(f"{self._name} is closed")
        try:
            return trio.from_thread.run(fn, *args, trio_token=self._token)
        except trio.RunFinishedError:
            raise ClientClosedError(f"{self._name} is closed") from None
        except BaseExceptionGroup as group:
            raise first_error(group) from None

    def run_sync_soon(self, fn: Callable[[], object]) -> None:
        """Schedule ``fn()`` in the loop without waiting; a no-op once the loop ended."""
        if self._token is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn)

    def start_soon(self, fn: Callable[[], Awaitable[object]], what: str) -> None:
        """Start a guarded background task (call from inside the loop)."""
        self.nursery.start_soon(guarded, fn, what)

    def close(self) -> None:
        """Stop the loop (cancelling its tasks) and join the thread, with a deadline."""
        stop = self._stop
        if stop is not None:
            self.run_sync_soon(stop.set)
        if threading.current_thread() is not self._thread:
            self._thread.join(LOOP_JOIN_TIMEOUT_S)


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to show for a group from a nursery: its first ``RaftlogError``, else its
    first exception (a user sees one error with its message, never a group)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        elif not isinstance(exc, trio.Cancelled):
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, RaftlogError):
            return exc
    return leaves[0] if leaves else group


async def guarded(fn: Callable[[], Awaitable[object]], what: str) -> None:
    """Run a background task; an unexpected exception is logged, never propagated."""
    try:
        await fn()
    except trio.Cancelled:
        raise
    except Exception as exc:
        log.error("event=task_failed task=%s error=%r", what, exc)
