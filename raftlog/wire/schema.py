"""The schema language of message bodies: one declaration per field, checked both ways.

A message is a frozen dataclass whose fields say how they travel with ``wire(spec)``. One
generic codec (``StructCodec``) walks the fields: ``encode`` turns the dataclass into a CBOR
body map (keys are the field names) and puts byte fields into the payload; ``decode`` checks
every field of a received body against its spec and builds the dataclass. There is no
per-message encoding code to drift from its decoding code.

Rules kept by every spec on decode (the peer is not trusted):

- A value's type is checked exactly (``True`` is not an integer, ``1.0`` is not one either),
  then its range, before it is used.
- Every list and map has a maximum item count; budgets cap totals across a request (10,000
  partitions per request however they are spread across topics).
- A byte field is ``[offset, length]`` into the payload. Regions must come in order, back to
  back, and cover the payload exactly: no byte is referred to twice (no amplification) and
  no byte is left over.
- A required key that is missing, a key that is not in the schema, or a check that fails
  raises ``BadRequest(INVALID_REQUEST, ...)`` whose message names the field path
  (``topics[0].partitions[3].fetch_offset: ...``).

On encode the same checks run, and a failure raises ``ValueError``: that is the sender's bug,
never the peer's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

from raftlog.config import validate_topic_name
from raftlog.errors import ErrorCode, RaftlogError
from raftlog.wire.errors import BadRequest
from raftlog.wire.frames import Buffer

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
STRING_CHARS_MAX = 255
ERROR_MESSAGE_CHARS_MAX = 1024

BUDGETS: dict[str, int] = {
    "partitions": 10_000,  # partitions named in one request or its response
    "metadata_partitions": 200_000,  # partitions in one metadata answer (the cluster cap)
    "regions": 100_000,  # byte fields in one frame
    "raft_messages": 100_000,  # partition-Raft messages in one frame
}


class SchemaError(Exception):
    """A field that breaks its spec; ``path`` is built on the way up, innermost first."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []

    def where(self) -> str:
        parts = list(reversed(self.path))
        text = "".join(p if p.startswith("[") else "." + p for p in parts).lstrip(".")
        return f"{text}: {self.message}" if text else self.message


def show(value: object) -> str:
    """A short description of a received value for an error message."""
    text = repr(value)
    shown = text if len(text) <= 40 else text[:37] + "..."
    return f"{type(value).__name__} {shown}"


class PayloadWriter:
    """Collects the payload pieces of one frame while its body is encoded."""

    __slots__ = ("pieces", "size")

    def __init__(self) -> None:
        self.pieces: list[Buffer] = []
        self.size = 0

    def add(self, data: Buffer) -> list[int]:
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        ref = [self.size, n]
        if n:
            self.pieces.append(data)
            self.size += n
        return ref


class PayloadReader:
    """Hands out payload regions in order while a body is decoded, and keeps the budgets."""

    __slots__ = ("cursor", "payload", "spent")

    def __init__(self, payload: memoryview) -> None:
        self.payload = payload
        self.cursor = 0
        self.spent: dict[str, int] = {}

    def take(self, raw: object) -> memoryview:
        if type(raw) is not list or len(raw) != 2:
            raise SchemaError(f"expected [offset, length] into the payload, got {show(raw)}")
        offset, length = raw
        if type(offset) is not int or type(length) is not int or length < 0:
            raise SchemaError(f"expected [offset, length] into the payload, got {show(raw)}")
        if offset != self.cursor:
            raise SchemaError(
                f"payload region starts at {offset}, expected {self.cursor} "
                "(regions come in order, back to back)"
            )
        end = offset + length
        if end > len(self.payload):
            raise SchemaError(
                f"payload region {offset}+{length} runs past the payload's "
                f"{len(self.payload)} bytes"
            )
        self.spend("regions", 1)
        self.cursor = end
        return self.payload[offset:end]

    def spend(self, budget: str, n: int) -> None:
        total = self.spent.get(budget, 0) + n
        if total > BUDGETS[budget]:
            raise SchemaError(f"more than {BUDGETS[budget]} {budget} in one frame")
        self.spent[budget] = total

    def finish(self) -> None:
        if self.cursor != len(self.payload):
            raise SchemaError(
                f"payload has {len(self.payload) - self.cursor} bytes no field refers to"
            )


class Spec:
    """How one field travels. ``decode`` checks a received value; ``encode`` checks and
    converts a value to send. Both raise ``SchemaError``."""

    __slots__ = ()
    optional: ClassVar[bool] = False

    def encode(self, value: Any, out: PayloadWriter) -> Any:
        return self.decode(value, None)

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        raise NotImplementedError


class Int(Spec):
    __slots__ = ("hi", "lo")

    def __init__(self, lo: int, hi: int) -> None:
        self.lo = lo
        self.hi = hi

    def encode(self, value: Any, out: PayloadWriter) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = int(value)  # an IntEnum or a NewType goes out as a plain integer
        return self.decode(value, None)

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        if type(raw) is not int or not self.lo <= raw <= self.hi:
            raise SchemaError(f"expected an integer in {self.lo}..{self.hi}, got {show(raw)}")
        return raw


class OneOf(Spec):
    __slots__ = ("values",)

    def __init__(self, *values: int) -> None:
        self.values = values

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        if type(raw) is not int or raw not in self.values:
            allowed = ", ".join(map(str, self.values))
            raise SchemaError(f"expected one of {allowed}, got {show(raw)}")
        return raw


class Bool(Spec):
    __slots__ = ()

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        if type(raw) is not bool:
            raise SchemaError(f"expected true or false, got {show(raw)}")
        return raw


class Str(Spec):
    __slots__ = ("choices", "max_chars", "min_chars")

    def __init__(
        self, max_chars: int = STRING_CHARS_MAX, min_chars: int = 0, choices: tuple[str, ...] = ()
    ) -> None:
        self.max_chars = max_chars
        self.min_chars = min_chars
        self.choices = choices

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        if type(raw) is not str or not self.min_chars <= len(raw) <= self.max_chars:
            raise SchemaError(
                f"expected a string of {self.min_chars}..{self.max_chars} characters, "
                f"got {show(raw)}"
            )
        if self.choices and raw not in self.choices:
            raise SchemaError(f"expected one of {', '.join(self.choices)}, got {raw!r}")
        return raw


class Text(Str):
    """A message for a person: cut to fit on encode (an error must always be sendable)."""

    __slots__ = ()

    def encode(self, value: Any, out: PayloadWriter) -> Any:
        if type(value) is str and len(value) > self.max_chars:
            value = value[: self.max_chars - 3] + "..."
        return self.decode(value, None)


class Topic(Spec):
    __slots__ = ()

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        try:
            return validate_topic_name(raw)
        except RaftlogError as exc:
            raise SchemaError(exc.message) from None


class Code(Spec):
    """An ``ErrorCode``. A code this version does not know (from a newer peer) reads as
    ``UNKNOWN`` rather than failing the whole message."""

    __slots__ = ()

    def encode(self, value: Any, out: PayloadWriter) -> Any:
        if not isinstance(value, ErrorCode):
            raise SchemaError(f"expected an ErrorCode, got {show(value)}")
        return int(value)

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        if type(raw) is not int or not 0 <= raw <= 2**15 - 1:
            raise SchemaError(f"expected an error code in 0..32767, got {show(raw)}")
        try:
            return ErrorCode(raw)
        except ValueError:
            return ErrorCode.UNKNOWN


class Opt(Spec):
    """The inner spec or None; a None field is left out of the body, and a missing key
    reads as None."""

    __slots__ = ("inner",)
    optional = True

    def __init__(self, inner: Spec) -> None:
        self.inner = inner

    def encode(self, value: Any, out: PayloadWriter) -> Any:
        return None if value is None else self.inner.encode(value, out)

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        return None if raw is None else self.inner.decode(raw, payload)


class ListOf(Spec):
    """A list, read back as a tuple. ``unique`` names a key function whose values must not
    repeat (the same partition twice in one request); ``budget`` counts items across the
    frame."""

    __slots__ = ("budget", "inner", "max_items", "min_items", "unique")

    def __init__(
        self,
        inner: Spec,
        max_items: int,
        *,
        min_items: int = 0,
        unique: Callable[[Any], object] | None = None,
        budget: str | None = None,
    ) -> None:
        self.inner = inner
        self.max_items = max_items
        self.min_items = min_items
        self.unique = unique
        self.budget = budget

    def _check(self, items: Any) -> None:
        if not self.min_items <= len(items) <= self.max_items:
            raise SchemaError(
                f"expected {self.min_items}..{self.max_items} items, got {len(items)}"
            )

    def encode(self, value: Any, out: PayloadWriter) -> Any:
        if not isinstance(value, list | tuple):
            raise SchemaError(f"expected a list or tuple, got {show(value)}")
        self._check(value)
        encoded = []
        for i, item in enumerate(value):
            try:
                encoded.append(self.inner.encode(item, out))
            except SchemaError as exc:
                exc.path.append(f"[{i}]")
                raise
        self._check_unique(tuple(value))
        return encoded

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        if type(raw) is not list:
            raise SchemaError(f"expected a list, got {show(raw)}")
        self._check(raw)
        if self.budget is not None and payload is not None:
            payload.spend(self.budget, len(raw))
        items = []
        inner = self.inner
        for i, item in enumerate(raw):
            try:
                items.append(inner.decode(item, payload))
            except SchemaError as exc:
                exc.path.append(f"[{i}]")
                raise
        result = tuple(items)
        self._check_unique(result)
        return result

    def _check_unique(self, items: tuple[Any, ...]) -> None:
        if self.unique is None:
            return
        seen: set[object] = set()
        for item in items:
            key = self.unique(item)
            if key in seen:
                raise SchemaError(f"{key!r} appears more than once")
            seen.add(key)


class MapOf(Spec):
    """A map of strings to values, read back as a dict."""

    __slots__ = ("key", "max_items", "value")

    def __init__(self, key: Spec, value: Spec, max_items: int) -> None:
        self.key = key
        self.value = value
        self.max_items = max_items

    def encode(self, value: Any, out: PayloadWriter) -> Any:
        if not isinstance(value, Mapping):
            raise SchemaError(f"expected a mapping, got {show(value)}")
        return self._walk(value, out, encode=True)

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        if type(raw) is not dict:
            raise SchemaError(f"expected a map, got {show(raw)}")
        return self._walk(raw, payload, encode=False)

    def _walk(self, items: Mapping[Any, Any], ctx: Any, *, encode: bool) -> dict[Any, Any]:
        if len(items) > self.max_items:
            raise SchemaError(f"expected at most {self.max_items} entries, got {len(items)}")
        out = {}
        for k, v in items.items():
            try:
                key = self.key.decode(k, None)
                out[key] = self.value.encode(v, ctx) if encode else self.value.decode(v, ctx)
            except SchemaError as exc:
                exc.path.append(f"[{k!r}]")
                raise
        return out


class Bytes(Spec):
    """Raw bytes in the payload, read back as a ``memoryview`` slice of it (no copy)."""

    __slots__ = ()

    def encode(self, value: Any, out: PayloadWriter) -> Any:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise SchemaError(f"expected bytes, got {show(value)}")
        return out.add(value)

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        assert payload is not None
        return payload.take(raw)


def wire(spec: Spec, **kwargs: Any) -> Any:
    """A dataclass field that travels as ``spec`` (``default=...`` etc. pass through)."""
    return dataclasses.field(metadata={"wire": spec}, **kwargs)


class StructCodec:
    """Encodes and decodes one dataclass as a map keyed by attribute names.

    ``fields`` is ``(attribute, spec)`` in order; ``check`` runs cross-field rules on the
    decoded values and returns a complaint or None; ``build`` makes the object (the class by
    default).
    """

    __slots__ = ("build", "check", "cls", "fields", "required")

    def __init__(
        self,
        cls: type[Any],
        fields: tuple[tuple[str, Spec], ...],
        *,
        check: Callable[[dict[str, Any]], str | None] | None = None,
        build: Callable[..., Any] | None = None,
    ) -> None:
        self.cls = cls
        self.fields = fields
        self.check = check
        self.build = build if build is not None else cls
        self.required = sum(1 for _, spec in fields if not spec.optional)

    @classmethod
    def of_dataclass(cls, dc: type[Any]) -> StructCodec:
        fields = tuple((f.name, f.metadata["wire"]) for f in dataclasses.fields(dc))
        check = getattr(dc, "_wire_check", None)
        return cls(dc, fields, check=check)

    def encode_fields(self, obj: Any, out: PayloadWriter, body: dict[str, Any]) -> None:
        for name, spec in self.fields:
            try:
                value = spec.encode(getattr(obj, name), out)
            except SchemaError as exc:
                exc.path.append(name)
                raise
            if value is not None:
                body[name] = value
        if self.check is not None:
            problem = self.check({name: getattr(obj, name) for name, _ in self.fields})
            if problem is not None:
                raise SchemaError(problem)

    def encode(self, obj: Any, out: PayloadWriter) -> dict[str, Any]:
        if not isinstance(obj, self.cls):
            raise SchemaError(f"expected {self.cls.__name__}, got {show(obj)}")
        body: dict[str, Any] = {}
        self.encode_fields(obj, out, body)
        return body

    def decode_fields(
        self, raw: dict[str, Any], payload: PayloadReader | None, skip: frozenset[str]
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        seen = 0
        for name, spec in self.fields:
            if name in raw:
                seen += 1
                try:
                    values[name] = spec.decode(raw[name], payload)
                except SchemaError as exc:
                    exc.path.append(name)
                    raise
            elif spec.optional:
                values[name] = None
            else:
                raise SchemaError(f"missing field {name!r}")
        if seen + len(skip) != len(raw):
            known = {name for name, _ in self.fields} | skip
            unknown = sorted(repr(k) for k in raw if k not in known)
            raise SchemaError(f"unknown fields {', '.join(unknown)}")
        if self.check is not None:
            problem = self.check(values)
            if problem is not None:
                raise SchemaError(problem)
        return values

    def decode(
        self, raw: Any, payload: PayloadReader | None, skip: frozenset[str] = frozenset()
    ) -> Any:
        if type(raw) is not dict:
            raise SchemaError(f"expected a map, got {show(raw)}")
        return self.build(**self.decode_fields(raw, payload, skip))


class Struct(Spec):
    """A nested dataclass declared with ``wire`` fields."""

    __slots__ = ("codec",)

    def __init__(self, dc: type[Any]) -> None:
        self.codec = StructCodec.of_dataclass(dc)

    def encode(self, value: Any, out: PayloadWriter) -> Any:
        return self.codec.encode(value, out)

    def decode(self, raw: Any, payload: PayloadReader | None) -> Any:
        return self.codec.decode(raw, payload)


_NO_PAYLOAD = memoryview(b"")


def invalid(message: str) -> BadRequest:
    return BadRequest(ErrorCode.INVALID_REQUEST, message)


class WireMessage:
    """Base of every top-level request and response: ``to_body`` and ``from_body``.

    Subclasses are frozen slotted dataclasses whose fields are declared with ``wire``; the
    codec is built once per class, on first use.
    """

    __slots__ = ()
    _codecs: ClassVar[dict[type, StructCodec]] = {}

    @classmethod
    def _codec(cls) -> StructCodec:
        codec = WireMessage._codecs.get(cls)
        if codec is None:
            codec = WireMessage._codecs[cls] = StructCodec.of_dataclass(cls)
        return codec

    def to_body(self) -> tuple[dict[str, Any], list[Buffer]]:
        """The CBOR body map and the payload pieces it refers to (not copied).
        Raises ``ValueError`` when a field breaks the schema."""
        out = PayloadWriter()
        try:
            body = self._codec().encode(self, out)
        except SchemaError as exc:
            raise ValueError(f"cannot encode {type(self).__name__}: {exc.where()}") from None
        return body, out.pieces

    @classmethod
    def from_body(cls, body: Any, payload: memoryview = _NO_PAYLOAD) -> Self:
        """Check ``body`` and the payload regions it names; ``BadRequest`` on any problem."""
        reader = PayloadReader(payload)
        try:
            msg = cls._codec().decode(body, reader)
            reader.finish()
        except SchemaError as exc:
            raise invalid(f"{cls.__name__}: {exc.where()}") from None
        assert isinstance(msg, cls)
        return msg
