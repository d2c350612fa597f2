"""The consumer's side of a consumer group: membership, rebalances, commits.

With a ``group_id``, ``subscribe`` makes the consumer a member of that consumer group
(``raftlog.client.group`` holds the member's state machine): the group's coordinator
assigns it a share of the partitions, and moves them when members come and go (eager
protocol: everything is revoked before a rejoin). Heartbeats and the JOIN_GROUP that waits
for the other members run in the background; ``poll`` takes the outcome
(``_maintain_group``), calls the rebalance listener, and auto-commits (the positions as of
the previous poll, every ``auto_commit_interval_ms``). ``commit``, ``commit_async`` and
``committed`` work on the group's offsets, also for ``assign`` with a ``group_id`` (commits
to a group without members).

``ConsumerGroupMixin`` is that part of ``AsyncConsumer`` (which inherits it): it keeps the
member, its tasks and the commit order; the partition states, the subscription and the
settings it reads are ``AsyncConsumer``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, overload

import trio

from raftlog.client.cluster import Cluster
from raftlog.client.consumer_types import (
    ConsumerGroupsUnavailableError,
    IllegalStateError,
    _as_tp,
    _PartitionState,
    _position_args,
)
from raftlog.client.errors import BrokerError
from raftlog.client.group import (
    CommitCallback,
    Coordinator,
    GroupConfig,
    GroupMember,
    Listener,
    MemberState,
    TopicPartition,
    call_back,
    commit_offsets,
    fetch_committed,
)
from raftlog.errors import ErrorCode, RaftlogError

log = logging.getLogger("raftlog.client")


class ConsumerGroupMixin:
    """``AsyncConsumer``'s group membership and commits (see the module docstring)."""

    # AsyncConsumer's, read and changed here
    cluster: Cluster
    group_id: str | None
    enable_auto_commit: bool
    auto_commit_interval_ms: int
    _group_config: GroupConfig | None
    _nursery: trio.Nursery | None
    _state: dict[TopicPartition, _PartitionState]
    _manual: bool
    _closing: bool

    if TYPE_CHECKING:

        def _set_assignment(self, wanted: Sequence[TopicPartition]) -> None: ...
        def _topic_names(self) -> list[str]: ...
        def _topic_counts(self, names: Iterable[str]) -> dict[str, int]: ...
        def _notify(self) -> None: ...

    def _init_group(self) -> None:
        """The group (see raftlog.client.group): the member, its background tasks."""
        self._coordinator: Coordinator | None = None
        self._member: GroupMember | None = None
        self._listener: Listener | None = None
        self._heartbeat_scope: trio.CancelScope | None = None
        self._join_scope: trio.CancelScope | None = None
        self._join_done: trio.Event | None = None
        self._join_result: list[TopicPartition] | BaseException | None = None
        self._join_counts: dict[str, int] = {}
        self._joined_counts: dict[str, int] | None = None
        """Partition counts of the subscribed topics at the last join (None: not joined)."""
        self._commit_lock = trio.Lock()
        self._committed_cache: dict[TopicPartition, int] = {}
        """What this consumer last committed per partition (auto-commit skips those)."""
        self._auto_commit_at: float | None = None

    def _coord(self) -> Coordinator:
        """The coordinator of this consumer's group, for OFFSET_FETCH and commits outside a
        membership (a member has a connection of its own for JOIN_GROUP)."""
        if self.group_id is None:
            raise IllegalStateError("no group_id")
        if self._coordinator is None:
            self._coordinator = self._new_coordinator()
        return self._coordinator

    def _new_coordinator(self) -> Coordinator:
        assert self.group_id is not None
        return Coordinator(self.cluster, self.group_id, nursery=self._nursery)

    def _need_group(self, what: str) -> str:
        if self.group_id is None:
            raise IllegalStateError(
                f"{what}() needs a consumer group: make the consumer with group_id=... "
                "(offsets are committed per group)"
            )
        return self.group_id

    async def _probe_coordinator(self) -> None:
        """FIND_COORDINATOR once: a broker without the group protocol is found out now
        (``ConsumerGroupsUnavailableError``); any retriable failure is left to ``poll``."""
        try:
            await self._coord().find()
        except RaftlogError as exc:
            if exc.retriable:
                log.info("event=coordinator_not_found_yet group=%s error=%s", self.group_id, exc)
                return
            if isinstance(exc, BrokerError) and exc.code in (
                ErrorCode.INVALID_REQUEST,
                ErrorCode.UNKNOWN,
            ):
                raise ConsumerGroupsUnavailableError(
                    f"subscribe() with group_id={self.group_id!r} needs a group coordinator, "
                    f"and the brokers do not serve the group protocol ({exc.message}); use "
                    "group_id=None to read every partition of the topics without a group, "
                    "or assign() partitions"
                ) from None
            raise

    def _ensure_member(self) -> None:
        """The group member and its heartbeat task, made at the first group subscribe."""
        if self._member is not None:
            return
        assert self._group_config is not None and self._nursery is not None
        member = GroupMember(self._new_coordinator(), self._group_config, on_change=self._notify)
        scope = trio.CancelScope()
        self._member = member
        self._heartbeat_scope = scope
        self._joined_counts = None
        self._nursery.start_soon(self._heartbeats, member, scope)

    async def _heartbeats(self, member: GroupMember, scope: trio.CancelScope) -> None:
        with scope:
            try:
                await member.run_heartbeats()
            except Exception as exc:  # never kills the loop
                log.error("event=heartbeat_task_failed group=%s error=%r", self.group_id, exc)

    def _cancel_group_tasks(self) -> None:
        for scope in (self._heartbeat_scope, self._join_scope):
            if scope is not None:
                scope.cancel()
        self._heartbeat_scope = self._join_scope = None
        self._join_done = None
        self._join_result = None

    def _drop_member(self, *, leave: bool) -> None:
        """Forget the member; with ``leave``, commit (auto-commit), revoke and leave in the
        background."""
        member = self._member
        if member is None:
            return
        tps = list(self._state)
        offsets = self._positions()
        self._cancel_group_tasks()
        self._member = None
        self._joined_counts = None
        self._committed_cache.clear()
        if leave and self._nursery is not None:
            self._nursery.start_soon(self._leave, member, tps, offsets, self._listener)
        else:
            member.close()
            member.coordinator.close()

    async def _leave(
        self,
        member: GroupMember,
        tps: list[TopicPartition],
        offsets: dict[TopicPartition, int],
        listener: Listener | None,
    ) -> None:
        """Commit (auto-commit), tell the listener, LEAVE_GROUP; failures are logged."""
        try:
            if self.enable_auto_commit and offsets and member.state == MemberState.STABLE:
                try:
                    async with self._commit_lock:
                        await member.commit(offsets)
                except RaftlogError as exc:
                    log.warning(
                        "event=commit_on_leave_failed group=%s error=%s", member.group_id, exc
                    )
            if tps and listener is not None:
                await listener.revoked(tps)
                listener.take_error()  # logged by the listener: nobody to raise it to
            await member.leave()
        except Exception as exc:
            log.error("event=group_leave_failed group=%s error=%r", member.group_id, exc)
        finally:
            member.close()
            member.coordinator.close()

    async def _maintain_group(self) -> None:
        """The group's part of ``poll``: take a finished join's assignment, drop lost
        partitions, revoke and rejoin when asked, auto-commit."""
        member = self._member
        if self._closing:
            return
        if member is None:
            await self._maybe_auto_commit()
            return
        done = self._join_done
        if done is not None and done.is_set():
            result = self._join_result
            self._join_done = self._join_result = self._join_scope = None
            if isinstance(result, BaseException):
                raise result
            if result is not None and not member.needs_join and not member.lost:
                await self._take_assignment(result)
        if member.lost:
            member.lost = False
            tps = list(self._state)
            self._committed_cache.clear()
            if tps and self._listener is not None:
                await self._listener.lost(tps)
            self._set_assignment([])
        if self._join_done is None and member.needs_join and self._member is member:
            topics = self._topic_names()
            if topics:
                await self._revoke(member)
                if self._member is member and not self._closing:
                    self._start_join(member, topics)
            elif member.state == MemberState.STABLE:
                # a pattern that matches no topic any more: nothing to be a member for
                await self._revoke(member)
                await member.leave(final=False)
        await self._maybe_auto_commit()
        if self._listener is not None:
            error = self._listener.take_error()
            if error is not None:
                raise error

    async def _take_assignment(self, tps: list[TopicPartition]) -> None:
        log.info("event=partitions_assigned group=%s partitions=%s", self.group_id, tps)
        self._set_assignment(tps)
        self._committed_cache.clear()
        self._joined_counts = self._join_counts
        self._auto_commit_at = trio.current_time() + self.auto_commit_interval_ms / 1000
        if self._listener is not None:
            await self._listener.assigned(list(tps))

    async def _revoke(self, member: GroupMember) -> None:
        """Eager protocol, before a rejoin: commit (auto-commit), tell the listener, drop
        every partition."""
        tps = list(self._state)
        if not tps:
            return
        if self.enable_auto_commit and member.state == MemberState.STABLE:
            try:
                await self._commit_offsets(self._positions())
            except RaftlogError as exc:
                log.warning("event=commit_on_revoke_failed group=%s error=%s", self.group_id, exc)
        if self._listener is not None:
            await self._listener.revoked(tps)
        log.info("event=partitions_revoked group=%s partitions=%s", self.group_id, tps)
        self._committed_cache.clear()
        self._set_assignment([])

    def _start_join(self, member: GroupMember, topics: list[str]) -> None:
        assert self._nursery is not None
        self._join_counts = self._topic_counts(topics)
        done = trio.Event()
        scope = trio.CancelScope()
        self._join_done, self._join_scope, self._join_result = done, scope, None
        self._nursery.start_soon(self._join, member, topics, done, scope)

    async def _join(
        self, member: GroupMember, topics: list[str], done: trio.Event, scope: trio.CancelScope
    ) -> None:
        result: list[TopicPartition] | BaseException | None = None
        try:
            with scope:
                result = await member.join(topics)
        except Exception as exc:  # handed to the next poll
            result = exc
        finally:
            if self._join_done is done:
                self._join_result = result
            done.set()
            self._notify()

    # ------------------------------------------------------------------ commits

    def _positions(self) -> dict[TopicPartition, int]:
        """The position of every assigned partition that has one: everything before it was
        returned by a ``poll``."""
        return {tp: s.position for tp, s in self._state.items() if s.position is not None}

    async def _maybe_auto_commit(self) -> None:
        """Every ``auto_commit_interval_ms``: commit the positions as of now, that is as of
        the previous poll (this one has returned nothing yet), so a crash never skips a
        record the caller did not get through."""
        if not self.enable_auto_commit or self.group_id is None:
            return
        now = trio.current_time()
        if self._auto_commit_at is None:
            self._auto_commit_at = now + self.auto_commit_interval_ms / 1000
        if now < self._auto_commit_at:
            return
        self._auto_commit_at = now + self.auto_commit_interval_ms / 1000
        member = self._member
        if member is not None:
            if member.state != MemberState.STABLE or member.needs_join:
                return
        elif not self._manual:
            return
        offsets = {
            tp: o for tp, o in self._positions().items() if self._committed_cache.get(tp) != o
        }
        if not offsets:
            return
        if self._nursery is not None:
            self._nursery.start_soon(self._auto_commit, offsets)
        else:
            await self._auto_commit(offsets)

    async def _auto_commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._commit_offsets(offsets)
            log.debug("event=auto_commit group=%s offsets=%s", self.group_id, offsets)
        except Exception as exc:  # in the background: logged, never kills the loop
            log.info("event=auto_commit_failed group=%s error=%s", self.group_id, exc)

    async def _commit_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit, in order with every other commit of this consumer: as the group member
        when subscribed, else as a commit to a group without members."""
        group_id = self._need_group("commit")
        if not offsets:
            return
        async with self._commit_lock:
            member = self._member
            if member is not None:
                await member.commit(offsets)
            else:
                await commit_offsets(self._coord(), group_id, offsets)
            self._committed_cache.update(offsets)

    def _offsets_arg(
        self, offsets: Mapping[tuple[str, int], int] | None
    ) -> dict[TopicPartition, int]:
        if offsets is None:
            return self._positions()
        out: dict[TopicPartition, int] = {}
        for key, offset in offsets.items():
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise ValueError(f"offset of {key!r} must be an int >= 0, not {offset!r}")
            out[_as_tp(key)] = offset
        return out

    async def commit(self, offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        """Commit offsets to the group and wait for the answer.

        ``offsets``: ``{(topic, partition): offset of the next record to read}``; None (the
        default) commits the position of every assigned partition, i.e. everything
        ``poll`` has returned. In a group only the partitions assigned to this member can
        be committed. Commits go out in the order they were made (``commit_async`` ones
        too).

        Raises ``CommitFailedError`` when the group fenced the commit (a rebalance gave the
        partitions to another member, or this member was dropped: nothing was committed,
        and poll() rejoins), ``IllegalStateError`` without a ``group_id``, ``ValueError``
        for a negative offset, and a ``RaftlogError`` when the coordinator cannot be
        reached within ``request_timeout_ms``.

        Example: ``await consumer.commit({("orders", 0): record.offset + 1})``."""
        self._need_group("commit")
        await self._commit_offsets(self._offsets_arg(offsets))

    def commit_async(
        self,
        offsets: Mapping[tuple[str, int], int] | None = None,
        callback: CommitCallback | None = None,
    ) -> None:
        """Like ``commit`` without waiting: the offsets (by default the positions as of
        now) are committed in the background, in order with other commits. ``callback``
        (optional; may be a coroutine function) gets ``(offsets, error)`` once answered,
        ``error`` None on success or the ``RaftlogError`` (``CommitFailedError``...).
        Raises ``IllegalStateError`` without a ``group_id`` or without a nursery."""
        self._commit_async(offsets, callback, in_thread=False)

    def _commit_async(
        self,
        offsets: Mapping[tuple[str, int], int] | None,
        callback: CommitCallback | None,
        *,
        in_thread: bool,
    ) -> None:
        self._need_group("commit_async")
        if self._nursery is None:
            raise IllegalStateError(
                "commit_async() runs in the background: make the AsyncConsumer with a "
                "nursery, or await commit()"
            )
        todo = self._offsets_arg(offsets)
        self._nursery.start_soon(self._commit_task, todo, callback, in_thread)

    async def _commit_task(
        self, todo: dict[TopicPartition, int], callback: CommitCallback | None, in_thread: bool
    ) -> None:
        error: Exception | None = None
        try:
            await self._commit_offsets(todo)
        except Exception as exc:  # in the background: to the callback, never kills the loop
            error = exc
            log.info("event=commit_async_failed group=%s error=%s", self.group_id, exc)
        if callback is not None:
            await call_back(callback, todo, error, in_thread=in_thread)

    @overload
    async def committed(self, partition: tuple[str, int], /) -> int | None: ...
    @overload
    async def committed(self, topic: str, partition: int, /) -> int | None: ...
    async def committed(self, *args: object) -> int | None:
        """The group's committed offset of a partition (assigned or not), None when none is
        committed: ``committed(("orders", 0))`` or ``committed("orders", 0)``. Raises
        ``IllegalStateError`` without a ``group_id``, a ``RaftlogError`` when the
        coordinator cannot be reached."""
        tp = _position_args(args)
        group_id = self._need_group("committed")
        found = await fetch_committed(self._coord(), group_id, [tp])
        return found.get(tp)
