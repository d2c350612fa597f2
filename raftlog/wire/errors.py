"""What can go wrong reading the native protocol, and how the caller should react.

Three exceptions, all ``RaftlogError`` with ``ErrorCode.INVALID_REQUEST`` unless said otherwise:

- ``FrameTooLarge``: the declared frame length is above the cap. The decoder refuses to read
  on (the stream can no longer be trusted to be in step): close the connection.
- ``BadFrame``: the frame boundary was fine but its envelope was not (not CBOR, a tag,
  indefinite lengths, too deep, missing or mistyped envelope fields). ``fatal`` is False:
  answer with an error response when ``correlation_id`` is known, then keep reading.
- ``BadRequest``: the envelope was fine but the body was not (unknown API key, a field
  missing, of the wrong type, out of range, too many items). Answer with an error response
  for ``correlation_id`` and keep the connection.

Nothing here ever carries a traceback to the peer: ``error_response`` turns any exception into
a code and a message written for a person.
"""

from __future__ import annotations

from raftlog.errors import RETRIABLE_CODES, ErrorCode, RaftlogError


def is_retriable(code: ErrorCode) -> bool:
    """True when the error may go away by itself (the client should retry)."""
    return code in RETRIABLE_CODES


class WireError(RaftlogError):
    """Base of the protocol errors: a code, a message, and what is known of the frame.

    ``correlation_id`` and ``api_key`` are the raw envelope values when they could be read
    (so that the caller can address its error response), else None.
    """

    code = ErrorCode.INVALID_REQUEST
    fatal = False

    def __init__(
        self,
        message: str,
        *,
        correlation_id: int | None = None,
        api_key: int | None = None,
    ) -> None:
        super().__init__(message)
        self.correlation_id = correlation_id
        self.api_key = api_key


class BadFrame(WireError):
    """A frame whose envelope cannot be read. The stream stays in step unless ``fatal``."""


class FrameTooLarge(BadFrame):
    """A declared frame length above the cap: close the connection."""

    fatal = True


class BadRequest(WireError):
    """A body that breaks its schema, or an API this side does not know.

    ``BadRequest(code, message)``: the code is ``INVALID_REQUEST`` for every schema error.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        correlation_id: int | None = None,
        api_key: int | None = None,
    ) -> None:
        super().__init__(message, correlation_id=correlation_id, api_key=api_key)
        self.code = code
