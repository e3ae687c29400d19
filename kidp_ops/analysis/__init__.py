"""Capacity analysis: the history's pandas frames in, plotly Figures out.

Every chart the notebooks, the HTML report and the dashboard show is a function here that
returns a `plotly.graph_objects.Figure` (widgets are built on top, in `widgets.py`), next to
the function computing the table it draws, so a test can check the numbers:

| question | table | figure |
| --- | --- | --- |
| which phases, when | `health.phase_segments` | `health.phase_timeline` |
| which brokers flap, how available | `health.availability` | `health.availability_figure` |
| how fast brokers answer | `health.latency_summary` | `health.latency_figure` |
| load by broker, region, provider | `capacity.load_over_time` | `capacity.load_figure` |
| when a region/provider runs out | `capacity.headroom` | `capacity.headroom_figure` |
| how long provisioning takes | `capacity.provision_latency` | `capacity.provision_figure` |
| who gets the work, and why | `selections.selection_share` | `selections.share_figure` |
| why requests find no broker | `selections.rejections_over_time` | `selections.rejections_figure` |
| what if a broker changed or went | `whatif.replay`, `.removal_impact` | `whatif.whatif_figure` |

`load(source)` reads the frames from a state directory or a Prometheus URL.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from kidp_ops.history.frames import HistoryFrames


def load(
    source: str | Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    step: float | None = None,
) -> HistoryFrames:
    """The history's frames from a directory holding history.db, or from Prometheus when
    `source` is an http(s) URL (`step`: its resolution in seconds)."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        # lazy: httpx and the Prometheus reader only when asked for
        from kidp_ops.history import prometheus

        return prometheus.load(text, since=since, until=until, step=step)
    from kidp_ops.history import frames  # lazy: pandas is optional and slow to import

    return frames.load(text, since=since, until=until)
