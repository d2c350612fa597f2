"""``raftlog produce`` and ``raftlog consume`` against a real broker: 100k records through
shell pipes, keys/headers/partitions, JSON in and out, -f placeholders, the -o grammar,
-n, consumer groups that continue where they stopped (also after Ctrl-C), and errors."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.cli.helpers import RAFTLOG, Cli

pytestmark = pytest.mark.integration


def test_100k_records_through_pipes(cli: Cli) -> None:
    cli.create("pipes", 4)
    t0 = time.monotonic()
    r = cli.sh("seq 1 100000 | raftlog produce pipes")
    produce_s = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "produced 100000 record(s)" in r.stderr and "partition(s) 0,1,2,3" in r.stderr
    t0 = time.monotonic()
    r = cli.sh("raftlog consume pipes -e --from-beginning -q | wc -l")
    consume_s = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "100000"
    print(f"\nseq 1 100000 | raftlog produce: {produce_s:.2f} s")
    print(f"raftlog consume -e --from-beginning | wc -l: {consume_s:.2f} s")
    assert produce_s < 30 and consume_s < 30
    # every value arrived exactly once
    r = cli.sh(
        "diff <(raftlog consume pipes -o start -e -q | sort -n) <(seq 1 100000) && echo same"
    )
    assert r.stdout.strip() == "same", r.stdout[-2000:] + r.stderr


def test_keys_headers_partition_and_json_round_trip(cli: Cli) -> None:
    cli.create("kv", 3)
    lines = "a:1\nb:2:two\nno-separator\n"
    cli.ok("produce", "kv", "-K", ":", "-H", "src=cli", "-H", "n=1", "-p", "2", "-q", input=lines)
    got = cli.records("kv", "-o", "start", "-e")
    pairs = [(g["key"], g["value"]) for g in got]
    assert pairs == [("a", "1"), ("b", "2:two"), (None, "no-separator")]
    assert all(g["partition"] == 2 and g["topic"] == "kv" for g in got)
    assert all(g["headers"] == {"src": "cli", "n": "1"} for g in got)
    offsets = [g["offset"] for g in got]
    assert offsets == list(range(offsets[0], offsets[0] + 3))

    # -k: one key for every record, so one partition for all (Kafka's murmur2)
    cli.ok("produce", "kv", "-k", "same", "-q", input="x\ny\nz\n")
    keyed = [g for g in cli.records("kv", "-o", "start", "-e") if g["key"] == "same"]
    assert [g["value"] for g in keyed] == ["x", "y", "z"]
    assert len({g["partition"] for g in keyed}) == 1

    # JSON in: keys, binary values, repeated headers, partition, timestamp, tombstones
    json_in = [
        {"key": "j1", "value": "v1", "headers": {"h": "1"}, "partition": 0, "timestamp": 1000},
        {"key_b64": "/w==", "value_b64": "gICA", "headers": {"r": ["1", "2"]}, "partition": 1},
        {"key": "tomb", "value": None, "partition": 1},
    ]
    cli.create("kv-json", 2)
    text = "\n".join(map(json.dumps, json_in))
    cli.ok("produce", "kv-json", "--format", "json", "-q", input=text)
    out = cli.records("kv-json", "-o", "start", "-e")
    by_key = {g.get("key", g.get("key_b64")): g for g in out}
    assert by_key["j1"]["value"] == "v1" and by_key["j1"]["partition"] == 0
    assert by_key["j1"]["timestamp"] == 1000 and by_key["j1"]["headers"] == {"h": "1"}
    assert by_key["/w=="]["value_b64"] == "gICA" and "value" not in by_key["/w=="]
    assert by_key["/w=="]["headers"] == {"r": ["1", "2"]} and by_key["/w=="]["partition"] == 1
    assert by_key["tomb"]["value"] is None

    # round trip: consume --output json | produce --format json gives the same records
    cli.create("kv-copy", 2)
    r = cli.sh(
        "raftlog consume kv-json -o start -e -q --output json | "
        "raftlog produce kv-copy --format json -q"
    )
    assert r.returncode == 0, r.stderr
    copy = cli.records("kv-copy", "-o", "start", "-e")

    def strip(rs: list[dict[str, object]]) -> list[dict[str, object]]:
        kept = [{k: v for k, v in g.items() if k not in ("topic", "offset")} for g in rs]
        return sorted(kept, key=json.dumps)

    assert strip(copy) == strip(out)


def test_format_placeholders(cli: Cli) -> None:
    cli.create("fmt", 2)
    cli.ok("produce", "fmt", "-p", "1", "-k", "kk", "-H", "a=1", "-H", "b=2", "-q", input="héllo\n")
    (meta,) = cli.records("fmt", "-o", "start", "-e")
    out = cli.ok(
        "consume", "fmt", "-o", "start", "-e", "-q", "-f", r"%t|%p|%o|%T|%k|%v|%h|%K|%V|%%\t.\n"
    )
    assert out == (f"fmt|1|{meta['offset']}|{meta['timestamp']}|kk|héllo|a=1,b=2|2|6|%\t.\n"), out
    assert cli.ok("consume", "fmt", "-p", "1", "-o", "start", "-e", "-q") == "héllo\n"
    assert "placeholder %x" in cli.fails(2, "consume", "fmt", "-f", "%x")


def test_offset_grammar_and_count(cli: Cli) -> None:
    cli.create("offsets", 1)
    now = int(time.time() * 1000)
    old = now - 2 * 3600 * 1000  # two hours ago
    rows = [{"value": f"old{i}", "timestamp": old + i} for i in range(5)]
    rows += [{"value": f"new{i}", "timestamp": now + i} for i in range(5)]
    cli.ok("produce", "offsets", "--format", "json", "-q", input="\n".join(map(json.dumps, rows)))
    everything = cli.records("offsets", "-o", "start", "-e")
    values = [g["value"] for g in everything]
    assert values == [r["value"] for r in rows]
    offsets = [g["offset"] for g in everything]
    (part,) = json.loads(cli.ok("topic", "describe", "offsets", "--output", "json"))["partitions"]
    start, end = part["log_start"], part["high_watermark"]
    assert end == offsets[-1] + 1 and start <= offsets[0]

    def from_offset(o: int) -> list[str]:
        return [v for v, off in zip(values, offsets, strict=True) if off >= o]

    expected = {  # -o argument (and more flags) -> the values read with -e
        ("start",): values,
        ("end",): [],
        (str(offsets[3]),): values[3:],
        ("+4",): from_offset(start + 4),
        ("-3",): values[-3:],
        ("-100",): values,  # before the log start: kept within the log
        (f"@{now}",): values[5:],
        (f"@{old + 2}",): values[2:],
        ("@-1h",): values[5:],
        ("@-3h",): values,
        (f"@{now + 3_600_000}",): [],
        ("start", "-n", "4"): values[:4],
    }

    def read(args: tuple[str, ...]) -> list[str]:
        offset, *more = args
        return [g["value"] for g in cli.records("offsets", f"-o{offset}", "-e", *more)]

    with ThreadPoolExecutor(4) as pool:  # independent reads: run a few at once
        got = dict(zip(expected, pool.map(read, expected), strict=True))
    assert got == expected
    assert cli.ok("consume", "offsets", "--from-beginning", "-n", "2", "-q") == "old0\nold1\n"
    assert "-o 'nope'" in cli.fails(2, "consume", "offsets", "-o", "nope")
    assert "contradict" in cli.fails(2, "consume", "offsets", "--from-beginning", "-o", "end")


def test_group_continues_where_it_stopped(cli: Cli) -> None:
    cli.create("grouped", 2)
    values = [f"v{i}" for i in range(10)]
    cli.ok("produce", "grouped", "-q", input="".join(v + "\n" for v in values))

    first = cli.ok("consume", "grouped", "-g", "g1", "-o", "start", "-n", "4", "-q").split()
    assert len(first) == 4
    second = cli.ok("consume", "grouped", "-g", "g1", "-e", "-q").split()
    assert sorted(first + second) == sorted(values), (first, second)
    assert cli.ok("consume", "grouped", "-g", "g1", "-e", "-q") == ""

    # with -g, -o only says where a partition without a committed offset starts
    err = cli.fails(2, "consume", "grouped", "-g", "g1", "-o", "+3")
    assert "with -g, -o only takes start or end" in err
    assert "-p and -g" in cli.fails(2, "consume", "grouped", "-g", "g1", "-p", "0")


def test_ctrl_c_commits_and_leaves_the_group(cli: Cli) -> None:
    cli.create("interrupted", 2)
    cli.ok("produce", "interrupted", "-q", input="".join(f"r{i}\n" for i in range(20)))
    proc = subprocess.Popen(
        [RAFTLOG, "consume", "interrupted", "-g", "g2", "-o", "start"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli.env(),
        text=True,
    )
    try:
        assert proc.stdout is not None
        got = [proc.stdout.readline() for _ in range(20)]
        assert sorted(line.strip() for line in got) == sorted(f"r{i}" for i in range(20))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "interrupted" in err
    # everything read was committed: the group has nothing left
    assert cli.ok("consume", "interrupted", "-g", "g2", "-e", "-q") == ""


def test_errors_are_one_line(cli: Cli) -> None:
    err = cli.fails(1, "produce", "no-such-topic", input="x\n")
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "UNKNOWN_TOPIC_OR_PARTITION" in err and "raftlog topic create" in err
    err = cli.fails(1, "consume", "no-such-topic", "-e")
    assert err.startswith("error: ") and err.count("\n") == 1
    cli.create("errs", 2)
    err = cli.fails(1, "consume", "errs", "-p", "5", "-e")
    assert err == "error: topic 'errs' has partitions 0..1; there is no partition 5\n"
    err = cli.fails(1, "produce", "errs", "--format", "json", "-q", input='{"value": "ok"}\n{bad\n')
    assert err.startswith("error: line 2: not JSON")
    assert "--acks" in cli.fails(2, "produce", "errs", "--acks", "2")
