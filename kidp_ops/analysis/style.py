"""What every figure shares: phase colours, titles that say what a chart answers, and an
empty figure that says why it is empty."""

from __future__ import annotations

from typing import Any

PHASE_COLORS = {
    "Ready": "#2ca02c",
    "Pending": "#bcbd22",
    "Unhealthy": "#ff7f0e",
    "Offline": "#d62728",
    "Unknown": "#7f7f7f",
}
PART_COLORS = {"priority": "#1f77b4", "load": "#9467bd", "heartbeat": "#17becf"}
NONE = "(none)"  # a decision that placed nothing


def titled(figure: Any, title: str, subtitle: str = "") -> Any:
    """`title` in bold, `subtitle` (what the chart answers, or how) below it in small type."""
    text = f"<b>{title}</b>" + (f"<br><sup>{subtitle}</sup>" if subtitle else "")
    figure.update_layout(
        title={"text": text, "x": 0.01},
        template="plotly_white",
        margin={"t": 110, "l": 60, "r": 20, "b": 50},
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
    )
    return figure


def empty_figure(title: str, why: str) -> Any:
    """A figure with no data that says so (a window without probes, say)."""
    import plotly.graph_objects as go  # lazy: plotly is optional and slow to import

    figure = go.Figure()
    figure.add_annotation(text=why, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return titled(figure, title)
