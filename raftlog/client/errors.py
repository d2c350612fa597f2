"""Errors the client raises: every one a ``RaftlogError`` with a code and a message a person
can act on. Errors the broker answers with keep the broker's code (``BrokerError``); the rest
say what the client saw (a broker it cannot reach, a connection lost, a request or a
delivery that timed out).

The rule that matters most: once a produce request has left the client and no answer came
back, the records *may or may not* have been written. Such a failure is reported as
``UnknownOutcomeError`` (code ``UNKNOWN_OUTCOME``), never as "not written", and the producer
does not silently resend it (without idempotence a resend could write the records twice).
"""

from __future__ import annotations

from raftlog.errors import ErrorCode, RaftlogError


class ClientError(RaftlogError):
    """Base of the errors raised by the client itself (not answered by a broker)."""


class BrokerError(RaftlogError):
    """An error code a broker answered with, for one request, topic or partition."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class BrokerUnreachableError(ClientError):
    """No connection could be made: nothing was sent, so retrying is safe."""

    code = ErrorCode.BROKER_NOT_AVAILABLE


class ConnectionLostError(ClientError):
    """The connection broke while a request was in flight: it may have been applied."""

    code = ErrorCode.BROKER_NOT_AVAILABLE


class RequestTimedOutError(ClientError):
    """No answer within the request timeout: the request may or may not have been applied."""

    code = ErrorCode.REQUEST_TIMED_OUT


class UnknownOutcomeError(ClientError):
    """A produce whose records may or may not have been written."""

    code = ErrorCode.UNKNOWN_OUTCOME


class DeliveryTimeoutError(ClientError):
    """Records that were never sent (no leader reachable) before ``delivery_timeout_ms``."""

    code = ErrorCode.REQUEST_TIMED_OUT


class BufferFullError(ClientError):
    """The producer's buffer stayed full for ``max_block_ms``: the record was not queued."""

    code = ErrorCode.REQUEST_TIMED_OUT


class ClientClosedError(ClientError):
    """The client was closed before the operation could finish."""

    code = ErrorCode.UNKNOWN


class ProtocolError(ClientError):
    """The broker sent something this client cannot read (a bug or a version mismatch)."""

    code = ErrorCode.INVALID_REQUEST


class CommitFailedError(RaftlogError):
    """An offset commit the group coordinator refused because this member no longer owns
    the partitions (a rebalance moved them, or the member was dropped from the group):
    nothing was committed, and the records after the last successful commit will be read
    again by the partitions' next owner. ``code`` says why (ILLEGAL_GENERATION,
    UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS, FENCED_INSTANCE_ID, NOT_OWNER). The consumer
    rejoins the group at its next ``poll``; Kafka's CommitFailedException."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.ILLEGAL_GENERATION) -> None:
        super().__init__(message)
        self.code = code


def broker_error(code: ErrorCode, message: str | None, what: str) -> BrokerError:
    """A ``BrokerError`` for ``code`` about ``what`` ("topic 'x' partition 3"), with the
    broker's message when it gave one and a hint for the common cases."""
    hint = _HINTS.get(code, "")
    detail = f": {message}" if message else ""
    return BrokerError(code, f"{what}: {code.name}{detail}{hint}")


_HINTS: dict[ErrorCode, str] = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: (
        "; create it first (`raftlog topic create NAME` or Admin.create_topic)"
    ),
    ErrorCode.RECORD_TOO_LARGE: "; send smaller records or raise the topic's max.message.bytes",
    ErrorCode.NOT_LEADER: "; the cluster is electing a leader, retry shortly",
    ErrorCode.LEADER_NOT_AVAILABLE: "; the cluster is electing a leader, retry shortly",
}
