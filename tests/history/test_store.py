"""The history store: written by a real thread into a real SQLite file, read back."""

from __future__ import annotations

import math
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from kidp_ops.history import (
    HistoryError,
    HistoryReader,
    HistorySink,
    LifecycleRecord,
    ProbeRecord,
    SelectionRecord,
)
from kidp_ops.history.brokers import broker_record, spec_recorder
from kidp_ops.history.sqlite import FILE_NAME, HistoryDB
from kidp_ops.history.store import StoreReader, history_dir, open_reader
from kidp_ops.history.writer import HistoryWriter
from tests.support.history import MANIFESTS, START, US
from tests.support.waiting import until_sync


def probe(seconds: float, *, ok: bool = True, phase: str = "Ready", broker: str = US,
          latency: float | None = 5.0, reason: str = "") -> ProbeRecord:  # fmt: skip
    return ProbeRecord(
        time=START + timedelta(seconds=seconds), broker=broker, ok=ok, phase=phase,
        latency_ms=latency, active_deployments=3, reason=reason,
        max_concurrent_deployments=20, version="1.2.3",
    )  # fmt: skip


def selection(seconds: float, request: str, broker: str | None) -> SelectionRecord:
    return SelectionRecord(
        time=START + timedelta(seconds=seconds), request=request, resource_type="Database",
        provider="postgresql", cloud_provider="aws", region="us-east-1", broker=broker,
        score=250.0 if broker else None, candidates=3, eligible=1 if broker else 0,
        namespace="team-a", parts=(150.0, 50.0, 50.0) if broker else None,
        rejections={} if broker else {"capacity": 1, "region": 2},
    )  # fmt: skip


@pytest.fixture
def writer(tmp_path: Path) -> HistoryWriter:
    sink = HistoryWriter(tmp_path, flush_every=0.05)
    yield sink  # type: ignore[misc]
    sink.close()


def reader_of(writer: HistoryWriter) -> StoreReader:
    assert writer.flush()
    found = open_reader(writer.path.parent)
    assert found is not None
    return found


def test_records_come_back_as_written(writer: HistoryWriter) -> None:
    sink: HistorySink = writer
    probes = [probe(0), probe(10, ok=False, phase="Ready", reason="timeout after 5s",
                            latency=None)]  # fmt: skip
    for p in probes:
        sink.record_probe(p)
    sink.record_selection(selection(1, "team-a/db1", US))
    sink.record_selection(selection(2, "team-a/db2", None))
    step = LifecycleRecord(time=START, request="team-a/db1", step="ready", broker=US,
                           deployment_id="d-1", message="ready at db:5432")  # fmt: skip
    sink.record_lifecycle(step)
    sink.record_broker(broker_record(MANIFESTS[US], now=START))
    reader: HistoryReader = reader_of(writer)
    assert reader.probes() == probes
    assert [s.broker for s in reader.selections()] == [US, None]
    assert reader.selections()[0] == selection(1, "team-a/db1", US)
    assert reader.selections()[1].rejections == {"capacity": 1, "region": 2}
    assert reader.lifecycle() == [step]
    brokers = reader_of(writer).brokers()
    assert brokers[0].spec["region"] == "us-east-1" and brokers[0].max_concurrent_deployments == 20
    assert writer.written == {"probe": 2, "selection": 2, "lifecycle": 1, "broker": 1}


def test_readers_filter_oldest_first_since_and_limit(writer: HistoryWriter) -> None:
    for i in range(30):  # several blocks, newest not last in every one
        writer.record_probe(probe(i, broker=US if i % 2 else "kidp-system/eu"))
        if i % 7 == 0:
            writer.flush()
    reader = reader_of(writer)
    newest = reader.probes(limit=4)
    assert [p.time for p in newest] == [START + timedelta(seconds=s) for s in (26, 27, 28, 29)]
    assert [p.time.second for p in reader.probes(broker=US, limit=2)] == [27, 29]
    since = reader.probes(since=START + timedelta(seconds=25))
    assert [p.time.second for p in since] == [25, 26, 27, 28, 29]
    assert reader.probes(broker="kidp-system/nobody") == []
    assert reader.selections(request="team-a/nobody") == []


def test_phase_changes_are_transitions(writer: HistoryWriter) -> None:
    for i, phase in enumerate(["Pending", "Ready", "Ready", "Unhealthy", "Unhealthy", "Ready"]):
        writer.record_probe(probe(i * 10, phase=phase))
    found = reader_of(writer).transitions()
    assert [(old, new) for _, _, old, new in found] == [
        (None, "Pending"), ("Pending", "Ready"), ("Ready", "Unhealthy"), ("Unhealthy", "Ready")
    ]  # fmt: skip


def test_transitions_continue_across_a_restart(tmp_path: Path) -> None:
    with HistoryWriter(tmp_path, flush_every=0.05) as first:
        first.record_probe(probe(0, phase="Ready"))
    with HistoryWriter(tmp_path, flush_every=0.05) as second:
        second.record_probe(probe(10, phase="Ready"))
        second.record_probe(probe(20, phase="Offline"))
    found = StoreReader(tmp_path / FILE_NAME).transitions()
    assert [(old, new) for _, _, old, new in found] == [(None, "Ready"), ("Ready", "Offline")]


def test_no_history_is_none_and_a_foreign_file_is_one_line(tmp_path: Path) -> None:
    assert open_reader(tmp_path) is None
    (tmp_path / FILE_NAME).write_text("not a database")
    with pytest.raises(HistoryError, match=r"history.db: not a readable kidp-ops history"):
        open_reader(tmp_path)


def test_history_dir_option() -> None:
    assert history_dir(None, default=".kidp") == Path(".kidp")
    assert history_dir(None, default=None) is None  # a cluster: off unless given
    assert history_dir("off", default=".kidp") is None
    assert history_dir("/var/kidp", default=None) == Path("/var/kidp")


def test_retention_and_downsampling(tmp_path: Path) -> None:
    """Older than retention: gone. Older than raw_for: one row per broker and minute with
    the probes counted, failures added up, latency averaged."""
    db = HistoryDB(tmp_path / FILE_NAME)
    old = [probe(-8 * 86_400 + i) for i in range(3)]
    minute = [probe(i * 10, ok=i != 2, latency=float(i), reason="x" if i == 2 else "")
              for i in range(6)]  # fmt: skip
    db.write([*old, *minute, selection(-8 * 86_400, "team-a/old", US)])
    db.write([probe(120)])
    db.maintain(now=START + timedelta(days=1, seconds=60), retention=timedelta(days=7),
                raw_for=timedelta(days=1), compact_after=timedelta(minutes=10))  # fmt: skip
    db.close()
    reader = StoreReader(tmp_path / FILE_NAME)
    found = reader.probes()
    assert [p.time for p in found] == [START, START + timedelta(seconds=120)]
    assert reader.selections() == []
    aggregated = reader.query("SELECT rows, agg FROM probe_blocks ORDER BY t_min")
    assert aggregated == [(1, 1), (1, 0)]  # the raw block of +120 s is younger than a day
    assert not found[0].ok and found[0].reason == "x" and found[0].latency_ms == 2.5


def test_small_blocks_are_compacted(tmp_path: Path) -> None:
    db = HistoryDB(tmp_path / FILE_NAME)
    for i in range(5):
        db.write([probe(i)])
    db.maintain(now=START + timedelta(hours=1), retention=timedelta(days=7),
                raw_for=timedelta(days=1), compact_after=timedelta(minutes=10))  # fmt: skip
    db.close()
    reader = StoreReader(tmp_path / FILE_NAME)
    assert reader.query("SELECT rows, agg FROM probe_blocks") == [(5, 0)]
    assert [p.time.second for p in reader.probes()] == [0, 1, 2, 3, 4]


def test_the_writer_thread_applies_retention_with_its_clock(tmp_path: Path) -> None:
    with HistoryWriter(tmp_path, flush_every=0.02, maintain_every=0.0,
                       clock=lambda: START + timedelta(days=8)) as sink:  # fmt: skip
        sink.record_probe(probe(0))
        sink.record_probe(probe(2 * 86_400))
        assert sink.flush()
        reader = StoreReader(tmp_path / FILE_NAME)
        until_sync(lambda: len(reader.probes()) == 1, what="retention")
        assert reader.probes()[0].time == START + timedelta(days=2)


def test_a_locked_database_drops_records_and_never_blocks(tmp_path: Path) -> None:
    """A slow disk stand-in: another connection holds the write lock. The writer thread
    waits on it; record_probe keeps returning, the queue fills, the rest is counted."""
    sink = HistoryWriter(tmp_path, capacity=5, flush_every=0.02)
    try:
        assert sink.flush()
        blocker = sqlite3.connect(tmp_path / FILE_NAME, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        sink.record_probe(probe(0))
        until_sync(lambda: sink.queued == 0, what="the writer taking the first record")
        for i in range(100):
            sink.record_probe(probe(i + 1))
        assert sink.dropped["probe"] == 95 and sink.queued == 5
        blocker.execute("ROLLBACK")
        blocker.close()
        assert sink.flush()
        assert sink.written["probe"] == 6
    finally:
        sink.close()


def test_a_full_disk_drops_the_batch_with_a_count(tmp_path: Path) -> None:
    sink = HistoryWriter(tmp_path, flush_every=0.02)
    try:
        assert sink.flush()
        pages = sink.db.conn.execute("PRAGMA page_count").fetchone()[0]
        sink.db.conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full now
        for i in range(200):
            sink.record_probe(probe(i, ok=False, reason=f"failure {i} " + "x" * 2000))
        assert sink.flush()
        assert sink.dropped["probe"] == 200 and sink.write_errors >= 1
        sink.db.conn.execute("PRAGMA max_page_count = 1073741823")  # space again
        sink.record_probe(probe(500))
        assert sink.flush() and sink.written["probe"] == 1
    finally:
        sink.close()


def test_spec_recorder_records_spec_changes_only() -> None:
    from kidp_ops.history import MemorySink

    sink = MemorySink()
    handle = spec_recorder(sink, clock=lambda: START)
    manifest = {**MANIFESTS[US], "status": {"phase": "Ready"}}
    handle("ADDED", manifest)
    handle("MODIFIED", {**manifest, "status": {"phase": "Unhealthy"}})  # status only
    changed = {**manifest, "spec": {**manifest["spec"], "priority": 7,
                                    "authentication": {"type": "api-key"}}}  # fmt: skip
    handle("MODIFIED", changed)
    handle("DELETED", changed)
    records = list(sink.brokers_kept)
    assert [(r.priority, r.deleted) for r in records] == [(150, False), (7, False), (7, True)]
    assert "authentication" not in records[1].spec


def test_nan_latency_round_trips_as_none(writer: HistoryWriter) -> None:
    writer.record_probe(probe(0, latency=None))
    found = reader_of(writer).probes()[0]
    assert found.latency_ms is None and not math.isnan(found.active_deployments or 0)
