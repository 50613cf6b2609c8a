"""The scrub's read pacing, on an injected clock: bytes per second, no saved-up credit, stop."""

from __future__ import annotations

import pytest

from registry.service.scrub import Stopped, Throttle


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.stop = False

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return self.stop


def test_throttle_paces_reads_to_the_rate() -> None:
    t = FakeTime()
    throttle = Throttle(1000, t.wait, t.clock)
    for _ in range(4):
        throttle.spend(500)
    assert t.now == pytest.approx(2.0)  # 2000 bytes at 1000 bytes/s


def test_throttle_saves_no_credit_for_idle_time() -> None:
    t = FakeTime()
    throttle = Throttle(1000, t.wait, t.clock)
    t.now += 60  # a minute without reading (a slow query, a repair)
    throttle.spend(1000)
    assert t.waits == [pytest.approx(1.0)]  # still paced: no burst at full speed


def test_throttle_without_a_rate_never_waits() -> None:
    t = FakeTime()
    throttle = Throttle(0, t.wait, t.clock)
    for _ in range(3):
        throttle.spend(10**9)
    assert t.waits == [0.0, 0.0, 0.0] and t.now == 0


def test_throttle_raises_stopped_when_asked_to_stop() -> None:
    t = FakeTime()
    throttle = Throttle(0, t.wait, t.clock)
    throttle.spend(1)
    t.stop = True
    with pytest.raises(Stopped):
        throttle.spend(1)
