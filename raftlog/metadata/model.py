"""The cluster metadata as a pure, replicated state machine.

How it works: every change to the metadata is a *command*, a plain dict
``{"op": name, "rid": request id, ...arguments}`` that ``quorum.py`` replicates through
pysyncobj and every broker then hands to ``MetadataModel.apply`` in the same order. ``apply``
returns a plain-dict result, ``{"ok": True, "version": v, "changed": bool, ...}`` or
``{"ok": False, "code": ErrorCode, "message": ...}``; the version is the number of changes
applied so far, and readers get an immutable ``MetadataImage`` of it (``image()``).

Rules it keeps (each one is what pysyncobj needs, see NOTES-dependencies.md):

- **Never raise.** A replicated method that raises wedges the pysyncobj node. Malformed input
  is ``INVALID_REQUEST``; anything unexpected is ``UNKNOWN`` with the exception text, and the
  undo journal (``commands.Txn``) puts the state back exactly as it was.
- **Deterministic.** No clock (times such as ``now_ms`` come in the command), no randomness,
  no I/O, and no iteration over a collection whose order could differ between processes.
- **Idempotent under a request id.** Every state-changing op needs a ``rid``. The results of
  the last ``RIDS_MAX`` changes are kept by rid (part of the snapshot, oldest evicted first);
  applying a known rid again returns the first result and changes nothing. Rejected commands
  and no-ops change nothing, so they are not recorded: retrying one evaluates it again, which
  is safe because its first attempt had no effect. A rid thus takes effect at most once.
- **One change, one version.** A command that changes the state bumps ``version`` by exactly
  one; a rejected, no-op or duplicate command does not. ``barrier`` (no rid needed) returns
  the current version for linearizable reads.
- **Plain state.** Only dict/list/str/int/bool/None, dict keys str or int, so that pysyncobj
  can pickle it and the snapshot survives CBOR.

Ops (arguments; extra result fields), grouped by module:

- here: ``barrier`` (); ``register_broker`` (broker_id, client_address, internal_address,
  rack=None, now_ms; broker_id, new), ``broker_heartbeat`` (broker_id, now_ms; broker_id,
  draining), ``expire_brokers`` (now_ms, timeout_ms; expired), ``drain_broker`` (broker_id,
  draining=True; broker_id, draining), ``remove_broker`` (broker_id; broker_id),
  ``allocate_producer_ids`` (broker_id, count; first, count): a block of idempotent
  producer ids for one broker to hand out (ids are never reused: ``producer_ids`` is the
  next free one);
- ``topics.py``: ``create_topic``, ``delete_topic``, ``alter_configs``, ``add_partitions``,
  ``report_leader``;
- ``groups.py``: ``group_put``, ``group_delete``, ``offset_commit``, ``offset_commit_many``,
  ``offset_reset``, ``offset_delete``.

Each handler module's docstring states its state layout and rules; ``image.py`` holds the
read view.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from raftlog.errors import ErrorCode
from raftlog.metadata import groups, topics
from raftlog.metadata.commands import (
    INT32_MAX,
    INT64_MAX,
    RID_CHARS_MAX,
    Command,
    Ctx,
    Handler,
    Rejected,
    Result,
    Txn,
    address_of,
    check_fields,
    error_result,
    invalid,
    opt_bool,
    opt_str,
    present,
    req_int,
    str_of,
)
from raftlog.metadata.image import (
    BrokerImage,
    GroupImage,
    MetadataImage,
    TopicImage,
    broker_image,
    group_image,
    offsets_image,
    topic_image,
)

SNAPSHOT_FORMAT = 1
RIDS_MAX = 20_000
"""How many request ids (of state-changing commands) are remembered for idempotence."""
BROKERS_MAX = 10_000
RACK_CHARS_MAX = 64


@dataclass(frozen=True, slots=True)
class _Op:
    handler: Handler
    fields: frozenset[str]
    read_only: bool = False


# ------------------------------------------------------------------ brokers


def _broker(ctx: Ctx, broker_id: int) -> dict[str, Any]:
    b: dict[str, Any] | None = ctx.state["brokers"].get(broker_id)
    if b is None:
        raise Rejected(
            ErrorCode.UNKNOWN_BROKER,
            f"broker {broker_id} is not registered; start it (it registers itself) or check the id",
        )
    return b


def _broker_id(cmd: Command) -> int:
    return req_int(cmd, "broker_id", 0, INT32_MAX)


def _barrier(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    return {}


def _register_broker(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    broker_id = _broker_id(cmd)
    client = address_of(present(cmd, "client_address"), "client_address")
    internal = address_of(present(cmd, "internal_address"), "internal_address")
    rack = opt_str(cmd, "rack", RACK_CHARS_MAX)
    now_ms = req_int(cmd, "now_ms", 0, INT64_MAX)
    brokers = ctx.state["brokers"]
    old = brokers.get(broker_id)
    if old is None and len(brokers) >= BROKERS_MAX:
        raise invalid(f"the cluster already has {BROKERS_MAX} brokers; remove unused ones first")
    ctx.txn.set(
        brokers,
        broker_id,
        {
            "client_address": client,
            "internal_address": internal,
            "rack": rack,
            "alive": True,
            # a drain is the operator's decision: a restart does not undo it
            "draining": old["draining"] if old else False,
            "last_heartbeat_ms": max(now_ms, old["last_heartbeat_ms"]) if old else now_ms,
        },
    )
    ctx.touch("brokers", broker_id)
    return {"broker_id": broker_id, "new": old is None}


def _broker_heartbeat(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    broker_id = _broker_id(cmd)
    now_ms = req_int(cmd, "now_ms", 0, INT64_MAX)
    b = _broker(ctx, broker_id)
    ctx.txn.set(b, "alive", True)
    # heartbeats may arrive out of order: the newest time wins
    ctx.txn.set(b, "last_heartbeat_ms", max(now_ms, b["last_heartbeat_ms"]))
    ctx.touch("brokers", broker_id)
    return {"broker_id": broker_id, "draining": b["draining"]}


def _expire_brokers(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    now_ms = req_int(cmd, "now_ms", 0, INT64_MAX)
    timeout_ms = req_int(cmd, "timeout_ms", 1, INT64_MAX)
    brokers = ctx.state["brokers"]
    expired = []
    for broker_id in sorted(brokers):
        b = brokers[broker_id]
        if b["alive"] and now_ms - b["last_heartbeat_ms"] > timeout_ms:
            ctx.txn.set(b, "alive", False)
            ctx.touch("brokers", broker_id)
            expired.append(broker_id)
    return {"expired": expired}


def _drain_broker(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    broker_id = _broker_id(cmd)
    draining = opt_bool(cmd, "draining", True)
    ctx.txn.set(_broker(ctx, broker_id), "draining", draining)
    ctx.touch("brokers", broker_id)
    return {"broker_id": broker_id, "draining": draining}


PRODUCER_ID_BLOCK_MAX = 1_000_000


def _allocate_producer_ids(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    _broker(ctx, _broker_id(cmd))
    count = req_int(cmd, "count", 1, PRODUCER_ID_BLOCK_MAX)
    first: int = ctx.state["producer_ids"]
    if first + count > INT64_MAX:
        raise Rejected(ErrorCode.UNKNOWN, "the producer id space is exhausted")
    ctx.txn.set(ctx.state, "producer_ids", first + count)
    return {"first": first, "count": count}


def _remove_broker(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    broker_id = _broker_id(cmd)
    _broker(ctx, broker_id)
    held = topics.partitions_on(ctx.state, broker_id)
    if held:
        names = ", ".join(f"{t}-{p}" for t, p in held[:10])
        more = f" and {len(held) - 10} more" if len(held) > 10 else ""
        raise Rejected(
            ErrorCode.BROKER_HAS_REPLICAS,
            f"broker {broker_id} still holds replicas of {len(held)} partition(s): "
            f"{names}{more}; move them to other brokers (or delete their topics) first",
        )
    ctx.txn.delete(ctx.state["brokers"], broker_id)
    ctx.touch("brokers", broker_id)
    return {"broker_id": broker_id}


_OPS: dict[str, _Op] = {
    "barrier": _Op(_barrier, frozenset(), read_only=True),
    "register_broker": _Op(
        _register_broker,
        frozenset({"broker_id", "client_address", "internal_address", "rack", "now_ms"}),
    ),
    "broker_heartbeat": _Op(_broker_heartbeat, frozenset({"broker_id", "now_ms"})),
    "expire_brokers": _Op(_expire_brokers, frozenset({"now_ms", "timeout_ms"})),
    "drain_broker": _Op(_drain_broker, frozenset({"broker_id", "draining"})),
    "remove_broker": _Op(_remove_broker, frozenset({"broker_id"})),
    "allocate_producer_ids": _Op(_allocate_producer_ids, frozenset({"broker_id", "count"})),
}
for _name, (_handler, _fields) in {**topics.OPS, **groups.OPS}.items():
    _OPS[_name] = _Op(_handler, _fields)
OPS: tuple[str, ...] = tuple(sorted(_OPS))
"""Every op name ``apply`` knows."""


# ------------------------------------------------------------------ the model


def _empty_state() -> dict[str, Any]:
    return {
        "version": 0,
        "brokers": {},
        "topics": {},
        "groups": {},
        "offsets": {},
        "producer_ids": 0,
    }


_IMAGE_PARTS = ("brokers", "topics", "groups", "offsets")


class MetadataModel:
    """The metadata state machine. Not thread-safe: ``apply``, ``to_snapshot`` and ``image``
    run on one thread (pysyncobj's); the images it returns are immutable and may be handed
    to any thread."""

    def __init__(self) -> None:
        self._state: dict[str, Any] = _empty_state()
        self._rids: dict[str, Result] = {}
        self._reset_image()

    def _reset_image(self) -> None:
        self._image: MetadataImage | None = None
        self._parts: dict[str, dict[Any, Any]] = {kind: {} for kind in _IMAGE_PARTS}
        # every key is dirty until the first image is built
        self._dirty: dict[str, set[Any]] = {kind: set(self._state[kind]) for kind in _IMAGE_PARTS}

    @property
    def version(self) -> int:
        v: int = self._state["version"]
        return v

    # -------------------------------------------------------------- apply

    def apply(self, command: Any) -> Result:
        """Apply one command and return its result; never raises (see the module doc)."""
        try:
            return self._apply(command)
        except Exception as e:  # the last line of defence: a raise would wedge pysyncobj
            return error_result(ErrorCode.UNKNOWN, f"internal error: {type(e).__name__}: {e}")

    def _apply(self, command: Any) -> Result:
        if not isinstance(command, dict):
            return error_result(
                ErrorCode.INVALID_REQUEST,
                f"a command must be a map with an 'op' field, got {type(command).__name__}",
            )
        op_name = command.get("op")
        if not isinstance(op_name, str) or op_name not in _OPS:
            shown = repr(op_name)[:60]
            return error_result(
                ErrorCode.INVALID_REQUEST,
                f"unknown op {shown}; known ops: {', '.join(OPS)}",
            )
        op = _OPS[op_name]
        rid = command.get("rid")
        if rid is None:
            if not op.read_only:
                return error_result(
                    ErrorCode.INVALID_REQUEST,
                    f"{op_name} changes the metadata and needs a request id ('rid') so that "
                    f"a retry cannot apply it twice",
                )
        else:
            try:
                str_of(rid, "rid", RID_CHARS_MAX)
            except Rejected as r:
                return error_result(r.code, r.message)
            stored = self._rids.get(rid)
            if stored is not None:
                return copy.deepcopy(stored)

        txn = Txn()
        ctx = Ctx(self._state, txn, self._dirty)
        try:
            check_fields(command, op_name, op.fields | {"op", "rid"})
            extra = op.handler(ctx, command)
            changed = txn.changed
            if changed:
                txn.set(self._state, "version", self._state["version"] + 1)
            result: Result = {"ok": True, "version": self._state["version"], "changed": changed}
            result.update(extra)
        except Rejected as r:
            txn.rollback()
            return error_result(r.code, r.message)
        except Exception as e:
            txn.rollback()
            return error_result(
                ErrorCode.UNKNOWN,
                f"internal error applying {op_name}, nothing was changed: {type(e).__name__}: {e}",
            )
        if changed and rid is not None:
            self._remember(rid, result)
        return copy.deepcopy(result)

    def _remember(self, rid: str, result: Result) -> None:
        self._rids[rid] = copy.deepcopy(result)
        while len(self._rids) > RIDS_MAX:
            del self._rids[next(iter(self._rids))]  # the oldest: dicts keep insertion order

    # -------------------------------------------------------------- snapshots

    def to_snapshot(self) -> dict[str, Any]:
        """The whole state as plain data (a deep copy): picklable, CBOR-encodable, and equal
        for two models that applied the same commands."""
        snap = copy.deepcopy(self._state)
        snap["format"] = SNAPSHOT_FORMAT
        # a list, not a map: the eviction order is part of the state
        snap["rids"] = [[rid, copy.deepcopy(res)] for rid, res in self._rids.items()]
        return snap

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any]) -> MetadataModel:
        """The model a ``to_snapshot`` result describes. Raises ``ValueError`` for a snapshot
        of another format (snapshots come from this code, not from users)."""
        if snapshot.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(
                f"metadata snapshot format {snapshot.get('format')!r} is not "
                f"{SNAPSHOT_FORMAT}; this version of raftlog cannot read it"
            )
        model = cls()
        state = copy.deepcopy(snapshot)
        del state["format"]
        rids = state.pop("rids")
        state.setdefault("producer_ids", 0)  # snapshots older than idempotent producers
        missing = set(_empty_state()) - set(state)
        if missing:
            raise ValueError(f"metadata snapshot lacks {sorted(missing)}")
        model._state = state
        model._rids = {rid: res for rid, res in rids}
        model._reset_image()
        return model

    def __getstate__(self) -> dict[str, Any]:
        return self.to_snapshot()

    def __setstate__(self, snapshot: dict[str, Any]) -> None:
        restored = MetadataModel.from_snapshot(snapshot)
        self._state = restored._state
        self._rids = restored._rids
        self._reset_image()

    # -------------------------------------------------------------- image

    def image(self) -> MetadataImage:
        """The immutable view of the current version. Parts untouched since the last image
        are reused, so calling this once per version costs what changed plus a copy of the
        top-level key maps."""
        if (
            self._image is not None
            and self._image.version == self.version
            and not any(self._dirty.values())
        ):
            return self._image
        state = self._state
        build: dict[str, Callable[[Any, Any], Any]] = {
            "brokers": broker_image,
            "topics": topic_image,
            "groups": group_image,
            "offsets": lambda _key, entry: offsets_image(entry),
        }
        for kind in _IMAGE_PARTS:
            part = self._parts[kind]
            for key in sorted(self._dirty[kind], key=repr):
                entry = state[kind].get(key)
                if entry is None:
                    part.pop(key, None)
                else:
                    part[key] = build[kind](key, entry)
            self._dirty[kind].clear()

        def frozen(kind: str) -> Any:
            part = self._parts[kind]
            return MappingProxyType({k: part[k] for k in sorted(part)})

        self._image = MetadataImage(
            version=self.version,
            brokers=frozen("brokers"),
            topics=frozen("topics"),
            groups=frozen("groups"),
            offsets=frozen("offsets"),
        )
        return self._image


__all__ = [
    "OPS",
    "RIDS_MAX",
    "BrokerImage",
    "GroupImage",
    "MetadataImage",
    "MetadataModel",
    "TopicImage",
]
