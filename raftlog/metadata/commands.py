"""The pieces every metadata command handler is built from: field readers that reject
malformed input, the rejection itself, and an undo journal that makes a change all-or-nothing.

Rules kept here:

- a command is untrusted plain data (it arrived as CBOR from any broker): every field is read
  through a reader that checks its type and range and raises ``Rejected`` with a sentence a
  person can act on; ``bool`` is never accepted where an ``int`` is asked;
- state is only changed through a ``Txn``: each write records what it replaced, so that an
  unexpected exception halfway through a handler is undone exactly (``Txn.rollback``) and the
  replicated state machine never keeps half a command;
- nothing here reads a clock or randomness, or iterates an unordered collection.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from raftlog.config import validate_topic_name
from raftlog.errors import ErrorCode, InvalidTopicError

Command = Mapping[str, Any]
Result = dict[str, Any]
Handler = Callable[["Ctx", Command], dict[str, Any]]
"""An op's body: reads and checks its fields, changes ``ctx.state`` through ``ctx.txn`` only,
returns the result fields beyond ``ok``/``version``/``changed``, or raises ``Rejected``."""

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
NAME_CHARS_MAX = 255
"""Cap on ids and names (group id, member id, client id, host, protocol names)."""
RID_CHARS_MAX = 128

_MISSING: Any = object()


class Rejected(Exception):
    """A command that cannot be applied: becomes ``{"ok": False, "code", "message"}``."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> Rejected:
    return Rejected(ErrorCode.INVALID_REQUEST, message)


def error_result(code: ErrorCode, message: str) -> Result:
    return {"ok": False, "code": int(code), "message": message}


def check_fields(cmd: Command, op: str, allowed: frozenset[str]) -> None:
    """Reject a command that carries a field its op does not know (a typo must not pass
    silently as "use the default")."""
    unknown = sorted(str(k)[:40] for k in cmd if k not in allowed)
    if unknown:
        raise invalid(
            f"{op} does not take the field(s) {', '.join(map(repr, unknown[:5]))}; "
            f"it takes: {', '.join(sorted(allowed))}"
        )


def present(cmd: Command, key: str) -> Any:
    """The value of a required field (``None`` counts as given), else ``Rejected``."""
    value = cmd.get(key, _MISSING)
    if value is _MISSING:
        raise invalid(f"the field {key!r} is missing")
    return value


def int_in(value: Any, what: str, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo..hi``, else ``Rejected`` saying so."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{what} must be an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise invalid(f"{what} must be in {lo}..{hi}, got {value}")
    return value


def req_int(cmd: Command, key: str, lo: int, hi: int) -> int:
    return int_in(present(cmd, key), key, lo, hi)


def opt_int(cmd: Command, key: str, lo: int, hi: int, default: int | None) -> int | None:
    value = cmd.get(key)
    return default if value is None else int_in(value, key, lo, hi)


def str_of(
    value: Any, what: str, max_chars: int, *, empty_ok: bool = False, printable: bool = True
) -> str:
    """``value`` as a string of at most ``max_chars`` characters (non-empty unless
    ``empty_ok``; printable unless not asked), else ``Rejected``."""
    if not isinstance(value, str):
        raise invalid(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise invalid(f"{what} is {len(value)} characters; the limit is {max_chars}")
    if not value and not empty_ok:
        raise invalid(f"{what} must not be empty")
    if printable and not value.isprintable():
        raise invalid(f"{what} must contain printable characters only")
    try:
        value.encode("utf-8")  # a lone surrogate would make the snapshot unencodable
    except UnicodeEncodeError:
        raise invalid(f"{what} is not valid Unicode text") from None
    return value


def req_str(
    cmd: Command, key: str, max_chars: int = NAME_CHARS_MAX, *, empty_ok: bool = False
) -> str:
    return str_of(present(cmd, key), key, max_chars, empty_ok=empty_ok)


def opt_str(cmd: Command, key: str, max_chars: int = NAME_CHARS_MAX) -> str | None:
    value = cmd.get(key)
    return None if value is None else str_of(value, key, max_chars)


def req_bool(cmd: Command, key: str) -> bool:
    value = present(cmd, key)
    if not isinstance(value, bool):
        raise invalid(f"{key} must be true or false, got {type(value).__name__}")
    return value


def opt_bool(cmd: Command, key: str, default: bool) -> bool:
    return default if cmd.get(key) is None else req_bool(cmd, key)


def list_of(value: Any, what: str, max_items: int, *, empty_ok: bool = False) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(f"{what} must be a list, got {type(value).__name__}")
    if len(value) > max_items:
        raise invalid(f"{what} has {len(value)} items; the limit is {max_items}")
    if not value and not empty_ok:
        raise invalid(f"{what} must not be empty")
    return value


def dict_of(value: Any, what: str, max_items: int) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{what} must be a map, got {type(value).__name__}")
    if len(value) > max_items:
        raise invalid(f"{what} has {len(value)} entries; the limit is {max_items}")
    return value


def topic_name(value: Any, what: str = "topic") -> str:
    """A valid topic name (the one rule of ``raftlog.config``), else ``INVALID_TOPIC`` (or
    ``INVALID_REQUEST`` when it is not even a string)."""
    if not isinstance(value, str):
        raise invalid(f"{what} must be a string, got {type(value).__name__}")
    try:
        return validate_topic_name(value)
    except InvalidTopicError as e:
        raise Rejected(ErrorCode.INVALID_TOPIC, f"{what}: {e.message}") from None


_HOST_RE = re.compile(r"[A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


def address_of(value: Any, what: str) -> str:
    """A ``host:port`` address (``[v6]:port`` for IPv6), else ``Rejected``."""
    text = str_of(value, what, 260)
    host, sep, port = text.rpartition(":")
    if not sep or not _HOST_RE.fullmatch(host) or not port.isdigit() or len(port) > 5:
        raise invalid(f"{what} must look like host:port (e.g. 10.0.0.5:9092), got {text!r}")
    if not 1 <= int(port) <= 65535:
        raise invalid(f"{what} has port {port}; ports are 1..65535")
    return text


class Ctx:
    """What a handler works on: the state, the undo journal, and the set of image parts it
    touched (kind -> keys), so that the next image rebuilds only those."""

    __slots__ = ("dirty", "state", "txn")

    def __init__(self, state: dict[str, Any], txn: Txn, dirty: dict[str, set[Any]]) -> None:
        self.state = state
        self.txn = txn
        self.dirty = dirty

    def touch(self, kind: str, key: Any) -> None:
        self.dirty[kind].add(key)


class Txn:
    """An undo journal over plain dicts: ``set`` and ``delete`` record what they replace.

    Containers already in the state are never mutated except through these two methods;
    fresh containers may be built freely before they are ``set`` in. A write that would not
    change the value is skipped, so ``changed`` says whether the command changed anything.
    """

    __slots__ = ("_undo",)

    def __init__(self) -> None:
        self._undo: list[tuple[dict[Any, Any], Any, Any]] = []

    @property
    def changed(self) -> bool:
        return bool(self._undo)

    def set(self, container: dict[Any, Any], key: Any, value: Any) -> None:
        old = container.get(key, _MISSING)
        if old is not _MISSING and type(old) is type(value) and old == value:
            return
        self._undo.append((container, key, old))
        container[key] = value

    def delete(self, container: dict[Any, Any], key: Any) -> None:
        if key in container:
            self._undo.append((container, key, container[key]))
            del container[key]

    def mark(self) -> int:
        """A savepoint for ``rollback_to``."""
        return len(self._undo)

    def rollback(self) -> None:
        """Undo every write, newest first."""
        self.rollback_to(0)

    def rollback_to(self, mark: int) -> None:
        """Undo the writes made since ``mark``, newest first."""
        while len(self._undo) > mark:
            container, key, old = self._undo.pop()
            if old is _MISSING:
                container.pop(key, None)
            else:
                container[key] = old
