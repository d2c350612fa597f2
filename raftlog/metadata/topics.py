"""Topic ops of the metadata model: create, delete, alter configs, add partitions, and the
partition leaders reported by the partitions' own Raft groups.

State layout (plain data, inside ``state["topics"]``)::

    name -> {"topic_id": int, "replication_factor": int, "configs": {key: value},
             "partitions": {p: {"replicas": [broker ids, preferred leader first],
                                "leader": int | None, "leader_term": int}}}

``topic_id`` is the version of the change that created the topic, so a topic deleted and
created again under the same name is told apart. Leader reports are fenced by Raft term: an
older term never overwrites a newer one. Within one term Raft elects at most one leader, so
"leader L in term t" is a fact and "no leader in term t" only a lack of news: a report of no
leader never clears a known leader of the same term (a no-op success), a leader fills in an
unknown one (a change), and a different leader for the same term is rejected as impossible.
An identical report is a no-op success: ``changed`` is false and the version stays.
"""

from __future__ import annotations

from typing import Any

from raftlog.config import TOPIC_CONFIG_KEYS, validate_topic_configs
from raftlog.errors import ErrorCode, InvalidConfigError
from raftlog.metadata.commands import (
    INT32_MAX,
    INT64_MAX,
    Command,
    Ctx,
    Handler,
    Rejected,
    dict_of,
    int_in,
    invalid,
    list_of,
    present,
    req_int,
    str_of,
    topic_name,
)
from raftlog.metadata.placement import Candidate, place_partitions

PARTITIONS_PER_TOPIC_MAX = 10_000
PARTITIONS_TOTAL_MAX = 200_000
"""Cap on partitions in the whole cluster: it bounds the state and every placement's work."""
REPLICATION_FACTOR_MAX = 16
TOPIC_CONFIGS_MAX = 100
NO_TERM = -1
"""The leader term of a partition before any report."""


def partitions_on(state: dict[str, Any], broker_id: int) -> list[tuple[str, int]]:
    """Every (topic, partition) with a replica on ``broker_id``, sorted."""
    topics = state["topics"]
    return [
        (name, p)
        for name in sorted(topics)
        for p in sorted(topics[name]["partitions"])
        if broker_id in topics[name]["partitions"][p]["replicas"]
    ]


def _topic(ctx: Ctx, name: str) -> dict[str, Any]:
    t: dict[str, Any] | None = ctx.state["topics"].get(name)
    if t is None:
        raise Rejected(
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            f"topic {name!r} does not exist; check the name or create it first",
        )
    return t


def _partition_count(value: Any, what: str = "partitions") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{what} must be an integer, got {type(value).__name__}")
    if not 1 <= value <= PARTITIONS_PER_TOPIC_MAX:
        raise Rejected(
            ErrorCode.INVALID_PARTITIONS,
            f"{what} must be in 1..{PARTITIONS_PER_TOPIC_MAX}, got {value}",
        )
    return value


def _replication_factor(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"replication_factor must be an integer, got {type(value).__name__}")
    if not 1 <= value <= REPLICATION_FACTOR_MAX:
        raise Rejected(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            f"replication_factor must be in 1..{REPLICATION_FACTOR_MAX}, got {value}",
        )
    return value


def _configs(value: Any, replication_factor: int | None) -> dict[str, str]:
    """Validated, normalized topic configs; ``INVALID_CONFIG`` names the bad key."""
    raw = {} if value is None else dict_of(value, "configs", TOPIC_CONFIGS_MAX)
    for key in sorted(raw, key=repr):
        str_of(key, "a config key", 64)
        str_of(raw[key], f"config {key}", 64, empty_ok=True)
    try:
        configs = validate_topic_configs(raw)
    except InvalidConfigError as e:
        raise Rejected(ErrorCode.INVALID_CONFIG, e.message) from None
    isr = configs.get("min.insync.replicas")
    if isr is not None and replication_factor is not None and int(isr) > replication_factor:
        raise Rejected(
            ErrorCode.INVALID_CONFIG,
            f"min.insync.replicas is {isr} but the replication factor is "
            f"{replication_factor}: acks=all writes could never succeed; lower it",
        )
    return configs


def _explicit_assignments(value: Any, count: int | None, rf: int | None) -> list[list[int]]:
    """Replica lists given by the operator: the shape is checked here, the brokers by
    ``_check_known_brokers``."""
    lists = list_of(value, "assignments", PARTITIONS_PER_TOPIC_MAX)
    out: list[list[int]] = []
    for i, replicas in enumerate(lists):
        what = f"assignments[{i}]"
        ids = [
            int_in(b, f"{what} broker id", 0, INT32_MAX)
            for b in list_of(replicas, what, REPLICATION_FACTOR_MAX)
        ]
        if len(set(ids)) != len(ids):
            raise invalid(f"{what} names a broker twice: {ids}; replicas must be distinct")
        out.append(ids)
    widths = sorted({len(r) for r in out})
    if len(widths) > 1 or (rf is not None and widths[0] != rf):
        expected = f"{rf}" if rf is not None else "the same number of"
        raise Rejected(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            f"every partition in assignments must have {expected} replicas; "
            f"found lists of {widths} replicas",
        )
    if count is not None and len(out) != count:
        raise Rejected(
            ErrorCode.INVALID_PARTITIONS,
            f"assignments lists {len(out)} partitions but {count} were asked",
        )
    return out


def _check_known_brokers(ctx: Ctx, assignments: list[list[int]]) -> None:
    brokers = ctx.state["brokers"]
    unknown = sorted({b for replicas in assignments for b in replicas if b not in brokers})
    if unknown:
        raise Rejected(
            ErrorCode.UNKNOWN_BROKER,
            f"assignments name broker(s) {unknown} that are not registered; "
            f"registered: {sorted(brokers)}",
        )


def _check_total(ctx: Ctx, adding: int) -> None:
    topics = ctx.state["topics"]
    total = sum(len(t["partitions"]) for t in topics.values())
    if total + adding > PARTITIONS_TOTAL_MAX:
        raise Rejected(
            ErrorCode.INVALID_PARTITIONS,
            f"the cluster holds {total} partitions; {adding} more would pass the limit of "
            f"{PARTITIONS_TOTAL_MAX}",
        )


def _placed(ctx: Ctx, count: int, rf: int) -> list[list[int]]:
    """Replica lists for ``count`` new partitions on live, non-draining brokers, spread
    against what every broker already holds (see ``placement.py``)."""
    brokers = ctx.state["brokers"]
    if rf > len(brokers):
        raise Rejected(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            f"replication factor {rf} needs {rf} brokers but {len(brokers)} are registered; "
            f"add brokers or lower the replication factor",
        )
    eligible = [
        Candidate(b, brokers[b]["rack"])
        for b in sorted(brokers)
        if brokers[b]["alive"] and not brokers[b]["draining"]
    ]
    if rf > len(eligible):
        raise Rejected(
            ErrorCode.BROKER_NOT_AVAILABLE,
            f"replication factor {rf} needs {rf} live brokers that are not draining; only "
            f"{len(eligible)} are ({[c.broker_id for c in eligible]}): wait for brokers to "
            f"return or lower the replication factor",
        )
    replica_counts: dict[int, int] = {}
    leader_counts: dict[int, int] = {}
    topics = ctx.state["topics"]
    for name in sorted(topics):
        parts = topics[name]["partitions"]
        for p in sorted(parts):
            replicas = parts[p]["replicas"]
            leader_counts[replicas[0]] = leader_counts.get(replicas[0], 0) + 1
            for b in replicas:
                replica_counts[b] = replica_counts.get(b, 0) + 1
    return place_partitions(eligible, replica_counts, leader_counts, count, rf)


def _new_partition(replicas: list[int]) -> dict[str, Any]:
    return {"replicas": replicas, "leader": None, "leader_term": NO_TERM}


def _create_topic(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    name = topic_name(present(cmd, "topic"))
    count = None if cmd.get("partitions") is None else _partition_count(cmd["partitions"])
    rf = (
        None
        if cmd.get("replication_factor") is None
        else _replication_factor(cmd["replication_factor"])
    )
    explicit = cmd.get("assignments")
    if explicit is None:
        if count is None or rf is None:
            raise invalid(
                "create_topic needs partitions and replication_factor, or explicit assignments"
            )
        assignments = None
    else:
        assignments = _explicit_assignments(explicit, count, rf)
        count, rf = len(assignments), len(assignments[0])
    configs = _configs(cmd.get("configs"), rf)
    if name in ctx.state["topics"]:
        raise Rejected(
            ErrorCode.TOPIC_ALREADY_EXISTS,
            f"topic {name!r} already exists; alter it, or delete it first",
        )
    if assignments is None:
        assignments = _placed(ctx, count, rf)
    else:
        _check_known_brokers(ctx, assignments)
    _check_total(ctx, count)
    topic_id = ctx.state["version"] + 1  # the version this change produces
    ctx.txn.set(
        ctx.state["topics"],
        name,
        {
            "topic_id": topic_id,
            "replication_factor": rf,
            "configs": configs,
            "partitions": {p: _new_partition(r) for p, r in enumerate(assignments)},
        },
    )
    ctx.touch("topics", name)
    return {"topic": name, "topic_id": topic_id, "partitions": count, "replication_factor": rf}


def _delete_topic(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    name = topic_name(present(cmd, "topic"))
    topic_id = _topic(ctx, name)["topic_id"]
    ctx.txn.delete(ctx.state["topics"], name)
    ctx.touch("topics", name)
    # committed offsets of a deleted topic go with it (a new topic of that name starts over)
    offsets = ctx.state["offsets"]
    for group_id in sorted(offsets):
        by_topic = offsets[group_id]
        if name in by_topic:
            ctx.txn.delete(by_topic, name)
            if not by_topic:
                ctx.txn.delete(offsets, group_id)
            ctx.touch("offsets", group_id)
    return {"topic": name, "topic_id": topic_id}


def _alter_configs(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    name = topic_name(present(cmd, "topic"))
    sets = {} if cmd.get("set") is None else dict_of(cmd["set"], "set", TOPIC_CONFIGS_MAX)
    deletes = (
        []
        if cmd.get("delete") is None
        else [
            str_of(k, "delete key", 64)
            for k in list_of(cmd["delete"], "delete", TOPIC_CONFIGS_MAX, empty_ok=True)
        ]
    )
    both = sorted(set(deletes) & {k for k in sets if isinstance(k, str)})
    if both:
        raise invalid(f"config key(s) {both} are both set and deleted; pick one")
    unknown = [k for k in deletes if k not in TOPIC_CONFIG_KEYS]
    if unknown:
        raise Rejected(
            ErrorCode.INVALID_CONFIG,
            f"unknown topic config(s) {unknown}; known keys: {', '.join(TOPIC_CONFIG_KEYS)}",
        )
    t = _topic(ctx, name)
    merged: dict[Any, Any] = {k: v for k, v in t["configs"].items() if k not in deletes}
    merged.update(sets)
    configs = _configs(merged, t["replication_factor"])
    ctx.txn.set(t, "configs", configs)
    ctx.touch("topics", name)
    return {"topic": name, "configs": dict(configs)}


def _add_partitions(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    name = topic_name(present(cmd, "topic"))
    count = _partition_count(present(cmd, "partitions"))
    explicit = cmd.get("assignments")
    t = _topic(ctx, name)
    parts = t["partitions"]
    old = len(parts)
    if count <= old:
        raise Rejected(
            ErrorCode.INVALID_PARTITIONS,
            f"topic {name!r} has {old} partitions; the new count must be larger "
            f"(partitions cannot be removed), got {count}",
        )
    rf = t["replication_factor"]
    if explicit is None:
        assignments = _placed(ctx, count - old, rf)
    else:
        assignments = _explicit_assignments(explicit, count - old, rf)
        _check_known_brokers(ctx, assignments)
    _check_total(ctx, count - old)
    for i, replicas in enumerate(assignments):
        ctx.txn.set(parts, old + i, _new_partition(replicas))
    ctx.touch("topics", name)
    return {"topic": name, "partitions": count}


def _report_leader(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    name = topic_name(present(cmd, "topic"))
    partition = req_int(cmd, "partition", 0, PARTITIONS_PER_TOPIC_MAX - 1)
    leader_value = present(cmd, "leader")
    leader = None if leader_value is None else int_in(leader_value, "leader", 0, INT32_MAX)
    term = req_int(cmd, "term", 0, INT64_MAX)
    parts = _topic(ctx, name)["partitions"]
    part = parts.get(partition)
    if part is None:
        raise Rejected(
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            f"topic {name!r} has {len(parts)} partitions; partition {partition} does not exist",
        )
    if leader is not None and leader not in part["replicas"]:
        raise invalid(
            f"broker {leader} is not a replica of {name}-{partition} (replicas "
            f"{part['replicas']}); only a replica can lead it"
        )
    stored_term, stored_leader = part["leader_term"], part["leader"]
    if term < stored_term:
        raise Rejected(
            ErrorCode.STALE_TERM,
            f"the report for {name}-{partition} is from term {term} but term {stored_term} is "
            f"already known; it was superseded and changes nothing",
        )
    if term > stored_term:
        ctx.txn.set(part, "leader", leader)
        ctx.txn.set(part, "leader_term", term)
    elif leader is not None and leader != stored_leader:
        if stored_leader is not None:
            raise invalid(
                f"{name}-{partition} already has leader {stored_leader} in term {term}; Raft "
                f"elects one leader per term, so a report of {leader} for it is wrong"
            )
        ctx.txn.set(part, "leader", leader)
    ctx.touch("topics", name)
    return {
        "topic": name,
        "partition": partition,
        "leader": part["leader"],
        "leader_term": part["leader_term"],
    }


OPS: dict[str, tuple[Handler, frozenset[str]]] = {
    "create_topic": (
        _create_topic,
        frozenset({"topic", "partitions", "replication_factor", "configs", "assignments"}),
    ),
    "delete_topic": (_delete_topic, frozenset({"topic"})),
    "alter_configs": (_alter_configs, frozenset({"topic", "set", "delete"})),
    "add_partitions": (_add_partitions, frozenset({"topic", "partitions", "assignments"})),
    "report_leader": (_report_leader, frozenset({"topic", "partition", "leader", "term"})),
}
