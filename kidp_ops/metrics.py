"""Prometheus metrics of the daemon, on a registry of its own (one per daemon, so tests and
two in-process daemons never share counters).

Cardinality is kept to what 10,000 brokers can afford: per-broker series exist only where
the issue asks for them (probes by result, phase); the probe latency histogram has no
broker label. Figures that are cheaper to read than to keep current (queue depth, age of
the last watch event, leadership) are sampled at scrape time by a collector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

PHASES = ("Pending", "Ready", "Unhealthy", "Offline", "Unknown")
PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """Every metric the daemon exports; `render()` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.probes = _ProbeCounts()
        self.probe_latency = Histogram(
            "kidp_broker_probe_duration_seconds", "Health probe latency (all brokers).",
            buckets=PROBE_BUCKETS, registry=r,
        )  # fmt: skip
        self._phases: dict[tuple[str, str], str] = {}
        self.selections = Counter(
            "kidp_selections",
            "Selection decisions by chosen broker (namespace and broker '' when none matched).",
            ["namespace", "broker", "resource_type", "provider"], registry=r,
        )  # fmt: skip
        self.reconcile_errors = Counter(
            "kidp_reconcile_errors", "Reconciles that raised, by controller.",
            ["controller"], registry=r,
        )  # fmt: skip
        self.reconciles = Counter(
            "kidp_reconciles", "Reconciles run, by controller.", ["controller"], registry=r
        )
        self.callbacks = Counter(
            "kidp_callbacks", "Broker callbacks by outcome.", ["result"], registry=r
        )
        self.status_writes = Counter(
            "kidp_status_writes", "Status patches written, by kind.", ["kind"], registry=r
        )
        self._samplers: list[Callable[[], Iterable[Any]]] = []
        r.register(_Sampled(self._samplers))
        self.add_sampler(self._per_broker)

    def add_sampler(self, sampler: Callable[[], Iterable[Any]]) -> None:
        """`sampler()` yields metric families at scrape time (queue depth, watch age...)."""
        self._samplers.append(sampler)

    def set_phase(self, namespace: str, broker: str, phase: str) -> None:
        self._phases[(namespace, broker)] = phase

    def forget_broker(self, namespace: str, broker: str) -> None:
        self._phases.pop((namespace, broker), None)
        self.probes.counts.pop((namespace, broker), None)

    def _per_broker(self) -> Iterable[Any]:
        """The per-broker families, from plain dicts: prometheus_client's labelled children
        cost about 4 KB per series, 40 MB at 10,000 brokers (benchmarks/provisioning.py)."""
        phases = GaugeMetricFamily(
            "kidp_broker_phase",
            "1 for the broker's current phase, 0 for the others.",
            labels=["namespace", "broker", "phase"],
        )
        for (namespace, broker), current in self._phases.items():
            for phase in PHASES:
                phases.add_metric([namespace, broker, phase], 1.0 if phase == current else 0.0)
        yield phases
        probes = CounterMetricFamily(
            "kidp_broker_probes",
            "Health probes by broker and result.",
            labels=["namespace", "broker", "result"],
        )
        for (namespace, broker), (ok, failed) in self.probes.counts.items():
            probes.add_metric([namespace, broker, "success"], ok)
            probes.add_metric([namespace, broker, "failure"], failed)
        yield probes

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Sampled:
    def __init__(self, samplers: list[Callable[[], Iterable[Any]]]) -> None:
        self._samplers = samplers

    def collect(self) -> Iterable[Any]:
        for sampler in self._samplers:
            yield from sampler()

    def describe(self) -> Iterable[Any]:
        return []


def gauge(
    name: str, documentation: str, values: dict[tuple[str, ...], float], labels: list[str]
) -> Any:
    """A GaugeMetricFamily with one sample per label tuple (for samplers)."""
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family


class _ProbeCounts:
    """`probes.labels(namespace, broker, result).inc()`, kept as two ints per broker."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], list[int]] = {}

    def labels(self, namespace: str, broker: str, result: str) -> _ProbeCount:
        counts = self.counts.setdefault((namespace, broker), [0, 0])
        return _ProbeCount(counts, 0 if result == "success" else 1)


class _ProbeCount:
    __slots__ = ("_counts", "_index")

    def __init__(self, counts: list[int], index: int) -> None:
        self._counts, self._index = counts, index

    def inc(self, amount: int = 1) -> None:
        self._counts[self._index] += amount
