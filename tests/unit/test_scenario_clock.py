"""``ScenarioClock``: the injected trio clock of clock-skew scenarios (rate, forward jumps,
wall-clock offset), and its control file."""

from __future__ import annotations

import json
import logging
import os

import pytest
import trio

from raftlog.runtime.clock import (
    ClockFileWatcher,
    ClockSettings,
    ScenarioClock,
    parse_clock_settings,
)


class FakeTime:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1_700_000_000.0

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall


def _clock(t: FakeTime, **kw: float) -> ScenarioClock:
    return ScenarioClock(monotonic=t.monotonic, wall=t.time, **kw)


def test_rate_scales_time_and_a_rate_change_is_continuous() -> None:
    t = FakeTime()
    c = _clock(t)
    start = c.current_time()
    t.mono += 1.0
    assert c.current_time() == pytest.approx(start + 1.0)
    before = c.current_time()
    assert c.apply(ClockSettings(rate=2.0))
    assert c.current_time() == pytest.approx(before), "no jump at a rate change"
    t.mono += 1.0
    assert c.current_time() == pytest.approx(before + 2.0)
    mid = c.current_time()
    assert c.apply(ClockSettings(rate=0.5))
    assert c.current_time() == pytest.approx(mid)
    t.mono += 2.0
    assert c.current_time() == pytest.approx(mid + 1.0)


def test_jumps_are_cumulative_and_never_go_back(caplog: pytest.LogCaptureFixture) -> None:
    t = FakeTime()
    c = _clock(t)
    base = c.current_time()
    assert c.apply(ClockSettings(jump_s=5.0))
    assert c.current_time() == pytest.approx(base + 5.0)
    assert not c.apply(ClockSettings(jump_s=5.0)), "the same cumulative jump again: nothing"
    assert c.apply(ClockSettings(jump_s=7.5))
    assert c.current_time() == pytest.approx(base + 7.5)
    with caplog.at_level(logging.WARNING, logger="raftlog.clock"):
        assert not c.apply(ClockSettings(jump_s=1.0))
    assert "event=clock_jump_ignored" in caplog.text
    assert c.current_time() == pytest.approx(base + 7.5) and c.jump_s == 7.5
    # time read often across rate changes and jumps never decreases
    last = c.current_time()
    for i in range(200):
        t.mono += 0.01
        if i % 17 == 0:
            c.apply(ClockSettings(rate=[0.1, 3.0, 10.0, 1.0][i % 4]))
        if i % 23 == 0:
            c.apply(ClockSettings(jump_s=c.jump_s + 0.1))
        now = c.current_time()
        assert now >= last
        last = now


def test_deadline_to_sleep_time_is_in_real_seconds() -> None:
    t = FakeTime()
    c = _clock(t, rate=2.0)
    now = c.current_time()
    assert c.deadline_to_sleep_time(now + 4.0) == pytest.approx(2.0)
    assert c.deadline_to_sleep_time(now - 1.0) == 0.0
    c.apply(ClockSettings(rate=0.5))
    assert c.deadline_to_sleep_time(now + 1.0) == pytest.approx(2.0)
    c.apply(ClockSettings(jump_s=10.0))
    assert c.deadline_to_sleep_time(now + 1.0) == 0.0, "a jump past a deadline wakes it"


def test_wall_offset_shifts_the_wall_clock_only() -> None:
    t = FakeTime()
    c = _clock(t)
    mono = c.current_time()
    assert c.wall_ms() == int(t.wall * 1000)
    assert c.apply(ClockSettings(wall_offset_s=-3600.0))
    assert c.wall_ms() == int((t.wall - 3600) * 1000)
    assert c.current_time() == mono
    assert c.apply(ClockSettings(wall_offset_s=0.0)) and c.wall_ms() == int(t.wall * 1000)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("nope", "not JSON"),
        ("[1]", "JSON object"),
        ('{"rate": 0}', "rate must be in"),
        ('{"rate": 11}', "rate must be in"),
        ('{"rate": "fast"}', "finite number"),
        ('{"rate": true}', "finite number"),
        ('{"jump_s": -1}', "jump_s must be >= 0"),
        ('{"wall_offset_s": NaN}', "finite number"),
        ('{"speed": 2}', "unknown keys"),
    ],
)
def test_bad_settings_are_refused(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_clock_settings(text)


def test_the_file_watcher(tmp_path: object, caplog: pytest.LogCaptureFixture) -> None:
    t = FakeTime()
    c = _clock(t)
    path = os.path.join(str(tmp_path), "clock.json")
    w = ClockFileWatcher(path, c)
    assert not w.poll(), "a missing file changes nothing"
    with open(path, "w") as f:
        json.dump({"rate": 2.0, "jump_s": 1.0, "wall_offset_s": 5.0}, f)
    with caplog.at_level(logging.INFO, logger="raftlog.clock"):
        assert w.poll()
    assert "event=clock_changed rate=2 jump_s=1 wall_offset_s=5" in caplog.text
    assert (c.rate, c.jump_s, c.wall_offset_s) == (2.0, 1.0, 5.0)
    assert not w.poll(), "unchanged file: not applied again"
    caplog.clear()
    with open(path, "w") as f:
        f.write('{"rate": 50}')
    with caplog.at_level(logging.WARNING, logger="raftlog.clock"):
        assert not w.poll()
    assert "event=clock_file_invalid" in caplog.text
    assert c.rate == 2.0, "bad contents are ignored"
    with open(path, "w") as f:
        json.dump({"rate": 1.0}, f)
    assert w.poll() and c.rate == 1.0 and c.jump_s == 1.0


def test_trio_runs_on_it_and_sleeps_take_less_real_time_at_rate_4() -> None:
    import time

    clock = ScenarioClock(rate=4.0)

    async def main() -> tuple[float, float]:
        t0, r0 = trio.current_time(), time.monotonic()
        await trio.sleep(0.4)
        return trio.current_time() - t0, time.monotonic() - r0

    virtual, real = trio.run(main, clock=clock)
    assert virtual >= 0.4
    assert real < 0.3, f"0.4 s of clock time at rate 4 took {real:.3f} s of real time"
