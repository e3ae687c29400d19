"""Load and capacity: how full each broker, region and provider is, when it runs out, and
how long provisioning takes.

- `load_over_time(frames, by=)`: active deployments and capacity on a regular grid, per
  broker, region (`region`) or cloud provider (`provider`); `load_figure`;
- `headroom(frames, by=)`: when each group reaches capacity at the current trend;
  `headroom_figure` states its method in the figure;
- `provision_latency(frames)`: creation to Ready per broker; `provision_figure`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from kidp_ops.analysis.style import empty_figure, titled
from kidp_ops.history.frames import HistoryFrames

if TYPE_CHECKING:
    pass

By = Literal["broker", "region", "provider"]
HORIZON_DAYS = 3650
METHOD = (
    "Method: a least-squares line through the group's active deployments (sum over its "
    "brokers, one point per {freq}) over the window, extended to where it meets the group's "
    "capacity (sum of maxConcurrentDeployments; a group with an unlimited broker has none)."
)


def group_of(frames: HistoryFrames, by: By) -> dict[str, str]:
    """broker -> its region or cloud provider (or itself), from its last recorded spec."""
    brokers = frames.broker_names()
    if by == "broker":
        return {b: b for b in brokers}
    column = "region" if by == "region" else "cloud_provider"
    latest = frames.latest_brokers()
    known = {str(k): str(v) or "(any)" for k, v in latest[column].items()}
    if by == "region":  # a region is named with its provider: eastus alone says little
        known = {k: f"{latest.loc[k, 'cloud_provider']}/{v}" for k, v in known.items()}
    return {b: known.get(b, "(unknown)") for b in brokers}


def load_over_time(frames: HistoryFrames, *, by: By = "broker", freq: str = "1min") -> Any:
    """Columns group, active, capacity (inf: an unlimited broker), utilization, indexed by
    a regular grid of `freq` over the window: each broker's value as of its last probe at
    or before the grid time, summed over the group's brokers."""
    import numpy as np  # lazy: numpy comes with pandas, which is optional
    import pandas as pd  # lazy: pandas is optional and slow to import

    grid = pd.date_range(frames.start.floor(freq), frames.end, freq=freq, name="time")
    probes = frames.probes.dropna(subset=["active"])
    if probes.empty or grid.empty:
        return pd.DataFrame(
            columns=["group", "active", "capacity", "utilization"],
            index=pd.DatetimeIndex([], tz="UTC", name="time"),
        )
    groups = group_of(frames, by)
    active, capacity = {}, {}
    for broker, found in probes.groupby("broker", observed=True):
        rows = found[~found.index.duplicated(keep="last")]
        active[str(broker)] = _as_of(rows["active"].astype(float), grid)
        limit = rows["max"].astype(float).replace(0.0, np.inf)
        capacity[str(broker)] = _as_of(limit, grid)
    parts = []
    for group in sorted({groups[b] for b in active}):
        members = [b for b in active if groups[b] == group]
        summed = pd.DataFrame({b: active[b] for b in members}).sum(axis=1, min_count=1)
        limits = pd.DataFrame({b: capacity[b] for b in members}).sum(axis=1, min_count=1)
        parts.append(pd.DataFrame({"group": group, "active": summed, "capacity": limits}))
    table = pd.concat(parts).dropna(subset=["active"])
    table["utilization"] = table["active"] / table["capacity"]
    return table


def _as_of(series: Any, grid: Any) -> Any:
    return series.sort_index().reindex(grid, method="ffill")


def load_figure(frames: HistoryFrames, *, by: By = "broker", freq: str = "1min") -> Any:
    """Active deployments over time per group, with its capacity dashed."""
    import plotly.graph_objects as go  # lazy: plotly is optional and slow to import

    title = f"Load by {by}"
    table = load_over_time(frames, by=by, freq=freq)
    if table.empty:
        return empty_figure(title, "no probe reported activeDeployments in this window")
    figure = go.Figure()
    for i, (group, rows) in enumerate(table.groupby("group", sort=True)):
        color = _color(i)
        figure.add_trace(_active(rows, str(group), color))
        finite = rows["capacity"].where(rows["capacity"] != float("inf"))
        figure.add_trace(
            go.Scatter(
                x=rows.index,
                y=finite,
                name=f"{group} capacity",
                line={"color": color, "dash": "dash", "shape": "hv"},
                showlegend=False,
            )
        )
    figure.update_yaxes(title="active deployments", rangemode="tozero")
    return titled(figure, title, "Active deployments (solid) against capacity (dashed)")


def _active(rows: Any, name: str, color: str) -> Any:
    """A group's load as a step line."""
    import plotly.graph_objects as go  # lazy: plotly is optional and slow to import

    return go.Scatter(x=rows.index, y=rows["active"], name=name,
                      line={"color": color, "shape": "hv"})  # fmt: skip


def _color(index: int) -> str:
    palette = (
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
        "#bcbd22",
        "#17becf",
    )
    return palette[index % len(palette)]


def headroom(frames: HistoryFrames, *, by: By = "region", freq: str = "1min") -> Any:
    """Index group; columns active (now), capacity, slope_per_day, intercept (at the
    window's first grid point), first_full (first time at capacity), full_share (share of
    the window at capacity), eta, days_left (from the window's end), status:

    - `full`: at capacity now (eta: when it first got there in the window);
    - `imminent`: the trend is past capacity already, the load not yet (eta: the end);
    - `rising`: the trend meets capacity at eta;
    - `not rising`: flat or falling (or more than ten years away); `unlimited`: a broker
      of the group has no maximum.

    Sorted by eta: the first row runs out first."""
    import pandas as pd  # lazy: pandas is optional and slow to import

    table = load_over_time(frames, by=by, freq=freq)
    rows = []
    for group, series in table.groupby("group", sort=True):
        slope, intercept = _fit(series)
        limit = float(series["capacity"].iloc[-1])
        full = series[series["active"] >= limit]
        status, eta = _eta(series, limit, slope, intercept, end=frames.end)
        days = (eta - frames.end).total_seconds() / 86_400 if eta is not pd.NaT else math.nan
        rows.append((group, series["active"].iloc[-1], limit, slope, intercept,
                     full.index[0] if not full.empty else pd.NaT, len(full) / len(series),
                     eta, days, status))  # fmt: skip
    columns = ["group", "active", "capacity", "slope_per_day", "intercept", "first_full",
               "full_share", "eta", "days_left", "status"]  # fmt: skip
    result = pd.DataFrame(rows, columns=columns).set_index("group")
    for column in ("first_full", "eta"):
        result[column] = pd.to_datetime(result[column], utc=True)
    return result.sort_values("eta", na_position="last")


def _fit(series: Any) -> tuple[float, float]:
    """Least squares: active = intercept + slope * days since the first grid point."""
    import numpy as np  # lazy: numpy comes with pandas, which is optional

    x = (series.index - series.index[0]).total_seconds().to_numpy() / 86_400
    y = series["active"].to_numpy()
    if len(series) < 2:
        return 0.0, float(y[0])
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def _eta(series: Any, limit: float, slope: float, intercept: float, *, end: Any) -> tuple[str, Any]:
    import pandas as pd  # lazy: pandas is optional and slow to import

    if math.isinf(limit) or math.isnan(limit):
        return "unlimited", pd.NaT
    if series["active"].iloc[-1] >= limit:
        below = series[series["active"] < limit]
        since = below.index[-1] if not below.empty else series.index[0]
        return "full", series[series.index > since].index[0] if not below.empty else since
    days = (limit - intercept) / slope if slope > 0 else math.inf
    if days > HORIZON_DAYS:  # flat, falling, or a decade away: no date worth showing
        return "not rising", pd.NaT
    eta = series.index[0] + pd.Timedelta(days=days)
    return ("imminent", end) if eta < end else ("rising", eta)


def headroom_figure(frames: HistoryFrames, *, by: By = "region", freq: str = "1min") -> Any:
    """Each group's load, its trend line up to capacity, and when it gets there."""
    import plotly.graph_objects as go  # lazy: plotly is optional and slow to import

    title = f"Headroom forecast by {by}"
    table = load_over_time(frames, by=by, freq=freq)
    if table.empty:
        return empty_figure(title, "no probe reported activeDeployments in this window")
    forecast = headroom(frames, by=by, freq=freq)
    figure = go.Figure()
    horizon = frames.end + (frames.end - frames.start)
    for i, (group, rows) in enumerate(table.groupby("group", sort=True)):
        for trace in _forecast_traces(str(group), rows, forecast.loc[group], _color(i), horizon):
            figure.add_trace(trace)
    figure.update_yaxes(title="active deployments", rangemode="tozero")
    figure.add_annotation(
        text=_wrap(METHOD.format(freq=freq), 150),
        showarrow=False,
        align="left",
        x=0,
        y=-0.12,
        yanchor="top",
        xref="paper",
        yref="paper",
        font={"size": 10},
    )
    titled(figure, title, _first_out(forecast))
    legend = {"orientation": "v", "x": 1.01, "xanchor": "left", "y": 1, "yanchor": "top"}
    figure.update_layout(margin={"b": 100}, legend=legend)
    return figure


def _forecast_traces(group: str, rows: Any, row: Any, color: str, horizon: Any) -> list[Any]:
    """A group's load, its trend line (up to where it meets capacity, or the horizon), and
    its capacity."""
    import pandas as pd  # lazy: pandas is optional and slow to import
    import plotly.graph_objects as go  # lazy: plotly is optional and slow to import

    end = row["eta"] if row["eta"] is not pd.NaT and row["eta"] < horizon else horizon
    ends = [rows.index[0], max(end, rows.index[-1])]
    days = [(t - rows.index[0]).total_seconds() / 86_400 for t in ends]
    trend = [row["intercept"] + row["slope_per_day"] * d for d in days]
    traces = [
        _active(rows, group, color),
        go.Scatter(x=ends, y=trend, name=f"{group} trend", showlegend=False,
                   line={"color": color, "dash": "dot"}),
    ]  # fmt: skip
    if not math.isinf(row["capacity"]):
        traces.append(
            go.Scatter(
                x=[rows.index[0], horizon],
                y=[row["capacity"]] * 2,
                name=f"{group} capacity",
                showlegend=False,
                line={"color": color, "dash": "dash"},
            )
        )
    return traces


def _first_out(forecast: Any) -> str:
    timed = forecast.dropna(subset=["eta"])
    if timed.empty:
        return "No group reaches capacity at the current trend"
    group, row = timed.index[0], timed.iloc[0]
    when = f"{row['eta']:%Y-%m-%d %H:%M} UTC"
    match row["status"]:
        case "full":
            share = f"full {row['full_share']:.0%} of the window"
            return f"First to run out: {group}, full since {when} ({share})"
        case "imminent":
            full = (
                f"; full {row['full_share']:.0%} of the window since {row['first_full']:%H:%M}"
                if row["full_share"] > 0
                else ""
            )
            return f"First to run out: {group}, at capacity on its trend now{full}"
        case _:
            return f"First to run out: {group} reaches capacity at {when}"


def _wrap(text: str, width: int = 130) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "<br>".join([*lines, line])


def provision_latency(frames: HistoryFrames) -> Any:
    """Index broker; columns provisions, ready, failed, median, p90, mean (seconds from a
    Database's creation to Ready; failures count but have no duration here)."""
    import pandas as pd  # lazy: pandas is optional and slow to import

    rows = frames.provisions
    columns = ["provisions", "ready", "failed", "median", "p90", "mean"]
    if rows.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="broker"))
    ready = rows[rows["outcome"] == "ready"]
    seconds = ready.groupby("broker")["seconds"]
    weighted = (ready["seconds"] * ready["count"]).groupby(ready["broker"]).sum()
    table = pd.DataFrame(
        {
            "provisions": rows.groupby("broker")["count"].sum(),
            "ready": ready.groupby("broker")["count"].sum(),
            "failed": rows[rows["outcome"] == "failed"].groupby("broker")["count"].sum(),
            "median": seconds.median(),
            "p90": seconds.quantile(0.9),
            "mean": weighted / ready.groupby("broker")["count"].sum(),
        }
    ).fillna({"ready": 0, "failed": 0})
    table.index.name = "broker"
    return table[columns].astype({"provisions": int, "ready": int, "failed": int})


def provision_figure(frames: HistoryFrames) -> Any:
    """How long each broker takes from a Database's creation to Ready."""
    import plotly.graph_objects as go  # lazy: plotly is optional and slow to import

    title = "Provisioning time"
    ready = frames.provisions[frames.provisions["outcome"] == "ready"]
    if ready.empty:
        return empty_figure(title, "no Database became Ready in this window")
    figure = go.Figure()
    summary = provision_latency(frames)
    for broker, rows in ready.groupby("broker", sort=True):
        failed = int(summary.loc[broker, "failed"]) if broker in summary.index else 0
        figure.add_trace(
            go.Box(
                y=rows["seconds"], name=f"{broker} ({failed} failed)", boxpoints="all", jitter=0.3
            )
        )
    figure.update_yaxes(title="seconds from creation to Ready", rangemode="tozero")
    figure.update_layout(showlegend=False)
    return titled(
        figure,
        title,
        "How long provisioning takes per broker (selection, the broker's work and its callback)",
    )
