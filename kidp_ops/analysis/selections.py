"""Selection history: who gets the work, why (score parts), and why requests find no broker.

- `selection_share(frames)`: decisions and share per broker, with the winners' mean score
  parts (priority, load, heartbeat); `share_figure`;
- `rejections_over_time(frames)`: brokers rejected by each filter, in the decisions that
  found none, per time bin; `rejections_figure`.
"""

from __future__ import annotations

from typing import Any

from kidp_ops.analysis.style import NONE, PART_COLORS, empty_figure, titled
from kidp_ops.history.frames import HistoryFrames
from kidp_ops.history.series import PARTS
from kidp_ops.selection import Filter

ORDER = {f.value: i for i, f in enumerate(Filter)}  # the order selection applies them
TRANSIENT = ("phase", "cordoned", "capacity")  # a broker that fits, but not now


def selection_share(frames: HistoryFrames) -> Any:
    """Index broker (NONE: nothing fitted); columns decisions, share, and the mean
    priority, load and heartbeat parts of the winning scores. Most chosen first."""
    import pandas as pd  # lazy: pandas is optional and slow to import

    rows = frames.selections
    columns = ["decisions", "share", *PARTS]
    if rows.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="broker"))
    chosen = rows["broker"].astype(object).fillna(NONE).astype(str)
    counts = rows["count"].groupby(chosen).sum()
    table = pd.DataFrame({"decisions": counts, "share": counts / counts.sum()})
    for part in PARTS:
        weighted = (rows[part].astype(float) * rows["count"]).groupby(chosen).sum(min_count=1)
        table[part] = weighted / counts
    table.index.name = "broker"
    return table[columns].sort_values("decisions", ascending=False)


def share_figure(frames: HistoryFrames) -> Any:
    """Share of decisions per broker, and what its winning scores were made of."""
    import plotly.graph_objects as go  # lazy: plotly is optional and slow to import
    from plotly.subplots import make_subplots  # lazy: plotly is optional and slow to import

    title = "Selection share"
    table = selection_share(frames)
    if table.empty:
        return empty_figure(title, "no selection decisions in this window")
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=("Share of decisions", "Mean score of the winner, by part")
    )
    figure.add_trace(
        go.Bar(
            x=table.index,
            y=table["share"],
            name="share",
            showlegend=False,
            text=[
                f"{s:.0%} ({d})" for s, d in zip(table["share"], table["decisions"], strict=True)
            ],
        ),
        1,
        1,
    )
    placed = table.drop(index=NONE, errors="ignore")
    for part in PARTS:
        figure.add_trace(
            go.Bar(x=placed.index, y=placed[part], name=part, marker_color=PART_COLORS[part]), 1, 2
        )
    figure.update_layout(barmode="stack")
    figure.update_yaxes(tickformat=".0%", row=1, col=1)
    return titled(
        figure,
        title,
        "Who gets the work, and why: score = priority + load + "
        f"heartbeat; {NONE}: no broker fitted",
    )


def rejections_over_time(frames: HistoryFrames, *, freq: str = "1min", closest: bool = True) -> Any:
    """Index time bins of `freq`; one column per filter, in selection's order.

    With `closest` (the store's frames, which know each decision), every decision that
    found no broker counts once per reason that could pass: `phase`, `cordoned`,
    `capacity` (a broker that fits the request was down, cordoned or full); a decision
    with none of those counts once under the furthest filter any broker reached (no broker
    serves that region, provider, ...). Otherwise (Prometheus) every rejected broker
    counts under the first filter it failed."""
    import pandas as pd  # lazy: pandas is optional and slow to import

    rows = frames.rejections
    if rows.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"))
    if closest and rows["request"].notna().all():
        rows = _reasons(rows)
    table = rows.pivot_table(index=rows.index.floor(freq), columns="filter", values="brokers",
                             aggfunc="sum", fill_value=0)  # fmt: skip
    table.index.name = "time"
    table.columns.name = None
    return table[[c for c in ORDER if c in table.columns]]


def _reasons(rows: Any) -> Any:
    """One row per decision and reason (see `rejections_over_time`), `brokers` 1."""
    import pandas as pd  # lazy: pandas is optional and slow to import

    keyed = rows.reset_index()
    transient = keyed[keyed["filter"].isin(TRANSIENT)]
    decided = set(zip(transient["time"], transient["request"], strict=True))
    rest = keyed[[(t, r) not in decided for t, r in zip(keyed["time"], keyed["request"],
                                                        strict=True)]]  # fmt: skip
    rest = rest.assign(depth=rest["filter"].map(ORDER.get).fillna(-1).to_numpy())
    deepest = rest.sort_values("depth").groupby(["time", "request"]).tail(1)
    found = pd.concat([transient, deepest.drop(columns="depth")])
    return found.sort_values("time", kind="stable").set_index("time").assign(brokers=1)


def rejections_figure(frames: HistoryFrames, *, freq: str = "1min") -> Any:
    """Why requests found no broker, over time, by filter."""
    import plotly.graph_objects as go  # lazy: plotly is optional and slow to import

    title = "Rejection reasons over time"
    table = rejections_over_time(frames, freq=freq)
    if table.empty:
        return empty_figure(title, "every decision in this window found a broker")
    figure = go.Figure()
    for column in table.columns:
        figure.add_trace(go.Bar(x=table.index, y=table[column], name=str(column)))
    figure.update_layout(barmode="stack")
    per_decision = bool(frames.rejections["request"].notna().all())
    unit = "decisions" if per_decision else "brokers rejected"
    figure.update_yaxes(title=f"{unit} per {freq}")
    how = (
        "each decision that placed nothing: a broker that fits was down (phase) or full "
        "(capacity), else the furthest filter any broker passed"
        if per_decision
        else "each rejected broker, by the first filter it failed"
    )
    return titled(figure, title, f"Why requests found no broker: {how}")
