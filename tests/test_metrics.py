"""The daemon's /metrics body, read back with prometheus_client's own text parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kidp_ops.metrics import PHASES, Metrics, gauge

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: Metrics) -> Samples:
    """Every sample of a render: (sample name, labels) -> value."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def families(metrics: Metrics) -> dict[str, str]:
    """Family name -> type, as a scraper sees them (without prometheus_client's `_created`
    timestamps, which the text format shows as families of their own)."""
    body, _ = metrics.render()
    found = text_string_to_metric_families(body.decode())
    return {f.name: f.type for f in found if not f.name.endswith("_created")}


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def test_a_new_registry_exports_every_family_and_no_series() -> None:
    metrics = Metrics()
    assert families(metrics) == {
        "kidp_broker_probe_duration_seconds": "histogram",
        "kidp_selections": "counter",
        "kidp_reconcile_errors": "counter",
        "kidp_reconciles": "counter",
        "kidp_callbacks": "counter",
        "kidp_status_writes": "counter",
        "kidp_broker_phase": "gauge",
        "kidp_broker_probes": "counter",
    }
    samples = scrape(metrics)
    per_broker = ("kidp_broker_phase", "kidp_broker_probes")
    assert not any(name.startswith(per_broker) for name, _ in samples)
    assert samples[("kidp_broker_probe_duration_seconds_count", labels())] == 0


def test_two_registries_never_share_counts() -> None:
    one, two = Metrics(), Metrics()
    one.reconciles.labels("broker").inc()
    assert scrape(one)[("kidp_reconciles_total", labels(controller="broker"))] == 1
    assert not any(name == "kidp_reconciles_total" for name, _ in scrape(two))


def test_phase_is_one_for_the_current_phase_and_zero_for_the_others() -> None:
    metrics = Metrics()
    metrics.set_phase("kidp-system", "b1", "Pending")
    metrics.set_phase("kidp-system", "b1", "Ready")  # the latest phase wins
    metrics.set_phase("team-x", "b2", "Offline")
    samples = scrape(metrics)
    for broker, namespace, current in (("b1", "kidp-system", "Ready"), ("b2", "team-x", "Offline")):
        for phase in PHASES:
            key = ("kidp_broker_phase", labels(namespace=namespace, broker=broker, phase=phase))
            assert samples[key] == (1.0 if phase == current else 0.0)
    assert sum(1 for name, _ in samples if name == "kidp_broker_phase") == 2 * len(PHASES)


def test_probe_counts_per_broker_and_result() -> None:
    metrics = Metrics()
    for result in ("success", "success", "failure"):
        metrics.probes.labels("kidp-system", "b1", result).inc()
    metrics.probes.labels("kidp-system", "b2", "failure").inc(3)
    samples = scrape(metrics)

    def probes(broker: str, result: str) -> float:
        key = labels(namespace="kidp-system", broker=broker, result=result)
        return samples[("kidp_broker_probes_total", key)]

    assert (probes("b1", "success"), probes("b1", "failure")) == (2, 1)
    assert (probes("b2", "success"), probes("b2", "failure")) == (0, 3)


def test_forget_broker_removes_its_series_only() -> None:
    metrics = Metrics()
    for broker in ("b1", "b2"):
        metrics.set_phase("kidp-system", broker, "Ready")
        metrics.probes.labels("kidp-system", broker, "success").inc()
    metrics.forget_broker("kidp-system", "b1")
    metrics.forget_broker("kidp-system", "never-seen")  # no error
    brokers = {
        dict(pairs)["broker"]
        for name, pairs in scrape(metrics)
        if name in ("kidp_broker_phase", "kidp_broker_probes_total")
    }
    assert brokers == {"b2"}


def test_probe_latency_histogram_has_no_broker_label() -> None:
    metrics = Metrics()
    for seconds in (0.004, 0.02, 0.02, 3.0):
        metrics.probe_latency.observe(seconds)
    samples = scrape(metrics)

    def bucket(le: str) -> float:
        return samples[("kidp_broker_probe_duration_seconds_bucket", labels(le=le))]

    assert (bucket("0.005"), bucket("0.025"), bucket("2.5"), bucket("5.0"), bucket("+Inf")) == (
        1, 3, 3, 4, 4,
    )  # fmt: skip
    assert samples[("kidp_broker_probe_duration_seconds_count", labels())] == 4
    assert samples[("kidp_broker_probe_duration_seconds_sum", labels())] == pytest.approx(3.044)


def test_labelled_counters() -> None:
    metrics = Metrics()
    metrics.selections.labels("kidp-system", "b1", "Database", "postgresql").inc()
    metrics.selections.labels("", "", "Database", "redis").inc(2)
    metrics.callbacks.labels("accepted").inc()
    metrics.callbacks.labels("401").inc()
    metrics.status_writes.labels("broker").inc(5)
    metrics.reconcile_errors.labels("database").inc()
    samples = scrape(metrics)
    chosen = labels(namespace="kidp-system", broker="b1", resource_type="Database")
    assert samples[("kidp_selections_total", chosen | labels(provider="postgresql"))] == 1
    none = labels(namespace="", broker="", resource_type="Database", provider="redis")
    assert samples[("kidp_selections_total", none)] == 2
    assert samples[("kidp_callbacks_total", labels(result="accepted"))] == 1
    assert samples[("kidp_callbacks_total", labels(result="401"))] == 1
    assert samples[("kidp_status_writes_total", labels(kind="broker"))] == 5
    assert samples[("kidp_reconcile_errors_total", labels(controller="database"))] == 1


def test_samplers_run_at_every_scrape() -> None:
    metrics = Metrics()
    depth = {"broker": 3.0}

    def queue_depth() -> list[object]:
        values: dict[tuple[str, ...], float] = {(name,): v for name, v in depth.items()}
        return [gauge("kidp_queue_depth", "Keys waiting.", values, ["controller"])]

    metrics.add_sampler(queue_depth)
    assert scrape(metrics)[("kidp_queue_depth", labels(controller="broker"))] == 3
    depth["broker"] = 0
    depth["database"] = 7
    samples = scrape(metrics)
    assert samples[("kidp_queue_depth", labels(controller="broker"))] == 0
    assert samples[("kidp_queue_depth", labels(controller="database"))] == 7
    assert families(metrics)["kidp_queue_depth"] == "gauge"
