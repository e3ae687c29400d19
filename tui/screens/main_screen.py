"""MainScreen: the header, the table of the current view, the log pane, the command bar.

k9s' habits: `:` commands, `/` filters, `d` describe, `y` YAML, Enter on a broker lists its
Databases, Esc goes back, capital letters sort (again: reverse), ctrl-z shows faults only.
The screen orders and filters; the table draws; actions go to the app (confirm, worker).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer

from tui.body.log_pane import LogPane
from tui.body.resource_table import ResourceTable
from tui.body.table_title import TableTitle
from tui.commands import CommandError, parse_command
from tui.filtering import NO_FILTER, FilterError, RowFilter, parse_filter
from tui.footer.command_bar import CommandBar
from tui.header.connection_banner import ConnectionBanner
from tui.header.header_bar import HeaderBar
from tui.views.base import Manifest, Sort, View, meta
from tui.views.brokers import BrokersView
from tui.views.databases import DatabasesView, broker_of
from tui.views.events import EventsView

if TYPE_CHECKING:
    from tui.app import DashboardApp

VIEWS: dict[str, View] = {v.name: v for v in (BrokersView(), DatabasesView(), EventsView())}


@dataclass
class ViewState:
    view: View
    filter: RowFilter = NO_FILTER
    broker: str = ""  # only the Databases on this broker (Enter on a broker)
    cursor: str = ""


@dataclass
class Sorting:
    by: dict[str, tuple[str, bool]] = field(default_factory=dict)  # view -> (sort, reverse)


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("colon", "command", ":cmd"),
        Binding("slash", "filter", "/filter"),
        Binding("d", "describe", "Describe"),
        Binding("y", "yaml", "YAML"),
        Binding("escape", "back", "Back"),
        Binding("ctrl+z", "faults", "Faults"),
        Binding("N", "sort('name')", "Sort name", show=False),
        Binding("S", "sort('phase')", "Sort phase", show=False),
        Binding("L", "sort('load')", "Sort load", show=False),
        Binding("H", "sort('heartbeat')", "Sort heartbeat age", show=False),
        Binding("R", "sort('score')", "Sort score", show=False),
        Binding("A", "sort('age')", "Sort age", show=False),
        Binding("c", "act('cordon')", "Cordon", show=False),
        Binding("u", "act('uncordon')", "Uncordon", show=False),
        Binding("t", "act('probe')", "Probe now", show=False),
        Binding("ctrl+d", "act('delete')", "Delete", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[ViewState] = [ViewState(VIEWS["brokers"])]
        self.sorting = Sorting()
        self.ready = False  # composed and mounted
        self._sort_values: dict[str, tuple[Manifest, Sort, Any, Any]] = {}

    @property
    def dashboard(self) -> DashboardApp:
        return self.app  # type: ignore[return-value]

    @property
    def state(self) -> ViewState:
        return self.stack[-1]

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield ConnectionBanner(id="banner")
        yield TableTitle(id="title")
        yield ResourceTable(
            self.state.view, lambda: self.dashboard.ctx, prompt=self._prompt, id="table"
        )
        yield LogPane(id="logs")
        yield CommandBar(id="command")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ResourceTable).focus()
        self.ready = True
        self.refresh_rows()

    # --- rows -----------------------------------------------------------------------------

    def rows(self) -> list[tuple[str, Manifest]]:
        app, state = self.dashboard, self.state
        view, ctx = state.view, app.ctx
        wanted = []
        for key, obj in app.model.objects[view.name].items():
            if app.namespace and meta(obj).get("namespace") != app.namespace:
                continue
            if state.broker and broker_of(obj) != state.broker.rpartition("/")[2]:
                continue
            if app.faults_only and not view.fault(obj, ctx):
                continue
            if state.filter.active and not state.filter.matches(
                view.search_text(obj), meta(obj).get("labels") or {}
            ):
                continue
            wanted.append((key, obj))
        name, reverse = self.sorting.by.get(view.name, (view.default_sort, False))
        sort = view.sort(name)
        wanted.sort(key=lambda pair: self._sort_value(sort, pair[0], pair[1]), reverse=reverse)
        return wanted

    def _sort_value(self, sort: Sort, key: str, obj: Manifest) -> Any:
        """A row's sort value, computed again only when its object changed (or, for an
        order that follows the clock, when the clock moved)."""
        stamp = self.dashboard.ctx.now if sort.timed else None
        cached = self._sort_values.get(key)
        if cached is not None and cached[0] is obj and cached[1] is sort and cached[2] == stamp:
            return cached[3]
        value = (sort.value(obj, self.dashboard.ctx), key)
        self._sort_values[key] = (obj, sort, stamp, value)
        return value

    def refresh_rows(self) -> None:
        if len(self._sort_values) > 2 * sum(len(o) for o in self.dashboard.model.objects.values()):
            self._sort_values.clear()  # forget deleted rows now and then
        rows = self.rows()
        table = self.query_one(ResourceTable)
        table.show(self.state.view, rows)
        self._show_title([obj for _, obj in rows])

    def _show_title(self, objs: list[Manifest]) -> None:
        app, state = self.dashboard, self.state
        details = []
        if state.broker:
            details.append(f"on {state.broker.rpartition('/')[2]}")
        if app.namespace:
            details.append(f"ns {app.namespace}")
        if state.filter.active:
            details.append(f"/{state.filter.text}")
        if app.faults_only:
            details.append("faults only (ctrl-z)")
        name, reverse = self.sorting.by.get(state.view.name, (state.view.default_sort, False))
        details.append(f"sort {name}{' ↓' if reverse else ''}")
        details.extend(state.view.details(app.ctx))
        self.query_one(TableTitle).show(state.view.title(objs, app.ctx), details=details)

    def redraw(self, *, rows: bool = False) -> None:
        """The clock moved: draw the visible rows again (ages, scores); choose and order the
        rows again when asked, or when the order follows the clock or the faults do (flaps
        age out). The title changes only with the rows."""
        view = self.state.view
        name, _ = self.sorting.by.get(view.name, (view.default_sort, False))
        if rows or view.sort(name).timed or self.dashboard.faults_only:
            self.refresh_rows()
        self.query_one(ResourceTable).redraw()

    # --- views ----------------------------------------------------------------------------

    def open_view(self, name: str, *, broker: str = "") -> None:
        if name == "logs":
            self.action_logs(show=True)
            return
        self.state.cursor = self.query_one(ResourceTable).cursor_key
        if name == self.state.view.name and not broker:
            return
        self.stack.append(ViewState(VIEWS[name], broker=broker))
        self.refresh_rows()

    def action_back(self) -> None:
        bar = self.query_one(CommandBar)
        if bar.has_class("-open"):
            self._close_bar()
        elif self.state.filter.active:
            self.state.filter = NO_FILTER
            self.refresh_rows()
        elif len(self.stack) > 1:
            self.stack.pop()
            self.refresh_rows()
            self.query_one(ResourceTable).select_key(self.state.cursor)

    def on_resource_table_chosen(self, message: ResourceTable.Chosen) -> None:
        if self.state.view.name == "brokers" and message.key:
            self.open_view("databases", broker=message.key)
        else:
            self.action_describe()

    def action_faults(self) -> None:
        self.dashboard.faults_only = not self.dashboard.faults_only
        self.refresh_rows()

    def action_sort(self, name: str) -> None:
        view = self.state.view
        if not any(s.name == name for s in view.sorts):
            self.notify(f"{view.title_word} do not sort by {name}", severity="warning")
            return
        current, reverse = self.sorting.by.get(view.name, (view.default_sort, False))
        self.sorting.by[view.name] = (name, not reverse if current == name else False)
        self.refresh_rows()

    def action_logs(self, show: bool | None = None) -> None:
        pane = self.query_one(LogPane)
        pane.set_class(not pane.has_class("-shown") if show is None else show, "-shown")

    # --- describe, yaml, actions ------------------------------------------------------------

    def _current(self) -> tuple[str, Manifest] | None:
        key = self.query_one(ResourceTable).cursor_key
        obj = self.dashboard.model.objects[self.state.view.name].get(key)
        return (key, obj) if key and obj is not None else None

    def action_describe(self) -> None:
        current = self._current()
        if current is not None:
            self.dashboard.describe(self.state.view.name, *current)

    def action_yaml(self) -> None:
        current = self._current()
        if current is not None:
            self.dashboard.show_yaml(self.state.view.name, *current)

    def action_act(self, action: str) -> None:
        current = self._current()
        if current is None:
            return
        self.dashboard.confirm_action(action, self.state.view.name, current[1])

    # --- the command bar --------------------------------------------------------------------

    def action_command(self) -> None:
        self.query_one(CommandBar).open(":")

    def action_filter(self) -> None:
        self.query_one(CommandBar).open("/", self.state.filter.text)

    def _prompt(self, key: str) -> None:
        """`:` or `/` pressed on the table: the bar opens now, so keys typed after it in one
        go (`:db⏎`) go there (the table hands on keys that arrive after the focus left)."""
        self.action_command() if key == "colon" else self.action_filter()

    def _close_bar(self) -> None:
        self.query_one(CommandBar).close()
        self.set_focus(self.query_one(ResourceTable))

    def on_command_bar_cancelled(self, message: CommandBar.Cancelled) -> None:
        self._close_bar()

    def on_command_bar_submitted(self, message: CommandBar.Submitted) -> None:
        bar = self.query_one(CommandBar)
        try:
            if message.mode == "/":
                self.state.filter = parse_filter(message.text)
                self.refresh_rows()
            else:
                self._run_command(message.text)
        except (CommandError, FilterError) as exc:
            bar.error(str(exc))
            return
        self._close_bar()

    def _run_command(self, text: str) -> None:
        command = parse_command(text)
        app: Any = self.dashboard
        if command.verb == "quit":
            app.exit(0)
        elif command.verb == "help":
            app.action_help()
        elif command.verb == "view":
            self.open_view(command.argument)
        elif command.verb == "namespace":
            app.namespace = command.argument
            self.refresh_rows()
        elif command.verb == "select":
            app.open_simulator(command.argument)
