"""The Prometheus reader against a Prometheus on 127.0.0.1 that scraped the daemon's real
metrics (kidp_ops.metrics + history.series) while the generated history happened: the
frames give the same answers as the store's."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from kidp_ops.analysis import capacity, health, selections
from kidp_ops.history import NullSink, ProbeRecord, SelectionRecord
from kidp_ops.history.brokers import broker_record
from kidp_ops.history.frames import HistoryFrames
from kidp_ops.history.prometheus import load
from kidp_ops.history.series import MeteredHistory
from kidp_ops.history.sqlite import Record
from kidp_ops.metrics import Metrics
from tests.support.history import (
    EU,
    MANIFESTS,
    PROVISION_SECONDS,
    START,
    US,
    WINDOW,
    probes,
    requests,
)
from tests.support.prometheus import Samples, serving


def feed(metrics: Metrics, metered: MeteredHistory, record: Record) -> None:
    """What the reconcilers do with a record (BrokerReconciler._record,
    placing._record_selection), then the history sink."""
    if isinstance(record, ProbeRecord):
        namespace, _, name = record.broker.partition("/")
        metrics.probes.labels(namespace, name, "success" if record.ok else "failure").inc()
        metrics.set_phase(namespace, name, record.phase)
        metered.record_probe(record)
    elif isinstance(record, SelectionRecord):
        namespace, _, name = (record.broker or "").partition("/")
        metrics.selections.labels(namespace, name, record.resource_type,
                                  record.provider or "").inc()  # fmt: skip
        metered.record_selection(record)
    else:
        metered.record_lifecycle(record)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def scraped() -> Samples:
    """Every record of the generated history, in time order, scraped once a minute."""
    metrics = Metrics()
    metered = MeteredHistory(NullSink())
    metrics.add_sampler(metered.families)
    for manifest in MANIFESTS.values():
        metered.record_broker(broker_record(manifest, now=START))
    records = sorted([*probes(), *requests()[0]], key=lambda r: r.time)
    samples, index = Samples(), 0
    for minute in range(int(WINDOW.total_seconds() // 60) + 1):
        at = START + timedelta(minutes=minute)
        while index < len(records) and records[index].time <= at:
            feed(metrics, metered, records[index])
            index += 1
        samples.scrape(metrics.render()[0].decode(), at.timestamp())
    return samples


@pytest.fixture(scope="module")
def from_prometheus(scraped: Samples) -> HistoryFrames:
    with serving(scraped) as url:
        return load(url, since=START, until=START + WINDOW, step=60)


def test_the_same_frames_and_columns_as_the_store(
    from_prometheus: HistoryFrames, frames: HistoryFrames
) -> None:
    for name in ("probes", "transitions", "selections", "rejections", "provisions", "brokers"):
        mine, theirs = getattr(from_prometheus, name), getattr(frames, name)
        assert list(mine.columns) == list(theirs.columns), name
        assert str(mine.index.tz) == "UTC" and mine.index.is_monotonic_increasing, name
    assert not from_prometheus.per_request


def test_availability_and_flaps(from_prometheus: HistoryFrames) -> None:
    table = health.availability(from_prometheus)
    assert table.loc[EU, "availability"] == pytest.approx(0.75)
    assert table.loc[EU, "flaps"] == 1 and table.loc[US, "flaps"] == 0


def test_probe_counts_per_step(from_prometheus: HistoryFrames) -> None:
    eu = from_prometheus.probes[from_prometheus.probes["broker"] == EU]
    assert eu["n"].sum() == 720  # every probe after the first scrape
    assert eu["failures"].sum() == 180  # 30 minutes at one probe every 10 s
    assert set(eu["latency_ms"]) == {20.0}


def test_load_and_capacity_as_from_the_store(
    from_prometheus: HistoryFrames, frames: HistoryFrames
) -> None:
    mine = capacity.load_over_time(from_prometheus, by="provider", freq="10min")
    theirs = capacity.load_over_time(frames, by="provider", freq="10min")
    assert mine.equals(theirs)


def test_selection_share_rejections_and_provisioning(from_prometheus: HistoryFrames) -> None:
    share = selections.selection_share(from_prometheus)
    assert share.loc[US, "decisions"] == 12 and share.loc[EU, "decisions"] == 9
    assert share.loc["(none)", "decisions"] == 3
    assert share.loc[US, "priority"] == 150
    rejections = selections.rejections_over_time(from_prometheus, freq="1h")
    assert rejections["phase"].sum() == 3 and rejections["region"].sum() == 6
    latency = capacity.provision_latency(from_prometheus)
    assert latency.loc[EU, "mean"] == PROVISION_SECONDS[EU]
    assert latency.loc[US, "ready"] == 12


def test_an_unreachable_or_refusing_prometheus_is_one_line(scraped: Samples) -> None:
    from kidp_ops.history import HistoryError

    with serving(scraped) as url:
        pass  # stopped: nothing listens there now
    with pytest.raises(HistoryError, match=r"cannot reach Prometheus at http://127\.0\.0\.1"):
        load(url, since=START, until=START + WINDOW)
    with pytest.raises(HistoryError, match="the window is empty"):
        load(url, since=START, until=START)


def test_frames_from_prometheus_make_a_report(
    from_prometheus: HistoryFrames, tmp_path: Path
) -> None:
    from kidp_ops.analysis import report

    page = report.write(from_prometheus, tmp_path / "r.html").read_text()
    assert "prometheus http://127.0.0.1" in page
    assert "What if a broker were removed?" not in page  # no requests to replay
