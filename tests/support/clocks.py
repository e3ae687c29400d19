"""A monotonic clock the test moves by hand, for code that takes `clock=`."""

from __future__ import annotations


class ManualClock:
    """Seconds that pass only when the test calls `advance` (starts at 1000)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
