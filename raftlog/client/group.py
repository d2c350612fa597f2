"""Consumer-group membership on the client: Kafka's group protocol, eager rebalancing.

Three pieces, each usable on its own (the unit tests drive them with a scripted
coordinator):

- ``Coordinator`` finds the group coordinator (FIND_COORDINATOR to any broker) and sends
  group requests to it. NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE and a lost or unreachable
  connection mean "find it again": it does, with a growing backoff, until the request's
  deadline. A consumer's coordinator has a connection of its own (a broker answers each
  connection's requests in order, so a JOIN_GROUP that waits for the other members must not
  hold up fetches); an admin's uses the cluster's pooled connection.
- ``GroupMember`` is one member's state machine (below). It never calls the user: it says
  what happened (``needs_join``, ``lost``) and the consumer acts on it inside ``poll``.
- ``Listener`` calls a user's rebalance listener (Kafka's ``ConsumerRebalanceListener``: an
  object with any of ``on_partitions_revoked``, ``on_partitions_assigned``,
  ``on_partitions_lost``, or plain callables), in the loop or in a worker thread.

The member's states::

    UNJOINED --join()--> JOINING --JOIN_GROUP, SYNC_GROUP answered--> STABLE
        ^                   |  REBALANCE_IN_PROGRESS from SYNC: JOIN again, same member id
        |                   |  ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID: JOIN again as new ("")
        |                   +- COORDINATOR moved / connection lost: find it, JOIN again
        |
        +-- HEARTBEAT or commit: ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID:
            the membership is lost (``lost``: the consumer drops the partitions without
            committing, calls on_partitions_lost) and the next join is as a new member.
    STABLE: HEARTBEAT every ``heartbeat_interval_ms`` (a background task, independent of
            poll); REBALANCE_IN_PROGRESS sets ``needs_join`` (the consumer revokes
            everything, committing first, then joins again keeping its member id).

A static member (``instance_id``) does not send LEAVE_GROUP when it closes, as in Kafka: a
restart within the session timeout takes its old assignment back without a rebalance.
"""

from __future__ import annotations

import enum
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import trio

from raftlog.client.cluster import Cluster
from raftlog.client.connection import Connection
from raftlog.client.errors import (
    BrokerError,
    BrokerUnreachableError,
    ClientClosedError,
    CommitFailedError,
    ConnectionLostError,
    ProtocolError,
    RequestTimedOutError,
    broker_error,
)
from raftlog.errors import ErrorCode, RaftlogError
from raftlog.wire import (
    CommitPartition,
    CommitTopic,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    HeartbeatRequest,
    JoinGroupRequest,
    JoinGroupResponse,
    LeaveGroupRequest,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    Request,
    Response,
    SyncGroupRequest,
    SyncGroupResponse,
    TopicPartitions,
)

log = logging.getLogger("raftlog.client")

STRATEGIES = ("sticky", "range", "roundrobin")
"""The assignment strategies the coordinator computes, in the default preference order."""
JOIN_MARGIN_MS = 5_000
"""Added to the rebalance timeout for JOIN_GROUP's request timeout (the join phase may last
the whole rebalance timeout)."""
BACKOFF_MAX_S = 1.0
FENCED = frozenset(
    {ErrorCode.ILLEGAL_GENERATION, ErrorCode.UNKNOWN_MEMBER_ID, ErrorCode.FENCED_INSTANCE_ID}
)
"""Codes that mean this member's membership (or its generation) is gone."""
_FIND_AGAIN = frozenset({ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE})
_CONNECTION_ERRORS = (BrokerUnreachableError, ConnectionLostError, RequestTimedOutError)


class TopicPartition(NamedTuple):
    """A partition of a topic. A plain ``(topic, partition)`` tuple is accepted wherever one
    is asked for, and equals it (``TopicPartition("t", 0) == ("t", 0)``)."""

    topic: str
    partition: int


def _by_topic(tps: Iterable[TopicPartition]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for tp in tps:
        out.setdefault(tp.topic, []).append(tp.partition)
    return out


def _flatten(topics: Iterable[TopicPartitions]) -> list[TopicPartition]:
    return sorted(TopicPartition(t.name, int(p)) for t in topics for p in t.partitions)


# ---------------------------------------------------------------------- coordinator


class GroupRequester(Protocol):
    """What ``GroupMember`` and the group helpers need of a coordinator (``Coordinator``;
    a scripted fake in the unit tests)."""

    async def request(self, msg: Request, *, timeout_ms: int | None = None) -> Response: ...

    def close(self) -> None: ...


class Coordinator:
    """Sends one group's requests to its coordinator; see the module docstring.

    ``nursery``: given, requests go over a connection of their own (opened in it); None,
    over the cluster's pooled connection to the coordinator (admin requests, which never
    wait long)."""

    def __init__(
        self, cluster: Cluster, group_id: str, *, nursery: trio.Nursery | None = None
    ) -> None:
        self.cluster = cluster
        self.group_id = group_id
        self._nursery = nursery
        self.node_id: int | None = None
        self._conn: Connection | None = None
        self._lock = trio.Lock()
        self._closed = False

    async def find(self) -> int:
        """FIND_COORDINATOR once (to any broker): the coordinator's broker id. Raises the
        ``BrokerError`` answered (COORDINATOR_NOT_AVAILABLE during an election) or a
        connection error."""
        return int((await self._find()).node_id)

    async def _find(self) -> FindCoordinatorResponse:
        answer = await self.cluster.request_any(FindCoordinatorRequest(self.group_id))
        if not isinstance(answer, FindCoordinatorResponse):
            raise ProtocolError(f"FIND_COORDINATOR answered with {type(answer).__name__}")
        return answer

    async def _connection(self) -> Connection:
        async with self._lock:
            if self._closed:
                raise ClientClosedError("the group's coordinator connection is closed")
            if self._conn is not None and not self._conn.closed:
                return self._conn
            answer = await self._find()
            node = int(answer.node_id)
            if self._nursery is None:
                conn = await self.cluster.connection(node)
            else:
                config = self.cluster.config
                conn = await Connection.open(
                    self._nursery,
                    answer.host,
                    answer.port,
                    client_id=config.client_id,
                    connect_timeout_ms=config.connect_timeout_ms,
                )
            if self.node_id is not None and node != self.node_id:
                log.info("event=coordinator_moved group=%s broker=%d", self.group_id, node)
            else:
                log.debug("event=coordinator_found group=%s broker=%d", self.group_id, node)
            self.node_id, self._conn = node, conn
            return conn

    def reset(self) -> None:
        """Forget the coordinator (found again on the next request)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._nursery is not None:
                conn.close()
            elif conn.closed and self.node_id is not None:
                self.cluster.drop_connection(self.node_id)

    async def request(self, msg: Request, *, timeout_ms: int | None = None) -> Response:
        """``msg`` to the coordinator, found again (with backoff) after NOT_COORDINATOR,
        COORDINATOR_NOT_AVAILABLE or a connection failure, for up to ``timeout_ms`` per
        attempt and ``request_timeout_ms`` in all (at least one attempt). Other
        ``ErrorResponse`` answers are raised as ``BrokerError``."""
        config = self.cluster.config
        timeout_ms = timeout_ms or config.request_timeout_ms
        deadline = trio.current_time() + config.request_timeout_ms / 1000
        backoff = config.retry_backoff_ms / 1000
        while True:
            try:
                conn = await self._connection()
                answered = False
                try:
                    answer = await conn.request(msg, timeout_ms=timeout_ms)
                    answered = True
                    return answer
                except BrokerError:
                    answered = True
                    raise
                finally:
                    if not answered and self._nursery is not None and conn is self._conn:
                        # cancelled or failed with a request in flight: the broker answers
                        # in order, so that answer would hold up the next request
                        self.reset()
            except BrokerError as exc:
                if exc.code not in _FIND_AGAIN:
                    raise
                failure: RaftlogError = exc
            except _CONNECTION_ERRORS as exc:
                failure = exc
            self.reset()
            if trio.current_time() + backoff >= deadline:
                raise failure
            log.debug("event=coordinator_retry group=%s error=%r", self.group_id, failure)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def close(self) -> None:
        self._closed = True
        self.reset()


# ---------------------------------------------------------------------- offsets


def commit_request(
    group_id: str,
    offsets: Mapping[TopicPartition, int],
    generation: int = -1,
    member_id: str = "",
) -> OffsetCommitRequest:
    topics = tuple(
        CommitTopic(topic, tuple(CommitPartition(p, offsets[TopicPartition(topic, p)]) for p in ps))
        for topic, ps in sorted(_by_topic(sorted(offsets)).items())
    )
    return OffsetCommitRequest(group_id, topics, generation, member_id)


def check_commit(answer: Response, offsets: Mapping[TopicPartition, int]) -> None:
    """Raise the first per-partition error of an OFFSET_COMMIT answer."""
    if not isinstance(answer, OffsetCommitResponse):
        raise ProtocolError(f"OFFSET_COMMIT answered with {type(answer).__name__}")
    for t in answer.topics:
        for p in t.partitions:
            if p.error != ErrorCode.NONE:
                what = f"commit of topic {t.name!r} partition {p.partition}"
                raise broker_error(p.error, p.message, what)


async def commit_offsets(
    coordinator: GroupRequester,
    group_id: str,
    offsets: Mapping[TopicPartition, int],
    generation: int = -1,
    member_id: str = "",
) -> None:
    """OFFSET_COMMIT ``offsets``; generation -1 and member "" for a group with no members.
    Raises the ``BrokerError`` of the request or of its first refused partition."""
    if not offsets:
        return
    answer = await coordinator.request(commit_request(group_id, offsets, generation, member_id))
    check_commit(answer, offsets)


async def fetch_committed(
    coordinator: GroupRequester, group_id: str, tps: Sequence[TopicPartition] | None
) -> dict[TopicPartition, int | None]:
    """The committed offsets of ``tps`` (None: every partition with one), None where
    nothing is committed."""
    topics = None
    if tps is not None:
        if not tps:
            return {}
        topics = tuple(
            TopicPartitions(t, tuple(sorted(set(ps)))) for t, ps in _by_topic(tps).items()
        )
    answer = await coordinator.request(OffsetFetchRequest(group_id, topics))
    if not isinstance(answer, OffsetFetchResponse):
        raise ProtocolError(f"OFFSET_FETCH answered with {type(answer).__name__}")
    out: dict[TopicPartition, int | None] = dict.fromkeys(tps or ())
    for t in answer.topics:
        for p in t.partitions:
            out[TopicPartition(t.name, int(p.partition))] = None if p.offset < 0 else p.offset
    return out


# ---------------------------------------------------------------------- the member


class MemberState(enum.Enum):
    UNJOINED = "unjoined"
    """No generation: new, lost, or left."""
    JOINING = "joining"
    """JOIN_GROUP / SYNC_GROUP in progress."""
    STABLE = "stable"
    """A member of a generation, with its assignment; heartbeating."""
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class GroupConfig:
    group_id: str
    client_id: str = "raftlog-consumer"
    instance_id: str | None = None
    session_timeout_ms: int = 10_000
    rebalance_timeout_ms: int = 30_000
    heartbeat_interval_ms: int = 3_000
    strategies: tuple[str, ...] = STRATEGIES
    retry_backoff_ms: int = 100
    request_timeout_ms: int = 30_000

    def check(self) -> None:
        """Raise ``ValueError`` for a setting out of range."""
        if not 1 <= len(self.group_id) <= 255:
            raise ValueError(f"group_id must be 1..255 characters, not {self.group_id!r}")
        if self.instance_id is not None and not 1 <= len(self.instance_id) <= 255:
            raise ValueError(
                f"group_instance_id must be 1..255 characters, not {self.instance_id!r}"
            )
        if not 1_000 <= self.session_timeout_ms <= 30 * 60 * 1000:
            raise ValueError(
                f"session_timeout_ms must be 1000..1800000, not {self.session_timeout_ms}"
            )
        if not 1 <= self.heartbeat_interval_ms < self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms must be below session_timeout_ms "
                f"({self.session_timeout_ms}; a third of it is usual), "
                f"not {self.heartbeat_interval_ms}"
            )
        if not 1 <= self.rebalance_timeout_ms <= 5 * 60 * 1000:
            raise ValueError(
                f"rebalance_timeout_ms must be 1..300000, not {self.rebalance_timeout_ms}"
            )
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if not self.strategies or unknown or len(set(self.strategies)) != len(self.strategies):
            raise ValueError(
                f"partition_assignment_strategy must list some of {STRATEGIES} (computed by "
                f"the coordinator), each once; got {list(self.strategies)}"
            )


class GroupMember:
    """One member of a consumer group; see the module docstring for its states.

    ``coordinator`` sends the group requests (``Coordinator``); ``on_change`` is called
    when something happened the consumer must act on (``needs_join`` or ``lost`` became
    true), so that a waiting ``poll`` wakes up.
    """

    def __init__(
        self,
        coordinator: GroupRequester,
        config: GroupConfig,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        config.check()
        self.coordinator = coordinator
        self.config = config
        self.on_change = on_change
        self.state = MemberState.UNJOINED
        self.member_id = ""
        self.generation = -1
        self.leader_id = ""
        self.strategy = ""
        self.assignment: list[TopicPartition] = []
        self.rejoin_reason: str | None = None
        """Set when the coordinator (or the consumer) asked for a rejoin."""
        self.lost = False
        """The membership was lost while holding partitions: the consumer must drop them
        without committing (and clear this flag)."""
        self.last_heartbeat: float | None = None

    @property
    def group_id(self) -> str:
        return self.config.group_id

    @property
    def needs_join(self) -> bool:
        """True when the consumer must (re)join: never joined, lost, or asked to."""
        if self.state == MemberState.CLOSED:
            return False
        return self.state == MemberState.UNJOINED or (
            self.state == MemberState.STABLE and self.rejoin_reason is not None
        )

    def request_rejoin(self, reason: str) -> None:
        if self.rejoin_reason is None:
            log.info(
                "event=group_rejoin_needed group=%s member=%s reason=%s",
                self.group_id,
                self.member_id,
                reason,
            )
        self.rejoin_reason = reason
        self.on_change()

    def _lose(self, reason: str, *, new_member: bool = True) -> None:
        """The coordinator no longer counts this member in the generation."""
        if self.state == MemberState.CLOSED:
            return
        log.warning(
            "event=group_membership_lost group=%s member=%s generation=%d reason=%s",
            self.group_id,
            self.member_id,
            self.generation,
            reason,
        )
        if self.state == MemberState.STABLE and self.assignment:
            self.lost = True
        if new_member:
            self.member_id = ""
        self.generation = -1
        self.assignment = []
        self.state = MemberState.UNJOINED
        self.on_change()

    def _backoff(self, attempt: int) -> float:
        return float(min(self.config.retry_backoff_ms / 1000 * 2**attempt, BACKOFF_MAX_S))

    # ------------------------------------------------------------------ join

    async def join(self, topics: Sequence[str]) -> list[TopicPartition]:
        """JOIN_GROUP then SYNC_GROUP until this member has an assignment (a sorted list,
        maybe empty); retried across coordinator moves, rebalances and lost connections.
        Raises the ``BrokerError`` of a refusal that rejoining cannot fix
        (FENCED_INSTANCE_ID from JOIN_GROUP, INCONSISTENT_GROUP_PROTOCOL, INVALID_REQUEST...)."""
        if not topics:
            raise ValueError("a group member subscribes to at least one topic")
        cfg = self.config
        self.state = MemberState.JOINING
        self.rejoin_reason = None
        self.lost = False
        attempt = 0
        try:
            while True:
                failure = await self._join_once(topics)
                if failure is None:
                    return self.assignment
                attempt += 1
                if failure == "now":
                    continue
                await trio.sleep(self._backoff(attempt))
        finally:
            if self.state == MemberState.JOINING:  # failed or cancelled
                self.state = MemberState.UNJOINED
                log.debug("event=group_join_abandoned group=%s", cfg.group_id)

    async def _join_once(self, topics: Sequence[str]) -> str | None:
        """One JOIN_GROUP + SYNC_GROUP. None: joined; "now": retry at once; "later": retry
        after a backoff."""
        cfg = self.config
        request = JoinGroupRequest(
            group_id=cfg.group_id,
            topics=tuple(dict.fromkeys(topics)),
            member_id=self.member_id,
            instance_id=cfg.instance_id,
            client_id=cfg.client_id,
            session_timeout_ms=cfg.session_timeout_ms,
            rebalance_timeout_ms=cfg.rebalance_timeout_ms,
            strategies=cfg.strategies,
        )
        try:
            answer = await self.coordinator.request(
                request, timeout_ms=cfg.rebalance_timeout_ms + JOIN_MARGIN_MS
            )
        except BrokerError as exc:
            if exc.code == ErrorCode.UNKNOWN_MEMBER_ID:
                self.member_id = ""  # the coordinator forgot us: join as a new member
                return "now"
            if exc.code == ErrorCode.REBALANCE_IN_PROGRESS or exc.retriable:
                log.info("event=group_join_retry group=%s error=%s", cfg.group_id, exc.message)
                return "later"
            raise
        except _CONNECTION_ERRORS as exc:
            log.info("event=group_join_retry group=%s error=%s", cfg.group_id, exc.message)
            return "later"
        if not isinstance(answer, JoinGroupResponse):
            raise ProtocolError(f"JOIN_GROUP answered with {type(answer).__name__}")
        self.member_id = answer.member_id
        self.generation = answer.generation
        self.leader_id = answer.leader_id
        self.strategy = answer.strategy
        sync = SyncGroupRequest(cfg.group_id, answer.generation, answer.member_id)
        try:
            synced = await self.coordinator.request(
                sync, timeout_ms=cfg.rebalance_timeout_ms + JOIN_MARGIN_MS
            )
        except BrokerError as exc:
            if exc.code == ErrorCode.REBALANCE_IN_PROGRESS:
                return "now"  # another rebalance began: join it, same member id
            if exc.code in (ErrorCode.ILLEGAL_GENERATION, ErrorCode.UNKNOWN_MEMBER_ID):
                self.member_id, self.generation = "", -1
                return "now"
            if exc.retriable:
                return "later"
            raise
        except _CONNECTION_ERRORS:
            return "later"
        if not isinstance(synced, SyncGroupResponse):
            raise ProtocolError(f"SYNC_GROUP answered with {type(synced).__name__}")
        self.assignment = _flatten(synced.topics)
        self.state = MemberState.STABLE
        self.last_heartbeat = trio.current_time()
        log.info(
            "event=group_joined group=%s member=%s generation=%d leader=%s strategy=%s "
            "partitions=%s",
            cfg.group_id,
            self.member_id,
            self.generation,
            self.leader_id == self.member_id,
            self.strategy,
            [f"{t}-{p}" for t, p in self.assignment],
        )
        return None

    # ------------------------------------------------------------------ heartbeat

    async def heartbeat(self) -> None:
        """One HEARTBEAT (only when STABLE). REBALANCE_IN_PROGRESS asks for a rejoin;
        ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID lose the membership.
        Raises a retriable ``RaftlogError`` when the coordinator could not be reached."""
        if self.state != MemberState.STABLE:
            return
        generation, member_id = self.generation, self.member_id
        cfg = self.config
        timeout_ms = min(cfg.session_timeout_ms, cfg.request_timeout_ms)
        try:
            await self.coordinator.request(
                HeartbeatRequest(cfg.group_id, generation, member_id), timeout_ms=timeout_ms
            )
        except BrokerError as exc:
            if (
                self.state != MemberState.STABLE
                or self.generation != generation
                or self.member_id != member_id
            ):
                return  # about a generation we already left
            if exc.code == ErrorCode.REBALANCE_IN_PROGRESS:
                self.request_rejoin("the coordinator started a rebalance")
            elif exc.code in FENCED:
                self._lose(f"heartbeat answered {exc.code.name}")
            elif exc.retriable:
                raise
            else:
                log.warning("event=heartbeat_failed group=%s error=%s", cfg.group_id, exc)
            return
        self.last_heartbeat = trio.current_time()

    async def run_heartbeats(self) -> None:
        """Heartbeat every ``heartbeat_interval_ms`` while STABLE (also once a rejoin is
        asked for, until the consumer's poll starts it: the coordinator waits up to the
        rebalance timeout for it, and must not expire the member meanwhile), forever
        (cancel to stop); after a failure to reach the coordinator, again after
        ``retry_backoff_ms``."""
        interval = self.config.heartbeat_interval_ms / 1000
        failures = 0
        while self.state != MemberState.CLOSED:
            delay = interval
            # also while a rejoin is pending: the member stays alive until its poll rejoins
            if self.state == MemberState.STABLE:
                try:
                    await self.heartbeat()
                    failures = 0
                except RaftlogError as exc:
                    failures += 1
                    delay = min(interval, self._backoff(failures))
                    log.info("event=heartbeat_retry group=%s error=%s", self.group_id, exc)
            await trio.sleep(delay)

    # ------------------------------------------------------------------ commit, leave

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit as a member of the current generation. Raises ``CommitFailedError`` when
        the coordinator fences the commit (the partitions are someone else's now: nothing
        was committed) or when this member is between generations."""
        if not offsets:
            return
        if self.state != MemberState.STABLE:
            raise CommitFailedError(
                f"group {self.group_id!r}: this member is rebalancing (it holds no "
                "partitions until it rejoins), so the offsets were not committed; poll() "
                "rejoins the group",
                ErrorCode.REBALANCE_IN_PROGRESS,
            )
        generation, member_id = self.generation, self.member_id
        try:
            await commit_offsets(self.coordinator, self.group_id, offsets, generation, member_id)
        except BrokerError as exc:
            if exc.code not in FENCED | {ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.NOT_OWNER}:
                raise
            if self.generation == generation and self.member_id == member_id:
                if exc.code == ErrorCode.REBALANCE_IN_PROGRESS:
                    self.request_rejoin("an offset commit found the group rebalancing")
                elif exc.code in FENCED:
                    self._lose(f"offset commit answered {exc.code.name}")
            raise CommitFailedError(
                f"offset commit to group {self.group_id!r} refused ({exc.code.name}): this "
                f"member (generation {generation}) lost its partitions to a rebalance, so "
                "the offsets were not committed; their records after the last commit will "
                "be read again by the partitions' next owner",
                exc.code,
            ) from exc

    async def leave(self, *, final: bool = True) -> None:
        """Leave the group (LEAVE_GROUP; a static member does not send it) and stop; with
        ``final`` False the member may join again later, as a new member. Failures are
        logged: the coordinator expires the member after its session timeout anyway."""
        member_id = self.member_id
        static = self.config.instance_id is not None
        self.state = MemberState.CLOSED if final else MemberState.UNJOINED
        self.member_id = ""
        self.assignment = []
        self.generation = -1
        if not member_id or static:
            return
        try:
            await self.coordinator.request(LeaveGroupRequest(self.group_id, member_id))
            log.info("event=group_left group=%s member=%s", self.group_id, member_id)
        except RaftlogError as exc:
            log.info("event=group_leave_failed group=%s error=%s", self.group_id, exc)

    def close(self) -> None:
        """Stop without telling the coordinator (it expires the member)."""
        self.state = MemberState.CLOSED


# ---------------------------------------------------------------------- the listener


PartitionsCallback = Callable[[list[TopicPartition]], object]


class ConsumerRebalanceListener:
    """A base for rebalance listeners (Kafka's ConsumerRebalanceListener): override what
    you need. Any object with some of these methods works as well.

    Example::

        class SaveProgress(ConsumerRebalanceListener):
            def on_partitions_revoked(self, partitions):
                db.flush()  # before another member takes these partitions over

        consumer.subscribe(["orders"], listener=SaveProgress())
    """

    def on_partitions_revoked(self, partitions: list[TopicPartition]) -> object:
        """Before a rebalance takes these partitions away (all of them: eager protocol);
        with auto-commit, their positions were just committed."""
        return None

    def on_partitions_assigned(self, partitions: list[TopicPartition]) -> object:
        """After a rebalance, with this member's new partitions (maybe none); their
        positions are looked up after this returns (a ``seek`` here wins)."""
        return None

    def on_partitions_lost(self, partitions: list[TopicPartition]) -> object:
        """The membership was lost (the group went on without this member): these
        partitions may already be someone else's, so nothing can be committed. Calls
        ``on_partitions_revoked`` unless overridden."""
        return self.on_partitions_revoked(partitions)


class Listener:
    """Calls a user's rebalance listener: an object with any of
    ``on_partitions_revoked``, ``on_partitions_assigned``, ``on_partitions_lost`` (each
    taking a list of ``TopicPartition``), and/or the callables ``on_revoked``,
    ``on_assigned``, ``on_lost`` (these win over the object's methods).

    A callback may be a coroutine function (awaited, for ``AsyncConsumer``). With
    ``in_thread`` (the blocking ``Consumer``) each call runs in a worker thread, so it may
    call the blocking consumer's methods (``commit``, ``seek``, ``position``...).
    ``on_lost`` falls back to ``on_revoked``. An exception from a callback is logged and
    kept in ``error`` (the consumer raises it from ``poll`` once the rebalance step is
    done)."""

    def __init__(
        self,
        listener: object | None = None,
        *,
        on_revoked: PartitionsCallback | None = None,
        on_assigned: PartitionsCallback | None = None,
        on_lost: PartitionsCallback | None = None,
        in_thread: bool = False,
    ) -> None:
        def pick(given: PartitionsCallback | None, name: str) -> PartitionsCallback | None:
            if given is not None:
                if not callable(given):
                    raise TypeError(f"{name} must be callable, not {given!r}")
                return given
            method = getattr(listener, name, None)
            return method if callable(method) else None

        self.on_revoked = pick(on_revoked, "on_partitions_revoked")
        self.on_assigned = pick(on_assigned, "on_partitions_assigned")
        self.on_lost = pick(on_lost, "on_partitions_lost") or self.on_revoked
        if listener is not None and not (self.on_revoked or self.on_assigned or self.on_lost):
            raise TypeError(
                f"{listener!r} is not a rebalance listener: it has none of "
                "on_partitions_revoked, on_partitions_assigned, on_partitions_lost"
            )
        self.in_thread = in_thread
        self.error: Exception | None = None

    async def revoked(self, tps: list[TopicPartition]) -> None:
        await self._call(self.on_revoked, tps, "on_partitions_revoked")

    async def assigned(self, tps: list[TopicPartition]) -> None:
        await self._call(self.on_assigned, tps, "on_partitions_assigned")

    async def lost(self, tps: list[TopicPartition]) -> None:
        await self._call(self.on_lost, tps, "on_partitions_lost")

    async def _call(
        self, fn: PartitionsCallback | None, tps: list[TopicPartition], what: str
    ) -> None:
        if fn is None:
            return
        try:
            if self.in_thread:
                result: Any = await trio.to_thread.run_sync(fn, list(tps))
            else:
                result = fn(list(tps))
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.error("event=rebalance_listener_failed callback=%s error=%r", what, exc)
            if self.error is None:
                self.error = exc

    def take_error(self) -> Exception | None:
        error, self.error = self.error, None
        return error


CommitCallback = Callable[[dict[TopicPartition, int], Exception | None], object]


async def call_back(
    fn: CommitCallback,
    offsets: dict[TopicPartition, int],
    error: Exception | None,
    *,
    in_thread: bool,
) -> None:
    """Call a commit callback (in a worker thread with ``in_thread``); its own failure is
    logged."""
    try:
        if in_thread:
            result: Any = await trio.to_thread.run_sync(fn, offsets, error)
        else:
            result = fn(offsets, error)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        log.error("event=commit_callback_failed error=%r", exc)


__all__ = [
    "STRATEGIES",
    "CommitCallback",
    "ConsumerRebalanceListener",
    "Coordinator",
    "GroupConfig",
    "GroupMember",
    "GroupRequester",
    "Listener",
    "MemberState",
    "TopicPartition",
    "call_back",
    "commit_offsets",
    "fetch_committed",
]
