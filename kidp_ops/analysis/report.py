"""`kidp-ops history report`: one self-contained HTML page of the main figures and tables,
for people who do not run Jupyter. plotly.js is inlined once (no CDN, no network: the page
opens from a file, offline, and can be mailed)."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kidp_ops.analysis import capacity, health, selections, whatif
from kidp_ops.history.frames import HistoryFrames

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; margin-bottom: 2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.answer { background: #f5f8ff; border-left: 4px solid #1f77b4; padding: 0.5em 1em; }
"""


# size: a table of the report's parts, one entry per line
def sections(frames: HistoryFrames) -> list[tuple[str, str, list[Any], list[Any]]]:
    """(heading, what it answers, tables, figures) of each part of the report (long: a
    table of the report's parts, one entry per line)."""
    parts: list[tuple[str, str, list[Callable[[], Any]], list[Callable[[], Any]]]] = [
        (
            "Broker health",
            "Which brokers flap, and when?",
            [lambda: health.availability(frames)],
            [
                lambda: health.phase_timeline(frames),
                lambda: health.availability_figure(frames),
                lambda: health.latency_figure(frames),
            ],
        ),
        (
            "Capacity",
            "Which region or provider runs out of capacity first, and when?",
            [
                lambda: capacity.headroom(frames, by="region"),
                lambda: capacity.headroom(frames, by="provider"),
            ],
            [
                lambda: capacity.load_figure(frames, by="broker"),
                lambda: capacity.headroom_figure(frames, by="region"),
                lambda: capacity.headroom_figure(frames, by="provider"),
            ],
        ),
        (
            "Provisioning",
            "How long does provisioning take per broker?",
            [lambda: capacity.provision_latency(frames)],
            [lambda: capacity.provision_figure(frames)],
        ),
        (
            "Selection",
            "Who gets the work, why, and why do requests find no broker?",
            [lambda: selections.selection_share(frames)],
            [lambda: selections.share_figure(frames), lambda: selections.rejections_figure(frames)],
        ),
    ]
    if frames.per_request:
        parts.append(
            (
                "What if a broker were removed?",
                "Each broker that won decisions in the replay, removed: where its decisions "
                "would go (the figure says how often the replay matches what happened)",
                [lambda: whatif.removal_impact(frames)],
                [lambda: whatif.whatif_figure(frames)],
            )
        )
    return [
        (h, q, [t() for t in tables], [f() for f in figures]) for h, q, tables, figures in parts
    ]


def render(frames: HistoryFrames, *, now: datetime | None = None) -> str:
    """The report as one HTML document."""
    now = now or datetime.now(UTC)
    body, first = [], True
    for heading, question, tables, figures in sections(frames):
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body.append(f'<p class="answer">{html.escape(question)}</p>')
        body.extend(_table(t) for t in tables)
        for figure in figures:
            body.append(
                figure.to_html(
                    full_html=False, include_plotlyjs=first, config={"displaylogo": False}
                )
            )
            first = False
    window = f"{frames.start:%Y-%m-%d %H:%M:%S} to {frames.end:%Y-%m-%d %H:%M:%S} UTC"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>kidp-ops history report</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>kidp-ops history report</h1>"
        f'<p class="meta">{html.escape(frames.source)}; {window}; '
        f"made {now:%Y-%m-%d %H:%M} UTC</p>" + "\n".join(body) + "</body></html>\n"
    )


def _table(table: Any) -> str:
    if table.empty:
        return "<p><i>nothing in this window</i></p>"
    shown = table.copy()
    for column in shown.columns:
        if str(shown[column].dtype).startswith("datetime"):
            shown[column] = shown[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    return str(shown.to_html(float_format=lambda v: f"{v:,.3g}", na_rep="-", border=0))


def write(frames: HistoryFrames, path: str | Path) -> Path:
    """Write the report to `path` (its folder is created); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(frames), encoding="utf-8")
    return target
