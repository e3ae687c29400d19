"""The Databases view: phase counts in the title; Failed and Pending sort first (then the
newest), so the newest never push them out of sight."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from rich.text import Text

from kidp_ops.times import parse_time
from tui import cells
from tui.views.base import Column, Context, Manifest, Sort, View, meta, spec, status

SEVERITY = {"Failed": 0, "Pending": 1, "New": 2, "Deleting": 3, "Provisioning": 4, "Ready": 5}


def phase_of(obj: Manifest) -> str:
    if meta(obj).get("deletionTimestamp") and not status(obj).get("phase"):
        return "Deleting"
    return str(status(obj).get("phase") or "New")


def broker_of(obj: Manifest) -> str:
    ref = status(obj).get("brokerRef") or {}
    return str(ref.get("name") or "")


def _created(obj: Manifest) -> str:
    return str(meta(obj).get("creationTimestamp") or "")


def _newest_first(obj: Manifest) -> Any:
    created = parse_time(_created(obj))
    return -created.timestamp() if created else 0.0


COLUMNS = (
    Column("NAME", 30, 0, lambda o, c: Text(str(meta(o).get("name", ""))), fit=True),
    Column("NAMESPACE", 14, 3, lambda o, c: Text(str(meta(o).get("namespace", "")))),
    Column("ENGINE", 10, 2, lambda o, c: Text(str(spec(o).get("engine", "")))),
    Column("SIZE", 6, 5, lambda o, c: Text(str(spec(o).get("size", "")))),
    Column("PHASE", 12, 0, lambda o, c: cells.phase(phase_of(o))),
    Column("BROKER", 22, 1, lambda o, c: Text(broker_of(o))),
    Column("DEPLOYMENT", 14, 6, lambda o, c: Text(str(status(o).get("deploymentId") or ""))),
    Column(
        "AGE",
        5,
        4,
        lambda o, c: cells.age(cells.since(parse_time(_created(o)), c.now)),
        right=True,
        timed=True,
    ),
)


class DatabasesView(View):
    name = "databases"
    title_word = "databases"
    columns = COLUMNS
    default_sort = "phase"
    sorts = (
        Sort("N", "name", lambda o, c: (meta(o).get("name", ""), meta(o).get("namespace", ""))),
        Sort("S", "phase", lambda o, c: (SEVERITY.get(phase_of(o), 9), _newest_first(o))),
        Sort("A", "age", lambda o, c: _newest_first(o)),
        Sort("B", "broker", lambda o, c: (broker_of(o), meta(o).get("name", ""))),
    )

    def fault(self, obj: Manifest, ctx: Context) -> bool:
        return phase_of(obj) != "Ready"

    def search_text(self, obj: Manifest) -> str:
        m, s = meta(obj), spec(obj)
        return " ".join(
            str(v)
            for v in (
                m.get("namespace"),
                m.get("name"),
                s.get("engine"),
                s.get("target"),
                phase_of(obj),
                broker_of(obj),
            )
        )

    def title(self, objs: Sequence[Manifest], ctx: Context) -> str:
        phases = Counter(phase_of(o) for o in objs)
        shown = ", ".join(
            f"{n} {p}" for p, n in sorted(phases.items(), key=lambda i: SEVERITY.get(i[0], 9))
        )
        word = "database" if len(objs) == 1 else "databases"
        return f"{len(objs)} {word}" + (f": {shown}" if shown else "")
