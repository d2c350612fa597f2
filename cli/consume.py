"""``raftlog consume TOPIC``: print records (kcat -C, with rpk's offset grammar).

Without ``-g`` the command reads every partition (or those of ``-p``) on its own, from the
offset ``-o`` names in each partition (the end by default, like kcat and rpk). With ``-g``
it is a member of that consumer group: the group spreads the partitions over its members,
each partition starts at the group's committed offset, and offsets are committed every few
seconds and when the command stops (Ctrl-C or SIGTERM commit and leave the group cleanly;
a second Ctrl-C forces the exit). ``-o``/``--from-beginning`` then only say where a
partition without a committed offset starts, so only ``start`` and ``end`` make sense.

Offsets (``-o``): ``start``, ``end``, ``N`` (that offset), ``+N`` (N after the log start),
``-N`` (N before the end), ``@MS`` (the first record at or after that time, ms since the
epoch), ``@-1h`` / ``@-30m`` / ``@-10s`` / ``@-2d`` / ``@-500ms`` (that long ago). Offsets
outside the log are moved to its start or end.

Output: ``-f`` formats each record (``%t`` topic, ``%p`` partition, ``%o`` offset, ``%T``
timestamp ms, ``%k`` key, ``%v`` value, ``%h`` headers as ``k=v,...``, ``%K``/``%V`` key
and value lengths (-1 for null), ``%%``; escapes ``\\n``, ``\\t``, ``\\r``, ``\\0``,
``\\\\``), decoding keys and values as UTF-8 (bad bytes become U+FFFD). ``--output json``
prints one object per line: topic, partition, offset, timestamp, key, value, headers
(an object; a name that repeats has a list of values); a key or value that is not valid
UTF-8 is given as ``key_b64``/``value_b64`` (base64) instead of ``key``/``value``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import typer

from raftlog.cli.common import CliError, brokers, note, reported
from raftlog.cli.produce import unescape

POLL_MS = 500
MAX_RECORDS = 2_000
DEFAULT_FORMAT = "%v\\n"
_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_RELATIVE = re.compile(r"^-(\d+)(ms|s|m|h|d)$")

Record = Any  # raftlog.client.ConsumerRecord (imported late: the CLI starts faster)


# ------------------------------------------------------------------ offsets


@dataclass(frozen=True)
class OffsetSpec:
    """Where to start in each partition: ``kind`` is start, end, at (``n`` itself),
    after_start (log start + n), before_end (end - n) or time (``n`` ms since the epoch)."""

    kind: str
    n: int = 0


def parse_offset(text: str, now_ms: int | None = None) -> OffsetSpec:
    """The ``-o`` grammar (see the module docstring); ``typer.BadParameter`` when bad."""
    t = text.strip()
    bad = typer.BadParameter(
        f"-o {text!r}: give start, end, N, +N, -N, @TIMESTAMP_MS or @-DURATION (like @-1h, "
        "@-30m, @-10s, @-2d)"
    )
    if t in ("start", "beginning", "oldest", "earliest"):
        return OffsetSpec("start")
    if t in ("end", "newest", "latest"):
        return OffsetSpec("end")
    if t.startswith("@"):
        rest = t[1:]
        if rest.isdigit():
            return OffsetSpec("time", int(rest))
        m = _RELATIVE.match(rest)
        if not m:
            raise bad
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return OffsetSpec("time", max(0, now - int(m.group(1)) * _UNITS_MS[m.group(2)]))
    if t[:1] in "+-" and t[1:].isdigit():
        return OffsetSpec("after_start" if t[0] == "+" else "before_end", int(t[1:]))
    if t.isdigit():
        return OffsetSpec("at", int(t))
    raise bad


def resolve(spec: OffsetSpec, start: int, end: int, found: int | None = None) -> int:
    """The offset ``spec`` names in a partition whose log holds ``start`` .. ``end - 1``
    (``found``: what ``offsets_for_times`` answered for a time, None when nothing is that
    recent), kept within the log."""
    if spec.kind == "start":
        target = start
    elif spec.kind == "end":
        target = end
    elif spec.kind == "at":
        target = spec.n
    elif spec.kind == "after_start":
        target = start + spec.n
    elif spec.kind == "before_end":
        target = end - spec.n
    else:
        target = end if found is None else found
    return min(max(target, start), end)


def parse_partitions(values: list[str] | None) -> list[int] | None:
    """``-p 0 -p 2,3`` as ``[0, 2, 3]``; None when none was given."""
    if not values:
        return None
    out: list[int] = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part.isdigit():
                raise typer.BadParameter(f"-p takes partition numbers (0,1,...), not {v!r}")
            if int(part) not in out:
                out.append(int(part))
    return out


# ------------------------------------------------------------------ output


def _text(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8", "replace")


def _length(data: bytes | None) -> str:
    return "-1" if data is None else str(len(data))


def _headers_text(r: Record) -> str:
    return ",".join(f"{k}={_text(v)}" for k, v in r.headers)


FIELDS: dict[str, Callable[[Record], str]] = {
    "t": lambda r: r.topic,
    "p": lambda r: str(r.partition),
    "o": lambda r: str(r.offset),
    "T": lambda r: str(r.timestamp),
    "k": lambda r: _text(r.key),
    "v": lambda r: _text(r.value),
    "h": _headers_text,
    "K": lambda r: _length(r.key),
    "V": lambda r: _length(r.value),
}


def compile_format(fmt: str) -> Callable[[Record], bytes]:
    """A function printing a record per ``fmt`` (placeholders and escapes: see the module
    docstring); ``typer.BadParameter`` for an unknown placeholder or escape."""
    text = unescape(fmt, "--format")
    parts: list[str | Callable[[Record], str]] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "%":
            literal.append(c)
            i += 1
            continue
        code = text[i + 1 : i + 2]
        if code == "%":
            literal.append("%")
        elif code in FIELDS:
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(FIELDS[code])
        else:
            raise typer.BadParameter(
                f"--format: unknown placeholder %{code} (known: %t %p %o %T %k %v %h %K %V %%)"
            )
        i += 2
    if literal:
        parts.append("".join(literal))
    if parts == [FIELDS["v"], "\n"]:  # the default: the value and a newline

        def value_line(r: Record) -> bytes:
            return b"\n" if r.value is None else _text(r.value).encode() + b"\n"

        return value_line

    def render(r: Record) -> bytes:
        return "".join(p if isinstance(p, str) else p(r) for p in parts).encode()

    return render


def _json_bytes(obj: dict[str, Any], name: str, data: bytes | None) -> None:
    if data is None:
        obj[name] = None
        return
    try:
        obj[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        obj[f"{name}_b64"] = base64.b64encode(data).decode("ascii")


def json_line(r: Record) -> bytes:
    """One record as a JSON object on one line (see the module docstring)."""
    obj: dict[str, Any] = {
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
    }
    _json_bytes(obj, "key", r.key)
    _json_bytes(obj, "value", r.value)
    headers: dict[str, Any] = {}
    for k, v in r.headers:
        value = None if v is None else v.decode("utf-8", "replace")
        if k in headers:
            prev = headers[k]
            headers[k] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            headers[k] = value
    obj["headers"] = headers
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


# ------------------------------------------------------------------ stopping


class Stop:
    """Set by the first Ctrl-C or SIGTERM (the loop ends after the current batch, so
    offsets are committed and the group is left cleanly); a second one interrupts."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@contextmanager
def stop_on_signals() -> Iterator[Stop]:
    stop = Stop()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


# ------------------------------------------------------------------ the command


def consume(
    ctx: typer.Context,
    topic: str = typer.Argument(..., help="Topic to read."),
    group: str = typer.Option(
        None,
        "--group",
        "-g",
        help="Read as a member of this consumer group (committed offsets; partitions "
        "shared with the group's other members).",
    ),
    from_beginning: bool = typer.Option(
        False, "--from-beginning", help="Start at the log start (same as -o start)."
    ),
    offset: str = typer.Option(
        None,
        "--offset",
        "-o",
        help="Where to start: start, end (default), N, +N (after the start), -N (before "
        "the end), @TIMESTAMP_MS, @-1h/@-30m/@-10s/@-2d (that long ago). With -g: start "
        "or end, for partitions the group has no committed offset for.",
    ),
    partition: list[str] = typer.Option(
        None, "--partition", "-p", help="Read only these partitions (repeatable, or 0,2,3)."
    ),
    count: int = typer.Option(None, "--count", "-n", help="Stop after COUNT records."),
    exit_at_end: bool = typer.Option(
        False,
        "--exit",
        "-e",
        help="Stop once every partition is read up to its end as of the start (or up to "
        "its current end while idle).",
    ),
    fmt: str = typer.Option(
        None,
        "--format",
        "-f",
        help="Print each record so: %t topic, %p partition, %o offset, %T timestamp (ms), "
        "%k key, %v value, %h headers, %K/%V key/value length; \\n, \\t (default '%v\\n').",
    ),
    output: str = typer.Option(
        "text",
        "--output",
        help="text (per --format) or json (one object per record and line).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary on stderr."),
) -> None:
    """Print the records of TOPIC, one per line (by default the value).

    Without -g: every partition (or -p), from the end (-o start: from the start).
    With -g: the group's share of the partitions, from its committed offsets;
    it commits as it reads, and Ctrl-C commits and leaves the group.
    Stop with Ctrl-C, -n COUNT or -e (at the end).
    --output json: a key or value that is not UTF-8 comes as key_b64/value_b64.

    Examples:

        raftlog consume orders --from-beginning -e | wc -l

        raftlog consume orders -o -10 -e -f '%p:%o %k=%v\\n'

        raftlog consume orders -o @-1h --output json -n 100

        raftlog consume orders -g billing
    """
    if output not in ("text", "json", "auto"):
        raise typer.BadParameter(f"--output must be text or json, not {output!r}")
    if output == "json" and fmt is not None:
        raise typer.BadParameter("--format and --output json exclude each other; pick one")
    render = json_line if output == "json" else compile_format(fmt or DEFAULT_FORMAT)
    if count is not None and count < 1:
        raise typer.BadParameter(f"--count must be at least 1, not {count}")
    spec = parse_offset(offset) if offset is not None else None
    if from_beginning:
        if spec is not None and spec.kind != "start":
            raise typer.BadParameter(f"--from-beginning and -o {offset} contradict; pick one")
        spec = OffsetSpec("start")
    partitions = parse_partitions(partition)
    if group is not None:
        if partitions is not None:
            raise typer.BadParameter(
                "-p and -g exclude each other: the group assigns the partitions; drop -p "
                "(or -g to read chosen partitions without a group)"
            )
        if spec is not None and spec.kind not in ("start", "end"):
            raise typer.BadParameter(
                f"with -g, -o only takes start or end (where a partition without a committed "
                f"offset starts), not {offset!r}; to move the group's offsets, reset them "
                "while it has no members, or read without -g"
            )
    with reported(ctx):
        reader = Reader(ctx, topic, render, count, exit_at_end)
        if group is None:
            reader.run_assigned(spec or OffsetSpec("end"), partitions)
        else:
            if spec is not None and not quiet:
                note(
                    ctx,
                    f"note: -o {spec.kind} applies only to the partitions group {group!r} has "
                    "no committed offset for; the others continue from their committed offset",
                )
            reader.run_group(group, "earliest" if spec and spec.kind == "start" else "latest")
        if not quiet:
            reader.summary()


class Reader:
    """The consume loop: poll, print, stop on -n / -e / Ctrl-C / a closed stdout."""

    def __init__(
        self,
        ctx: typer.Context,
        topic: str,
        render: Callable[[Record], bytes],
        count: int | None,
        exit_at_end: bool,
    ) -> None:
        self.ctx = ctx
        self.topic = topic
        self.render = render
        self.count = count
        self.exit_at_end = exit_at_end
        self.printed = 0
        self.partitions: set[int] = set()
        self.started = time.monotonic()
        self.why = "stopped"
        self.out = sys.stdout.buffer
        self.ends: dict[Any, int] = {}
        """-e: per partition, the end to read up to."""
        self.assigned: list[Any] | None = None
        """With a group: the partitions of the latest assignment (None before the first)."""

    # -------------------------------------------------------------- modes

    def _partition_count(self) -> int:
        from raftlog.client import Admin

        admin = Admin(brokers(self.ctx), request_timeout_ms=15_000, client_id="raftlog-cli")
        try:
            return len(admin.describe_topic(self.topic).partitions)
        finally:
            admin.close()

    def run_assigned(self, spec: OffsetSpec, partitions: list[int] | None) -> None:
        from raftlog.client import Consumer

        total = self._partition_count()
        if partitions is None:
            partitions = list(range(total))
        missing = [p for p in partitions if p >= total]
        if missing:
            raise CliError(
                f"topic {self.topic!r} has partitions 0..{total - 1}; there is no partition "
                f"{', '.join(map(str, missing))}"
            )
        tps = [(self.topic, p) for p in partitions]
        consumer = Consumer(
            brokers(self.ctx), auto_offset_reset="earliest", client_id="raftlog-cli"
        )
        try:
            consumer.assign(tps)
            starts = consumer.beginning_offsets(tps)
            ends = consumer.end_offsets(tps)
            found: dict[Any, Any] = {}
            if spec.kind == "time":
                found = consumer.offsets_for_times(dict.fromkeys(tps, spec.n))
            for tp in starts:
                hit = found.get(tp)
                consumer.seek(tp, resolve(spec, starts[tp], ends[tp], hit and hit.offset))
            self.ends = dict(ends)
            self._loop(consumer)
        finally:
            consumer.close()

    def run_group(self, group: str, reset: str) -> None:
        from raftlog.client import Consumer

        self._partition_count()  # an unknown topic is an error, not an endless wait
        consumer = Consumer(
            brokers(self.ctx),
            group_id=group,
            auto_offset_reset=reset,
            client_id="raftlog-cli",
        )
        try:

            def assigned(tps: list[Any]) -> None:
                self.assigned = list(tps)

            consumer.subscribe([self.topic], on_assigned=assigned)
            self._loop(consumer)
        finally:
            consumer.close()  # commits the positions and leaves the group

    # -------------------------------------------------------------- the loop

    def _loop(self, consumer: Any) -> None:
        with stop_on_signals() as stop:
            if self.exit_at_end and self._at_end(consumer, idle=False):
                self.why = "nothing to read up to the end (-e)"
                return
            while not stop.requested:
                want = MAX_RECORDS
                if self.count is not None:
                    want = min(want, self.count - self.printed)
                records = consumer.poll(timeout_ms=POLL_MS, max_records=want)
                if records and not self._print(records):
                    self.why = "the output was closed"
                    return
                if self.count is not None and self.printed >= self.count:
                    self.why = f"read {self.count} record(s) (-n)"
                    return
                if self.exit_at_end and self._at_end(consumer, idle=not records):
                    self.why = "reached the end (-e)"
                    return
            self.why = "interrupted"

    def _print(self, records: list[Record]) -> bool:
        """Write the records; False when stdout is closed (a pipe whose reader left)."""
        render = self.render
        try:
            self.out.write(b"".join(render(r) for r in records))
            self.out.flush()
        except BrokenPipeError:
            # keep Python's own flush at exit from failing too
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return False
        self.printed += len(records)
        self.partitions.update(r.partition for r in records)
        return True

    def _at_end(self, consumer: Any, *, idle: bool) -> bool:
        """-e: every partition read is at its end (taken when reading started, or when the
        group assigned it)."""
        if self.assigned is not None:  # in a group: the partitions it gave this member
            new = [tp for tp in self.assigned if tp not in self.ends]
            if new:
                self.ends.update(consumer.end_offsets(new))
            tps = list(self.assigned)
        elif consumer.subscription():
            return False  # a group member before its first assignment
        else:
            tps = list(self.ends)
        behind = [tp for tp in tps if consumer.position(tp) < self.ends[tp]]
        if behind and idle:
            # idle: the end as of now counts too (records may have been deleted meanwhile)
            now = consumer.end_offsets(behind)
            behind = [tp for tp in behind if consumer.position(tp) < now[tp]]
        return not behind

    def summary(self) -> None:
        elapsed = time.monotonic() - self.started
        parts = ",".join(str(p) for p in sorted(self.partitions)) or "none"
        note(
            self.ctx,
            f"consumed {self.printed} record(s) from {self.topic!r} partition(s) {parts} in "
            f"{elapsed:.2f} s; {self.why}",
        )
