"""DashboardApp and `create_app`, the factory the launchers and the tests use.

The app owns the Model (fed by the sources' handlers, applied once per frame), the probe
memory, the clock tick (ages, scores, the log pane, the connection banner: no API call),
and the actions. I/O happens only in workers: the informers it runs, the history reads,
and the writes of actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen

from kidp_ops.clock import utc_now
from kidp_ops.history import MemorySink
from kidp_ops.kinds import object_key
from tui import actions, inspecting
from tui.body.log_pane import LogPane, PaneHandler
from tui.body.resource_table import ResourceTable
from tui.criteria import DEFAULT, CriteriaError, parse_criteria
from tui.feed import Feed
from tui.header.connection_banner import ConnectionBanner
from tui.header.header_bar import HeaderBar, HeaderState
from tui.model import Model
from tui.probes import ProbeMemory
from tui.screens.describe_screen import DescribeScreen
from tui.screens.help_screen import HelpScreen
from tui.screens.main_screen import MainScreen
from tui.screens.select_screen import SelectScreen
from tui.views.base import Context, Manifest, status

Clock = Callable[[], datetime]


class DashboardApp(App[int]):
    TITLE = "kidp-ops"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("ctrl+c", "quit", "Quit", priority=True),
        Binding("question_mark", "help", "Help"),
        Binding("s", "simulator", "Simulate"),
        Binding("p", "pause", "Pause"),
        Binding("l", "logs", "Logs"),
    ]

    def __init__(self, feed: Feed, *, clock: Clock = utc_now, tick: float | None = 1.0) -> None:
        super().__init__()
        self.feed = feed
        self.clock = clock
        self.tick_seconds = tick
        self.model = Model()
        self.probes = ProbeMemory()
        self.ctx = Context(now=clock(), registry=feed.registry, probes=self.probes)
        self.namespace = ""
        self.faults_only = False
        self.log_handler = PaneHandler()
        self._apply_due = False
        self._counts: tuple[str, str] | None = None
        self._frozen = False
        self._reading = False  # a history read is running: the tick does not start another
        self.connection = inspecting.ConnectionWatch()
        self.actions = actions.Actions(self)

    # --- start and stop -----------------------------------------------------------------

    def on_mount(self) -> None:
        logging.getLogger().addHandler(self.log_handler)
        self.push_screen(MainScreen())
        for kind in ("brokers", "databases", "events"):
            getattr(self.feed, kind).add_handler(partial(self._staged, kind))
        for informer in self.feed.to_run:
            self.run_informer(informer)
        self._read_history()
        if self.tick_seconds:
            self.set_interval(self.tick_seconds, self.tick)

    def on_unmount(self) -> None:
        logging.getLogger().removeHandler(self.log_handler)

    def _sources(self) -> tuple[Any, ...]:
        return (self.feed.brokers, self.feed.databases, self.feed.events)

    @work(group="informers")
    async def run_informer(self, informer: Any) -> None:
        await informer.run()

    # --- data in --------------------------------------------------------------------------

    def _staged(self, kind: str, change: str, obj: Manifest) -> None:
        self.model.stage(kind, change, object_key(obj), obj)
        if not self._apply_due:
            self._apply_due = True
            self.call_later(self.apply_changes)

    def apply_changes(self) -> None:
        """Apply what the watches brought since the last frame, then draw."""
        self._apply_due = False
        with contextlib.suppress(NoMatches):  # the screens are not there yet, or gone
            self._apply_staged()

    def _apply_staged(self) -> None:
        applied = self.model.apply()
        if not applied:
            self._show_header()
            return
        self._counts = None
        if not self._frozen and all(s.has_synced for s in self._sources()):
            # The first lists are in: what exists now is long-lived (caches, widgets), so
            # the cyclic GC stops walking it (gc.freeze), which keeps its pauses short.
            self._frozen = True
            gc.freeze()
        self._refresh_context()
        if self.feed.history is None:
            for key, obj in applied.get("brokers", {}).items():
                if obj is None:
                    self.probes.forget(key)
                elif status(obj).get("phase"):
                    self.probes.observe_phase(key, str(status(obj)["phase"]), self.ctx.now)
        self._redraw(rows_only=True)

    def _refresh_context(self) -> None:
        self.ctx.now = self.clock()
        self.ctx.reserved = self.feed.registry.reserved()

    @work(group="history")
    async def _read_history(self) -> None:
        """New probe records since the last read (the local history, never the API). The
        first read takes only what the probe memory keeps (its depth per broker), not the
        whole store; a store on disk is read in a thread, off the event loop."""
        history = self.feed.history
        if history is None or self._reading:  # one read at a time, never cut off
            return
        if self.probes.newest is not None:
            read = partial(history.probes, since=self.probes.newest)
        elif self.feed.brokers.has_synced:
            kept = self.probes.depth * max(1, len(self.feed.registry))
            read = partial(history.probes, limit=kept)
        else:
            return  # how many brokers there are is not known yet
        if isinstance(history, MemorySink):  # the daemon's, in this process, on this loop
            self.probes.take(read())
        else:
            self._reading = True
            try:
                self.probes.take(await asyncio.to_thread(read))
            finally:
                self._reading = False

    def tick(self) -> None:
        """Once a second: ages and scores move, logs drain, the banner follows the watches."""
        with contextlib.suppress(NoMatches):  # the screens are not there yet, or gone
            self._tick()

    def _tick(self) -> None:
        self._refresh_context()
        self._read_history()
        records = self.log_handler.drain()
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen) and records:
                screen.query_one(LogPane).add(
                    self.log_handler.formatter or logging.Formatter(), records
                )
        self._check_connection()
        self._redraw(rows_only=False)

    def _redraw(self, *, rows_only: bool) -> None:
        main = self.main
        if main is not None:
            main.refresh_rows() if rows_only else main.redraw()
        if isinstance(self.screen, DescribeScreen | SelectScreen):
            self.screen.redraw()
        self._show_header()

    @property
    def main(self) -> MainScreen | None:
        """The main screen once it is composed (ticks and watch events may come earlier)."""
        main = next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)
        return main if main is not None and main.ready else None

    def _show_header(self) -> None:
        main = self.main
        if main is None:
            return
        if self._counts is None:  # counted again only after changes, not every second
            brokers = self.model.objects["brokers"].values()
            down = sum(1 for b in brokers if status(b).get("phase") != "Ready")
            dbs = self.model.objects["databases"].values()
            failed = sum(1 for d in dbs if status(d).get("phase") == "Failed")
            self._counts = (f"{len(brokers)} brokers ({down} not Ready)",
                            f"{len(dbs)} dbs ({failed} Failed)")  # fmt: skip
        main.query_one(HeaderBar).show(
            HeaderState(
                target=self.feed.target,
                readonly=self.feed.readonly,
                brokers=self._counts[0],
                databases=self._counts[1],
                paused=self.model.held if self.model.paused else None,
                warnings=self.log_handler.warnings,
                now=self.ctx.now,
            )
        )

    def _check_connection(self) -> None:
        main = self.main
        if main is None:
            return
        lost = [
            (name, source)
            for name, source in (("brokers", self.feed.brokers), ("databases", self.feed.databases))
            if self.connection.lost(name, source, time.monotonic())
        ]
        banner = main.query_one(ConnectionBanner)
        if lost:
            name, source = lost[0]
            banner.show_lost(
                f"{name} watch: {source.last_error}", source.seconds_since_contact() or 0
            )
        else:
            banner.show_ok()

    # --- keys -----------------------------------------------------------------------------

    def action_pause(self) -> None:
        self.model.paused = not self.model.paused
        if not self.model.paused:
            self.apply_changes()
        self._show_header()

    def action_logs(self) -> None:
        if self.main is not None:
            self.main.action_logs()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.binding_help(self.screen)))

    def binding_help(self, screen: Screen[Any]) -> list[tuple[str, str]]:
        seen, listed = set(), []
        nodes: Iterable[Any] = [*screen.query(ResourceTable), screen, self]
        for node in nodes:
            for binding in node._bindings.key_to_bindings.values():
                for one in binding:
                    if one.description and (one.action, one.description) not in seen:
                        seen.add((one.action, one.description))
                        listed.append((self.get_key_display(one), one.description))
        return listed

    def action_simulator(self) -> None:
        self.open_simulator("")

    def open_simulator(self, text: str) -> None:
        if text:
            self.set_criteria(text)
        self.push_screen(SelectScreen(self.ctx.criteria, self._explain))

    def _explain(self, criteria: Any) -> list[Any]:
        return self.feed.registry.explain(criteria, now=self.ctx.now)

    def set_criteria(self, text: str) -> str:
        """Set the simulator's (and SCORE's) criteria; the problem, or ""."""
        types = {c.resource_type for b in self.feed.registry.brokers() for c in b.spec.capabilities}
        try:
            criteria = (
                parse_criteria(text, regions=self.feed.registry.regions(), resource_types=types)
                if text.strip()
                else DEFAULT
            )
        except CriteriaError as exc:
            return str(exc)
        self.ctx.criteria = criteria
        if isinstance(self.screen, SelectScreen):
            self.screen.show_criteria(criteria)
        if self.main is not None:
            self.main.redraw(rows=True)
        return ""

    def on_select_screen_criteria_changed(self, message: SelectScreen.CriteriaChanged) -> None:
        problem = self.set_criteria(message.text)
        if problem and isinstance(self.screen, SelectScreen):
            self.screen.show_problem(problem)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        main = self.main
        if main is None:
            return
        for name in ("brokers", "databases", "events"):
            yield SystemCommand(f"View: {name}", f"Show the {name}", partial(main.open_view, name))
        yield SystemCommand(
            "Selection simulator", "Where would a request go now", self.action_simulator
        )
        yield SystemCommand("Faults only", "Toggle: only what is not well", main.action_faults)
        yield SystemCommand("Pause / resume", "Hold the live updates", self.action_pause)

    # --- describe, yaml, actions ------------------------------------------------------------

    def describe(self, kind: str, key: str, obj: Manifest) -> None:
        render = inspecting.describer(self, kind, key)
        self.push_screen(DescribeScreen(f"Describe {kind[:-1]} {key}  (Esc back)", render))

    def show_yaml(self, kind: str, key: str, obj: Manifest) -> None:
        render = inspecting.yaml_of(self, kind, key)
        self.push_screen(DescribeScreen(f"YAML {kind[:-1]} {key}  (Esc back)", render))

    def confirm_action(self, action: str, kind: str, obj: Manifest) -> None:
        self.actions.confirm(action, kind, obj)


def create_app(feed: Feed, *, clock: Clock = utc_now, tick: float | None = 1.0) -> DashboardApp:
    """The dashboard over `feed`: what `kidp-ops tui`, `kidp-ops dev` and the tests run."""
    return DashboardApp(feed, clock=clock, tick=tick)
