"""The client library against three real brokers: per-key order across a leader kill,
backpressure while the cluster is down, and a paused leader reported as unknown outcome."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from raftlog import Admin, Consumer, Producer
from raftlog.client.errors import BufferFullError, UnknownOutcomeError
from raftlog.errors import RaftlogError
from raftlog.testing.procs import ProcessGroup, wait_until
from raftlog.wire import MetadataRequest
from tests.integration.test_broker_cluster import IDS, Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Any, request: Any) -> Iterator[Cluster]:
    with ProcessGroup(str(tmp_path)) as pg:
        c = Cluster(pg, str(tmp_path))
        try:
            for i in IDS:
                c.start(i)
            wait_until(lambda: len(c.client(1).call(MetadataRequest()).brokers) == 3,
                       timeout_s=30, what="three brokers")  # fmt: skip
            yield c
        finally:
            for cl in list(c.clients.values()):
                cl.close()
            if getattr(request.node, "rep_call_failed", False):
                for p in pg.procs.values():
                    print(f"--- {p.name} ---\n{p.log()[-3000:]}")


def bootstrap(c: Cluster) -> list[str]:
    return [f"127.0.0.1:{c.ports[i]}" for i in IDS]


def test_per_key_order_holds_across_a_leader_kill(cluster: Cluster) -> None:
    c = cluster
    Admin(bootstrap(c)).create_topic("keyed", partitions=3, replication_factor=3)
    keys = [b"k%d" % i for i in range(12)]
    futures: list[tuple[bytes, int, Any]] = []
    with Producer(bootstrap(c), acks="all", linger_ms=2, request_timeout_ms=5000,
                  delivery_timeout_ms=30_000) as producer:  # fmt: skip
        for n in range(3000):
            if n == 1000:
                victim = c.leaders("keyed")[0]
                c.drop_client(victim)
                c.pg.kill(f"n{victim}", signal.SIGKILL)
            key = keys[n % len(keys)]
            futures.append((key, n, producer.send("keyed", b"%d" % n, key=key)))
        producer.flush(60)
    acked: dict[bytes, list[tuple[int, int, int]]] = {}
    unknown = 0
    for key, n, fut in futures:
        try:
            md = fut.result(0)
        except UnknownOutcomeError:
            unknown += 1
            continue
        acked.setdefault(key, []).append((n, md.partition, md.offset))
    # without idempotence, batches in flight at the kill end as unknown outcome (never resent)
    assert sum(len(v) for v in acked.values()) >= 1500, (unknown, len(futures))
    for key, rows in acked.items():
        offsets = [o for _, _, o in sorted(rows)]
        assert offsets == sorted(offsets), f"key {key!r}: acknowledged out of order"
        assert len({p for _, p, _ in rows}) == 1, f"key {key!r} moved partitions"
    # and a consumer sees each key's acknowledged records in send order
    consumer = Consumer(bootstrap(c), auto_offset_reset="earliest")
    consumer.assign([("keyed", p) for p in range(3)])
    seen: dict[bytes, list[int]] = {}
    acked_values = {n for rows in acked.values() for n, _, _ in rows}
    found = 0
    deadline = time.monotonic() + 30
    while found < len(acked_values) and time.monotonic() < deadline:
        for r in consumer.poll(timeout_ms=500, max_records=5000):
            assert r.key is not None and r.value is not None
            seen.setdefault(r.key, []).append(int(r.value))
            found += int(r.value) in acked_values
    consumer.close()
    for key, rows in acked.items():
        want = [n for n, _, _ in sorted(rows)]
        got = [n for n in seen.get(key, []) if n in set(want)]
        assert got == want, f"key {key!r}: consumer order differs"


def test_backpressure_when_the_cluster_is_down(cluster: Cluster) -> None:
    c = cluster
    Admin(bootstrap(c)).create_topic("bp", partitions=1, replication_factor=3)
    producer = Producer(bootstrap(c), acks="all", batch_bytes=1024, buffer_bytes=16 * 1024,
                        max_block_ms=300, delivery_timeout_ms=60_000)  # fmt: skip
    try:
        producer.send("bp", b"warm-up").result(20)
        for i in IDS:
            c.drop_client(i)
            c.pg.kill(f"n{i}", signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(BufferFullError):
            for _ in range(10_000):
                producer.send("bp", b"x" * 200)
        assert time.monotonic() - t0 < 20, "send blocked far past max_block_ms"
    finally:
        with contextlib.suppress(RaftlogError):
            producer.close(5)


def test_a_paused_leader_gives_unknown_outcome_not_failure(cluster: Cluster) -> None:
    c = cluster
    Admin(bootstrap(c)).create_topic("paused", partitions=1, replication_factor=3)
    leader = c.leaders("paused")[0]
    proc = c.pg.procs[f"n{leader}"]
    assert proc.popen is not None
    with Producer(bootstrap(c), acks="all", request_timeout_ms=1000, idempotent=False,
                  delivery_timeout_ms=20_000) as producer:  # fmt: skip
        producer.send("paused", b"before").result(20)
        proc.popen.send_signal(signal.SIGSTOP)
        try:
            fut = producer.send("paused", b"during")
            with pytest.raises(UnknownOutcomeError) as e:
                fut.result(30)
            assert "may or may not" in e.value.message
        finally:
            proc.popen.send_signal(signal.SIGCONT)


def read_all(c: Cluster, topic: str, partitions: int, want: int) -> dict[int, list[bytes]]:
    """Every record of ``topic`` from the beginning, per partition (until ``want`` are read
    or 60 s pass)."""
    consumer = Consumer(bootstrap(c), auto_offset_reset="earliest")
    consumer.assign([(topic, p) for p in range(partitions)])
    got: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    count = 0
    deadline = time.monotonic() + 60
    try:
        while count < want and time.monotonic() < deadline:
            for r in consumer.poll(timeout_ms=500, max_records=5000):
                assert r.value is not None
                got[r.partition].append(r.value)
                count += 1
    finally:
        consumer.close()
    return got


def test_idempotent_producer_no_duplicate_no_gap_while_leaders_are_killed(
    cluster: Cluster,
) -> None:
    """Kill -9 the leader of partition 0 three times (restarting it each time) while an
    idempotent producer with 5 batches in flight per partition keeps sending: every record
    is acknowledged, and each partition holds exactly what was sent to it, in send order,
    once."""
    c = cluster
    Admin(bootstrap(c)).create_topic("idem", partitions=2, replication_factor=3)
    sent: dict[int, list[bytes]] = {0: [], 1: []}
    futures = []
    with Producer(bootstrap(c), linger_ms=1, batch_bytes=2048, request_timeout_ms=3000,
                  retry_backoff_ms=50, delivery_timeout_ms=90_000) as producer:  # fmt: skip
        for n in range(8000):
            if n in (2000, 4000, 6000):
                victim = c.leaders("idem")[0]
                c.drop_client(victim)
                c.pg.kill(f"n{victim}", signal.SIGKILL)
                # a new leader for partition 0, then the victim back (keeps a majority)
                wait_until(lambda v=victim: c.leaders("idem")[0] != v, timeout_s=30,
                           what="a new leader for partition 0")  # fmt: skip
                c.start(victim)
            value = b"%d" % n
            partition = n % 2
            sent[partition].append(value)
            futures.append(producer.send("idem", value, partition=partition))
            if n % 500 == 0:
                time.sleep(0.05)  # let batches leave, so kills find requests in flight
        producer.flush(120)
    offsets: dict[int, list[int]] = {0: [], 1: []}
    for f in futures:
        md = f.result(0)  # every record acknowledged: no unknown outcome with idempotence
        offsets[md.partition].append(md.offset)
    for p in (0, 1):
        # increasing, not dense: each new leader's control batch takes an offset
        assert len(offsets[p]) == len(sent[p])
        assert offsets[p] == sorted(set(offsets[p])), f"partition {p}: offsets not increasing"
    got = read_all(c, "idem", 2, 8000)
    for p in (0, 1):
        dups = len(got[p]) - len(set(got[p]))
        assert dups == 0, f"partition {p}: {dups} duplicate record(s)"
        assert got[p] == sent[p], f"partition {p}: a gap or reorder"


def test_a_paused_leader_with_idempotence_the_resend_lands_once(cluster: Cluster) -> None:
    """The same pause as above, idempotent: the batch that went to the paused leader is
    resent to the new one, acknowledged, and after the old leader wakes up the partition
    holds it once."""
    c = cluster
    Admin(bootstrap(c)).create_topic("paused2", partitions=1, replication_factor=3)
    leader = c.leaders("paused2")[0]
    proc = c.pg.procs[f"n{leader}"]
    assert proc.popen is not None
    with Producer(bootstrap(c), request_timeout_ms=1000, retry_backoff_ms=50,
                  delivery_timeout_ms=30_000, compression="lz4") as producer:  # fmt: skip
        producer.send("paused2", b"before").result(20)
        proc.popen.send_signal(signal.SIGSTOP)
        try:
            meta = producer.send("paused2", b"during").result(30)
        finally:
            proc.popen.send_signal(signal.SIGCONT)
        producer.send("paused2", b"after").result(30)
    assert meta.offset > 0
    got = read_all(c, "paused2", 1, 3)
    assert got[0] == [b"before", b"during", b"after"]
