"""The Events view (`:events`): newest first, Warnings as faults."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.text import Text

from kidp_ops.times import parse_time
from tui import cells
from tui.views.base import Column, Context, Manifest, Sort, View, meta


def last_seen(obj: Manifest) -> Any:
    return parse_time(obj.get("lastTimestamp") or obj.get("firstTimestamp")) or parse_time(
        meta(obj).get("creationTimestamp")
    )


def _newest_first(obj: Manifest) -> float:
    seen = last_seen(obj)
    return -seen.timestamp() if seen else 0.0


def involved(obj: Manifest) -> str:
    target = obj.get("involvedObject") or {}
    return f"{str(target.get('kind', '')).lower()}/{target.get('name', '')}"


COLUMNS = (
    Column(
        "LAST SEEN",
        9,
        0,
        lambda o, c: cells.age(cells.since(last_seen(o), c.now)),
        right=True,
        timed=True,
    ),
    Column("TYPE", 7, 1, lambda o, c: cells.phase(str(o.get("type") or "Normal"))),
    Column("REASON", 20, 2, lambda o, c: Text(str(o.get("reason") or ""))),
    Column("OBJECT", 32, 0, lambda o, c: Text(involved(o)), fit=True),
    Column("MESSAGE", 200, 0, lambda o, c: Text(str(o.get("message") or "")), flex=True),
)


class EventsView(View):
    name = "events"
    title_word = "Events"
    columns = COLUMNS
    default_sort = "last-seen"
    sorts = (
        Sort("A", "last-seen", lambda o, c: _newest_first(o)),
        Sort("N", "name", lambda o, c: involved(o)),
        Sort("S", "type", lambda o, c: (o.get("type") != "Warning", _newest_first(o))),
    )

    def fault(self, obj: Manifest, ctx: Context) -> bool:
        return obj.get("type") == "Warning"

    def search_text(self, obj: Manifest) -> str:
        return f"{involved(obj)} {obj.get('reason', '')} {obj.get('message', '')}"

    def title(self, objs: Sequence[Manifest], ctx: Context) -> str:
        kinds = Counter(str(o.get("type") or "Normal") for o in objs)
        return f"Events ({len(objs)}: {kinds['Warning']} Warning)"
