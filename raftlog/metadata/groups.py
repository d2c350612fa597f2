"""Consumer-group ops of the metadata model: the coordinator's group record, and committed
offsets fenced by generation.

The coordinator (on the metadata leader's broker) runs Kafka's group protocol and writes its
outcome here with ``group_put``; this module only stores and fences. State layout::

    state["groups"]:  group id -> {"generation": int, "protocol_type": str, "protocol": str,
                                   "leader": member id or "", "state": one of GROUP_STATES,
                                   "members": {member id: {"client_id", "host",
                                               "instance_id", "subscription": [topics],
                                               "session_timeout_ms"}},
                                   "assignment": {member id: {topic: [partitions]}}}
    state["offsets"]: group id -> {topic: {partition: {"offset", "metadata", "commit_ms"}}}

Offsets live apart from the group record: an assign()-mode consumer commits under a group id
that has no members and maybe no record ("simple" commits, generation -1 and member id "").

Fencing rules (Kafka's): a ``group_put`` carries the stored generation (an update within the
generation) or the next one (a rebalance finished); a group that does not exist is at
generation 0. An ``offset_commit`` to a group with members must come from a member of the
current generation and name only partitions the stored assignment gives that member; to a
group without members only a simple commit is accepted. A batch applies all or nothing.
"""

from __future__ import annotations

from typing import Any

from raftlog.errors import ErrorCode
from raftlog.metadata.commands import (
    INT32_MAX,
    INT64_MAX,
    NAME_CHARS_MAX,
    Command,
    Ctx,
    Handler,
    Rejected,
    check_fields,
    dict_of,
    error_result,
    int_in,
    invalid,
    list_of,
    opt_bool,
    present,
    req_int,
    req_str,
    str_of,
    topic_name,
)
from raftlog.metadata.topics import PARTITIONS_PER_TOPIC_MAX

GROUP_STATES = ("CompletingRebalance", "Dead", "Empty", "PreparingRebalance", "Stable")
"""Kafka's group states, the only values ``group_put`` accepts for ``state``."""
GROUPS_MAX = 100_000
MEMBERS_MAX = 1_000
SUBSCRIPTION_TOPICS_MAX = 1_000
ASSIGNED_PARTITIONS_MAX = 100_000
"""Cap on (topic, partition) pairs in one group's assignment."""
OFFSETS_PER_COMMIT_MAX = 10_000
COMMITS_PER_BATCH_MAX = 10_000
OFFSETS_PER_BATCH_MAX = 100_000
OFFSET_METADATA_CHARS_MAX = 4096
"""Kafka's offset.metadata.max.bytes default."""
_MEMBER_FIELDS = frozenset(
    {"client_id", "host", "instance_id", "subscription", "session_timeout_ms"}
)
SESSION_TIMEOUT_MS_DEFAULT = 10_000
SESSION_TIMEOUT_MS_MAX = 30 * 60 * 1000


def _group_id(cmd: Command) -> str:
    return req_str(cmd, "group_id")


def _has_members(ctx: Ctx, group_id: str) -> bool:
    group = ctx.state["groups"].get(group_id)
    return bool(group and group["members"])


def _member(member_id: Any, value: Any) -> dict[str, Any]:
    what = f"member {str(member_id)[:60]!r}"
    entry = dict_of(value, what, len(_MEMBER_FIELDS))
    unknown = sorted(str(k)[:40] for k in entry if k not in _MEMBER_FIELDS)
    if unknown:
        raise invalid(f"{what} has unknown field(s) {unknown}; known: {sorted(_MEMBER_FIELDS)}")
    instance_id = entry.get("instance_id")
    subscription = list_of(
        present(entry, "subscription"),
        f"{what} subscription",
        SUBSCRIPTION_TOPICS_MAX,
        empty_ok=True,
    )
    return {
        "client_id": str_of(
            present(entry, "client_id"), f"{what} client_id", NAME_CHARS_MAX, empty_ok=True
        ),
        "host": str_of(present(entry, "host"), f"{what} host", NAME_CHARS_MAX, empty_ok=True),
        "instance_id": None
        if instance_id is None
        else str_of(instance_id, f"{what} instance_id", NAME_CHARS_MAX),
        "subscription": sorted({topic_name(t, f"{what} subscription") for t in subscription}),
        "session_timeout_ms": int_in(
            entry.get("session_timeout_ms", SESSION_TIMEOUT_MS_DEFAULT),
            f"{what} session_timeout_ms",
            1,
            SESSION_TIMEOUT_MS_MAX,
        ),
    }


def _assignment(value: Any, members: dict[str, Any]) -> dict[str, dict[str, list[int]]]:
    raw = dict_of(value, "assignment", MEMBERS_MAX)
    out: dict[str, dict[str, list[int]]] = {}
    owner: dict[tuple[str, int], str] = {}
    for member_id in sorted(raw, key=repr):
        if member_id not in members:
            raise invalid(
                f"assignment gives partitions to {str(member_id)[:60]!r}, which is not a member"
            )
        by_topic = dict_of(raw[member_id], f"assignment of {member_id!r}", ASSIGNED_PARTITIONS_MAX)
        mine: dict[str, list[int]] = {}
        for topic in sorted(by_topic, key=repr):
            name = topic_name(topic, f"assignment of {member_id!r}")
            parts = list_of(
                by_topic[topic],
                f"assignment of {member_id!r} to {name}",
                PARTITIONS_PER_TOPIC_MAX,
                empty_ok=True,
            )
            for p in parts:
                int_in(p, f"assignment of {member_id!r} to {name}", 0, PARTITIONS_PER_TOPIC_MAX - 1)
                other = owner.setdefault((name, p), member_id)
                if other != member_id:
                    raise invalid(
                        f"{name}-{p} is assigned to both {other!r} and {member_id!r}; a partition "
                        f"has one owner in a generation"
                    )
            if len(owner) > ASSIGNED_PARTITIONS_MAX:
                raise invalid(f"assignment has more than {ASSIGNED_PARTITIONS_MAX} partitions")
            mine[name] = sorted(set(parts))
        out[member_id] = mine
    return out


def _group_put(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    group_id = _group_id(cmd)
    generation = req_int(cmd, "generation", 0, INT32_MAX)
    protocol_type = req_str(cmd, "protocol_type", empty_ok=True)
    protocol = req_str(cmd, "protocol", empty_ok=True)
    leader = req_str(cmd, "leader", empty_ok=True)
    state = req_str(cmd, "state", 32)
    if state not in GROUP_STATES:
        raise invalid(f"state must be one of {', '.join(GROUP_STATES)}, got {state!r}")
    raw_members = dict_of(present(cmd, "members"), "members", MEMBERS_MAX)
    members: dict[str, Any] = {}
    for member_id in sorted(raw_members, key=repr):
        str_of(member_id, "a member id", NAME_CHARS_MAX)
        members[member_id] = _member(member_id, raw_members[member_id])
    instances = [m["instance_id"] for m in members.values() if m["instance_id"] is not None]
    if len(set(instances)) != len(instances):
        raise invalid("two members share one instance_id; static members must be unique")
    if (leader or members) and leader not in members:
        raise invalid(
            f"leader {leader[:60]!r} is not a member; it must be one of the members, or empty "
            f"when there are none"
        )
    assignment = _assignment(present(cmd, "assignment"), members)

    groups = ctx.state["groups"]
    old = groups.get(group_id)
    stored = old["generation"] if old else 0
    if generation not in (stored, stored + 1):
        raise Rejected(
            ErrorCode.ILLEGAL_GENERATION,
            f"group {group_id!r} is at generation {stored}; a put must carry {stored} (an "
            f"update) or {stored + 1} (a new generation), got {generation}",
        )
    if old is None and len(groups) >= GROUPS_MAX:
        raise invalid(f"the cluster already has {GROUPS_MAX} groups; delete unused ones first")
    ctx.txn.set(
        groups,
        group_id,
        {
            "generation": generation,
            "protocol_type": protocol_type,
            "protocol": protocol,
            "leader": leader,
            "state": state,
            "members": members,
            "assignment": assignment,
        },
    )
    ctx.touch("groups", group_id)
    return {"group_id": group_id, "generation": generation}


def _group_delete(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    group_id = _group_id(cmd)
    force = opt_bool(cmd, "force", False)
    groups, offsets = ctx.state["groups"], ctx.state["offsets"]
    if group_id not in groups and group_id not in offsets:
        raise Rejected(
            ErrorCode.GROUP_ID_NOT_FOUND, f"group {group_id!r} has no record and no offsets"
        )
    if _has_members(ctx, group_id) and not force:
        raise Rejected(
            ErrorCode.NON_EMPTY_GROUP,
            f"group {group_id!r} has {len(groups[group_id]['members'])} active member(s); "
            f"stop its consumers first (or delete with force)",
        )
    ctx.txn.delete(groups, group_id)
    ctx.txn.delete(offsets, group_id)
    ctx.touch("groups", group_id)
    ctx.touch("offsets", group_id)
    return {"group_id": group_id}


def _partition_refs(value: Any, what: str, *, with_offsets: bool) -> list[dict[str, Any]]:
    """A list of {topic, partition[, offset, metadata, commit_ms]}, each pair at most once."""
    fields = (
        frozenset({"topic", "partition", "offset", "metadata", "commit_ms"})
        if with_offsets
        else frozenset({"topic", "partition"})
    )
    out = []
    seen: set[tuple[str, int]] = set()
    for i, raw in enumerate(list_of(value, what, OFFSETS_PER_COMMIT_MAX)):
        entry = dict_of(raw, f"{what}[{i}]", len(fields))
        unknown = sorted(str(k)[:40] for k in entry if k not in fields)
        if unknown:
            raise invalid(f"{what}[{i}] has unknown field(s) {unknown}; known: {sorted(fields)}")
        ref: dict[str, Any] = {
            "topic": topic_name(present(entry, "topic"), f"{what}[{i}]"),
            "partition": int_in(
                present(entry, "partition"), f"{what}[{i}] partition", 0, INT32_MAX
            ),
        }
        key = (ref["topic"], ref["partition"])
        if key in seen:
            raise invalid(f"{what} names {key[0]}-{key[1]} twice")
        seen.add(key)
        if with_offsets:
            ref["offset"] = int_in(present(entry, "offset"), f"{what}[{i}] offset", 0, INT64_MAX)
            ref["commit_ms"] = int_in(
                present(entry, "commit_ms"), f"{what}[{i}] commit_ms", 0, INT64_MAX
            )
            metadata = entry.get("metadata", "")
            if isinstance(metadata, str) and len(metadata) > OFFSET_METADATA_CHARS_MAX:
                raise Rejected(
                    ErrorCode.OFFSET_METADATA_TOO_LARGE,
                    f"{what}[{i}] metadata is {len(metadata)} characters; the limit is "
                    f"{OFFSET_METADATA_CHARS_MAX}",
                )
            ref["metadata"] = str_of(
                metadata,
                f"{what}[{i}] metadata",
                OFFSET_METADATA_CHARS_MAX,
                empty_ok=True,
                printable=False,
            )
        out.append(ref)
    return out


def _check_partitions_exist(ctx: Ctx, refs: list[dict[str, Any]]) -> None:
    topics = ctx.state["topics"]
    for ref in refs:
        t = topics.get(ref["topic"])
        if t is None or ref["partition"] not in t["partitions"]:
            raise Rejected(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                f"{ref['topic']}-{ref['partition']} does not exist; nothing was committed",
            )


def _store_offsets(ctx: Ctx, group_id: str, refs: list[dict[str, Any]]) -> None:
    offsets = ctx.state["offsets"]
    by_topic = offsets.get(group_id)
    if by_topic is None:
        by_topic = {}
        ctx.txn.set(offsets, group_id, by_topic)
    for ref in refs:
        by_partition = by_topic.get(ref["topic"])
        if by_partition is None:
            by_partition = {}
            ctx.txn.set(by_topic, ref["topic"], by_partition)
        ctx.txn.set(
            by_partition,
            ref["partition"],
            {"offset": ref["offset"], "metadata": ref["metadata"], "commit_ms": ref["commit_ms"]},
        )
    ctx.touch("offsets", group_id)


def _offset_commit(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    group_id = _group_id(cmd)
    generation = req_int(cmd, "generation", -1, INT32_MAX)
    member_id = req_str(cmd, "member_id", empty_ok=True)
    refs = _partition_refs(present(cmd, "offsets"), "offsets", with_offsets=True)
    group = ctx.state["groups"].get(group_id)
    if group and group["members"]:
        if member_id not in group["members"]:
            raise Rejected(
                ErrorCode.UNKNOWN_MEMBER_ID,
                f"{member_id[:60]!r} is not a member of group {group_id!r}, which has active "
                f"members; rejoin the group and commit as a member",
            )
        if generation != group["generation"]:
            raise Rejected(
                ErrorCode.ILLEGAL_GENERATION,
                f"group {group_id!r} is at generation {group['generation']}, the commit "
                f"carries {generation}; rejoin the group, then commit what you own",
            )
        _check_partitions_exist(ctx, refs)
        mine = group["assignment"].get(member_id, {})
        owned = {(topic, p) for topic in mine for p in mine[topic]}
        not_owned = [
            f"{r['topic']}-{r['partition']}"
            for r in refs
            if (r["topic"], r["partition"]) not in owned
        ]
        if not_owned:
            raise Rejected(
                ErrorCode.NOT_OWNER,
                f"member {member_id[:60]!r} of generation {generation} does not own "
                f"{', '.join(not_owned[:10])}; commit only the partitions assigned to you",
            )
    elif member_id:
        raise Rejected(
            ErrorCode.UNKNOWN_MEMBER_ID,
            f"group {group_id!r} has no active members, so {member_id[:60]!r} is not one; "
            f"commit with generation -1 and an empty member id, or join the group",
        )
    elif generation != -1:
        raise Rejected(
            ErrorCode.ILLEGAL_GENERATION,
            f"group {group_id!r} has no active members; a commit without a member carries "
            f"generation -1, got {generation}",
        )
    else:
        _check_partitions_exist(ctx, refs)
    _store_offsets(ctx, group_id, refs)
    return {"group_id": group_id, "committed": len(refs)}


def _require_no_members(ctx: Ctx, group_id: str, action: str) -> None:
    if _has_members(ctx, group_id):
        raise Rejected(
            ErrorCode.NON_EMPTY_GROUP,
            f"group {group_id!r} has active members; stop its consumers before you {action}",
        )


def _offset_reset(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    group_id = _group_id(cmd)
    refs = _partition_refs(present(cmd, "offsets"), "offsets", with_offsets=True)
    _require_no_members(ctx, group_id, "reset its offsets")
    _check_partitions_exist(ctx, refs)
    _store_offsets(ctx, group_id, refs)
    return {"group_id": group_id, "committed": len(refs)}


def _offset_delete(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    group_id = _group_id(cmd)
    refs = _partition_refs(present(cmd, "partitions"), "partitions", with_offsets=False)
    offsets = ctx.state["offsets"]
    if group_id not in offsets and group_id not in ctx.state["groups"]:
        raise Rejected(
            ErrorCode.GROUP_ID_NOT_FOUND, f"group {group_id!r} has no record and no offsets"
        )
    _require_no_members(ctx, group_id, "delete its offsets")
    by_topic = offsets.get(group_id, {})
    deleted = 0
    for ref in refs:
        by_partition = by_topic.get(ref["topic"])
        if by_partition is not None and ref["partition"] in by_partition:
            ctx.txn.delete(by_partition, ref["partition"])
            deleted += 1
            if not by_partition:
                ctx.txn.delete(by_topic, ref["topic"])
    if group_id in offsets and not by_topic:
        ctx.txn.delete(offsets, group_id)
    ctx.touch("offsets", group_id)
    return {"group_id": group_id, "deleted": deleted}


def _offset_commit_many(ctx: Ctx, cmd: Command) -> dict[str, Any]:
    """Many members' commits folded into one command (the bridge sends one every few ms).

    Each commit is judged on its own, all or nothing, exactly as ``offset_commit`` would;
    one stale member does not fail the others. ``results`` holds one result per commit, in
    order. The command as a whole is rejected only when its envelope is malformed.
    """
    commits = list_of(present(cmd, "commits"), "commits", COMMITS_PER_BATCH_MAX)
    total = sum(
        len(c["offsets"])
        for c in commits
        if isinstance(c, dict) and isinstance(c.get("offsets"), list)
    )
    if total > OFFSETS_PER_BATCH_MAX:
        raise invalid(
            f"commits carry {total} offsets; the limit per command is {OFFSETS_PER_BATCH_MAX}"
        )
    results: list[dict[str, Any]] = []
    for i, sub in enumerate(commits):
        mark = ctx.txn.mark()
        try:
            if not isinstance(sub, dict):
                raise invalid(f"commits[{i}] must be a map, got {type(sub).__name__}")
            check_fields(sub, "offset_commit", _COMMIT_FIELDS)
            result: dict[str, Any] = {"ok": True}
            result.update(_offset_commit(ctx, sub))
            result["changed"] = ctx.txn.mark() > mark
            results.append(result)
        except Rejected as r:
            ctx.txn.rollback_to(mark)
            results.append(error_result(r.code, r.message))
    # the version this command ends at: the model bumps it once when anything changed
    version = ctx.state["version"] + (1 if ctx.txn.changed else 0)
    for result in results:
        if result["ok"]:
            result["version"] = version
    return {"results": results}


_COMMIT_FIELDS = frozenset({"group_id", "generation", "member_id", "offsets"})

OPS: dict[str, tuple[Handler, frozenset[str]]] = {
    "group_put": (
        _group_put,
        frozenset(
            {
                "group_id",
                "generation",
                "protocol_type",
                "protocol",
                "leader",
                "members",
                "assignment",
                "state",
            }
        ),
    ),
    "group_delete": (_group_delete, frozenset({"group_id", "force"})),
    "offset_commit": (_offset_commit, _COMMIT_FIELDS),
    "offset_commit_many": (_offset_commit_many, frozenset({"commits"})),
    "offset_reset": (_offset_reset, frozenset({"group_id", "offsets"})),
    "offset_delete": (_offset_delete, frozenset({"group_id", "partitions"})),
}
