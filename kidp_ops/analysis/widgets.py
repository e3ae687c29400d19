"""Interactive controls for the notebooks, on top of the figure functions (never instead).

`Explorer(frames, charts)`: broker, region and provider pickers and a window slider; each
chart is a `FigureWidget` updated in place (`batch_update`) whenever a control changes.
`WhatIf(frames)`: brokers to remove, and a broker's priority and capacity to change; the
replay's figure and a summary follow. Tests drive both by setting the controls' values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kidp_ops.analysis.capacity import group_of
from kidp_ops.analysis.whatif import Changes, replay, whatif_figure
from kidp_ops.history.frames import HistoryFrames

Chart = Callable[[HistoryFrames], Any]
SLIDER_STEPS = 200
WIDE = {"width": "95%"}


def refresh(widget: Any, figure: Any) -> None:
    """Make FigureWidget `widget` show `figure`, in place: the same traces are updated in
    one `batch_update` (one message to the browser); a different set is swapped."""
    new = list(figure.data)
    same = len(widget.data) == len(new) and all(
        old.type == fresh.type for old, fresh in zip(widget.data, new, strict=True)
    )
    if not same:
        widget.data = ()
        widget.add_traces(new)
    with widget.batch_update():
        if same:
            for old, fresh in zip(widget.data, new, strict=True):
                values = fresh.to_plotly_json()
                values.pop("type", None)
                values.pop("uid", None)
                old.update(values, overwrite=True)
        widget.layout.annotations = ()
        widget.update_layout(figure.layout.to_plotly_json(), overwrite=True)


class Explorer:
    """Pickers and a window slider driving FigureWidgets; `view` is what a cell shows."""

    def __init__(self, frames: HistoryFrames, charts: Mapping[str, Chart]) -> None:
        import ipywidgets as w  # lazy: ipywidgets is optional and only for notebooks
        import pandas as pd  # lazy: pandas is optional and slow to import
        import plotly.graph_objects as go  # lazy: plotly is optional and slow to import

        self.frames, self.charts = frames, dict(charts)
        self.regions_of, self.providers_of = (
            group_of(frames, "region"),
            group_of(frames, "provider"),
        )
        names = frames.broker_names()
        self.brokers = _picker(w, "brokers", names)
        self.regions = _picker(w, "regions", sorted(set(self.regions_of.values())))
        self.providers = _picker(w, "providers", sorted(set(self.providers_of.values())))
        times = pd.date_range(frames.start, frames.end, periods=SLIDER_STEPS)
        self.window = w.SelectionRangeSlider(
            options=[(f"{t:%m-%d %H:%M:%S}", t) for t in times],
            index=(0, len(times) - 1),
            description="window",
            layout=WIDE,
            continuous_update=False,
        )
        self.figures = {name: go.FigureWidget(chart(frames)) for name, chart in charts.items()}
        for control in (self.brokers, self.regions, self.providers, self.window):
            control.observe(self.update, names="value")
        pickers = w.HBox([self.brokers, self.regions, self.providers])
        self.view = w.VBox([pickers, self.window, *self.figures.values()])

    def current(self) -> HistoryFrames:
        """The frames the controls select: chosen brokers in chosen regions and providers,
        within the window."""
        chosen = [
            b
            for b in self.brokers.value
            if self.regions_of.get(b) in self.regions.value
            and self.providers_of.get(b) in self.providers.value
        ]
        start, end = self.window.value
        return self.frames.only(chosen).between(start, end)

    def update(self, change: Any = None) -> None:
        frames = self.current()
        for name, widget in self.figures.items():
            refresh(widget, self.charts[name](frames))


def _picker(w: Any, label: str, options: list[str]) -> Any:
    return w.SelectMultiple(
        options=options, value=tuple(options), description=label, rows=min(6, len(options) or 1)
    )


class WhatIf:
    """Remove brokers, change one broker's priority or capacity: the replay follows."""

    def __init__(self, frames: HistoryFrames) -> None:
        import ipywidgets as w  # lazy: ipywidgets is optional and only for notebooks
        import plotly.graph_objects as go  # lazy: plotly is optional and slow to import

        self.frames = frames
        latest = frames.latest_brokers()
        self.specs = {str(k): (int(r["priority"]), int(r["max"])) for k, r in latest.iterrows()}
        names = sorted(self.specs)
        self.removed = w.SelectMultiple(options=names, value=(), description="remove", rows=6)
        self.broker = w.Dropdown(options=names, description="change")
        self.priority = w.IntSlider(min=0, max=300, description="priority")
        self.capacity = w.IntSlider(min=0, max=100, description="capacity (0: unlimited)")
        self._holding = False
        self._show_spec()
        self.figure = go.FigureWidget(whatif_figure(frames, self.changes()))
        self.summary = w.HTML()
        self.update()
        self.broker.observe(self._on_broker, names="value")
        for control in (self.removed, self.priority, self.capacity):
            control.observe(self.update, names="value")
        edits = w.VBox([self.broker, self.priority, self.capacity])
        self.view = w.VBox([w.HBox([self.removed, edits]), self.summary, self.figure])

    def _show_spec(self) -> None:
        if self.broker.value is None:
            return
        self._holding = True  # setting both sliders is one change, not two
        self.priority.value, self.capacity.value = self.specs[self.broker.value]
        self._holding = False

    def _on_broker(self, change: Any) -> None:
        self._show_spec()
        self.update()

    def changes(self) -> Changes:
        key = self.broker.value
        priorities, capacities = {}, {}
        if key is not None and self.priority.value != self.specs[key][0]:
            priorities[key] = self.priority.value
        if key is not None and self.capacity.value != self.specs[key][1]:
            capacities[key] = self.capacity.value
        return Changes(priorities, capacities, frozenset(self.removed.value))

    def update(self, change: Any = None) -> None:
        if self._holding:
            return
        changes = self.changes()
        table = replay(self.frames, changes)
        refresh(self.figure, whatif_figure(self.frames, changes, table=table))
        moved = table[table["changed"]]
        unplaced = int(moved["what_if"].isna().sum())
        self.summary.value = (
            f"<b>{changes.describe()}</b>: {len(moved)} of {len(table)} decisions change, "
            f"{unplaced} of them would find no broker"
        )
