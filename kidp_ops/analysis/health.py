"""Broker health over time: which brokers flap, when, and how fast they answer.

- `phase_segments`: each broker's phases as [start, end) intervals within the window;
- `availability`: time-weighted share of the window each broker was Ready, and its flaps
  (a flap is leaving Ready); figures `phase_timeline`, `availability_figure`;
- `latency_summary` / `latency_figure`: probe latency per broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kidp_ops.analysis.style import PHASE_COLORS, empty_figure, titled
from kidp_ops.history.frames import HistoryFrames

if TYPE_CHECKING:
    import pandas as pd

READY = "Ready"
AVAILABILITY = ("availability", "ready_seconds", "observed_seconds", "flaps", "first_flap",
                "last_flap", "flaps_per_hour")  # fmt: skip


def phase_segments(frames: HistoryFrames) -> pd.DataFrame:
    """Columns broker, phase, start, end, seconds: every phase a broker was in during the
    window, from its transitions (the phase at the window's start is the last one before
    it). A broker's last phase lasts until the window's end, or until it was deleted."""
    import pandas as pd  # lazy: pandas is optional and slow to import

    gone = _deletions(frames)
    rows = []
    for broker, changes in frames.transitions.groupby("broker", observed=True, sort=True):
        times, phases = list(changes.index), list(changes["new"])
        stop = gone.get(str(broker), frames.end)
        for i, phase in enumerate(phases):
            begin = max(times[i], frames.start)
            end = min(times[i + 1] if i + 1 < len(times) else stop, frames.end)
            if end > begin:
                rows.append((str(broker), str(phase), begin, end, (end - begin).total_seconds()))
    return pd.DataFrame(rows, columns=["broker", "phase", "start", "end", "seconds"])


def _deletions(frames: HistoryFrames) -> dict[str, Any]:
    deleted = frames.brokers[frames.brokers["deleted"].astype(bool)]
    return {str(b): t for t, b in zip(deleted.index, deleted["broker"], strict=True)}


def availability(frames: HistoryFrames) -> pd.DataFrame:
    """Index broker; columns availability (Ready time / observed time in the window),
    ready_seconds, observed_seconds, flaps (times it left Ready in the window),
    first_flap, last_flap, flaps_per_hour."""
    import pandas as pd  # lazy: pandas is optional and slow to import

    segments = phase_segments(frames)
    if segments.empty:
        return pd.DataFrame(columns=list(AVAILABILITY), index=pd.Index([], name="broker"))
    observed = segments.groupby("broker")["seconds"].sum()
    ready = segments[segments["phase"] == READY].groupby("broker")["seconds"].sum()
    table = pd.DataFrame({"observed_seconds": observed})
    table["ready_seconds"] = ready.reindex(table.index).fillna(0.0)
    table["availability"] = table["ready_seconds"] / table["observed_seconds"]
    flaps = _flaps(frames)
    grouped = flaps.groupby("broker")
    table["flaps"] = grouped.size().reindex(table.index).fillna(0).astype(int)
    table["first_flap"] = grouped["time"].min().reindex(table.index)
    table["last_flap"] = grouped["time"].max().reindex(table.index)
    table["flaps_per_hour"] = table["flaps"] / (table["observed_seconds"] / 3600)
    table.index.name = "broker"
    return table[list(AVAILABILITY)].sort_values("availability")


def _flaps(frames: HistoryFrames) -> pd.DataFrame:
    t = frames.transitions
    left = t[(t["old"] == READY) & (t["new"] != READY) & (t.index >= frames.start)]
    return left.reset_index()[["time", "broker"]].astype({"broker": str})


def phase_timeline(frames: HistoryFrames) -> Any:
    """Which phase each broker was in, when: one row per broker, coloured by phase."""
    import plotly.graph_objects as go  # lazy: plotly is optional and slow to import

    title = "Broker phases over time"
    segments = phase_segments(frames)
    if segments.empty:
        return empty_figure(title, "no probes in this window")
    figure = go.Figure()
    for phase, rows in segments.groupby("phase", sort=False):
        figure.add_trace(
            go.Bar(
                name=str(phase),
                y=rows["broker"],
                base=rows["start"],
                x=(rows["end"] - rows["start"]).dt.total_seconds() * 1000,
                orientation="h",
                marker_color=PHASE_COLORS.get(str(phase), "#333"),
                hovertext=[
                    f"{p} {s:%H:%M:%S} to {e:%H:%M:%S}"
                    for p, s, e in zip(rows["phase"], rows["start"], rows["end"], strict=True)
                ],
            )
        )
    figure.update_layout(barmode="overlay", xaxis={"type": "date"}, yaxis={"autorange": "reversed"})
    return titled(figure, title, "Which brokers flap, and when: every change of phase")


def availability_figure(frames: HistoryFrames) -> Any:
    """Availability and flap count per broker (worst first)."""
    import plotly.graph_objects as go  # lazy: plotly is optional and slow to import
    from plotly.subplots import make_subplots  # lazy: plotly is optional and slow to import

    title = "Availability and flaps"
    table = availability(frames)
    if table.empty:
        return empty_figure(title, "no probes in this window")
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=("Ready share of the window", "Times it left Ready")
    )
    figure.add_trace(
        go.Bar(
            x=table.index,
            y=table["availability"],
            name="availability",
            text=[f"{a:.1%}" for a in table["availability"]],
        ),
        1,
        1,
    )
    figure.add_trace(
        go.Bar(x=table.index, y=table["flaps"], name="flaps", text=table["flaps"]), 1, 2
    )
    figure.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=1)
    figure.update_layout(showlegend=False)
    return titled(
        figure, title, "Time-weighted Ready share (from phase changes); a flap is leaving Ready"
    )


def latency_summary(frames: HistoryFrames) -> pd.DataFrame:
    """Index broker; probes, p50, p90, p99, max latency in ms (answered probes only; a
    per-minute aggregate counts as one value, its mean)."""
    import pandas as pd  # lazy: pandas is optional and slow to import

    probes = frames.probes.dropna(subset=["latency_ms"])
    if probes.empty:
        return pd.DataFrame(columns=["probes", "p50", "p90", "p99", "max"])
    grouped = probes.groupby("broker", observed=True)["latency_ms"]
    table = pd.DataFrame(
        {
            "probes": probes.groupby("broker", observed=True)["n"].sum(),
            "p50": grouped.quantile(0.5),
            "p90": grouped.quantile(0.9),
            "p99": grouped.quantile(0.99),
            "max": grouped.max(),
        }
    )
    table.index = table.index.astype(str)
    return table


def latency_figure(frames: HistoryFrames) -> Any:
    """The distribution of probe latency per broker (box plots, log scale)."""
    import plotly.graph_objects as go  # lazy: plotly is optional and slow to import

    title = "Probe latency"
    probes = frames.probes.dropna(subset=["latency_ms"])
    if probes.empty:
        return empty_figure(title, "no answered probes in this window")
    figure = go.Figure()
    for broker, rows in probes.groupby("broker", observed=True, sort=True):
        figure.add_trace(go.Box(y=rows["latency_ms"], name=str(broker), boxpoints="outliers"))
    figure.update_yaxes(type="log", title="ms")
    figure.update_layout(showlegend=False)
    return titled(
        figure,
        title,
        "How fast each broker answers its health probe (timeouts count at the timeout)",
    )
