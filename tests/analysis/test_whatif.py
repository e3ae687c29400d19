"""What-if replays through kidp_ops.selection on the generated history."""

from __future__ import annotations

import pytest

from kidp_ops.analysis import whatif
from kidp_ops.analysis.whatif import Changes
from kidp_ops.history import HistoryError
from kidp_ops.history.frames import HistoryFrames
from tests.support.history import AZ, EU, US


def test_the_replay_as_recorded_matches_what_happened(frames: HistoryFrames) -> None:
    table = whatif.replay(frames)
    assert table.attrs["fidelity"] == 1.0
    assert not table["changed"].any()
    assert (table["baseline"].fillna("") == table["actual"].fillna("")).all()


def test_removing_the_only_eu_broker_moves_its_share_to_none(frames: HistoryFrames) -> None:
    table = whatif.replay(frames, Changes(removed=frozenset({EU})))
    eu_requests = table[table["actual"] == EU]
    assert len(eu_requests) == 9
    assert eu_requests["what_if"].isna().all()
    assert table[table["actual"] == US]["what_if"].eq(US).all()  # the others stay
    assert table["what_if"].isna().sum() == 12
    assert table.attrs["changes"] == f"without {EU}"


def test_removal_impact_per_broker(frames: HistoryFrames) -> None:
    impact = whatif.removal_impact(frames)
    assert impact.loc[EU, "won"] == 9 and impact.loc[EU, "unplaced"] == 9
    assert impact.loc[US, "moved"] == 0
    assert AZ not in impact.index  # it won nothing


def test_capacity_and_priority_changes_go_through_selection(frames: HistoryFrames) -> None:
    """eu with capacity 1 is full from its first deployment on (the recorded load)."""
    full = whatif.replay(frames, Changes(capacities={EU: 1}))
    changed = full[full["changed"]]
    assert set(changed["baseline"]) == {EU} and changed["what_if"].isna().all()
    assert len(changed) == 8  # all but the first, at +0 min, when eu had none active
    same = whatif.replay(frames, Changes(priorities={US: 1}))
    assert not same["changed"].any()  # us is the only broker in its region anyway


def test_the_figure_compares_what_happened_with_the_what_if(frames: HistoryFrames) -> None:
    figure = whatif.whatif_figure(frames, Changes(removed=frozenset({EU})))
    names = [t.name for t in figure.data]
    assert names[:2] == ["what happened", "replayed as recorded"]
    what_if = figure.data[2]
    assert dict(zip(what_if.x, what_if.y, strict=True)) == {"(none)": 12, US: 12}
    assert "matches what happened in 100%" in figure.layout.title.text
    alone = whatif.whatif_figure(frames)  # no changes: the replay's fidelity only (the report)
    assert [t.name for t in alone.data] == ["what happened", "replayed as recorded"]
    assert "change;" not in alone.layout.title.text
    assert "matches what happened in 100%" in alone.layout.title.text


def test_prometheus_frames_cannot_be_replayed(frames: HistoryFrames) -> None:
    without = frames.__class__(**{**frames.__dict__, "per_request": False})
    with pytest.raises(HistoryError, match="needs the recorded requests"):
        whatif.replay(without)
