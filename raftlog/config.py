"""Frozen configuration objects with Kafka's defaults, and their validation.

Units are the last word of every name (``segment_bytes``, ``retention_ms``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raftlog.errors import InvalidConfigError, InvalidTopicError

DAY_MS = 24 * 60 * 60 * 1000

DEFAULT_NATIVE_PORT = 9092
"""The client/peer port of the native protocol; the metadata port is +1, admin HTTP +2."""


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Per-partition log settings (Kafka topic configs of the same names).

    - ``segment_bytes`` (``segment.bytes``, 1 GiB): roll a new segment past this size.
    - ``segment_ms`` (``segment.ms``, 7 days): roll when the active segment's first batch is
      this old.
    - ``retention_ms`` (``retention.ms``, 7 days; -1 = forever): delete closed segments whose
      newest record is older.
    - ``retention_bytes`` (``retention.bytes``, -1 = unlimited): delete oldest closed segments
      while the log is larger.
    - ``index_interval_bytes`` (``index.interval.bytes``, 4096): one sparse index entry per
      this many bytes of log.
    - ``max_message_bytes`` (``max.message.bytes``): the largest batch accepted.
    - ``fsync``: when False the log does not fsync before acknowledging (a topic that trades
      safety for speed; ``topic describe`` says so).
    """

    segment_bytes: int = 1024 * 1024 * 1024
    segment_ms: int = 7 * DAY_MS
    retention_ms: int = 7 * DAY_MS
    retention_bytes: int = -1
    index_interval_bytes: int = 4096
    max_message_bytes: int = 1024 * 1024 + 12
    fsync: bool = True

    def __post_init__(self) -> None:
        if self.segment_bytes < 14 + 61:
            raise InvalidConfigError(f"segment.bytes must be at least 75, got {self.segment_bytes}")
        if self.segment_bytes > 2**31 - 1:
            raise InvalidConfigError(
                f"segment.bytes must be below 2 GiB (positions are 32-bit), "
                f"got {self.segment_bytes}"
            )
        if self.segment_ms < 1:
            raise InvalidConfigError(f"segment.ms must be positive, got {self.segment_ms}")
        if self.retention_ms < -1:
            raise InvalidConfigError(f"retention.ms must be -1 or >= 0, got {self.retention_ms}")
        if self.retention_bytes < -1:
            raise InvalidConfigError(
                f"retention.bytes must be -1 or >= 0, got {self.retention_bytes}"
            )
        if self.index_interval_bytes < 1:
            raise InvalidConfigError(
                f"index.interval.bytes must be positive, got {self.index_interval_bytes}"
            )
        if not 0 < self.max_message_bytes <= 2**31 - 1:
            raise InvalidConfigError(
                f"max.message.bytes must be in 1..2^31-1, got {self.max_message_bytes}"
            )


# ------------------------------------------------------------------ topic names and configs

TOPIC_NAME_CHARS_MAX = 249
"""Kafka's limit on a topic name (names are ASCII, so characters are bytes)."""
_TOPIC_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")
_TOPIC_NAME_CHAR_RE = re.compile(r"[A-Za-z0-9._-]")


def validate_topic_name(name: object) -> str:
    """Return ``name`` when it is a valid topic name, else raise ``InvalidTopicError``
    saying what is wrong.

    The rule is Kafka's: ``[A-Za-z0-9._-]{1,249}`` and neither ``.`` nor ``..``, so that a
    name is always exactly one path component inside the data folder. It is the one rule
    for every layer (storage paths, the metadata model, clients).
    """
    if not isinstance(name, str) or not name:
        raise InvalidTopicError("topic name must be a non-empty string")
    if len(name) > TOPIC_NAME_CHARS_MAX:
        raise InvalidTopicError(
            f"topic name is {len(name)} characters; the limit is {TOPIC_NAME_CHARS_MAX}"
        )
    if name in (".", ".."):
        raise InvalidTopicError(f"topic name cannot be {name!r}")
    if not _TOPIC_NAME_RE.fullmatch(name):
        bad = sorted({c for c in name if not _TOPIC_NAME_CHAR_RE.fullmatch(c)})
        raise InvalidTopicError(
            f"topic name {name!r} has characters outside A-Z a-z 0-9 . _ -: {''.join(bad)!r}"
        )
    return name


CLEANUP_POLICIES = ("compact", "delete")
MIN_INSYNC_REPLICAS_MAX = 16
TOPIC_CONFIG_VALUE_CHARS_MAX = 32
# topic config key -> LogConfig field it overrides (None: not a log setting)
_TOPIC_CONFIG_FIELDS: dict[str, str | None] = {
    "cleanup.policy": None,
    "fsync": "fsync",
    "max.message.bytes": "max_message_bytes",
    "min.insync.replicas": None,
    "retention.bytes": "retention_bytes",
    "retention.ms": "retention_ms",
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
}
TOPIC_CONFIG_KEYS: tuple[str, ...] = tuple(sorted(_TOPIC_CONFIG_FIELDS))
"""Every topic config key a topic may set, sorted."""
_INT_RE = re.compile(r"-?[0-9]{1,19}")


def _config_int(key: str, value: str) -> int:
    if not _INT_RE.fullmatch(value) or not -(2**63) <= int(value) < 2**63:
        raise InvalidConfigError(f"{key} must be a whole number, got {value!r}")
    return int(value)


def normalize_topic_config(key: object, value: object) -> str:
    """The canonical string of one topic config value (``"007"`` -> ``"7"``, ``"TRUE"`` ->
    ``"true"``), or ``InvalidConfigError`` naming the key and what it accepts.

    Ranges shared with the log are checked by ``LogConfig`` itself, so that the model and the
    log can never disagree on what a valid ``segment.bytes`` is.
    """
    if not isinstance(key, str) or key not in _TOPIC_CONFIG_FIELDS:
        raise InvalidConfigError(
            f"unknown topic config {key!r}; known keys: {', '.join(TOPIC_CONFIG_KEYS)}"
        )
    if not isinstance(value, str) or len(value) > TOPIC_CONFIG_VALUE_CHARS_MAX:
        raise InvalidConfigError(
            f"{key} must be a string of at most {TOPIC_CONFIG_VALUE_CHARS_MAX} characters"
        )
    if key == "cleanup.policy":
        if value not in CLEANUP_POLICIES:
            raise InvalidConfigError(
                f"cleanup.policy must be one of {', '.join(CLEANUP_POLICIES)}, got {value!r}"
            )
        return value
    if key == "fsync":
        if value.lower() not in ("true", "false"):
            raise InvalidConfigError(f"fsync must be true or false, got {value!r}")
        return value.lower()
    number = _config_int(key, value)
    if key == "min.insync.replicas":
        if not 1 <= number <= MIN_INSYNC_REPLICAS_MAX:
            raise InvalidConfigError(
                f"min.insync.replicas must be in 1..{MIN_INSYNC_REPLICAS_MAX}, got {number}"
            )
    else:
        topic_log_config({key: str(number)})  # LogConfig checks the range
    return str(number)


def validate_topic_configs(configs: Mapping[Any, object]) -> dict[str, str]:
    """Check a whole set of topic config overrides and return it normalized (sorted keys,
    canonical values); raise ``InvalidConfigError`` on the first bad key or value."""
    out: dict[str, str] = {}
    for key in sorted(configs, key=repr):
        out[str(key)] = normalize_topic_config(key, configs[key])  # str(key): key is a str
    topic_log_config(out)  # the combination must make a valid LogConfig too
    return out


def topic_log_config(configs: Mapping[str, str]) -> LogConfig:
    """The ``LogConfig`` of a topic: Kafka's defaults overridden by the topic's configs.

    Raises ``InvalidConfigError`` for an unparsable value or one out of the log's range.
    Keys that are not log settings (``cleanup.policy``, ``min.insync.replicas``) are ignored.
    """
    fields: dict[str, int | bool] = {}
    for key in sorted(configs):
        field = _TOPIC_CONFIG_FIELDS.get(key)
        if field == "fsync":
            fields[field] = configs[key].lower() == "true"
        elif field is not None:
            fields[field] = _config_int(key, configs[key])
    return LogConfig(**fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the broker

DEFAULT_DATA_DIR = "./raftlog-data"
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_NATIVE_PORT}"
BROKER_ID_MAX = 2**31 - 1
SECRET_FILE_BYTES_MAX = 4096


def parse_host_port(text: str, what: str) -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"`` too) as (host, port); ``InvalidConfigError`` saying
    what is wrong otherwise."""
    if not isinstance(text, str) or ":" not in text:
        raise InvalidConfigError(f"{what} must look like HOST:PORT, got {text!r}")
    host, _, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidConfigError(f"{what} must look like HOST:PORT (port 1-65535), got {text!r}")
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """One cluster member as given by ``--peer ID@HOST:PORT`` (its native port)."""

    node_id: int
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> PeerAddress:
        ident, sep, address = str(text).partition("@")
        if not sep or not ident.isdigit() or not 0 <= int(ident) <= BROKER_ID_MAX:
            raise InvalidConfigError(f"a peer must look like ID@HOST:PORT, got {text!r}")
        host, port = parse_host_port(address, f"peer {text!r}")
        return cls(int(ident), host, port)

    def __str__(self) -> str:
        return f"{self.node_id}@{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """How one broker runs (``raftlog node start``). Ports: the native port (clients and
    peers) from ``listen``; the metadata (pysyncobj) port defaults to native + 1 and the
    admin HTTP port to native + 2. ``peers`` lists every member, this one included, with
    the address the others reach it at; the metadata port of a peer is its native port
    + 1 unless the cluster overrides ``metadata_port`` everywhere alike.

    Dial overrides (``--dial``/``--metadata-dial ID@HOST:PORT``, e.g. through a NAT or the
    scenario fault proxy) change only where this broker *connects to* a peer; the peer
    list stays what identifies the members.

    - ``dial``: reach peer ID's native port (partition Raft traffic) at HOST:PORT. Peers
      authenticate each other by node id and the cluster secret, never by address, so
      any address that leads to the peer works.
    - ``metadata_dial``: reach peer ID's metadata port (pysyncobj) at HOST:PORT. pysyncobj
      knows members only by their address string: for each pair only the member whose
      own metadata address is the GREATER string dials, announces that address, and the
      other accepts the connection only when it is in its own member list. The override
      becomes this broker's member entry for the peer, so it works only when this
      broker's own metadata address is a greater string than both the override (so this
      broker dials it) and the peer's real metadata address (so the peer never dials this
      broker and keeps knowing it by its real address). Anything else is refused with
      ``InvalidConfigError``. E.g. brokers on 127.0.0.2, 127.0.0.3... and a proxy on
      127.0.0.1: the higher broker dials the lower one through the proxy.
    """

    node_id: int = 1
    data_dir: str = DEFAULT_DATA_DIR
    listen: str = DEFAULT_LISTEN
    advertise: str | None = None
    peers: tuple[PeerAddress, ...] = ()
    metadata_port: int | None = None
    admin_port: int | None = None
    cluster_secret_file: str | None = None
    tick_ms: int = 100
    retention_check_ms: int = 300_000
    """How often retention runs (Kafka's ``log.retention.check.interval.ms``, 5 min)."""
    dial: tuple[PeerAddress, ...] = ()
    """Where to reach a peer's native port instead of its ``peers`` address."""
    metadata_dial: tuple[PeerAddress, ...] = ()
    """Where to reach a peer's metadata port instead of its real one (see the rule above)."""

    def __post_init__(self) -> None:
        if not 100 <= self.retention_check_ms <= 86_400_000:
            raise InvalidConfigError(
                f"retention_check_ms must be in 100..86400000, got {self.retention_check_ms}"
            )
        if not 0 <= self.node_id <= BROKER_ID_MAX:
            raise InvalidConfigError(f"node id must be in 0..{BROKER_ID_MAX}, got {self.node_id}")
        host, _ = parse_host_port(self.listen, "listen")
        if self.advertise is not None:
            parse_host_port(self.advertise, "advertise")
        elif host in ("0.0.0.0", "::"):
            raise InvalidConfigError(
                f"listening on {self.listen} needs --advertise HOST:PORT: the address clients "
                "and peers should use to reach this broker"
            )
        ids = [p.node_id for p in self.peers]
        if len(set(ids)) != len(ids):
            raise InvalidConfigError(f"peer ids must be unique, got {sorted(ids)}")
        if self.peers and self.node_id not in ids:
            raise InvalidConfigError(
                f"the peer list must include this node ({self.node_id}); give the same "
                "--peer list to every member, itself included"
            )
        if len(self.members) > 1 and not self.cluster_secret_file:
            raise InvalidConfigError(
                "a cluster of more than one node needs --cluster-secret-file (the same "
                "secret on every member; e.g. `head -c 32 /dev/urandom | base64 > secret`)"
            )
        for name in ("metadata_port", "admin_port"):
            port = getattr(self, name)
            if port is not None and not 0 < port < 65536:
                raise InvalidConfigError(f"{name} must be 1-65535, got {port}")
        if not 1 <= self.tick_ms <= 10_000:
            raise InvalidConfigError(f"tick_ms must be in 1..10000, got {self.tick_ms}")
        self._check_dials("dial", self.dial)
        self._check_dials("metadata_dial", self.metadata_dial)
        me = next(m for m in self.members if m.node_id == self.node_id)
        own = self.metadata_address_of(me)
        for d in self.metadata_dial:
            real = self.metadata_address_of(self.member(d.node_id))
            target = f"{d.host}:{d.port}"
            if not (own > target and own > real):
                raise InvalidConfigError(
                    f"metadata_dial {d} cannot work: pysyncobj lets only the member whose "
                    "metadata address is the greater string dial, so this broker's metadata "
                    f"address {own!r} must be a greater string than both the override "
                    f"{target!r} and peer {d.node_id}'s real metadata address {real!r}"
                )

    def _check_dials(self, name: str, dials: tuple[PeerAddress, ...]) -> None:
        if not isinstance(dials, tuple) or not all(isinstance(d, PeerAddress) for d in dials):
            raise InvalidConfigError(f"{name} must be a tuple of PeerAddress")
        ids = [d.node_id for d in dials]
        if len(set(ids)) != len(ids):
            raise InvalidConfigError(f"{name}: one override per peer, got ids {sorted(ids)}")
        members = {m.node_id for m in self.members}
        for i in ids:
            if i == self.node_id:
                raise InvalidConfigError(f"{name}: {i} is this broker; overrides are for peers")
            if i not in members:
                raise InvalidConfigError(
                    f"{name}: {i} is not a member (members: {sorted(members)}); give --peer "
                    "for every member and overrides only for other members"
                )

    def member(self, node_id: int) -> PeerAddress:
        """The member with id ``node_id`` (``KeyError`` when there is none)."""
        for m in self.members:
            if m.node_id == node_id:
                return m
        raise KeyError(node_id)

    def dial_address_of(self, peer: PeerAddress) -> tuple[str, int]:
        """Where this broker connects to ``peer``'s native port: its ``dial`` override,
        else its ``peers`` address."""
        for d in self.dial:
            if d.node_id == peer.node_id:
                return d.host, d.port
        return peer.host, peer.port

    def metadata_dial_of(self, peer: PeerAddress) -> str:
        """This broker's pysyncobj member entry for ``peer``: its ``metadata_dial``
        override, else its real metadata address."""
        for d in self.metadata_dial:
            if d.node_id == peer.node_id:
                return f"{d.host}:{d.port}"
        return self.metadata_address_of(peer)

    @property
    def advertised(self) -> tuple[str, int]:
        return parse_host_port(self.advertise or self.listen, "advertise")

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_host_port(self.listen, "listen")

    @property
    def members(self) -> tuple[PeerAddress, ...]:
        """Every member; a broker given no peers is a one-node cluster of itself."""
        if self.peers:
            return tuple(sorted(self.peers, key=lambda p: p.node_id))
        host, port = self.advertised
        return (PeerAddress(self.node_id, host, port),)

    def metadata_address_of(self, peer: PeerAddress) -> str:
        port = self.metadata_port if self.metadata_port is not None else peer.port + 1
        return f"{peer.host}:{port}"

    @property
    def metadata_listen(self) -> str:
        """Where this broker's metadata port binds: the listen host (the internal address),
        never a wildcard when an advertised address is known."""
        host, port = self.listen_address
        if host in ("0.0.0.0", "::"):
            host = self.advertised[0]
        return f"{host}:{self.metadata_port if self.metadata_port is not None else port + 1}"

    @property
    def admin_address(self) -> tuple[str, int]:
        host, port = self.listen_address
        return host, self.admin_port if self.admin_port is not None else port + 2


_BROKER_KEYS = {
    "id": "node_id",
    "node_id": "node_id",
    "data_dir": "data_dir",
    "listen": "listen",
    "advertise": "advertise",
    "peers": "peers",
    "metadata_port": "metadata_port",
    "admin_port": "admin_port",
    "cluster_secret_file": "cluster_secret_file",
    "tick_ms": "tick_ms",
    "retention_check_ms": "retention_check_ms",
    "dial": "dial",
    "metadata_dial": "metadata_dial",
}


def load_broker_config(
    toml_text: str | None = None, overrides: Mapping[str, Any] | None = None
) -> BrokerConfig:
    """A ``BrokerConfig`` from a TOML document (keys as in ``_BROKER_KEYS``; ``peers``,
    ``dial`` and ``metadata_dial`` lists of ``"ID@HOST:PORT"``), then ``overrides``
    (command-line flags, None = not given) on top. Unknown keys and wrong types raise
    ``InvalidConfigError``."""
    import tomllib

    fields: dict[str, Any] = {}
    if toml_text is not None:
        try:
            doc = tomllib.loads(toml_text)
        except tomllib.TOMLDecodeError as e:
            raise InvalidConfigError(f"the config file is not valid TOML: {e}") from None
        unknown = sorted(set(doc) - set(_BROKER_KEYS))
        if unknown:
            raise InvalidConfigError(
                f"unknown config keys {unknown}; known keys: {sorted(set(_BROKER_KEYS))}"
            )
        for key, value in doc.items():
            fields[_BROKER_KEYS[key]] = value
    for key, value in (overrides or {}).items():
        if value is not None and value != ():
            fields[_BROKER_KEYS.get(key, key)] = value
    for key in ("peers", "dial", "metadata_dial"):
        if key in fields:
            peers = fields[key]
            if not isinstance(peers, list | tuple) or not all(isinstance(p, str) for p in peers):
                raise InvalidConfigError(f'{key} must be a list of "ID@HOST:PORT" strings')
            fields[key] = tuple(PeerAddress.parse(p) for p in peers)
    types = {
        "node_id": int,
        "metadata_port": int,
        "admin_port": int,
        "tick_ms": int,
        "retention_check_ms": int,
    }
    for key, want in types.items():
        if key in fields and (isinstance(fields[key], bool) or not isinstance(fields[key], want)):
            raise InvalidConfigError(f"{key} must be a whole number, got {fields[key]!r}")
    for key in ("data_dir", "listen", "advertise", "cluster_secret_file"):
        if key in fields and not isinstance(fields[key], str):
            raise InvalidConfigError(f"{key} must be a string, got {fields[key]!r}")
    return BrokerConfig(**fields)
