"""What `d`, `y` and the banner read from the app's state: the describe pages' inputs
(history, Events, the registry's explain for the Database's criteria now) gathered from
the model and the history reader, and whether a source has lost its connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.syntax import Syntax
from rich.text import Text

from kidp_ops.model.resources import Database
from kidp_ops.output import dump
from kidp_ops.placement import PlacementError, criteria_for
from tui.describing import describe_broker, describe_database
from tui.views.base import Manifest, meta

if TYPE_CHECKING:
    from kidp_ops.history import HistoryReader
    from tui.app import DashboardApp
    from tui.feed import Source

KINDS = {"brokers": "Broker", "databases": "Database"}


def related_events(app: DashboardApp, kind: str, obj: Manifest) -> list[Manifest]:
    m = meta(obj)
    wanted = (KINDS.get(kind, ""), m.get("name"), m.get("namespace"))
    found = [
        event
        for event in app.model.objects["events"].values()
        if (
            (event.get("involvedObject") or {}).get("kind"),
            (event.get("involvedObject") or {}).get("name"),
            (event.get("involvedObject") or {}).get("namespace"),
        )
        == wanted
    ]
    return sorted(found, key=lambda e: str(e.get("lastTimestamp") or e.get("firstTimestamp")))


class _Remembered:
    """The history reads of one describe page, read again only when the world moved (a
    watch change applied, or newer probes read), not at each one-second redraw."""

    def __init__(self, app: DashboardApp) -> None:
        self._app = app
        self._mark: tuple[int, object] | None = None
        self._values: dict[str, list[Any]] = {}

    def read(self, name: str, query: Callable[[HistoryReader], list[Any]]) -> list[Any]:
        history = self._app.feed.history
        if history is None:
            return []
        mark = (self._app.model.revision, self._app.probes.newest)
        if mark != self._mark:
            self._mark, self._values = mark, {}
        if name not in self._values:
            self._values[name] = query(history)
        return self._values[name]


def describer(app: DashboardApp, kind: str, key: str) -> Callable[[], RenderableType]:
    remembered = _Remembered(app)

    def render() -> RenderableType:
        obj = app.model.objects[kind].get(key)
        if obj is None:
            return Text(f"{key} is gone (deleted)", style="bold red")
        if kind == "brokers":
            return _broker(app, key, obj, remembered)
        if kind == "databases":
            return _database(app, key, obj, remembered)
        return Text(dump(dict(obj), "yaml"))

    return render


def _broker(app: DashboardApp, key: str, obj: Manifest, remembered: _Remembered) -> Text:
    return describe_broker(
        obj,
        now=app.ctx.now,
        reserved=app.ctx.reserved.get(key, 0),
        probes=remembered.read("probes", lambda h: h.probes(broker=key, limit=30)),
        selections=remembered.read("selections", lambda h: h.selections(broker=key, limit=15)),
        related_events=related_events(app, "brokers", obj),
    )


def _database(app: DashboardApp, key: str, obj: Manifest, remembered: _Remembered) -> Text:
    registry = app.feed.registry
    criteria, problem = None, ""
    try:
        criteria = criteria_for(Database.from_manifest(obj), registry)
    except (PlacementError, ValueError, TypeError, KeyError) as exc:
        problem = f"cannot read its placement: {exc}"
    return describe_database(
        obj,
        now=app.ctx.now,
        criteria=criteria,
        criteria_problem=problem,
        candidates=registry.explain(criteria, now=app.ctx.now) if criteria else [],
        decisions=remembered.read("decisions", lambda h: h.selections(request=key)),
        lifecycle=remembered.read("lifecycle", lambda h: h.lifecycle(request=key)),
        related_events=related_events(app, "databases", obj),
    )


def yaml_of(app: DashboardApp, kind: str, key: str) -> Callable[[], RenderableType]:
    def render() -> RenderableType:
        obj = app.model.objects[kind].get(key)
        if obj is None:
            return Text(f"{key} is gone (deleted)", style="bold red")
        return Syntax(dump(dict(obj), "yaml"), "yaml", theme="ansi_dark", word_wrap=True)

    return render


class ConnectionWatch:
    """Whether a source's watch failed since it last heard from the cluster (its informer
    retries with backoff by itself): lost at a new error, found again at the next contact."""

    def __init__(self) -> None:
        self._errors: dict[str, int] = {}
        self._lost_contact: dict[str, float] = {}  # source -> last contact when lost

    def lost(self, name: str, source: Source, now: float) -> bool:
        age = source.seconds_since_contact()
        contact = float("-inf") if age is None else now - age
        if source.errors > self._errors.get(name, 0):
            self._errors[name] = source.errors
            self._lost_contact[name] = contact
            return True
        if name not in self._lost_contact:
            return False
        if contact > self._lost_contact[name] + 0.001:
            del self._lost_contact[name]
            return False
        return True
