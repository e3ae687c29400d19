"""The `/` filter, pure: a regular expression, `!` to invert it, `-l key=value` for labels.

/eastus            rows whose text matches (case-insensitive)
/!Ready            rows that do not match
/-l env=dev,tier   rows with label env=dev and a label tier (any value)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field


class FilterError(ValueError):
    """A filter that cannot be read; the message is one line for the command bar."""


@dataclass(frozen=True, slots=True)
class RowFilter:
    text: str = ""
    pattern: re.Pattern[str] | None = None
    inverse: bool = False
    labels: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.pattern or self.labels)

    def matches(self, text: str, labels: Mapping[str, str]) -> bool:
        for key, value in self.labels.items():
            if key not in labels or (value is not None and labels[key] != value):
                return False
        if self.pattern is None:
            return True
        return bool(self.pattern.search(text)) != self.inverse


NO_FILTER = RowFilter()


def parse_filter(text: str) -> RowFilter:
    """What the user typed after `/`; FilterError for a bad expression or label."""
    stripped = text.strip()
    if not stripped:
        return NO_FILTER
    if stripped.startswith("-l"):
        return RowFilter(text=stripped, labels=_labels(stripped[2:].strip()))
    inverse = stripped.startswith("!")
    expression = stripped[1:] if inverse else stripped
    try:
        pattern = re.compile(expression, re.IGNORECASE)
    except re.error as exc:
        raise FilterError(f"not a regular expression: {expression!r} ({exc})") from None
    return RowFilter(text=stripped, pattern=pattern, inverse=inverse)


def _labels(text: str) -> dict[str, str | None]:
    if not text:
        raise FilterError("-l needs key=value (e.g. -l kidp.platform.company.com/environment=dev)")
    wanted: dict[str, str | None] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not key or (sep and not value):
            raise FilterError(f"not a label selector: {part.strip()!r} (key=value or key)")
        wanted[key] = value if sep else None
    return wanted
