"""The wall clock (a leaf). Decision code never reads it: time is passed in. The shells that
own a clock take it as a parameter defaulting to `utc_now`, so tests inject theirs."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)
