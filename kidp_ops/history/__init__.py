"""History: every probe, selection decision and Database lifecycle step, for people.

The reconcilers write to a `HistorySink`; the dashboard and the notebooks read through a
`HistoryReader`. `MemorySink` is both, bounded, in memory (the daemon's own view, and the
tests'); `NullSink` drops everything; `Tee` writes to several sinks. The durable store
(`history.store`: SQLite in the state directory, written off the event loop by
`history.writer`) implements the same two protocols; `history.frames` reads it into pandas
DataFrames, and `history.prometheus` reads the same frames from Prometheus.

Records are plain frozen dataclasses: what happened, when (aware UTC), about whom
(`namespace/name` keys). Readers return them oldest first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeVar

_EMPTY: Mapping[str, int] = MappingProxyType({})
_NO_SPEC: Mapping[str, Any] = MappingProxyType({})


class HistoryError(Exception):
    """A history that cannot be opened or read (not a history file, Prometheus unreachable,
    bad window): one line for a person, naming the file or URL."""


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    """One health probe of one broker, written to status or not."""

    time: datetime
    broker: str  # namespace/name
    ok: bool
    phase: str  # the broker's phase after this probe
    latency_ms: float | None
    active_deployments: int | None
    reason: str = ""  # why it failed ("" when ok)
    max_concurrent_deployments: int | None = None  # the spec's, at probe time (0: unlimited)
    version: str | None = None  # what the broker reported


@dataclass(frozen=True, slots=True)
class SelectionRecord:
    """One selection decision: the request, the chosen broker (or none) and why."""

    time: datetime
    request: str  # namespace/name of the Database (or another requester)
    resource_type: str
    provider: str | None
    cloud_provider: str | None
    region: str | None
    broker: str | None  # namespace/name of the chosen one; None: nothing fitted
    score: float | None
    candidates: int  # brokers known to the registry
    eligible: int  # brokers that passed every filter
    reason: str = ""  # why nothing fitted
    namespace: str | None = None  # the request's namespace (allowedNamespaces)
    parts: tuple[float, float, float] | None = None  # priority, load, heartbeat of the score
    rejections: Mapping[str, int] = field(default_factory=lambda: _EMPTY)  # filter -> brokers


LifecycleStep = Literal[
    "created", "scheduled", "accepted", "ready", "failed", "deleting", "deleted", "abandoned"
]


@dataclass(frozen=True, slots=True)
class LifecycleRecord:
    """One step in a Database's life: provision latency is `ready` minus `created`."""

    time: datetime
    request: str  # namespace/name of the Database
    step: LifecycleStep
    broker: str | None = None
    deployment_id: str | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class BrokerRecord:
    """A Broker's spec as it was from `time` on (recorded when it changes): where it stands
    for capacity planning, and the whole spec for replaying selections (what-if)."""

    time: datetime
    broker: str  # namespace/name
    cloud_provider: str
    region: str
    priority: int
    max_concurrent_deployments: int  # 0: unlimited
    spec: Mapping[str, Any] = field(default_factory=lambda: _NO_SPEC)  # without authentication
    deleted: bool = False


class HistorySink(Protocol):
    def record_probe(self, record: ProbeRecord) -> None: ...

    def record_selection(self, record: SelectionRecord) -> None: ...

    def record_lifecycle(self, record: LifecycleRecord) -> None: ...

    def record_broker(self, record: BrokerRecord) -> None: ...


class HistoryReader(Protocol):
    """Reading history back, oldest first; `limit` keeps the newest that many."""

    def probes(
        self, *, broker: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[ProbeRecord]: ...

    def selections(
        self,
        *,
        request: str | None = None,
        broker: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[SelectionRecord]: ...

    def lifecycle(
        self, *, request: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[LifecycleRecord]: ...


class NullSink:
    def record_probe(self, record: ProbeRecord) -> None:
        pass

    def record_selection(self, record: SelectionRecord) -> None:
        pass

    def record_lifecycle(self, record: LifecycleRecord) -> None:
        pass

    def record_broker(self, record: BrokerRecord) -> None:
        pass


class Tee:
    """Every record to each of `sinks`, in order (dev: the live view's memory and the store)."""

    def __init__(self, *sinks: HistorySink) -> None:
        self.sinks = sinks

    def record_probe(self, record: ProbeRecord) -> None:
        for sink in self.sinks:
            sink.record_probe(record)

    def record_selection(self, record: SelectionRecord) -> None:
        for sink in self.sinks:
            sink.record_selection(record)

    def record_lifecycle(self, record: LifecycleRecord) -> None:
        for sink in self.sinks:
            sink.record_lifecycle(record)

    def record_broker(self, record: BrokerRecord) -> None:
        for sink in self.sinks:
            sink.record_broker(record)


R = TypeVar("R", ProbeRecord, SelectionRecord, LifecycleRecord)


def _newest(records: Iterable[R], since: datetime | None, limit: int | None) -> list[R]:
    kept = [r for r in records if since is None or r.time >= since]
    return kept[-limit:] if limit is not None else kept


class MemorySink:
    """The last `limit` records of each kind, oldest first; a HistorySink and a reader."""

    def __init__(self, limit: int = 10_000) -> None:
        self.probes_kept: deque[ProbeRecord] = deque(maxlen=limit)
        self.selections_kept: deque[SelectionRecord] = deque(maxlen=limit)
        self.lifecycle_kept: deque[LifecycleRecord] = deque(maxlen=limit)
        self.brokers_kept: deque[BrokerRecord] = deque(maxlen=limit)

    def record_probe(self, record: ProbeRecord) -> None:
        self.probes_kept.append(record)

    def record_selection(self, record: SelectionRecord) -> None:
        self.selections_kept.append(record)

    def record_lifecycle(self, record: LifecycleRecord) -> None:
        self.lifecycle_kept.append(record)

    def record_broker(self, record: BrokerRecord) -> None:
        self.brokers_kept.append(record)

    def probes(
        self, *, broker: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[ProbeRecord]:
        mine = (p for p in self.probes_kept if broker is None or p.broker == broker)
        return _newest(mine, since, limit)

    def selections(
        self,
        *,
        request: str | None = None,
        broker: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[SelectionRecord]:
        mine = (
            s
            for s in self.selections_kept
            if (request is None or s.request == request) and (broker is None or s.broker == broker)
        )
        return _newest(mine, since, limit)

    def lifecycle(
        self, *, request: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[LifecycleRecord]:
        mine = (r for r in self.lifecycle_kept if request is None or r.request == request)
        return _newest(mine, since, limit)
