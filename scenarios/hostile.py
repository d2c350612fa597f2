"""S16 hostile-clients: what a broken or malicious client throws at every port of a broker,
and whether the broker keeps serving everyone else meanwhile.

``run_hostile(targets, seed=..., duration_s=..., log=...)`` runs rounds until ``duration_s``
is spent. Each round, for each broker in turn:

native port (the client protocol)
    random garbage bytes; frames declaring 2^31 and 2^32-1 bytes then nothing (the broker
    must close the connection, before and after a HELLO); a declared frame just under the
    cap then a trickle and a close; valid lengths around random bytes and nasty CBOR (huge
    declared strings, arrays and maps, deep nesting, tags, indefinite lengths), several bad
    frames in a row; valid CBOR with wrong types, unknown and out-of-range API keys,
    responses sent as requests, negative and huge counts, lengths and payload regions, a
    fetch for 2^40 bytes, produce batches whose header declares a huge record count or
    length, a batch claiming 2^31 offsets, a compressed batch of garbage; truncated frames
    then close; a slowloris connection dribbling one byte per second (before and after a
    HELLO); thousands of requests pipelined without reading an answer, long-poll fetches
    left parked, and a reset (RST) in the middle of all that.
metadata port (pysyncobj)
    pickles framed as pysyncobj frames them (native-endian i32 length, zlib) and bare,
    among them one whose unpickling would run ``touch <marker>``; the check is that the
    marker file never appears. Random bytes, and length prefixes of 2^31-1, -1 and just
    past the cap.
admin HTTP port
    garbage request lines, a 200 KB header, path traversal (``/../../etc/passwd`` in
    several spellings: the answer must never hold the file), a request dribbled one byte
    per second, a reset in the middle of a request.
flood
    up to ``flood_connections`` connections (500 per broker by default, capped by this
    process's RLIMIT_NOFILE less a margin) opened to the native port, half of them past
    their HELLO, held for a few seconds, then closed.

A legitimate client checks each broker all along: a background thread sends HELLO +
METADATA on a fresh connection to every broker about once a second; more checks run while
the flood is held, after each round, and once at the end, plus a metadata write (creating
the probe topic, answered "created" or "already exists") per round. An answer later than
``legit_deadline_s`` (5 s) counts as late and is a problem.

Bounded: every attack has its own deadline within the run's, every loop a count; the run
returns within ``duration_s`` plus one legitimate deadline and a little. Seeded: every
random byte comes from ``random.Random(seed)`` (timing is the machine's). It never raises on
what a broker does: everything goes into the ``HostileReport``. It connects only to
127.0.0.0/8 (``ValueError`` for any other target).

``python -m raftlog.scenarios.hostile --native H:P[,H:P] --metadata H:P[,..] --admin H:P[,..]
--seed N --duration S`` prints the report as JSON; exit 0 when it found no problem.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import pickle
import random
import resource
import socket
import struct
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import cbor2

from raftlog.errors import ErrorCode
from raftlog.storage.record_batch import CRC_START, crc32c
from raftlog.storage.records import Record, build_batch
from raftlog.wire import (
    FetchPartition,
    FetchRequest,
    FetchTopic,
    FrameDecoder,
    HelloRequest,
    MetadataRequest,
    decode,
    encode_request,
)
from raftlog.wire.admin import CreateTopicsRequest, NewTopic
from raftlog.wire.frames import Frame

Addr = tuple[str, int]

LEGIT_DEADLINE_S = 5.0
METADATA_WRITE_DEADLINE_S = 10.0
FLOOD_CONNECTIONS = 500
FLOOD_HOLD_S = 3.0
NOFILE_MARGIN = 128
PROBE_TOPIC = "s16-hostile"
PROBLEMS_MAX = 100
MONITOR_PERIOD_S = 1.0
DRIBBLE_S_MAX = 8.0
CLOSE_EXPECTED_S = 5.0
"""A connection the broker must drop (declared frame over its cap) is dropped within this."""
PIPELINED_MAX = 4000
READ_BYTES_MAX = 8 * 1024 * 1024


@dataclass
class HostileTargets:
    """The ports of the brokers under attack; the lists need not be equally long (a
    metadata port is attacked only when listed)."""

    native: list[Addr] = field(default_factory=list)
    metadata: list[Addr] = field(default_factory=list)
    admin: list[Addr] = field(default_factory=list)

    @classmethod
    def of_native_ports(cls, ports: list[int], host: str = "127.0.0.1") -> HostileTargets:
        """raftlog's layout: metadata at native + 1, admin HTTP at native + 2."""
        return cls(
            [(host, p) for p in ports],
            [(host, p + 1) for p in ports],
            [(host, p + 2) for p in ports],
        )


@dataclass
class BrokerTally:
    answered: int = 0
    late: int = 0
    longest_wait_s: float = 0.0
    metadata_writes_ok: int = 0
    metadata_writes_failed: int = 0
    admin_answered: int = 0
    admin_failed: int = 0


@dataclass
class HostileReport:
    seed: int
    duration_s: float
    rounds: int = 0
    connections_opened: int = 0
    flood_held_max: int = 0
    """The most connections held open at once to one broker during a flood."""
    attacks: dict[str, int] = field(default_factory=dict)
    """How many times each attack ran."""
    brokers: dict[str, BrokerTally] = field(default_factory=dict)
    """Keyed by native address ``host:port``."""
    longest_legit_wait_s: float = 0.0
    pickle_marker: str = ""
    pickle_marker_appeared: bool = False
    problems: list[str] = field(default_factory=list)
    problems_dropped: int = 0
    """Distinct problems past ``PROBLEMS_MAX``."""
    problems_repeated: int = 0
    """Problems identical to one already listed (counted, not listed again)."""
    notes: list[str] = field(default_factory=list)
    """What was seen that is no problem by itself (e.g. a batch claiming 2^31 offsets was
    accepted), once each."""
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.pickle_marker_appeared

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


class _Touch:
    """Unpickling this runs ``os.system("touch <marker>")``: what a pickle-trusting port
    would do with it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _loopback(addr: Addr) -> Addr:
    host, port = addr
    try:
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError) as e:
        raise ValueError(f"target {host}:{port} does not resolve: {e}") from None
    if ip not in ipaddress.ip_network("127.0.0.0/8"):
        raise ValueError(f"target {host}:{port} is not on 127.0.0.0/8: refused")
    if not 0 < int(port) < 65536:
        raise ValueError(f"target {host}:{port}: bad port")
    return str(ip), int(port)


def _frame(envelope: Any, payload: bytes = b"") -> bytes:
    env = envelope if isinstance(envelope, bytes) else cbor2.dumps(envelope)
    return struct.pack(">II", 4 + len(env) + len(payload), len(env)) + env + payload


def _request(msg: Any, correlation_id: int) -> bytes:
    return b"".join(bytes(p) for p in encode_request(msg, correlation_id))


HELLO = _request(HelloRequest("client", "s16-hostile"), 1)


def _env(k: Any, c: Any, body: Any, **extra: Any) -> dict[str, Any]:
    env = {"v": 1, "k": k, "c": c, "r": 0, "b": body}
    env.update(extra)
    return env


class _Run:
    """One run's shared state; attacks are its methods (each bounded by its deadline)."""

    def __init__(
        self,
        targets: HostileTargets,
        seed: int,
        duration_s: float,
        log: Callable[[str], None],
        flood_connections: int,
        legit_deadline_s: float,
    ) -> None:
        self.targets = targets
        self.rng = random.Random(seed)
        self.log = log
        self.start = time.monotonic()
        self.deadline = self.start + duration_s
        self.legit_deadline_s = legit_deadline_s
        self.lock = threading.Lock()
        self.stop = threading.Event()
        marker = f"raftlog-s16-pickle-{seed}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.marker = os.path.join("/tmp", marker)
        self.report = HostileReport(seed, duration_s, pickle_marker=self.marker)
        for a in targets.native:
            self.report.brokers[self._name(a)] = BrokerTally()
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.flood_n = max(0, min(flood_connections, soft - NOFILE_MARGIN - _fds_in_use()))
        self._noted: set[str] = set()
        self._problem_seen: set[str] = set()

    # ------------------------------------------------------------------ bookkeeping

    @staticmethod
    def _name(addr: Addr) -> str:
        return f"{addr[0]}:{addr[1]}"

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def problem(self, text: str) -> None:
        with self.lock:
            if text in self._problem_seen:  # the same failure again: counted, not repeated
                self.report.problems_repeated += 1
                return
            self._problem_seen.add(text)
            if len(self.report.problems) < PROBLEMS_MAX:
                self.report.problems.append(text)
            else:
                self.report.problems_dropped += 1
        self.log(f"PROBLEM {text}")

    def note(self, text: str) -> None:
        with self.lock:
            if text in self._noted:
                return
            self._noted.add(text)
            self.report.notes.append(text)
        self.log(f"note: {text}")

    def count(self, attack: str) -> None:
        with self.lock:
            self.report.attacks[attack] = self.report.attacks.get(attack, 0) + 1

    def sub_rng(self) -> random.Random:
        with self.lock:
            return random.Random(self.rng.getrandbits(64))

    @contextlib.contextmanager
    def connect(self, addr: Addr, timeout_s: float = 2.0) -> Iterator[socket.socket]:
        sock = socket.create_connection(addr, timeout=timeout_s)
        with self.lock:
            self.report.connections_opened += 1
        try:
            yield sock
        finally:
            sock.close()

    # ------------------------------------------------------------------ legitimate client

    def legit(self, addr: Addr, why: str) -> float | None:
        """HELLO + METADATA on a fresh connection; the wait, or None when late/failed."""
        t0 = time.monotonic()
        error = ""
        answered = False
        try:
            with self.connect(addr, self.legit_deadline_s) as s:
                s.sendall(HELLO + _request(MetadataRequest(()), 2))
                frames = _read_until(s, FrameDecoder(), 2, t0 + self.legit_deadline_s)
                answered = frames is not None and any(f.correlation_id == 2 for f in frames)
                if not answered:
                    error = "no answer"
        except OSError as e:
            error = repr(e)
        wait = time.monotonic() - t0
        late = not answered or wait > self.legit_deadline_s
        with self.lock:
            tally = self.report.brokers[self._name(addr)]
            if late:
                tally.late += 1
            else:
                tally.answered += 1
            tally.longest_wait_s = max(tally.longest_wait_s, wait)
            self.report.longest_legit_wait_s = max(self.report.longest_legit_wait_s, wait)
        if late:
            self.problem(
                f"{self._name(addr)}: a legitimate METADATA request {why} was not answered "
                f"within {self.legit_deadline_s:g} s ({error or f'{wait:.1f} s'})"
            )
            return None
        return wait

    def metadata_write(self, addr: Addr) -> None:
        """Create the probe topic through the metadata group: created or already there."""
        req = CreateTopicsRequest((NewTopic(PROBE_TOPIC, 1, 1),), timeout_ms=8000)
        ok, detail = False, ""
        try:
            with self.connect(addr, METADATA_WRITE_DEADLINE_S) as s:
                s.sendall(HELLO + _request(req, 2))
                end = time.monotonic() + METADATA_WRITE_DEADLINE_S
                frames = _read_until(s, FrameDecoder(), 2, end)
                answer = [f for f in frames or [] if f.correlation_id == 2]
                if answer:
                    msg = decode(answer[0])
                    code = getattr(msg, "topics", [None])[0]
                    code = getattr(code, "error", getattr(msg, "error", None))
                    ok = code in (ErrorCode.NONE, ErrorCode.TOPIC_ALREADY_EXISTS)
                    detail = f"answered {code!r}"
                else:
                    detail = "no answer"
        except Exception as e:  # the driver never raises on what a broker does
            detail = repr(e)
        with self.lock:
            tally = self.report.brokers[self._name(addr)]
            if ok:
                tally.metadata_writes_ok += 1
            else:
                tally.metadata_writes_failed += 1
        if not ok:
            # retriable answers (no metadata leader yet) are a note; silence is a problem
            if detail.startswith("answered"):
                self.note(f"{self._name(addr)}: create {PROBE_TOPIC} {detail}")
            else:
                self.problem(
                    f"{self._name(addr)}: a metadata write (create topic) got no answer within "
                    f"{METADATA_WRITE_DEADLINE_S:g} s ({detail})"
                )

    def admin_health(self, addr: Addr, native: Addr) -> None:
        try:
            with self.connect(addr, self.legit_deadline_s) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                data, _ = _drain(s, time.monotonic() + self.legit_deadline_s, 1 << 20)
            status = data.split(b"\r\n", 1)[0]
            ok = status.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503"))
            detail = repr(status[:60])
        except OSError as e:
            ok, detail = False, repr(e)
        with self.lock:
            tally = self.report.brokers[self._name(native)]
            if ok:
                tally.admin_answered += 1
            else:
                tally.admin_failed += 1
        if not ok:
            self.problem(f"{self._name(addr)}: admin GET /health failed ({detail})")

    def monitor(self) -> None:
        """Legitimate requests to every broker about once a second until told to stop."""
        for _ in range(100_000):
            if self.stop.wait(MONITOR_PERIOD_S) or self.remaining() <= 0:
                return
            for addr in self.targets.native:
                if self.stop.is_set():
                    return
                self.legit(addr, "during the attacks")

    # ------------------------------------------------------------------ native port

    def _guard(
        self, name: str, fn: Callable[[Addr, random.Random], None], addr: Addr, rng: random.Random
    ) -> None:
        """Run one attack; a socket error is the attack's business (the broker may well
        hang up on it), never the driver's."""
        if self.remaining() <= (1.5 if name == "flood" else 0):
            return  # a flood needs time to hold its connections
        self.count(name)
        try:
            fn(addr, rng)
        except OSError as e:
            self.log(f"  {name} {self._name(addr)}: the connection failed: {e!r}")
        except Exception as e:  # a bug of the driver itself: say so, go on
            self.note(f"driver error in {name}: {e!r}")

    def native_garbage(self, addr: Addr, rng: random.Random) -> None:
        for size in rng.sample([1, 3, 7, 64, 4096, 65536, 300_000], 3):
            with self.connect(addr) as s:
                with contextlib.suppress(OSError):
                    s.sendall(rng.randbytes(size))
                _drain(s, time.monotonic() + 0.3, 1 << 20)

    def native_huge_lengths(self, addr: Addr, rng: random.Random) -> None:
        for declared in (2**31, 2**32 - 1):
            for after_hello in (False, True):
                with self.connect(addr) as s:
                    s.sendall((HELLO if after_hello else b"") + struct.pack(">I", declared))
                    end = time.monotonic() + min(CLOSE_EXPECTED_S, max(self.remaining(), 0.5))
                    _, closed = _drain(s, end, 1 << 20)
                    if not closed and time.monotonic() >= end - 0.05 and self.remaining() > 0:
                        self.problem(
                            f"{self._name(addr)}: a frame declaring {declared} bytes "
                            f"({'after' if after_hello else 'before'} HELLO) left the "
                            f"connection open for {CLOSE_EXPECTED_S:g} s"
                        )
        # just under the 100 MiB cap: the broker may buffer what arrives, never the declared
        with self.connect(addr) as s:
            s.sendall(HELLO + struct.pack(">II", 100 * 1024 * 1024 - 1, 16) + rng.randbytes(4096))
            _drain(s, time.monotonic() + 0.2, 1 << 20)

    def native_cbor_garbage(self, addr: Addr, rng: random.Random) -> None:
        nasty = [
            b"\x5b" + (2**62).to_bytes(8, "big"),  # a byte string of 2^62 bytes
            b"\x7b" + (2**40).to_bytes(8, "big") + b"abc",  # text of 2^40
            b"\x9b" + (2**62).to_bytes(8, "big"),  # an array of 2^62 items
            b"\xbb" + (2**62).to_bytes(8, "big"),  # a map of 2^62 pairs
            b"\x9a\x7f\xff\xff\xff" + b"\x00" * 64,
            b"\x81" * 5000 + b"\x00",  # nesting far past the depth cap
            b"\xc2\x4f" + b"\xff" * 15,  # a bignum (tag 2)
            b"\xd8\x1c\x81\xd8\x1d\x00",  # shared references (tags 28/29)
            b"\x5f\x41a\x41b\xff",  # indefinite-length bytes
            b"\xbf\x61a\x01\xff",  # indefinite-length map
            b"\xa2\x61c\x01\x61c\x02",  # duplicate keys
            b"\xa1\x01\x02",  # an integer key
            b"\xf9\x7e\x00",  # half-float NaN
            b"\xff",  # a lone break
            cbor2.dumps(_env(1, 5, {})) + b"\x00",  # trailing bytes
        ]
        frames = [_frame(rng.choice(nasty)) for _ in range(rng.randint(5, 12))]
        frames += [_frame(rng.randbytes(rng.randint(1, 2000))) for _ in range(rng.randint(3, 8))]
        frames += [_frame(cbor2.dumps(_random_cbor(rng, 4))) for _ in range(rng.randint(3, 8))]
        # bad frames back to back (two in a row once took the broker down), lengths that
        # cannot hold their envelope, then a good request that must still be answered
        frames += [struct.pack(">II", 4, 0), struct.pack(">I", 2) + b"xx"]
        frames += [struct.pack(">II", 40, 1000) + b"\x00" * 36]
        rng.shuffle(frames)
        with self.connect(addr) as s:
            s.sendall(HELLO + b"".join(frames) + _request(MetadataRequest(()), 999))
            if _read_until(s, FrameDecoder(), 999, self._end(self.legit_deadline_s)) is None:
                self.problem(
                    f"{self._name(addr)}: after {len(frames)} malformed frames the session "
                    "did not answer a good request (a bad frame must not end the session)"
                )

    def _end(self, seconds: float) -> float:
        return time.monotonic() + min(seconds, max(self.remaining(), 0.5))

    def native_schema(self, addr: Addr, rng: random.Random) -> None:
        topic = PROBE_TOPIC
        fp = {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1024}
        fetch = {
            "max_wait_ms": 0,
            "min_bytes": 0,
            "max_bytes": 1024,
            "topics": [{"name": topic, "partitions": [fp]}],
        }

        def with_fp(**kw: Any) -> dict[str, Any]:
            return {**fetch, "topics": [{"name": topic, "partitions": [{**fp, **kw}]}]}

        def produce(region: Any, payload: bytes = b"", acks: int = 1) -> tuple[Any, bytes]:
            part = {"partition": 0, "batches": [region]}
            body = {
                "acks": acks,
                "timeout_ms": 2000,
                "topics": [{"name": topic, "partitions": [part]}],
            }
            return _env(2, 0, body), payload

        good = build_batch([Record(b"k", b"v")], now_ms=int(time.time() * 1000))
        huge_count = _patched(good, record_count=2**31 - 1, last_offset_delta=2**31 - 2)
        huge_length = _patched(good, batch_length=2**31 - 1)
        neg_length = _patched(good, batch_length=-5, crc=False)
        gap = _patched(good, last_offset_delta=2**31 - 1)
        zstd_garbage = _with_body(
            good,
            attributes=4,
            record_count=2**31 - 1,
            last_offset_delta=2**31 - 2,
            body=rng.randbytes(512),
        )
        zstd_bad_delta = _with_body(
            good, attributes=4, record_count=2**31 - 1, body=rng.randbytes(512)
        )
        bad_crc = bytearray(good)
        bad_crc[-1] ^= 0xFF
        cases: list[tuple[str, Any, bytes]] = [
            ("unknown api 99", _env(99, 0, {}), b""),
            ("api 32767", _env(32767, 0, {}), b""),
            ("api -1", _env(-1, 0, {}), b""),
            ("api 2^40", _env(2**40, 0, {}), b""),
            ("correlation -5", _env(1, -5, {}), b""),
            ("version 2", {**_env(1, 0, {}), "v": 2}, b""),
            ("response as request", {**_env(1, 0, {}), "r": 1}, b""),
            ("r = 7", {**_env(1, 0, {}), "r": 7}, b""),
            ("body a list", _env(1, 0, [1, 2]), b""),
            ("RAFT from a client", _env(9, 0, {"messages": []}), b""),
            ("second HELLO", _env(0, 0, {"role": "client", "client_id": "x"}), b""),
            ("metadata topics str", _env(1, 0, {"topics": "nope"}), b""),
            ("metadata 10001 topics", _env(1, 0, {"topics": ["t"] * 10_001}), b""),
            ("metadata bad names", _env(1, 0, {"topics": ["../../etc", "", "a" * 300]}), b""),
            ("fetch max_bytes 2^40", _env(3, 0, {**fetch, "max_bytes": 2**40}), b""),
            ("fetch partition 2^40", _env(3, 0, with_fp(partition_max_bytes=2**40)), b""),
            ("fetch min_bytes -1", _env(3, 0, {**fetch, "min_bytes": -1}), b""),
            ("fetch wait 2^31", _env(3, 0, {**fetch, "max_wait_ms": 2**31}), b""),
            ("fetch offset -5", _env(3, 0, with_fp(fetch_offset=-5)), b""),
            ("fetch offset 2^63-1", _env(3, 0, with_fp(fetch_offset=2**63 - 1)), b""),
            ("fetch partition -1", _env(3, 0, with_fp(partition=-1)), b""),
            (
                "fetch 64 MiB",
                _env(3, 0, {**with_fp(partition_max_bytes=64 << 20), "max_bytes": 64 << 20}),
                b"",
            ),
            ("fetch bool offset", _env(3, 0, with_fp(fetch_offset=True)), b""),
            ("fetch float wait", _env(3, 0, {**fetch, "max_wait_ms": 1.5}), b""),
            (
                "fetch same partition twice",
                _env(3, 0, {**fetch, "topics": [{"name": topic, "partitions": [fp, fp]}]}),
                b"",
            ),
            (
                "fetch 10001 partitions",
                _env(
                    3,
                    0,
                    {
                        **fetch,
                        "topics": [
                            {
                                "name": topic,
                                "partitions": [
                                    {**fp, "partition": i % 10_000} for i in range(10_001)
                                ],
                            }
                        ],
                    },
                ),
                b"",
            ),
            (
                "list offsets ts -99",
                _env(
                    4,
                    0,
                    {
                        "topics": [
                            {"name": topic, "partitions": [{"partition": 0, "timestamp": -99}]}
                        ]
                    },
                ),
                b"",
            ),
            (
                "create 2^31 partitions",
                _env(
                    5,
                    0,
                    {"topics": [{"name": "s16-x", "partitions": 2**31, "replication_factor": 1}]},
                ),
                b"",
            ),
            (
                "create rf 10000",
                _env(
                    5,
                    0,
                    {
                        "topics": [
                            {"name": "s16-x", "partitions": 1, "replication_factor": 10_000}
                        ],
                        "validate_only": True,
                    },
                ),
                b"",
            ),
        ]
        produce_cases = [
            ("produce region 2^40", *produce([0, 2**40])),
            ("produce region -1", *produce([0, -1])),
            ("produce region offset 5", *produce([5, 10], b"x" * 20)),
            ("produce region past payload", *produce([0, 100], b"x" * 10)),
            ("produce region not a pair", *produce([0, 1, 2], b"x")),
            ("produce leftover payload", *produce([0, len(good)], good + b"extra")),
            ("produce short batch", *produce([0, 10], good[:10])),
            ("produce huge record count", *produce([0, len(huge_count)], huge_count)),
            ("produce huge batch length", *produce([0, len(huge_length)], huge_length)),
            ("produce negative batch length", *produce([0, len(neg_length)], neg_length)),
            ("produce bad crc", *produce([0, len(bad_crc)], bytes(bad_crc))),
            ("produce acks 2", *produce([0, len(good)], good, acks=2)),
            ("produce 2^31 offsets", *produce([0, len(gap)], gap)),
            ("produce zstd garbage 2^31 records", *produce([0, len(zstd_garbage)], zstd_garbage)),
            ("produce zstd bad delta", *produce([0, len(zstd_bad_delta)], zstd_bad_delta)),
        ]
        all_cases = cases + produce_cases
        rng.shuffle(all_cases)
        blob = bytearray(HELLO)
        for i, (_name, env, payload) in enumerate(all_cases):
            env_bytes = env if isinstance(env, bytes) else cbor2.dumps(env)
            fixed = cbor2.loads(env_bytes)
            if isinstance(fixed, dict) and fixed.get("c") == 0:
                fixed["c"] = 100 + i  # each answer addressable
                env_bytes = cbor2.dumps(fixed)
            blob += _frame(env_bytes, payload)
        blob += _request(MetadataRequest(()), 999)
        with self.connect(addr) as s:
            s.sendall(bytes(blob))
            frames = _read_until(s, FrameDecoder(), 999, self._end(2 * self.legit_deadline_s))
        if frames is None:
            self.problem(
                f"{self._name(addr)}: after {len(all_cases)} requests that break the schema "
                "the session did not answer a good one"
            )
            return
        for f in frames:
            try:
                msg = decode(f)
            except Exception:
                continue
            if f.correlation_id >= 100 and f.correlation_id - 100 < len(all_cases):
                name = all_cases[f.correlation_id - 100][0]
                if name == "produce 2^31 offsets" and _produce_ok(msg):
                    self.note(
                        "a produce batch with record_count 1 and last_offset_delta 2^31-1 "
                        "(valid CRC) was accepted: it takes 2^31 offsets"
                    )
                if name == "produce zstd garbage 2^31 records" and _produce_ok(msg):
                    self.note(
                        "a zstd batch of random bytes declaring 2^31-1 records (valid CRC) "
                        "was accepted: the broker does not look inside compressed batches"
                    )

    def native_truncated(self, addr: Addr, rng: random.Random) -> None:
        md = _request(MetadataRequest(()), 2)
        for data in (HELLO[:3], HELLO[:-3], HELLO + md[:-5], HELLO + md[:7], HELLO[:9]):
            with self.connect(addr) as s:
                s.sendall(data)
                if rng.random() < 0.5:
                    s.shutdown(socket.SHUT_WR)
                    _drain(s, time.monotonic() + 0.3, 1 << 16)
            # close right away (or after a half-close): the broker must let go

    def native_pipelined(self, addr: Addr, rng: random.Random) -> None:
        """Thousands of requests, never reading an answer; then a reset."""
        n = rng.randint(PIPELINED_MAX // 4, PIPELINED_MAX)
        part = FetchPartition(0, 0, 1 << 20)  # type: ignore[arg-type]
        fetch = FetchRequest(0, 0, 1 << 20, (FetchTopic(PROBE_TOPIC, (part,)),))
        reqs = [
            _request(MetadataRequest(None if i % 3 else ()), 2 + i)
            if i % 2
            else _request(fetch, 2 + i)
            for i in range(n)
        ]
        with self.connect(addr, timeout_s=1.0) as s:
            _no_linger = struct.pack("ii", 1, 0)
            s.sendall(HELLO)
            sent = 0
            end = self._end(2.0)
            try:
                for chunk in _chunks(reqs, 200):
                    if time.monotonic() > end:
                        break
                    s.sendall(chunk)  # blocks once the broker stops reading: backpressure
                    sent += 200
            except TimeoutError:
                pass
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _no_linger)  # RST on close
        # long-poll fetches parked (max wait 5 min), then the client goes away
        far = FetchPartition(0, 10**12, 1 << 20)  # type: ignore[arg-type]
        parked = FetchRequest(300_000, 1 << 20, 1 << 20, (FetchTopic(PROBE_TOPIC, (far,)),))
        with self.connect(addr) as s:
            s.sendall(HELLO + b"".join(_request(parked, 2 + i) for i in range(80)))
            _drain(s, time.monotonic() + 0.3, 1 << 16)

    def dribble(self, addr: Addr, data: bytes, seconds: float, name: str) -> None:
        """Slowloris: one byte a second until ``seconds`` pass or the peer hangs up."""
        self.count(name)
        sent = 0
        t0 = time.monotonic()
        try:
            with self.connect(addr) as s:
                s.settimeout(1.0)
                for i in range(int(seconds) + 1):
                    if self.stop.is_set() or time.monotonic() - t0 > seconds:
                        break
                    s.sendall(data[i : i + 1] if i < len(data) else b"\r")
                    sent += 1
                    try:
                        if s.recv(4096) == b"":
                            break  # the broker hung up: fine
                    except TimeoutError:
                        pass
        except OSError:
            pass
        self.log(f"  {name} {self._name(addr)}: {sent} bytes over {time.monotonic() - t0:.1f} s")

    # ------------------------------------------------------------------ metadata port

    def metadata_attacks(self, addr: Addr, rng: random.Random) -> None:
        touch = _Touch(self.marker)
        pickles = [pickle.dumps(touch, protocol=p) for p in (0, 2, 4, 5)]
        payloads: list[bytes] = []
        for p in pickles:
            z = zlib.compress(p)
            payloads += [
                struct.pack("i", len(z)) + z,  # what pysyncobj's TcpConnection reads
                struct.pack("i", len(p)) + p,
                p,
                struct.pack("i", len(z) + 8) + z + b"\x00" * 8,
            ]
        # a pysyncobj-shaped "hello" (its first message is the sender's address)
        hello = zlib.compress(pickle.dumps("127.0.0.1:1"))
        payloads.append(struct.pack("i", len(hello)) + hello)
        payloads += [rng.randbytes(rng.randint(1, 5000)) for _ in range(3)]
        payloads += [
            struct.pack("i", 2**31 - 1) + rng.randbytes(1024),
            struct.pack("i", -1) + rng.randbytes(64),
            struct.pack("i", 8 * 1024 * 1024 + 1) + rng.randbytes(4096),
            struct.pack("i", 8 * 1024 * 1024 - 1) + rng.randbytes(65536),
        ]
        for data in payloads:
            if self.remaining() <= 0:
                return
            with contextlib.suppress(OSError), self.connect(addr) as s:
                s.sendall(data)
                _drain(s, time.monotonic() + 0.1, 1 << 16)

    # ------------------------------------------------------------------ admin HTTP

    def admin_attacks(self, addr: Addr, rng: random.Random) -> None:
        requests = [
            rng.randbytes(200) + b"\r\n\r\n",
            b"\r\n\r\n",
            b"GET\r\n\r\n",
            b"POST /health HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
            b"GET " + b"/" * 20_000 + b" HTTP/1.1\r\n\r\n",
            b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
            b"GET /health HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(64),  # TLS hello
        ]
        traversal = [
            b"/../../../../etc/passwd",
            b"/health/../../../../etc/passwd",
            b"/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            b"/..%2f..%2f..%2fetc%2fpasswd",
            b"//etc/passwd",
            b"/metrics/../../../../../etc/passwd",
            b"/etc/passwd",
            b"file:///etc/passwd",
        ]
        for path in traversal:
            requests.append(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        for data in requests:
            if self.remaining() <= 0:
                return
            answer = b""
            with contextlib.suppress(OSError), self.connect(addr) as s:
                with contextlib.suppress(OSError):
                    s.sendall(data)
                    s.shutdown(socket.SHUT_WR)  # the head ends here: answer now
                answer, _ = _drain(s, self._end(2.0), 1 << 20)
            if b"root:" in answer or b"/bin/" in answer:
                self.problem(f"{self._name(addr)}: admin HTTP served a file for {data[:60]!r}")
            if any(p in data for p in traversal) and answer and b" 404 " not in answer[:40]:
                self.problem(
                    f"{self._name(addr)}: admin HTTP answered {answer[:40]!r} to {data[:60]!r}"
                )
        # a reset in the middle of a request (this once took the broker down)
        for _ in range(3):
            with contextlib.suppress(OSError), self.connect(addr) as s:
                s.sendall(b"GET /hea")
                time.sleep(0.05)  # let the broker start reading: the reset must land mid-read
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    # ------------------------------------------------------------------ flood

    def flood(self, addr: Addr, rng: random.Random) -> None:
        n = self.flood_n
        if n <= 0 or self.remaining() < 1.5:
            return
        socks: list[socket.socket] = []
        t0 = time.monotonic()
        try:
            for i in range(n):
                if self.remaining() <= 1.0:
                    break
                try:
                    s = socket.create_connection(addr, timeout=2.0)
                except OSError as e:
                    self.note(f"flood: connection {i} to {self._name(addr)} failed: {e!r}")
                    break
                socks.append(s)
                with contextlib.suppress(OSError):
                    if i % 2:
                        s.sendall(HELLO)  # past the handshake: held as a client session
            with self.lock:
                self.report.connections_opened += len(socks)
                self.report.flood_held_max = max(self.report.flood_held_max, len(socks))
            self.log(
                f"  flood {self._name(addr)}: {len(socks)} connections open "
                f"in {time.monotonic() - t0:.2f} s"
            )
            hold = min(FLOOD_HOLD_S, max(self.remaining() - 0.5, 0.5))
            end = time.monotonic() + hold
            for _ in range(10):  # legitimate requests while the flood is held
                self.legit(addr, f"while {len(socks)} idle connections were held")
                if time.monotonic() >= end:
                    break
                time.sleep(min(0.5, max(end - time.monotonic(), 0)))
        finally:
            for s in socks:
                with contextlib.suppress(OSError):
                    s.close()
        self.legit(addr, "right after the flood closed")

    # ------------------------------------------------------------------ rounds

    def round(self) -> None:
        t = self.targets
        for i, native in enumerate(t.native):
            if self.remaining() <= 0:
                return
            rng = self.sub_rng()
            meta = t.metadata[i] if i < len(t.metadata) else None
            admin = t.admin[i] if i < len(t.admin) else None
            slow_s = min(DRIBBLE_S_MAX, max(self.remaining() - 0.5, 0))
            slow = []
            if slow_s >= 2:
                md = _request(MetadataRequest(()), 2)
                jobs = [
                    (native, HELLO + md, "slowloris HELLO"),
                    (native, md, "slowloris without HELLO"),
                ]
                if admin is not None:
                    jobs.append((admin, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "slow http"))
                for a, data, name in jobs:
                    th = threading.Thread(target=self.dribble, args=(a, data, slow_s, name))
                    th.daemon = True
                    th.start()
                    slow.append(th)
                # one dribbling session that is past its HELLO
                th = threading.Thread(target=self._dribble_in_session, args=(native, slow_s))
                th.daemon = True
                th.start()
                slow.append(th)
            Attack = Callable[[Addr, random.Random], None]
            attacks: list[tuple[str, Attack, Addr]] = [
                ("native garbage", self.native_garbage, native),
                ("native huge lengths", self.native_huge_lengths, native),
                ("native cbor garbage", self.native_cbor_garbage, native),
                ("native schema", self.native_schema, native),
                ("native truncated", self.native_truncated, native),
                ("native pipelined", self.native_pipelined, native),
            ]
            if meta is not None:
                attacks.append(("metadata pickle and garbage", self.metadata_attacks, meta))
            if admin is not None:
                attacks.append(("admin http", self.admin_attacks, admin))
            rng.shuffle(attacks)
            attacks.append(("flood", self.flood, native))
            for name, fn, addr in attacks:
                t0 = time.monotonic()
                self._guard(name, fn, addr, rng)
                self.log(f"  {name} {self._name(addr)}: {time.monotonic() - t0:.2f} s")
            if self.remaining() > 0:
                self.legit(native, "after a round of attacks")
                if admin is not None:
                    self.admin_health(admin, native)
            for th in slow:
                th.join(timeout=max(0.0, self.remaining()) + 2.0)

    def _dribble_in_session(self, addr: Addr, seconds: float) -> None:
        self.count("slowloris after HELLO")
        t0 = time.monotonic()
        try:
            with self.connect(addr) as s:
                s.settimeout(1.0)
                s.sendall(HELLO)
                data = _request(MetadataRequest(()), 2)
                for i in range(min(len(data), int(seconds) + 1)):
                    if self.stop.is_set() or time.monotonic() - t0 > seconds:
                        break
                    s.sendall(data[i : i + 1])
                    with contextlib.suppress(TimeoutError):
                        if s.recv(65536) == b"":
                            break
        except OSError:
            pass


def _fds_in_use() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


def _chunks(items: list[bytes], n: int) -> Iterator[bytes]:
    for i in range(0, len(items), n):
        yield b"".join(items[i : i + n])


def _drain(sock: socket.socket, end: float, max_bytes: int) -> tuple[bytes, bool]:
    """Read until the peer closes (True), ``end``, or ``max_bytes``."""
    out = bytearray()
    for _ in range(100_000):
        left = end - time.monotonic()
        if left <= 0 or len(out) >= max_bytes:
            return bytes(out), False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return bytes(out), False
        except OSError:
            return bytes(out), True  # reset: closed too
        if not chunk:
            return bytes(out), True
        out += chunk
    return bytes(out), False


def _read_until(
    sock: socket.socket, decoder: FrameDecoder, correlation_id: int, end: float
) -> list[Frame] | None:
    """Frames until one answers ``correlation_id``; None at ``end`` or when the peer
    closes or sends something that is not a frame."""
    frames: list[Frame] = []
    received = 0
    for _ in range(100_000):
        left = end - time.monotonic()
        if left <= 0 or received > READ_BYTES_MAX * 8:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except OSError:
            return None
        if not chunk:
            return None
        received += len(chunk)
        try:
            got = decoder.feed(chunk)
            for _ in range(1000):
                more = decoder.feed(b"")
                if not more:
                    break
                got += more
        except Exception:
            return None
        frames += got
        if any(f.correlation_id == correlation_id for f in got):
            return frames
    return None


def _random_cbor(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(9 if depth > 0 else 6)
    if kind == 0:
        return rng.randint(-(2**63), 2**63 - 1)
    if kind == 1:
        return rng.random() * 10 ** rng.randint(-5, 30)
    if kind == 2:
        return rng.randbytes(rng.randint(0, 20))
    if kind == 3:
        return "".join(chr(rng.randint(32, 0x2FF)) for _ in range(rng.randint(0, 12)))
    if kind == 4:
        return rng.choice([None, True, False])
    if kind == 5:
        return rng.choice(["v", "k", "c", "r", "b"])
    if kind == 6:
        return [_random_cbor(rng, depth - 1) for _ in range(rng.randint(0, 5))]
    if kind == 7:
        keys = ["v", "k", "c", "r", "b", "topics", "x"]
        return {rng.choice(keys): _random_cbor(rng, depth - 1) for _ in range(rng.randint(0, 6))}
    return _env(rng.randint(-3, 40), rng.randint(-3, 2**31), _random_cbor(rng, depth - 1))


def _patched(batch: bytes, *, crc: bool = True, **fields: int) -> bytes:
    """``batch`` with header fields overwritten (and the CRC made right again)."""
    buf = bytearray(batch)
    where = {
        "batch_length": (8, ">i"),
        "attributes": (21, ">h"),
        "last_offset_delta": (23, ">i"),
        "record_count": (57, ">i"),
    }
    for name, value in fields.items():
        pos, fmt = where[name]
        struct.pack_into(fmt, buf, pos, value)
    if crc:
        struct.pack_into(">I", buf, 17, crc32c(memoryview(buf)[CRC_START:]))
    return bytes(buf)


def _with_body(batch: bytes, *, body: bytes, **fields: int) -> bytes:
    """A batch with ``batch``'s header and ``body`` as its records, length and CRC right."""
    buf = bytearray(batch[:61]) + body
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    return _patched(bytes(buf), crc=True, **fields)


def _produce_ok(msg: Any) -> bool:
    try:
        return int(msg.topics[0].partitions[0].error) == 0
    except (AttributeError, IndexError, TypeError, ValueError):
        return False


def run_hostile(
    targets: HostileTargets,
    *,
    seed: int,
    duration_s: float = 20.0,
    log: Callable[[str], None] = lambda _line: None,
    flood_connections: int = FLOOD_CONNECTIONS,
    legit_deadline_s: float = LEGIT_DEADLINE_S,
    max_rounds: int = 1000,
) -> HostileReport:
    """Throw everything in the module docstring at every broker in rounds for about
    ``duration_s``; see the module docstring. Raises only ``ValueError`` for targets that
    are not on 127.0.0.0/8."""
    targets = HostileTargets(
        [_loopback(a) for a in targets.native],
        [_loopback(a) for a in targets.metadata],
        [_loopback(a) for a in targets.admin],
    )
    run = _Run(targets, seed, duration_s, log, flood_connections, legit_deadline_s)
    log(
        f"S16 hostile clients: seed {seed}, {duration_s:g} s, {len(targets.native)} broker(s), "
        f"flood of {run.flood_n} connections, pickle marker {run.marker}"
    )
    for addr in targets.native:  # the probe topic the produce attacks aim at
        run.metadata_write(addr)
        break
    monitor = threading.Thread(target=run.monitor, name="s16-monitor", daemon=True)
    monitor.start()
    try:
        for r in range(max_rounds):
            if run.remaining() <= 0:
                break
            log(f"round {r + 1} ({run.remaining():.1f} s left)")
            run.round()
            run.report.rounds += 1
            for addr in targets.native:
                if run.remaining() > 0:
                    run.metadata_write(addr)
    finally:
        run.stop.set()
        monitor.join(timeout=legit_deadline_s + 2.0)
    for addr in targets.native:  # after everything: still serving?
        run.legit(addr, "after the run")
    run.report.pickle_marker_appeared = os.path.exists(run.marker)
    if run.report.pickle_marker_appeared:
        run.problem(f"the pickle marker {run.marker} appeared: the metadata port ran a pickle")
    run.report.elapsed_s = round(time.monotonic() - run.start, 3)
    run.report.longest_legit_wait_s = round(run.report.longest_legit_wait_s, 4)
    for tally in run.report.brokers.values():
        tally.longest_wait_s = round(tally.longest_wait_s, 4)
    log(
        f"S16 done: {run.report.rounds} round(s), {run.report.connections_opened} connections, "
        f"longest legitimate wait {run.report.longest_legit_wait_s:.3f} s, "
        f"{len(run.report.problems)} problem(s)"
    )
    return run.report


def _addrs(text: str) -> list[Addr]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if part:
            host, _, port = part.rpartition(":")
            out.append((host or "127.0.0.1", int(port)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m raftlog.scenarios.hostile",
        description="S16 hostile clients against running brokers; prints a JSON report.",
    )
    p.add_argument("--native", required=True, help="H:P[,H:P...] native ports")
    p.add_argument("--metadata", default="", help="H:P[,...] metadata (pysyncobj) ports")
    p.add_argument("--admin", default="", help="H:P[,...] admin HTTP ports")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--flood", type=int, default=FLOOD_CONNECTIONS, help="connections per flood")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    targets = HostileTargets(_addrs(args.native), _addrs(args.metadata), _addrs(args.admin))

    def log(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    try:
        report = run_hostile(
            targets,
            seed=args.seed,
            duration_s=args.duration,
            log=log,
            flood_connections=args.flood,
        )
    except ValueError as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        return 2
    print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
