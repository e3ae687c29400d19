"""History: every probe result and every selection decision, for the dashboard and notebooks.

This package defines the sink the reconcilers write to. The durable store (heartbeats, load
and selections over time, with pandas readers) arrives with the history issue; until then
`MemorySink` keeps a bounded window in memory (what `kidp-ops dev` shows) and `NullSink`
drops everything.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    """One health probe of one broker, written to status or not."""

    time: datetime
    broker: str  # namespace/name
    ok: bool
    phase: str
    latency_ms: float | None
    active_deployments: int | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SelectionRecord:
    """One selection decision: the request, the chosen broker (or none) and why."""

    time: datetime
    request: str  # namespace/name of the Database (or another requester)
    resource_type: str
    provider: str | None
    cloud_provider: str | None
    region: str | None
    broker: str | None
    score: float | None
    candidates: int
    eligible: int
    reason: str = ""


class HistorySink(Protocol):
    def record_probe(self, record: ProbeRecord) -> None: ...

    def record_selection(self, record: SelectionRecord) -> None: ...


class NullSink:
    def record_probe(self, record: ProbeRecord) -> None:
        pass

    def record_selection(self, record: SelectionRecord) -> None:
        pass


class MemorySink:
    """The last `limit` records of each kind, oldest first."""

    def __init__(self, limit: int = 10_000) -> None:
        self.probes: deque[ProbeRecord] = deque(maxlen=limit)
        self.selections: deque[SelectionRecord] = deque(maxlen=limit)

    def record_probe(self, record: ProbeRecord) -> None:
        self.probes.append(record)

    def record_selection(self, record: SelectionRecord) -> None:
        self.selections.append(record)
