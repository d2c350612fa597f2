"""The bridge between trio (the broker's event loop) and the metadata quorum's thread.

Nothing on the trio thread ever blocks on pysyncobj: ``submit`` hands a command to the
quorum with a callback, and the callback (on pysyncobj's thread) hops back to trio with
``TrioToken.run_sync_soon``, never with the blocking ``trio.from_thread.run_sync`` (which
can deadlock at shutdown, NOTES-dependencies.md). Images of the metadata arrive the same
way, once per pysyncobj tick at most.

What trio code gets:

- ``await submit(command)``: the model's result once the command applied *and* this
  node's published image includes it (read-your-writes); ``QuorumError`` with
  LEADER_NOT_AVAILABLE (not applied: retry), UNKNOWN_OUTCOME (may have applied: retry
  with the same request id), or REQUEST_TIMED_OUT reported as unknown outcome.
- ``image()`` / ``await wait_version(v)`` / ``await next_image(after)``: the newest
  immutable image, or the first one at or past a version.
- ``await barrier()``: a linearizable read point: a no-op command through the log, then
  the image at or past its version.
- ``await commit_offsets(...)``: offset commits of many members folded into one command
  every ``fold_ms`` (default 5 ms), each commit keeping its own result.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from typing import Any, Protocol

import trio

from raftlog.errors import ErrorCode
from raftlog.metadata.quorum import QuorumError


class QuorumLike(Protocol):
    def submit(self, command: dict[str, Any], callback: Any) -> None: ...

    def image(self) -> Any: ...


_GONE = (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError)
"""A waiter that gave up (timed out): its answer is dropped."""


def _version(image: Any) -> int:
    return int(image.version)


class MetadataBridge:
    """Lives in one trio run; create it inside ``trio.run`` (it captures the token)."""

    def __init__(self, quorum: QuorumLike, *, fold_ms: float = 5.0) -> None:
        self._quorum = quorum
        self._token = trio.lowlevel.current_trio_token()
        self._image = quorum.image()
        self._changed = trio.Event()
        self._fold_s = fold_ms / 1000
        self._rid_prefix = os.urandom(6).hex()
        self._rid_counter = itertools.count(1)
        self._pending_commits: list[tuple[dict[str, Any], trio.MemorySendChannel[Any]]] = []
        self._commits_waiting = trio.Event()

    # ----------------------------------------------------------------- images

    def on_image(self, image: Any) -> None:
        """Give this to the quorum as ``on_image``: called on pysyncobj's thread."""
        with contextlib.suppress(trio.RunFinishedError):  # the broker is shutting down
            self._token.run_sync_soon(self._publish, image)

    def _publish(self, image: Any) -> None:
        if _version(image) > _version(self._image):
            self._image = image
            self._changed.set()
            self._changed = trio.Event()

    def image(self) -> Any:
        return self._image

    async def wait_version(self, version: int) -> Any:
        """The first published image whose version is >= ``version``."""
        while _version(self._image) < version:
            # the quorum may have published before our callback was wired: catch up
            self._publish(self._quorum.image())
            if _version(self._image) >= version:
                break
            await self._changed.wait()
        return self._image

    async def next_image(self, after_version: int) -> Any:
        """The first image newer than ``after_version`` (a watch)."""
        return await self.wait_version(after_version + 1)

    # ----------------------------------------------------------------- commands

    def new_rid(self) -> str:
        """A request id unique across brokers and restarts."""
        return f"{self._rid_prefix}-{next(self._rid_counter)}"

    async def submit(self, command: dict[str, Any], *, timeout_s: float = 10.0) -> dict[str, Any]:
        """Apply ``command`` through the metadata log (see the module docstring)."""
        if "rid" not in command:
            command = {**command, "rid": self.new_rid()}
        send, recv = trio.open_memory_channel[Any](1)

        def callback(result: dict[str, Any] | None, error: QuorumError | None) -> None:
            def deliver() -> None:
                with contextlib.suppress(*_GONE):
                    send.send_nowait((result, error))

            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(deliver)

        self._quorum.submit(command, callback)
        with trio.move_on_after(timeout_s) as scope:
            result, error = await recv.receive()
        recv.close()
        if scope.cancelled_caught:
            raise QuorumError(
                ErrorCode.UNKNOWN_OUTCOME,
                f"metadata command {command.get('op')!r} timed out after {timeout_s:g} s; "
                "it may or may not have applied",
            )
        if error is not None:
            raise error
        assert isinstance(result, dict)
        if result.get("ok") and "version" in result:
            with trio.move_on_after(timeout_s):
                await self.wait_version(int(result["version"]))
        return result

    async def barrier(self, *, timeout_s: float = 10.0) -> Any:
        """An image at least as new as everything committed before this call."""
        result = await self.submit({"op": "barrier"}, timeout_s=timeout_s)
        return await self.wait_version(int(result.get("version", 0)))

    # ----------------------------------------------------------------- folded commits

    async def commit_offsets(
        self, commit: dict[str, Any], *, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """Queue one member's offset commit (the body of an ``offset_commit`` command:
        ``group_id``, ``generation``, ``member_id``, ``offsets``); it goes out with others
        in one ``offset_commit_many`` command. Returns its own result."""
        send, recv = trio.open_memory_channel[Any](1)
        self._pending_commits.append((commit, send))
        self._commits_waiting.set()
        with trio.move_on_after(timeout_s) as scope:
            outcome = await recv.receive()
        if scope.cancelled_caught:
            raise QuorumError(
                ErrorCode.UNKNOWN_OUTCOME,
                f"offset commit timed out after {timeout_s:g} s; it may or may not have applied",
            )
        if isinstance(outcome, QuorumError):
            raise outcome
        return dict(outcome)  # a copy: the result dict is shared by nothing else

    async def run_commit_folder(self) -> None:
        """Run in the broker's nursery: every ``fold_ms`` send what is queued as one
        ``offset_commit_many`` command."""
        while True:
            await self._commits_waiting.wait()
            await trio.sleep(self._fold_s)
            self._commits_waiting = trio.Event()
            batch, self._pending_commits = self._pending_commits, []
            if not batch:
                continue
            try:
                result = await self.submit(
                    {"op": "offset_commit_many", "commits": [c for c, _ in batch]},
                    timeout_s=10.0,
                )
                outcomes: list[Any] = list(result.get("results") or [])
                if not result.get("ok") or len(outcomes) != len(batch):
                    outcomes = [result] * len(batch)
            except QuorumError as e:
                outcomes = [e] * len(batch)
            for (_, send), outcome in zip(batch, outcomes, strict=True):
                with contextlib.suppress(*_GONE):
                    send.send_nowait(outcome)
