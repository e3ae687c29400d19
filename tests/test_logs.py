"""Log lines carrying attacker text: escaped, cut, and rate-limited (issue 10)."""

from __future__ import annotations

import logging

import pytest

from kidp_ops.logs import Throttle, shown
from tests.support.clocks import ManualClock


def test_shown_escapes_control_characters_and_non_ascii() -> None:
    assert shown("ok") == "ok"
    line = shown("bad\r\nINFO forged line\x1b[2J\u202e")
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line == "bad\\r\\nINFO forged line\\x1b[2J\\u202e"


def test_shown_cuts_long_text_and_says_how_much() -> None:
    line = shown("A" * 8192, limit=160)
    assert line == "A" * 160 + "... (8032 more characters)"


def test_throttle_passes_a_minute_budget_then_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(60 * 1000.0)  # the start of a minute
    throttle = Throttle(logging.getLogger("kidp.test.throttle"), per_minute=3, clock=clock)
    with caplog.at_level(logging.WARNING, logger="kidp.test.throttle"):
        for n in range(10):
            throttle.warning("refused %d", n)
        assert [r.getMessage() for r in caplog.records] == ["refused 0", "refused 1", "refused 2"]
        assert throttle.suppressed == 7
        clock.advance(59)
        throttle.warning("refused %d", 99)  # still the same minute: held back
        assert throttle.suppressed == 8
        clock.advance(1)  # the next minute: the count, then lines again
        throttle.warning("refused %d", 10)
    assert [r.getMessage() for r in caplog.records][3:] == [
        "8 more like the line above were not logged",
        "refused 10",
    ]
    assert throttle.suppressed == 0


def test_throttle_gives_a_burst_across_a_minute_boundary_no_second_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(60 * 1000.0 - 1)  # a second before a minute starts
    throttle = Throttle(logging.getLogger("kidp.test.burst"), per_minute=3, clock=clock)
    with caplog.at_level(logging.WARNING, logger="kidp.test.burst"):
        for n in range(20):
            throttle.warning("refused %d", n)
            clock.advance(0.1)  # 2 s in all, across the boundary
    assert [r.getMessage() for r in caplog.records] == ["refused 0", "refused 1", "refused 2"]
    assert throttle.suppressed == 17
