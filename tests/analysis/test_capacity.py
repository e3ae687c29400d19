"""Load, headroom and provisioning time on generated histories with known answers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from kidp_ops.analysis import capacity
from kidp_ops.history.frames import HistoryFrames, load
from tests.support.history import EU, PROVISION_SECONDS, START, US, linear_history


def test_load_by_broker_is_the_last_reported_value(frames: HistoryFrames) -> None:
    table = capacity.load_over_time(frames, by="broker", freq="10min")
    eu = table[table["group"] == EU]["active"]
    assert eu.loc[START + timedelta(minutes=30)] == 3  # one more every 10 minutes
    assert eu.iloc[-1] == 12
    assert set(table[table["group"] == US]["capacity"]) == {20}


def test_load_by_provider_and_region_sums_its_brokers(frames: HistoryFrames) -> None:
    providers = capacity.load_over_time(frames, by="provider", freq="1h")
    assert sorted(set(providers["group"])) == ["aws", "azure", "gcp"]
    azure = providers[providers["group"] == "azure"]
    assert set(azure["capacity"]) == {float("inf")}  # max 0: unlimited
    regions = capacity.load_over_time(frames, by="region", freq="1h")
    assert "gcp/europe-west1" in set(regions["group"])


def test_a_linear_trend_gives_the_exact_day_capacity_is_reached(tmp_path: Path) -> None:
    """One more deployment each hour for five days, capacity 240: the trend meets it
    exactly ten days after the start."""
    expected = linear_history(tmp_path)
    frames = load(tmp_path)
    forecast = capacity.headroom(frames, by="provider", freq="1h")
    row = forecast.loc["aws"]
    assert row["status"] == "rising"
    assert row["slope_per_day"] == pytest.approx(24)
    assert abs((row["eta"] - expected).total_seconds()) < 1
    assert row["eta"].date() == (START + timedelta(days=10)).date()
    assert row["days_left"] == pytest.approx(5)
    # On the default one-minute grid the steps shift the line by under an hour: same day.
    coarse = capacity.headroom(frames, by="provider").loc["aws"]
    assert coarse["eta"].date() == expected.date()


def test_a_trend_already_past_capacity_is_imminent(tmp_path: Path) -> None:
    """One more each hour for five days, capacity 100 but the load held at 99 from hour
    99 on: the line is past 100 before the end, the load not at it: imminent, now."""
    linear_history(tmp_path, capacity=100)
    frames = load(tmp_path)
    held = frames.probes.copy()
    held["active"] = held["active"].clip(upper=99)
    forecast = capacity.headroom(frames.__class__(**{**frames.__dict__, "probes": held}),
                                 by="provider", freq="1h")  # fmt: skip
    assert forecast.loc["aws", "status"] == "imminent"
    assert forecast.loc["aws", "eta"] == frames.end


def test_headroom_states_its_method_and_the_first_to_run_out(tmp_path: Path) -> None:
    linear_history(tmp_path)
    figure = capacity.headroom_figure(load(tmp_path), by="region", freq="1h")
    assert "least-squares line" in figure.layout.annotations[0].text
    assert "First to run out: aws/us-east-1 reaches capacity at 2026-12-05 10:00" in (
        figure.layout.title.text
    )


def test_a_group_at_capacity_says_when_it_got_there(frames: HistoryFrames) -> None:
    shrunk = frames.probes.copy()
    shrunk.loc[shrunk["broker"] == EU, "max"] = 6
    full = capacity.headroom(frames.__class__(**{**frames.__dict__, "probes": shrunk}),
                             by="broker", freq="10min")  # fmt: skip
    assert full.loc[EU, "status"] == "full"
    assert full.loc[EU, "eta"] == START + timedelta(minutes=60)
    assert full.loc[EU, "first_full"] == START + timedelta(minutes=60)
    assert full.loc[EU, "full_share"] == pytest.approx(7 / 13)  # 60..120 of 0..120 min
    assert full.index[0] == EU  # runs out first
    assert full.loc["kidp-system/az", "status"] == "unlimited"


def test_provisioning_time_per_broker(frames: HistoryFrames) -> None:
    table = capacity.provision_latency(frames)
    assert table.loc[EU, "median"] == PROVISION_SECONDS[EU]
    assert table.loc[US, "mean"] == PROVISION_SECONDS[US]
    assert table.loc[EU, "ready"] == 9 and table.loc[US, "ready"] == 12
    figure = capacity.provision_figure(frames)
    assert sorted(t.name.split()[0] for t in figure.data) == [EU, US]
