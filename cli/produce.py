"""``raftlog produce TOPIC``: one record per input line, from stdin or a file (kcat -P).

Every record is sent at once (the producer batches them); nothing waits for a single
record's answer. The answers are counted as they come, the producer is flushed at the end,
and a summary goes to stderr: records, bytes, partitions written to, elapsed time. When a
record failed, the first error is reported and the exit code is 1.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import typer

from raftlog.cli.common import CliError, brokers, note, reported
from raftlog.cli.topic import parse_pairs
from raftlog.client.accumulator import SendFuture

FORMATS = ("text", "json")
COMPRESSIONS = ("none", "gzip", "lz4", "zstd")
ACKS = ("all", "1", "0")
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\"}

Header = tuple[str, bytes | None]


def unescape(text: str, flag: str) -> str:
    r"""``\n``, ``\t``, ``\r``, ``\0`` and ``\\`` in ``text`` as the characters they name."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt not in ESCAPES:
                raise typer.BadParameter(
                    f"{flag}: unknown escape \\{nxt} (known: \\n \\t \\r \\0 \\\\)"
                )
            out.append(ESCAPES[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


@dataclass
class Input:
    """One record to send, as parsed from a line."""

    value: bytes | None
    key: bytes | None = None
    headers: list[Header] = field(default_factory=list)
    partition: int | None = None
    timestamp: int | None = None


@dataclass
class Tally:
    """The producer's answers, counted as they complete (in the producer's thread)."""

    changed: threading.Condition = field(default_factory=threading.Condition)
    acked: int = 0
    failed: int = 0
    first_error: BaseException | None = None
    partitions: set[int] = field(default_factory=set)

    def done(self, future: SendFuture) -> None:
        error = future.exception()
        with self.changed:
            if error is not None:
                self.failed += 1
                if self.first_error is None:
                    self.first_error = error
            else:
                self.acked += 1
                self.partitions.add(future.result().partition)
            self.changed.notify_all()

    def wait_for(self, count: int, timeout_s: float) -> None:
        """Until ``count`` answers were counted (a future's callbacks run just after it
        is done, so a flush may return before they did)."""
        with self.changed:
            self.changed.wait_for(lambda: self.acked + self.failed >= count, timeout_s)


# ------------------------------------------------------------------ parsing lines


def text_parser(
    separator: bytes | None, key: bytes | None, headers: list[Header], partition: int | None
) -> Callable[[bytes, int], Input | None]:
    def parse(line: bytes, lineno: int) -> Input:
        if separator is not None:
            k, sep, v = line.partition(separator)
            if sep:
                return Input(v, k, headers, partition)
        return Input(line, key, headers, partition)

    return parse


def _text_or_b64(obj: dict[str, Any], name: str, lineno: int) -> bytes | None:
    b64 = obj.get(f"{name}_b64")
    if b64 is not None:
        if not isinstance(b64, str):
            raise CliError(f"line {lineno}: {name}_b64 must be a base64 string")
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise CliError(f"line {lineno}: {name}_b64 is not valid base64") from None
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    # a number, object or list: its JSON text is the value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _json_headers(raw: Any, lineno: int) -> list[Header]:
    """``{"name": "value"|null|[values...]}`` or ``[[name, value], ...]``."""
    out: list[Header] = []
    if raw is None:
        return out
    if isinstance(raw, dict):
        items: list[tuple[Any, Any]] = []
        for k, v in raw.items():  # a list: the header repeated, once per value
            items.extend((k, x) for x in (v if isinstance(v, list) else [v]))
    elif isinstance(raw, list) and all(isinstance(p, list) and len(p) == 2 for p in raw):
        items = [(p[0], p[1]) for p in raw]
    else:
        raise CliError(
            f"line {lineno}: headers must be an object of name: value (or a list of "
            "[name, value] pairs)"
        )
    for k, v in items:
        if not isinstance(k, str) or not (v is None or isinstance(v, str)):
            raise CliError(f"line {lineno}: header names and values must be strings (or null)")
        out.append((k, None if v is None else v.encode()))
    return out


def json_parser(
    key: bytes | None, headers: list[Header], partition: int | None
) -> Callable[[bytes, int], Input | None]:
    def parse(line: bytes, lineno: int) -> Input | None:
        if not line.strip():
            return None  # blank lines separate nothing in JSON lines
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise CliError(f"line {lineno}: not JSON ({e})") from None
        if not isinstance(obj, dict):
            raise CliError(
                f'line {lineno}: expected an object like {{"key": "k", "value": "v"}}, '
                f"got {type(obj).__name__}"
            )
        record = Input(
            _text_or_b64(obj, "value", lineno),
            key,
            [*headers, *_json_headers(obj.get("headers"), lineno)],
            partition,
        )
        if "key" in obj or "key_b64" in obj:
            record.key = _text_or_b64(obj, "key", lineno)
        for name in ("partition", "timestamp"):
            value = obj.get(name)
            if value is not None:
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise CliError(f"line {lineno}: {name} must be a non-negative integer")
                setattr(record, name, value)
        return record

    return parse


def lines(stream: IO[bytes], on_read: Callable[[int], None] | None) -> Iterator[bytes]:
    """The lines of ``stream`` without their line ends (``\\n`` or ``\\r\\n``)."""
    for raw in stream:
        if on_read is not None:
            on_read(len(raw))
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        yield raw


# ------------------------------------------------------------------ the command


def produce(
    ctx: typer.Context,
    topic: str = typer.Argument(..., help="Topic to write to."),
    file: Path = typer.Option(
        None, "--file", "-f", help="Read the records from FILE instead of stdin."
    ),
    key_separator: str = typer.Option(
        None,
        "--key-separator",
        "-K",
        help="Split each line at the first SEP into key and value (\\t works); a line "
        "without SEP is a value with no key.",
    ),
    key: str = typer.Option(None, "--key", "-k", help="The key of every record."),
    partition: int = typer.Option(
        None, "--partition", "-p", help="Write to this partition (default: by key, else spread)."
    ),
    header: list[str] = typer.Option(
        None, "--header", "-H", help="NAME=VALUE header on every record (repeatable)."
    ),
    acks: str = typer.Option(
        "all", "--acks", help="all (a majority has it), 1 (the leader has it) or 0 (no answer)."
    ),
    compression: str = typer.Option("none", "--compression", "-z", help="none, gzip, lz4 or zstd."),
    fmt: str = typer.Option(
        "text",
        "--format",
        help='text (a line is a value) or json (a line is {"key": ..., "value": ..., '
        '"headers": {...}, "partition": ..., "timestamp": ...}).',
    ),
    linger_ms: int = typer.Option(
        10, "--linger-ms", help="How long a batch waits for more records before it leaves."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary on stderr."),
) -> None:
    """Write records to TOPIC: one per line of stdin (or of FILE).

    --format json: each line is an object with "key" and "value" (UTF-8 strings
    or null; "key_b64"/"value_b64" for binary data, as consume --output json
    prints them), "headers" (an object of NAME: VALUE), "partition" and
    "timestamp" (ms). A line's own fields win over -k and -p; -H headers are
    added to the line's.
    A summary goes to stderr. If a record failed: the first error, exit code 1.

    Examples:

        seq 1 100000 | raftlog produce orders

        raftlog produce orders -K : -H source=import -f orders.txt

        raftlog consume a -o start -e --output json |
          raftlog produce b --format json
    """
    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be text or json, not {fmt!r}")
    if compression not in COMPRESSIONS:
        raise typer.BadParameter(
            f"--compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}"
        )
    if acks not in ACKS:
        raise typer.BadParameter(f"--acks must be all, 1 or 0, not {acks!r}")
    if partition is not None and partition < 0:
        raise typer.BadParameter(f"--partition must be 0 or more, not {partition}")
    if key_separator is not None and fmt == "json":
        raise typer.BadParameter("--key-separator applies to --format text only")
    if key_separator is not None and key is not None:
        raise typer.BadParameter("--key and --key-separator both set the key; pick one")
    separator = None
    if key_separator is not None:
        separator = unescape(key_separator, "--key-separator").encode()
        if not separator:
            raise typer.BadParameter("--key-separator must not be empty")
    headers = [(k, v.encode()) for k, v in parse_pairs(header, "--header").items()]
    key_bytes = None if key is None else key.encode()
    parse = (
        json_parser(key_bytes, headers, partition)
        if fmt == "json"
        else text_parser(separator, key_bytes, headers, partition)
    )
    with reported(ctx):
        _run(ctx, topic, file, parse, acks, compression, linger_ms, quiet)


def _run(
    ctx: typer.Context,
    topic: str,
    file: Path | None,
    parse: Callable[[bytes, int], Input | None],
    acks: str,
    compression: str,
    linger_ms: int,
    quiet: bool,
) -> None:
    from raftlog.client import Producer

    try:
        stream: IO[bytes] = sys.stdin.buffer if file is None else open(file, "rb")  # noqa: SIM115
    except OSError as e:
        raise CliError(f"cannot read {file}: {e.strerror or e}") from None
    progress = None
    try:
        if file is None and sys.stdin.isatty() and not quiet:
            note(ctx, f"writing to {topic!r}: one record per line, Ctrl-D to finish")
        producer = Producer(
            brokers(ctx),
            acks=acks,
            compression=compression,
            linger_ms=linger_ms,
            client_id="raftlog-cli",
        )
        tally = Tally()
        sent = 0
        size = 0
        started = time.monotonic()
        on_read = None
        if file is not None and sys.stderr.isatty() and not quiet:
            progress, on_read = _progress_bar(file)
        try:
            for lineno, line in enumerate(lines(stream, on_read), 1):
                try:
                    record = parse(line, lineno)
                except CliError as e:
                    if sent:
                        raise CliError(f"{e}; the {sent} record(s) before it were sent") from None
                    raise
                if record is None:
                    continue
                future = producer.send(
                    topic,
                    record.value,
                    key=record.key,
                    headers=record.headers,
                    partition=record.partition,
                    timestamp=record.timestamp,
                )
                future.add_done_callback(tally.done)
                sent += 1
                size += len(record.value or b"") + len(record.key or b"")
            producer.flush()
            tally.wait_for(sent, 10.0)
        finally:
            if progress is not None:
                if on_read is not None:
                    on_read(0)  # the last bytes read
                progress.stop()
            # on an error or Ctrl-C, what was sent still gets a few seconds to be written
            producer.close(timeout=None if tally.acked + tally.failed == sent else 5.0)
    finally:
        if file is not None:
            stream.close()
    elapsed = time.monotonic() - started
    if not quiet:
        parts = ",".join(str(p) for p in sorted(tally.partitions)) or "none"
        rate = f", {sent / elapsed:,.0f} records/s" if elapsed > 0 and sent else ""
        note(
            ctx,
            f"produced {tally.acked} record(s) ({size:,} bytes of keys and values) to "
            f"{topic!r} partition(s) {parts} in {elapsed:.2f} s{rate}",
        )
    if tally.failed:
        error = tally.first_error
        message = getattr(error, "message", None) or str(error)
        raise CliError(f"{tally.failed} of {sent} record(s) failed; the first: {message}")


def _progress_bar(file: Path) -> tuple[Any, Callable[[int], None]]:
    """A rich progress bar on stderr over the bytes of ``file``, and what advances it."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = progress.add_task(escape(file.name), total=file.stat().st_size or None)
    progress.start()
    pending = [0]

    def on_read(n: int) -> None:
        pending[0] += n
        if pending[0] >= 256 * 1024 or n == 0:
            progress.advance(task, pending[0])
            pending[0] = 0

    return progress, on_read
