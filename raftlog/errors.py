"""Errors a user or a peer can see: a code, a message a person can act on, and a class.

A *retriable* error may go away by itself (not leader, leader not available, timeout); a
*final* one will not (unknown topic, invalid config, too large). A timeout is "unknown
outcome", never "not written". Storage-level errors (corruption, fenced log) live here too
so that every layer reports them the same way.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Stable numeric codes: they go on the wire, so never renumber one."""

    NONE = 0
    UNKNOWN = 1
    CORRUPT_RECORD = 2
    OFFSET_OUT_OF_RANGE = 3
    UNKNOWN_TOPIC_OR_PARTITION = 4
    INVALID_TOPIC = 5
    RECORD_TOO_LARGE = 6
    NOT_LEADER = 7
    LEADER_NOT_AVAILABLE = 8
    REQUEST_TIMED_OUT = 9
    UNKNOWN_OUTCOME = 10
    INVALID_CONFIG = 11
    KAFKA_STORAGE_ERROR = 12
    LOG_FENCED = 13
    INVALID_REQUEST = 14
    TOPIC_ALREADY_EXISTS = 15
    INVALID_PARTITIONS = 16
    INVALID_REPLICATION_FACTOR = 17
    BROKER_NOT_AVAILABLE = 18
    UNKNOWN_BROKER = 19
    STALE_TERM = 20
    ILLEGAL_GENERATION = 21
    UNKNOWN_MEMBER_ID = 22
    GROUP_ID_NOT_FOUND = 23
    NOT_OWNER = 24
    NON_EMPTY_GROUP = 25
    BROKER_HAS_REPLICAS = 26
    OFFSET_METADATA_TOO_LARGE = 27
    OUT_OF_ORDER_SEQUENCE = 28
    INVALID_PRODUCER_EPOCH = 29
    NOT_COORDINATOR = 30
    COORDINATOR_NOT_AVAILABLE = 31
    REBALANCE_IN_PROGRESS = 32
    FENCED_INSTANCE_ID = 33
    INCONSISTENT_GROUP_PROTOCOL = 34


RETRIABLE_CODES = frozenset(
    {
        ErrorCode.NOT_LEADER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.UNKNOWN_OUTCOME,
        ErrorCode.KAFKA_STORAGE_ERROR,
        # fewer live, non-draining brokers than replicas asked: may pass once brokers return
        ErrorCode.BROKER_NOT_AVAILABLE,
        # the group coordinator moved or is electing: find it again and retry
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
    }
)


class RaftlogError(Exception):
    """Base of every raftlog error. ``code`` says what happened, ``retriable`` what to do."""

    code: ErrorCode = ErrorCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def retriable(self) -> bool:
        return self.code in RETRIABLE_CODES


class CorruptRecordError(RaftlogError):
    """A record batch failed validation (bad CRC, bad length, bad magic, bad counts)."""

    code = ErrorCode.CORRUPT_RECORD


class OffsetOutOfRangeError(RaftlogError):
    """The asked offset is below the log start or past the log end."""

    code = ErrorCode.OFFSET_OUT_OF_RANGE


class InvalidTopicError(RaftlogError):
    """A topic name that is not ``[A-Za-z0-9._-]{1,249}`` or is ``.``/``..``."""

    code = ErrorCode.INVALID_TOPIC


class RecordTooLargeError(RaftlogError):
    """A batch or record larger than the configured maximum."""

    code = ErrorCode.RECORD_TOO_LARGE


class InvalidConfigError(RaftlogError):
    """A configuration value out of its range."""

    code = ErrorCode.INVALID_CONFIG


class LogFencedError(RaftlogError):
    """The log saw an I/O error on write or fsync and accepts nothing more until reopened.

    After a failed fsync the kernel may have dropped dirty pages: nothing written since the
    last good fsync can be trusted, so the replica stops acknowledging (it is "fenced").
    """

    code = ErrorCode.LOG_FENCED


class StorageError(RaftlogError):
    """An I/O error from the disk (ENOSPC, EIO...) that is not (yet) a fence."""

    code = ErrorCode.KAFKA_STORAGE_ERROR
