"""Cells of the tables, pure: phases in colour, load bars, probe sparklines, ages.

Every function takes what it shows (and `now` where time matters) and returns Rich Text;
nothing here reads a clock or the cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from rich.text import Text

from kidp_ops.times import human_age

PHASE_STYLES = {
    "Ready": "green",
    "Pending": "yellow",
    "Provisioning": "cyan",
    "Unhealthy": "bold dark_orange",
    "Offline": "bold red",
    "Unknown": "magenta",
    "Failed": "bold red",
    "Deleting": "blue",
    "Warning": "bold yellow",
    "Normal": "",
}
# One probe as one character: its phase after the probe, and whether it failed.
SPARK = {
    "Ready": ("█", "green"),
    "Pending": ("▂", "yellow"),
    "Unhealthy": ("▃", "dark_orange"),
    "Offline": ("▁", "red"),
    "Unknown": ("?", "magenta"),
}
FAILED_WHILE_READY = ("▅", "yellow")
BAR = "█▏▎▍▌▋▊▉"


def phase(value: str | None) -> Text:
    shown = value or "<none>"
    return Text(shown, style=PHASE_STYLES.get(shown, "dim"))


def age(seconds: float | None) -> Text:
    return Text("<none>" if seconds is None else human_age(seconds))


def since(when: datetime | None, now: datetime) -> float | None:
    return None if when is None else max(0.0, (now - when).total_seconds())


def heartbeat(seconds: float | None, *, interval: float, offline_after: timedelta) -> Text:
    """The heartbeat's age: plain, yellow past two intervals, red past the Offline limit."""
    if seconds is None:
        return Text("never", style="bold red")
    style = ""
    if seconds >= offline_after.total_seconds():
        style = "bold red"
    elif seconds > 2 * interval:
        style = "yellow"
    return Text(human_age(seconds), style=style)


def load(active: int, reserved: int, limit: int, *, bar: int = 5) -> Text:
    """`7/10 ███▌ ` with reservations counted (as the selection messages count them), and
    `+2r` when some are reserved; an unlimited broker (max 0) shows `7/∞`."""
    total = active + reserved
    if limit <= 0:
        return Text(f"{total}/∞")
    fraction = min(1.0, total / limit)
    style = "red" if fraction >= 1 else "yellow" if fraction >= 0.8 else "green"
    text = Text(f"{total}/{limit} ")
    text.append(meter(fraction, bar), style=style)
    if reserved:
        text.append(f" +{reserved}r", style="cyan")
    return text


def meter(fraction: float, width: int) -> str:
    """A bar of `width` cells filled to `fraction` in eighths."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    cells = "█" * full + (BAR[part] if part else "")
    return cells.ljust(width, "·")


def sparkline(probes: Sequence[tuple[str, bool]], width: int) -> Text:
    """The last `width` probes, oldest left: a character per (phase after, ok)."""
    text = Text()
    for probe_phase, ok in list(probes)[-width:]:
        char, style = SPARK.get(probe_phase, ("?", "magenta"))
        if probe_phase == "Ready" and not ok:
            char, style = FAILED_WHILE_READY
        text.append(char, style=style)
    return text


def latency(ms: float | None) -> Text:
    if ms is None:
        return Text("-", style="dim")
    return Text(f"{ms:.0f}ms" if ms >= 1 else f"{ms:.1f}ms")


def score(value: float | None, rejected: str | None) -> Text:
    if value is None:
        return Text("-", style="dim") if rejected else Text("")
    return Text(f"{value:.1f}", style="bold")


def number(value: object) -> Text:
    return Text("" if value is None else str(value))
