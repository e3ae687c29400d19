"""Broker health on the generated history: eu is down from +60 to +90 min of two hours."""

from __future__ import annotations

import pytest

from kidp_ops.analysis import health
from kidp_ops.history.frames import HistoryFrames
from tests.support.history import AZ, DOWN, EU, LATENCY_MS, US


def test_a_broker_down_a_quarter_of_the_window_is_three_quarters_available(
    frames: HistoryFrames,
) -> None:
    table = health.availability(frames)
    assert table.loc[EU, "availability"] == pytest.approx(0.75)
    assert table.loc[EU, "observed_seconds"] == pytest.approx(7200)
    assert table.loc[US, "availability"] == 1.0
    assert table.index[0] == EU  # worst first


def test_flaps_are_counted_when_they_happen(frames: HistoryFrames) -> None:
    table = health.availability(frames)
    assert table.loc[EU, "flaps"] == 1
    assert table.loc[EU, "first_flap"] == DOWN[0]
    assert table.loc[US, "flaps"] == 0 and table.loc[AZ, "flaps"] == 0
    assert table.loc[EU, "flaps_per_hour"] == pytest.approx(0.5)


def test_segments_cover_the_window_per_broker(frames: HistoryFrames) -> None:
    segments = health.phase_segments(frames)
    eu = segments[segments["broker"] == EU]
    assert list(eu["phase"]) == ["Ready", "Unhealthy", "Ready"]
    assert list(eu["start"])[1:] == [DOWN[0], DOWN[1]]
    assert segments.groupby("broker")["seconds"].sum().tolist() == [7200.0] * 3


def test_a_narrower_window_starts_in_the_phase_of_the_moment(frames: HistoryFrames) -> None:
    """Narrowed to the outage, eu was down the whole time: the phase at the window's start
    comes from the last change before it."""
    narrow = frames.between(DOWN[0], DOWN[1])
    assert health.availability(narrow).loc[EU, "availability"] == 0.0


def test_latency_percentiles(frames: HistoryFrames) -> None:
    table = health.latency_summary(frames)
    for broker, latency in LATENCY_MS.items():
        assert table.loc[broker, "p50"] == latency
    assert table.loc[US, "probes"] == 721


def test_figures_draw_the_tables(frames: HistoryFrames) -> None:
    timeline = health.phase_timeline(frames)
    assert {t.name for t in timeline.data} == {"Ready", "Unhealthy"}
    unhealthy = next(t for t in timeline.data if t.name == "Unhealthy")
    assert list(unhealthy.y) == [EU] and list(unhealthy.x) == [30 * 60 * 1000]
    bars = health.availability_figure(frames)
    assert bars.data[0].x[0] == EU and bars.data[0].y[0] == pytest.approx(0.75)
    assert [t.name for t in health.latency_figure(frames).data] == sorted([AZ, EU, US])


def test_an_empty_window_says_so(frames: HistoryFrames) -> None:
    empty = frames.only([])
    figure = health.phase_timeline(empty)
    assert "no probes" in figure.layout.annotations[0].text
    assert health.availability(empty).empty
