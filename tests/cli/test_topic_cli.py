"""``raftlog topic ...`` against a real broker: the whole life of a topic, JSON output, errors
in one line, plain text when piped, rich tables within 80 columns on a terminal, and an
example in every command's help."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import termios

import pytest

from tests.cli.helpers import BOX_CHARS, RAFTLOG, Cli

pytestmark = pytest.mark.integration


def test_topic_create_list_describe_alter_grow_delete(cli: Cli) -> None:
    out = cli.ok("topic", "create", "life", "-p", "3", "-r", "1", "-c", "retention.ms=86400000")
    assert "life" in out and "3 partition" in out

    # an existing topic: exit 1, one line saying so, no traceback
    err = cli.fails(1, "topic", "create", "life", "-p", "3")
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "TOPIC_ALREADY_EXISTS" in err

    listed = json.loads(cli.ok("topic", "list", "--output", "json"))
    assert {"topic": "life", "partitions": 3, "replication_factor": 1} in listed
    piped = cli.ok("topic", "list")  # stdout is a pipe: tab-separated, no box drawing
    assert not set(piped) & BOX_CHARS, piped
    assert "life\t3\t1" in piped.splitlines()

    # describe: partitions with leader, replicas, log start and high watermark; configs
    before = json.loads(cli.ok("topic", "describe", "life", "--output", "json"))
    assert before["topic"] == "life"
    assert [p["partition"] for p in before["partitions"]] == [0, 1, 2]
    for p in before["partitions"]:
        assert p["leader"] == 1 and p["replicas"] == [1]
        assert 0 <= p["log_start"] <= p["high_watermark"]
    assert before["configs"]["retention.ms"] == {"value": "86400000", "source": "override"}
    assert before["configs"]["segment.ms"]["source"] == "default"
    cli.ok("produce", "life", "-p", "2", "-q", input="a\nb\nc\n")
    after = json.loads(cli.ok("topic", "describe", "life", "--output", "json"))
    hw = [p["high_watermark"] for p in after["partitions"]]
    assert hw[2] == before["partitions"][2]["high_watermark"] + 3
    assert hw[:2] == [p["high_watermark"] for p in before["partitions"][:2]]
    text = cli.ok("topic", "describe", "life")
    assert "retention.ms\t86400000\toverride" in text.splitlines()

    # alter-config: set and reset, incrementally
    cli.ok("topic", "alter-config", "life", "--set", "segment.ms=3600000", "--set", "fsync=false")
    cli.ok("topic", "alter-config", "life", "--delete", "retention.ms")
    configs = json.loads(cli.ok("topic", "describe", "life", "--output", "json"))["configs"]
    assert configs["segment.ms"] == {"value": "3600000", "source": "override"}
    assert configs["fsync"] == {"value": "false", "source": "override"}
    assert configs["retention.ms"]["source"] == "default"
    err = cli.fails(1, "topic", "alter-config", "life", "--set", "no.such.key=1")
    assert err.startswith("error: ") and "INVALID_CONFIG" in err and err.count("\n") == 1
    assert "--set" in cli.fails(2, "topic", "alter-config", "life", "--set", "novalue")

    # add-partitions takes the new total; shrinking is refused
    cli.ok("topic", "add-partitions", "life", "-p", "5")
    grown = json.loads(cli.ok("topic", "describe", "life", "--output", "json"))
    assert len(grown["partitions"]) == 5 and all(p["leader"] == 1 for p in grown["partitions"])
    err = cli.fails(1, "topic", "add-partitions", "life", "-p", "2")
    assert "INVALID_PARTITIONS" in err and err.count("\n") == 1

    cli.ok("topic", "delete", "life")
    names = [t["topic"] for t in json.loads(cli.ok("topic", "list", "--output", "json"))]
    assert "life" not in names
    err = cli.fails(1, "topic", "describe", "life")
    assert err == "error: there is no topic 'life'; 'raftlog topic list' shows them\n"
    assert cli.fails(1, "topic", "delete", "life").startswith("error: there is no topic")


def _on_terminal(cli: Cli, *args: str, columns: int = 80) -> str:
    """Run ``raftlog ARGS`` with stdout on a pseudo-terminal ``columns`` wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    try:
        proc = subprocess.Popen(
            [RAFTLOG, *args],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
            env=cli.env(COLUMNS=str(columns), TERM="xterm"),
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def _visible(line: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line).rstrip("\r")


def test_tables_on_a_terminal_fit_80_columns(cli: Cli) -> None:
    cli.create("wide-table-topic-with-a-long-name", 3)
    for args in (("topic", "list"), ("topic", "describe", "wide-table-topic-with-a-long-name")):
        shown = _on_terminal(cli, *args)
        lines = [_visible(line) for line in shown.splitlines()]
        assert set(shown) & BOX_CHARS, f"no rich table on a terminal:\n{shown}"
        too_wide = [line for line in lines if len(line) > 80]
        assert not too_wide, "\n".join(too_wide)
        assert any("wide-table-topic" in line for line in lines)


@pytest.mark.parametrize(
    "command",
    [
        ("topic", "create"),
        ("topic", "list"),
        ("topic", "describe"),
        ("topic", "alter-config"),
        ("topic", "add-partitions"),
        ("topic", "delete"),
        ("produce",),
        ("consume",),
    ],
)
def test_every_command_has_an_example_in_its_help(cli: Cli, command: tuple[str, ...]) -> None:
    out = cli.ok(*command, "--help")
    assert "Example" in out, out
