"""Key partitioning as Kafka does it, and sticky partitioning for records without a key."""

from __future__ import annotations

import random

import pytest

from raftlog.client.partitioner import StickyPartitions, murmur2, partition_for_key, to_positive

# Source: Apache Kafka, clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
# testMurmur2 (the expected values of Utils.murmur2, signed Java ints).
KAFKA_UTILS_TEST_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "expected"), KAFKA_UTILS_TEST_VECTORS)
def test_murmur2_matches_kafkas_utils_test(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_partition_uses_to_positive_not_abs() -> None:
    # toPositive(-790332482) = -790332482 & 0x7fffffff = 1357151166 (abs would give 790332482)
    assert to_positive(murmur2(b"foobar")) == 1357151166
    assert partition_for_key(b"foobar", 10) == 1357151166 % 10 == 6
    assert partition_for_key(b"foobar", 50) == 16
    assert to_positive(-(2**31)) == 0


def test_murmur2_agrees_with_kafka_python_on_random_keys() -> None:
    # kafka-python (a dev dependency) ports the same function and returns it unsigned
    kafka_default = pytest.importorskip("kafka.partitioner.default")
    rng = random.Random(7)
    for _ in range(2000):
        key = rng.randbytes(rng.randrange(0, 40))
        assert murmur2(key) & 0xFFFFFFFF == kafka_default.murmur2(key), key


def test_sticky_partition_stays_until_a_batch_is_sent_then_moves() -> None:
    sticky = StickyPartitions(random.Random(1))
    first = sticky.partition("t", 6)
    assert all(sticky.partition("t", 6) == first for _ in range(100))
    sticky.on_batch_sent("t", (first + 1) % 6, 6)  # another partition's batch: no change
    assert sticky.partition("t", 6) == first
    seen = {first}
    current = first
    for _ in range(50):
        sticky.on_batch_sent("t", current, 6)
        nxt = sticky.partition("t", 6)
        assert nxt != current
        seen.add(nxt)
        current = nxt
    assert seen == set(range(6))


def test_sticky_partition_with_one_partition_stays() -> None:
    sticky = StickyPartitions(random.Random(1))
    assert sticky.partition("t", 1) == 0
    sticky.on_batch_sent("t", 0, 1)
    assert sticky.partition("t", 1) == 0
