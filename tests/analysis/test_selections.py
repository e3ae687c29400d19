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
    table = selections.rejections_over_time(frames, freq="10min")
    assert list(table.columns) == ["phase", "region"]
    assert table["phase"].sum() == 3 and table["region"].sum() == 6
    assert table.index.min() == DOWN[0] and table.index.max() == DOWN[0] + timedelta(minutes=20)


def test_figures(frames: HistoryFrames) -> None:
    share = selections.share_figure(frames)
    assert list(share.data[0].x) == [US, EU, NONE]
    assert [t.name for t in share.data[1:]] == ["priority", "load", "heartbeat"]
    rejections = selections.rejections_figure(frames)
    assert [t.name for t in rejections.data] == ["phase", "region"]
