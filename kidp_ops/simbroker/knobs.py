"""The reference broker's simulation knobs: values, parsing and their pure semantics.

Standard library only: `kidp-ops --help` builds its parser from these parse functions
(argparse calls them, so a bad value is a usage error, exit 2), and the admin endpoint
validates with the same functions.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_VERSION = "1.0.0-sim"
DEFAULT_DELAY_SECONDS = 2.0
MAX_DELAY_SECONDS = 3600.0
MAX_VERSION_LENGTH = 64

#: What `/health` does in each mode (flap:N alternates healthy and fail every N seconds).
HEALTH_MODE_HELP = {
    "healthy": '200 {"status": "healthy", ...}',
    "degraded": '200 {"status": "degraded", ...} (a prober counts it as a failure)',
    "fail": "503; /readiness is 503 too",
    "hang": "never answers until the client gives up (bounded: 1 hour, or until shutdown)",
    "garbage": "200 with a body that is not JSON",
    "huge": "200 with a 1 MiB JSON body (larger than a prober's 64 KiB cap)",
    "flap:N": "healthy for N seconds, then fail for N seconds, and so on",
}
SIMPLE_MODES = ("healthy", "degraded", "fail", "hang", "garbage", "huge")


@dataclass(frozen=True, slots=True)
class HealthMode:
    """How `/health` behaves: one of SIMPLE_MODES, or "flap" with its half-period."""

    name: str = "healthy"
    period: float = 0.0  # flap only: seconds per half-cycle

    def __str__(self) -> str:
        return f"flap:{self.period:g}" if self.name == "flap" else self.name

    def at(self, elapsed: float) -> str:
        """The simple mode in force `elapsed` seconds after the mode was set."""
        if self.name != "flap":
            return self.name
        return "healthy" if int(max(elapsed, 0.0) // self.period) % 2 == 0 else "fail"


HEALTHY = HealthMode()


def parse_health_mode(text: str) -> HealthMode:
    value = text.strip().lower()
    if value in SIMPLE_MODES:
        return HealthMode(value)
    match = re.fullmatch(r"flap:([0-9]*\.?[0-9]+)", value)
    if match and 0 < float(match.group(1)) <= MAX_DELAY_SECONDS:
        return HealthMode("flap", float(match.group(1)))
    allowed = ", ".join((*SIMPLE_MODES, "flap:N (N seconds, > 0)"))
    raise ValueError(f"invalid health mode {text!r} (allowed: {allowed})")


def parse_delay(text: str | float) -> float:
    value = _number(text, "delay")
    if not 0 <= value <= MAX_DELAY_SECONDS:
        raise ValueError(f"delay must be between 0 and {MAX_DELAY_SECONDS:g} seconds, got {text}")
    return value


def parse_failure_rate(text: str | float) -> float:
    value = _number(text, "failure rate")
    if not 0 <= value <= 1:
        raise ValueError(f"failure rate must be between 0 and 1, got {text}")
    return value


def parse_capacity(text: str | int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"capacity must be a whole number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"capacity must be 0 (unlimited) or more, got {text}")
    return value


def parse_version(text: str) -> str:
    value = text.strip()
    if not value or len(value) > MAX_VERSION_LENGTH or not value.isprintable():
        raise ValueError(f"version must be 1 to {MAX_VERSION_LENGTH} printable characters")
    return value


def _number(text: str | float, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class Knobs:
    """The simulation's behaviour; settable at start and at runtime (PATCH /admin/knobs)."""

    delay: float = DEFAULT_DELAY_SECONDS  # seconds until provision/deprovision completes
    failure_rate: float = 0.0  # probability that a provisioning ends Failed
    health_mode: HealthMode = HEALTHY
    deprovision_failure_rate: float = 0.0  # probability a deprovisioning fails (it stays)
    capacity: int = 0  # max active deployments; 0 = unlimited
    version: str = DEFAULT_VERSION

    def changed(self, **changes: Any) -> Knobs:
        """A copy with `changes` (field names as above), each validated; ValueError if bad."""
        parsers: dict[str, Any] = {
            "delay": parse_delay,
            "failure_rate": parse_failure_rate,
            "deprovision_failure_rate": parse_failure_rate,
            "capacity": parse_capacity,
            "version": parse_version,
            "health_mode": lambda v: v if isinstance(v, HealthMode) else parse_health_mode(v),
        }
        unknown = sorted(set(changes) - set(parsers))
        if unknown:
            raise ValueError(f"unknown knob(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **{k: parsers[k](v) for k, v in changes.items()})

    def describe(self) -> str:
        """`health mode healthy, delay 2s, failure rate 0, capacity unlimited, version 1.0`."""
        capacity = str(self.capacity) if self.capacity else "unlimited"
        text = (
            f"health mode {self.health_mode}, delay {self.delay:g}s, "
            f"failure rate {self.failure_rate:g}, capacity {capacity}, version {self.version}"
        )
        if self.deprovision_failure_rate:
            text += f", deprovision failure rate {self.deprovision_failure_rate:g}"
        return text

    def as_json(self) -> dict[str, Any]:
        """camelCase, as GET /admin/knobs shows it."""
        return {
            "delay": self.delay,
            "failureRate": self.failure_rate,
            "deprovisionFailureRate": self.deprovision_failure_rate,
            "healthMode": str(self.health_mode),
            "capacity": self.capacity,
            "version": self.version,
        }
