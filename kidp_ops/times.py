"""Time as text, pure (a leaf every layer shares): RFC 3339, Go-style durations, kubectl ages.

The clock itself is `kidp_ops.clock`, which decision modules may not import.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 (`2025-10-03T10:30:00Z`) to an aware datetime; None for empty."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_moment(text: str, *, now: datetime, ages: bool = True) -> datetime:
    """An age before `now` (`30m`, `6h`, `7d`, when `ages`) or an RFC 3339 time; a
    ValueError says what is allowed."""
    amount, unit = text[:-1], text[-1:]
    if ages and amount.isdigit() and unit in AGE_UNITS:
        return now - timedelta(**{AGE_UNITS[unit]: int(amount)})
    try:
        parsed = parse_time(text)
    except ValueError:
        parsed = None
    if parsed is None:
        allowed = "an age like 30m, 6h, 7d, or " if ages else ""
        raise ValueError(f"{text!r}: expected {allowed}an RFC 3339 time like 2026-11-25T10:00:00Z")
    return parsed


def format_time(value: datetime) -> str:
    """`2025-10-03T10:30:00Z`: UTC, whole seconds, as Kubernetes timestamps are written."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_duration(seconds: float) -> str:
    """Go's duration style in whole seconds: `45s`, `5m0s`, `2h15m30s` (negative: `0s`)."""
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def human_age(seconds: float) -> str:
    """kubectl's HumanDuration: `45s`, `3m20s`, `5m`, `2h10m`, `20h`, `3d4h`, `45d`, `2y30d`."""
    s = max(0, int(seconds))
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if years < 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"
