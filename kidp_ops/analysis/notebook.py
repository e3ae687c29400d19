"""What the notebooks' first cells call: the parameters into frames, and a one-paragraph
summary of what was loaded (so a notebook stays a list of questions and charts)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from kidp_ops.analysis import load as load_frames
from kidp_ops.history import HistoryError
from kidp_ops.history.frames import HistoryFrames
from kidp_ops.times import parse_moment

DEFAULT_STATE = Path("..") / ".kidp"  # notebooks/ runs next to the repository's .kidp


def load(
    *, state_dir: str = "", prometheus_url: str = "", since: str = "", until: str = ""
) -> HistoryFrames:
    """The frames the parameters cell names: `prometheus_url` when given, else the history
    store in `state_dir` ("" : $KIDP_STATE, else ../.kidp); `since` an age (30m, 6h, 7d)
    or RFC 3339, `until` RFC 3339 ("": everything recorded)."""
    now = datetime.now(UTC)
    try:
        start = parse_moment(since, now=now) if since else None
        end = parse_moment(until, now=now, ages=False) if until else None
    except ValueError as exc:
        raise HistoryError(f"parameters: {exc}") from None
    source = prometheus_url or state_dir or os.environ.get("KIDP_STATE") or str(DEFAULT_STATE)
    return load_frames(source, since=start, until=end)


def describe(frames: HistoryFrames) -> str:
    """What was loaded, in one paragraph."""
    probes = int(frames.probes["n"].sum()) if not frames.probes.empty else 0
    decisions = int(frames.selections["count"].sum()) if not frames.selections.empty else 0
    return (
        f"{frames.source}: {frames.start:%Y-%m-%d %H:%M:%S} to {frames.end:%Y-%m-%d %H:%M:%S} "
        f"UTC; {len(frames.broker_names())} brokers, {probes} probes, {decisions} selection "
        f"decisions, {len(frames.provisions)} provisions"
    )
