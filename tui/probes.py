"""What the dashboard remembers of each broker's probes: the sparkline and the flaps.

Fed from the history (`HistoryReader.probes`, read incrementally: only records newer than
the last one seen), or, without a history reader, from the watch: each phase a Broker's
status shows is one point. Pure data, no clock: `now` is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from kidp_ops.history import ProbeRecord

FLAP_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Point:
    time: datetime
    phase: str
    ok: bool


class ProbeMemory:
    """The last `depth` probes of every broker, oldest first."""

    def __init__(self, depth: int = 120) -> None:
        self.depth = depth
        self._points: dict[str, deque[Point]] = {}
        self._newest: datetime | None = None
        self._seen_at_newest: set[tuple[str, str, bool]] = set()

    def add(self, broker: str, point: Point) -> None:
        kept = self._points.get(broker)
        if kept is None:
            kept = self._points[broker] = deque(maxlen=self.depth)
        kept.append(point)

    def observe_phase(self, broker: str, phase: str, when: datetime) -> None:
        """From the watch: a new phase shown in the Broker's status (no history reader)."""
        kept = self._points.get(broker)
        if kept and kept[-1].phase == phase:
            return
        self.add(broker, Point(when, phase, phase == "Ready"))

    def take(self, records: Iterable[ProbeRecord]) -> int:
        """Add history records newer than those taken before; how many were new."""
        added = 0
        for record in records:
            mark = (record.broker, record.phase, record.ok)
            if self._newest is not None and record.time < self._newest:
                continue
            if record.time == self._newest and mark in self._seen_at_newest:
                continue
            if record.time != self._newest:
                self._newest, self._seen_at_newest = record.time, set()
            self._seen_at_newest.add(mark)
            self.add(record.broker, Point(record.time, record.phase, record.ok))
            added += 1
        return added

    @property
    def newest(self) -> datetime | None:
        return self._newest

    def forget(self, broker: str) -> None:
        self._points.pop(broker, None)

    def recent(self, broker: str, count: int) -> list[tuple[str, bool]]:
        kept = self._points.get(broker) or ()
        return [(p.phase, p.ok) for p in list(kept)[-count:]]

    def flaps(self, broker: str, now: datetime, window: timedelta = FLAP_WINDOW) -> int:
        """Phase changes within `window` before `now`."""
        kept = self._points.get(broker)
        if not kept:
            return 0
        start = now - window
        changes, previous = 0, None
        for point in kept:
            if previous is not None and point.phase != previous and point.time >= start:
                changes += 1
            previous = point.phase
        return changes
