"""An injectable clock for clock-skew scenarios: trio's time and the broker's wall clock.

``ScenarioClock`` is a ``trio.abc.Clock`` (``trio.run(main, clock=clock)``) whose time runs
at ``rate`` times real time (``time.monotonic``), plus forward ``jump_s`` jumps, and whose
``wall_ms()`` is the wall clock (``time.time``) shifted by ``wall_offset_s``. What it moves:

- every trio deadline and sleep in the broker (Raft ticks, heartbeats, timeouts, the
  coordinator's session checks, long-poll waits): at rate 2 a ``trio.sleep(1)`` takes half
  a second of real time, and a jump wakes at once every sleeper it carries past;
- the wall-clock callables the broker hands out (log append timestamps, retention and
  segment age, the broker heartbeat's ``now_ms``, the group coordinator's clock).

What it does not move: pysyncobj (the metadata Raft) runs its own thread on
``time.monotonic`` and ``time.time`` and is not affected at all; nor is code that reads
``time.monotonic()``/``time.time()`` directly (worker threads, the flusher).

A monotonic clock never goes back: ``jump_s`` is cumulative (the total jumped since the
process started) and a smaller value than the one applied is ignored (and logged). A
rate change re-anchors the clock at the current time, so time never jumps at a rate
change.

The scenario harness controls it through a JSON file (``RAFTLOG_SCENARIO_CLOCK=path``)::

    {"rate": 1.0, "jump_s": 0.0, "wall_offset_s": 0.0}

every key optional (absent = unchanged); ``rate`` in [0.1, 10]; ``jump_s`` >= 0.
``watch_clock_file`` re-reads it every 100 ms of real time when its mtime or size changed;
a file that cannot be read or parsed is ignored with a log line (the clock keeps its
settings), and a missing file changes nothing.

Not thread-safe by design: trio calls the clock from its own thread only, and the file is
applied from a trio task on that thread.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

log = logging.getLogger("raftlog.clock")

RATE_MIN = 0.1
RATE_MAX = 10.0
CLOCK_FILE_BYTES_MAX = 4096
POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class ClockSettings:
    """What a clock file says; None = not given (unchanged)."""

    rate: float | None = None
    jump_s: float | None = None
    wall_offset_s: float | None = None


def parse_clock_settings(text: str | bytes) -> ClockSettings:
    """The settings of a clock file's content; ``ValueError`` saying what is wrong."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError("the clock file must hold a JSON object")
    unknown = sorted(set(doc) - {"rate", "jump_s", "wall_offset_s"})
    if unknown:
        raise ValueError(f"unknown keys {unknown}; known: rate, jump_s, wall_offset_s")
    values: dict[str, float | None] = {}
    for key in ("rate", "jump_s", "wall_offset_s"):
        v = doc.get(key)
        if v is not None and (
            isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
        ):
            raise ValueError(f"{key} must be a finite number, got {v!r}")
        values[key] = None if v is None else float(v)
    rate = values["rate"]
    if rate is not None and not RATE_MIN <= rate <= RATE_MAX:
        raise ValueError(f"rate must be in [{RATE_MIN:g}, {RATE_MAX:g}], got {rate:g}")
    jump = values["jump_s"]
    if jump is not None and jump < 0:
        raise ValueError(f"jump_s must be >= 0 (it is cumulative), got {jump:g}")
    return ClockSettings(rate, jump, values["wall_offset_s"])


class ScenarioClock(trio.abc.Clock):
    """See the module docstring. ``monotonic`` and ``wall`` are the real clocks (tests
    pass fakes)."""

    def __init__(
        self,
        *,
        rate: float = 1.0,
        jump_s: float = 0.0,
        wall_offset_s: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not RATE_MIN <= rate <= RATE_MAX:
            raise ValueError(f"rate must be in [{RATE_MIN:g}, {RATE_MAX:g}], got {rate:g}")
        if jump_s < 0:
            raise ValueError(f"jump_s must be >= 0, got {jump_s:g}")
        self._monotonic = monotonic
        self._wall = wall
        self.rate = rate
        self.jump_s = jump_s
        self.wall_offset_s = wall_offset_s
        # virtual time = _base + (real - _anchor) * rate; jumps are folded into _base
        self._anchor = monotonic()
        self._base = self._anchor + jump_s

    @classmethod
    def from_settings(cls, settings: ClockSettings, **kwargs: Any) -> ScenarioClock:
        return cls(
            rate=settings.rate if settings.rate is not None else 1.0,
            jump_s=settings.jump_s if settings.jump_s is not None else 0.0,
            wall_offset_s=settings.wall_offset_s if settings.wall_offset_s is not None else 0.0,
            **kwargs,
        )

    # ------------------------------------------------------------------ trio.abc.Clock

    def start_clock(self) -> None:
        pass  # anchored at construction: current_time is valid before trio starts

    def current_time(self) -> float:
        return self._base + (self._monotonic() - self._anchor) * self.rate

    def deadline_to_sleep_time(self, deadline: float) -> float:
        # real seconds until the virtual deadline; a jump made while sleeping is applied
        # from a trio task, so trio asks again right after it
        return max(0.0, (deadline - self.current_time()) / self.rate)

    # ------------------------------------------------------------------ the wall clock

    def wall_s(self) -> float:
        return self._wall() + self.wall_offset_s

    def wall_ms(self) -> int:
        """The broker's wall clock in milliseconds (``time.time()`` + ``wall_offset_s``)."""
        return int(self.wall_s() * 1000)

    # ------------------------------------------------------------------ changes

    def apply(self, settings: ClockSettings) -> bool:
        """Apply what changed; True when anything did (then logs ``event=clock_changed``).
        A ``jump_s`` below the one applied is ignored with a log line."""
        changed = False
        if settings.rate is not None and settings.rate != self.rate:
            if not RATE_MIN <= settings.rate <= RATE_MAX:
                log.warning("event=clock_rate_refused rate=%g", settings.rate)
            else:
                now_real = self._monotonic()
                self._base = self._base + (now_real - self._anchor) * self.rate
                self._anchor = now_real
                self.rate = settings.rate
                changed = True
        if settings.jump_s is not None and settings.jump_s != self.jump_s:
            if settings.jump_s < self.jump_s:
                log.warning(
                    "event=clock_jump_ignored jump_s=%g applied_jump_s=%g reason=%s",
                    settings.jump_s,
                    self.jump_s,
                    "a monotonic clock never goes back",
                )
            else:
                self._base += settings.jump_s - self.jump_s
                self.jump_s = settings.jump_s
                changed = True
        if settings.wall_offset_s is not None and settings.wall_offset_s != self.wall_offset_s:
            self.wall_offset_s = settings.wall_offset_s
            changed = True
        if changed:
            log.info(
                "event=clock_changed rate=%g jump_s=%g wall_offset_s=%g",
                self.rate,
                self.jump_s,
                self.wall_offset_s,
            )
        return changed


# ------------------------------------------------------------------ the control file


def read_clock_file(path: str) -> ClockSettings | None:
    """The settings in ``path``; None when the file does not exist. ``ValueError`` for
    content that is not a valid clock file, ``OSError`` when it cannot be read."""
    try:
        with open(path, "rb") as f:
            data = f.read(CLOCK_FILE_BYTES_MAX + 1)
    except FileNotFoundError:
        return None
    if len(data) > CLOCK_FILE_BYTES_MAX:
        raise ValueError(f"{path} is larger than {CLOCK_FILE_BYTES_MAX} bytes")
    return parse_clock_settings(data)


def _file_stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class ClockFileWatcher:
    """Applies ``path`` to ``clock`` whenever its (mtime, size) changed since the last
    look; ``poll()`` is one look (synchronous, for start-up and tests)."""

    def __init__(self, path: str, clock: ScenarioClock) -> None:
        self.path = path
        self.clock = clock
        self._stamp: tuple[int, int] | None = None

    def poll(self) -> bool:
        """Look once; True when the clock changed."""
        stamp = _file_stamp(self.path)
        if stamp is None or stamp == self._stamp:
            self._stamp = stamp
            return False
        self._stamp = stamp
        try:
            settings = read_clock_file(self.path)
        except (OSError, ValueError) as e:
            log.warning("event=clock_file_invalid path=%s error=%s", self.path, e)
            return False
        return settings is not None and self.clock.apply(settings)

    async def run(self, interval_s: float = POLL_S) -> None:
        """Poll every ``interval_s`` of real time until cancelled."""
        while True:
            self.poll()
            # sleep real time, whatever the rate: trio's sleeps are in clock time
            await trio.sleep(interval_s * self.clock.rate)
