"""The fault proxy's fault state: what is in force on each link direction, and the fault log.

Each direction of a link (``a_to_b``, ``b_to_a``) has one ``_DirectionState``: the
``DirectionFaults`` in force (replaced whole on every change), the ``DirectionStats``
counters, the throttle's ``_Pacer``, and the ``random.Random`` every random choice comes
from, seeded anew from ``(seed, link, direction, n)`` at the n-th change so that a seed
replays a run (see "Determinism" in ``raftlog.scenarios.proxy``). The ``_check_*`` functions
validate fault arguments before anything changes, so a bad request changes nothing. The
``FaultLog`` numbers and timestamps every change and logs it as one line.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import trio

log = logging.getLogger("raftlog.proxy")

Direction: TypeAlias = Literal["a_to_b", "b_to_a", "both"]
DIRECTIONS: tuple[str, str] = ("a_to_b", "b_to_a")

FAULT_LOG_MAX = 100_000
DELAY_MS_MAX = 600_000.0
REORDER_WINDOW_MAX = 1000
REORDER_HOLD_MS_MAX = 10_000.0
"""A held frame waits at most this long, also when the link is healed meanwhile."""
BYTES_PER_S_MAX = 10**12


# ---------------------------------------------------------------------------- fault state


@dataclass(frozen=True, slots=True)
class DirectionFaults:
    """The faults in force on one direction of a link; replaced whole on every change."""

    cut: bool = False
    refuse: bool = False  # cut with reset: new connections are reset
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_window: int = 1
    reorder_hold_ms: float = 100.0
    bytes_per_s: int | None = None

    @property
    def per_frame(self) -> bool:
        """Whether frames must be handled one by one (else a batch goes out as it came)."""
        return bool(self.delay_ms or self.jitter_ms or self.drop or self.duplicate or self.reorder)


@dataclass(slots=True)
class DirectionStats:
    """Counters of one direction of a link, over all its connections."""

    bytes_forwarded: int = 0
    frames_forwarded: int = 0
    frames_dropped: int = 0
    frames_cut: int = 0
    frames_duplicated: int = 0
    frames_delayed: int = 0
    frames_reordered: int = 0
    stalls: int = 0


@dataclass(slots=True)
class _Pacer:
    """The throttle's clock, shared by every connection of a link direction."""

    next_free: float = 0.0

    def reserve(self, nbytes: int, bytes_per_s: int) -> float:
        """The trio time at which ``nbytes`` more have crossed the link."""
        start = max(trio.current_time(), self.next_free)
        self.next_free = start + nbytes / bytes_per_s
        return self.next_free


@dataclass(slots=True)
class _DirectionState:
    link: str
    direction: str
    seed: int
    faults: DirectionFaults = field(default_factory=DirectionFaults)
    stats: DirectionStats = field(default_factory=DirectionStats)
    pacer: _Pacer = field(default_factory=_Pacer)
    changes: int = 0
    changed: trio.Event = field(default_factory=trio.Event)
    """Set (and replaced) at every change: wakes writers sleeping out a delay or throttle."""
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = self._new_rng()

    def _new_rng(self) -> random.Random:
        # a str seed is hashed with SHA-512: the same in every process and Python run
        return random.Random(f"{self.seed}|{self.link}|{self.direction}|{self.changes}")

    def change(self, **updates: Any) -> None:
        self.faults = dataclasses.replace(self.faults, **updates)
        self.changes += 1
        self.rng = self._new_rng()
        self.pacer = _Pacer()
        self.changed.set()
        self.changed = trio.Event()

    def clear(self) -> None:
        self.change(**dataclasses.asdict(DirectionFaults()))


# ---------------------------------------------------------------------------- argument checks


def _check_bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise ValueError(f"{what} must be true or false, got {value!r}")
    return value


def _check_range(value: object, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{what} must be a number in {low:g}..{high:g}, got {value!r}")
    return float(value)


def _check_window(window: int) -> None:
    if type(window) is not int or not 1 <= window <= REORDER_WINDOW_MAX:
        raise ValueError(f"window must be an integer in 1..{REORDER_WINDOW_MAX}: {window!r}")


def _check_bytes_per_s(bytes_per_s: int | None) -> None:
    if bytes_per_s is not None and (
        type(bytes_per_s) is not int or not 1 <= bytes_per_s <= BYTES_PER_S_MAX
    ):
        raise ValueError(f"bytes_per_s must be null or an integer in 1..{BYTES_PER_S_MAX}")


# ---------------------------------------------------------------------------- fault log


class FaultLog:
    """Every fault change, oldest first, numbered by ``seq`` and timed by ``t``
    (``time.monotonic()``, comparable across processes on one host); the last ``max_entries``
    are kept. Each change is also logged as one line ``event=fault link=... kind=...``."""

    def __init__(self, max_entries: int = FAULT_LOG_MAX) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)
        self._seq = 0

    def record(self, link: str, kind: str, direction: str, **params: Any) -> None:
        entry = {
            "seq": self._seq,
            "t": time.monotonic(),
            "link": link,
            "kind": kind,
            "direction": direction,
            **params,
        }
        self._seq += 1
        self._entries.append(entry)
        details = " ".join(f"{k}={_log_value(v)}" for k, v in params.items())
        log.info(
            "event=fault link=%s kind=%s direction=%s %s t=%.6f",
            link,
            kind,
            direction,
            details,
            entry["t"],
        )

    def since(self, seq: int) -> list[dict[str, Any]]:
        """Copies of the entries with ``seq`` or later, oldest first."""
        return [dict(entry) for entry in self._entries if entry["seq"] >= seq]


def _log_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)
