"""What a table view is: columns that drop by priority, sorts, a faults predicate, a title.

Views are data and pure functions of (manifest, Context): the table widget renders them,
the main screen orders and filters with them. Nothing here touches Textual.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.text import Text

from kidp_ops.registry import BrokerRegistry
from kidp_ops.selection import SelectionCriteria
from tui.criteria import DEFAULT
from tui.probes import ProbeMemory

Manifest = Mapping[str, Any]
SEPARATOR = 1  # blank cells between columns


@dataclass
class Context:
    """What cells need beyond the row's manifest: the time, the registry, the criteria."""

    now: datetime
    registry: BrokerRegistry
    probes: ProbeMemory = field(default_factory=ProbeMemory)
    criteria: SelectionCriteria = DEFAULT
    reserved: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    width: int
    drop: int  # 0: always shown; the highest goes first as the terminal narrows
    cell: Callable[[Manifest, Context], Text]
    right: bool = False
    fit: bool = False  # as wide as the widest value (up to `width`)
    flex: bool = False  # takes the width that is left
    timed: bool = False  # changes with the clock, the criteria or the registry, not only the row


@dataclass(frozen=True, slots=True)
class Sort:
    key: str  # the binding (a capital letter, k9s' shift-sorts)
    name: str
    value: Callable[[Manifest, Context], Any]
    timed: bool = False  # the order moves with the clock (ages, scores), not only with changes


def meta(obj: Manifest) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def status(obj: Manifest) -> Mapping[str, Any]:
    return obj.get("status") or {}


def spec(obj: Manifest) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def key_of(obj: Manifest) -> str:
    m = meta(obj)
    return f"{m.get('namespace') or ''}/{m.get('name') or ''}"


class View:
    """One kind's table. Subclasses set the class attributes and may override the rest."""

    name: str = ""
    title_word: str = ""
    columns: Sequence[Column] = ()
    sorts: Sequence[Sort] = ()
    default_sort: str = "name"

    def fault(self, obj: Manifest, ctx: Context) -> bool:
        return False

    def search_text(self, obj: Manifest) -> str:
        m = meta(obj)
        return f"{m.get('namespace', '')}/{m.get('name', '')} {status(obj).get('phase', '')}"

    def title(self, objs: Sequence[Manifest], ctx: Context) -> str:
        return f"{self.title_word} ({len(objs)})"

    def details(self, ctx: Context) -> list[str]:
        """What the title says after the filter and sort (the Brokers' SCORE criteria)."""
        return []

    def sort(self, name: str) -> Sort:
        return next((s for s in self.sorts if s.name == name), self.sorts[0])


def layout(columns: Sequence[Column], width: int, fitted: Mapping[int, int]) -> list[int]:
    """Which columns show at `width` (their indexes, in order) and how wide each is:
    columns are taken by `drop` (lowest first) while they fit; a flex column takes the
    rest. `fitted` gives the width of `fit` columns (their widest value)."""
    widths = {i: fitted.get(i, c.width) if c.fit else c.width for i, c in enumerate(columns)}
    chosen: list[int] = []
    used = 0
    for index in sorted(range(len(columns)), key=lambda i: (columns[i].drop, i)):
        need = widths[index] + (SEPARATOR if chosen else 0)
        if columns[index].flex:
            need = min(need, 12 + SEPARATOR)
        if used + need <= width or columns[index].drop == 0:
            chosen.append(index)
            used += need
    return sorted(chosen)
