"""Selection share and rejections on the generated history: 24 requests, 12 for eu (3 of
them while it was down: no broker), 12 for us."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kidp_ops.analysis import selections
from kidp_ops.analysis.style import NONE
from kidp_ops.history.frames import HistoryFrames
from tests.support.history import DOWN, EU, US


def test_share_per_broker_with_the_winners_score_parts(frames: HistoryFrames) -> None:
    table = selections.selection_share(frames)
    assert table.loc[US, "share"] == pytest.approx(0.5)
    assert table.loc[EU, "share"] == pytest.approx(9 / 24)
    assert table.loc[NONE, "decisions"] == 3
    assert table.loc[EU, "priority"] == 100 and table.loc[US, "priority"] == 150
    assert table.loc[US, "load"] == 50 and table.loc[US, "heartbeat"] == 50


def test_rejections_over_time_by_filter(frames: HistoryFrames) -> None:
    every = selections.rejections_over_time(frames, freq="10min", closest=False)
    assert list(every.columns) == ["phase", "region"]  # selection's order
    assert every["phase"].sum() == 3 and every["region"].sum() == 6
    assert every.index.min() == DOWN[0] and every.index.max() == DOWN[0] + timedelta(minutes=20)


def test_each_unplaced_decision_counts_once_under_its_closest_broker(
    frames: HistoryFrames,
) -> None:
    """eu, the only broker of the region, was down: phase, not the two brokers of other
    regions."""
    closest = selections.rejections_over_time(frames, freq="1h")
    assert list(closest.columns) == ["phase"] and closest["phase"].sum() == 3


def test_figures(frames: HistoryFrames) -> None:
    share = selections.share_figure(frames)
    assert list(share.data[0].x) == [US, EU, NONE]
    assert [t.name for t in share.data[1:]] == ["priority", "load", "heartbeat"]
    rejections = selections.rejections_figure(frames)
    assert [t.name for t in rejections.data] == ["phase"]
    assert "decisions per 1min" in rejections.layout.yaxis.title.text
