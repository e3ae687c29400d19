"""History as Prometheus series: what `history.prometheus` reads back with `query_range`.

`MeteredHistory` wraps the daemon's sink: every record goes on to it, and also updates
plain dicts that `families()` turns into metric families at scrape time (registered on the
daemon's `Metrics` with `add_sampler`). With `--history off` (the default on a real
cluster) Prometheus is the history, so these series exist whatever the sink is.

Added to what `kidp_ops.metrics` already exports (`kidp_broker_phase`,
`kidp_broker_probes_total`, `kidp_selections_total`):

| series | labels | what |
| --- | --- | --- |
| `kidp_broker_active_deployments` | namespace, broker | as of the last probe |
| `kidp_broker_max_concurrent_deployments` | namespace, broker | the spec's (0: unlimited) |
| `kidp_broker_last_probe_latency_seconds` | namespace, broker | the last probe's |
| `kidp_broker_phase_transitions_total` | namespace, broker | phase changes (flaps) |
| `kidp_broker_info` | namespace, broker, cloud_provider, region | 1 |
| `kidp_broker_priority` | namespace, broker | the spec's |
| `kidp_selection_score_parts_total` | namespace, broker, part | sums of the winners' parts |
| `kidp_selection_rejections_total` | filter | brokers rejected, in decisions that found none |
| `kidp_provision_duration_seconds` (summary) | namespace, broker | created -> Ready |
| `kidp_provision_failures_total` | namespace, broker | provisions that ended Failed |
| `kidp_history_records_total` | kind, result (written, dropped) | the history store's |
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

from kidp_ops.history import (
    BrokerRecord,
    HistorySink,
    LifecycleRecord,
    ProbeRecord,
    SelectionRecord,
    Tee,
)

PARTS = ("priority", "load", "heartbeat")
REMEMBERED_REQUESTS = 100_000
NB = ["namespace", "broker"]


@runtime_checkable
class Counted(Protocol):
    """A sink that counts what it wrote and dropped (`HistoryWriter`)."""

    written: Counter[str]
    dropped: Counter[str]


def counted_in(sink: HistorySink | None) -> Counted | None:
    """The sink (or the sink inside a Tee) that counts written and dropped records."""
    if isinstance(sink, Tee):
        return next((found for s in sink.sinks if (found := counted_in(s))), None)
    return sink if isinstance(sink, Counted) else None


def _labels(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


class MeteredHistory:
    """A HistorySink that passes every record on to `inner` and keeps the figures
    Prometheus needs to give the same frames as the store."""

    def __init__(self, inner: HistorySink, *, counted: Counted | None = None) -> None:
        self.inner = inner
        self.counted = counted
        self.active: dict[str, int] = {}
        self.limit: dict[str, int] = {}
        self.latency: dict[str, float] = {}
        self.phase: dict[str, str] = {}
        self.transitions: Counter[str] = Counter()
        self.info: dict[str, BrokerRecord] = {}
        self.parts: dict[tuple[str, str], float] = {}
        self.rejections: Counter[str] = Counter()
        self.provisions: dict[str, tuple[int, float]] = {}  # broker -> (count, sum)
        self.failures: Counter[str] = Counter()
        self._created: OrderedDict[str, tuple[datetime, str | None]] = OrderedDict()

    def record_probe(self, record: ProbeRecord) -> None:
        key = record.broker
        if record.active_deployments is not None:
            self.active[key] = record.active_deployments
        if record.max_concurrent_deployments is not None:
            self.limit[key] = record.max_concurrent_deployments
        if record.latency_ms is not None:
            self.latency[key] = record.latency_ms / 1000
        if self.phase.get(key) != record.phase:
            self.transitions[key] += key in self.phase  # the first phase is no transition
            self.phase[key] = record.phase
        self.inner.record_probe(record)

    def record_selection(self, record: SelectionRecord) -> None:
        if record.broker is not None and record.parts is not None:
            for part, value in zip(PARTS, record.parts, strict=True):
                key = (record.broker, part)
                self.parts[key] = self.parts.get(key, 0.0) + value
        if record.broker is None:
            self.rejections.update(record.rejections)
        self.inner.record_selection(record)

    def record_lifecycle(self, record: LifecycleRecord) -> None:
        """created -> ready is a provision's duration, counted for the broker that was
        scheduled (or that the ready step names)."""
        known = self._created.get(record.request)
        if record.step == "created":
            self._created[record.request] = (record.time, record.broker)
            while len(self._created) > REMEMBERED_REQUESTS:
                self._created.popitem(last=False)
        elif record.step == "scheduled" and known is not None:
            self._created[record.request] = (known[0], record.broker)
        elif record.step in ("ready", "failed") and known is not None:
            del self._created[record.request]
            broker = record.broker or known[1]
            if broker and record.step == "failed":
                self.failures[broker] += 1
            elif broker:
                count, total = self.provisions.get(broker, (0, 0.0))
                seconds = max((record.time - known[0]).total_seconds(), 0.0)
                self.provisions[broker] = (count + 1, total + seconds)
        self.inner.record_lifecycle(record)

    def record_broker(self, record: BrokerRecord) -> None:
        if record.deleted:
            self._forget(record.broker)
        else:
            self.info[record.broker] = record
            self.limit[record.broker] = record.max_concurrent_deployments
        self.inner.record_broker(record)

    def _forget(self, key: str) -> None:
        for table in (self.active, self.limit, self.latency, self.phase, self.info):
            table.pop(key, None)

    # --- scrape time --------------------------------------------------------------------

    def families(self) -> Iterable[Any]:
        yield _per_broker(
            "kidp_broker_active_deployments", "Active deployments (last probe).", self.active
        )
        yield _per_broker(
            "kidp_broker_max_concurrent_deployments",
            "maxConcurrentDeployments of the spec (0: unlimited).",
            self.limit,
        )
        yield _per_broker(
            "kidp_broker_last_probe_latency_seconds",
            "Latency of the last health probe.",
            self.latency,
        )
        yield _per_broker(
            "kidp_broker_phase_transitions",
            "Phase changes of each broker.",
            self.transitions,
            counter=True,
        )
        yield from self._broker_info()
        yield from self._selection_families()
        yield from self._provision_families()
        yield from self._store_families()

    def _broker_info(self) -> Iterable[Any]:
        info = GaugeMetricFamily(
            "kidp_broker_info",
            "Where each broker stands (value 1).",
            labels=[*NB, "cloud_provider", "region"],
        )
        priority = GaugeMetricFamily("kidp_broker_priority", "Spec priority.", labels=NB)
        for key, record in self.info.items():
            info.add_metric([*_labels(key), record.cloud_provider, record.region], 1.0)
            priority.add_metric(list(_labels(key)), float(record.priority))
        yield info
        yield priority

    def _selection_families(self) -> Iterable[Any]:
        parts = CounterMetricFamily(
            "kidp_selection_score_parts",
            "Sums of the chosen brokers' score parts.",
            labels=[*NB, "part"],
        )
        for (key, part), value in self.parts.items():
            parts.add_metric([*_labels(key), part], value)
        yield parts
        rejections = CounterMetricFamily(
            "kidp_selection_rejections",
            "Brokers rejected by each filter, in decisions that found no broker.",
            labels=["filter"],
        )
        for name, count in self.rejections.items():
            rejections.add_metric([name], count)
        yield rejections

    def _provision_families(self) -> Iterable[Any]:
        durations = SummaryMetricFamily(
            "kidp_provision_duration_seconds",
            "Seconds from a Database's creation to Ready, by broker.",
            labels=NB,
        )
        for key, (count, total) in self.provisions.items():
            durations.add_metric(list(_labels(key)), count_value=count, sum_value=total)
        yield durations
        yield _per_broker(
            "kidp_provision_failures", "Provisions that ended Failed.", self.failures, counter=True
        )

    def _store_families(self) -> Iterable[Any]:
        if self.counted is None:
            return
        records = CounterMetricFamily(
            "kidp_history_records",
            "History records written to the store, or dropped (queue full, write failed).",
            labels=["kind", "result"],
        )
        for result, counts in (
            ("written", self.counted.written),
            ("dropped", self.counted.dropped),
        ):
            for kind, count in counts.items():
                records.add_metric([kind, result], count)
        yield records


def _per_broker(
    name: str, documentation: str, values: Mapping[str, float], *, counter: bool = False
) -> Any:
    family: Any = (CounterMetricFamily if counter else GaugeMetricFamily)(
        name, documentation, labels=NB
    )
    for key, value in values.items():
        family.add_metric(list(_labels(key)), float(value))
    return family
