"""DescribeScreen: `d` (describe) and `y` (YAML) of one object, scrollable; redrawn each
second and on every change, so it stays live; Esc goes back."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static


class DescribeScreen(Screen[None]):
    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("j,down", "scroll(1)", "Down", show=False),
        Binding("k,up", "scroll(-1)", "Up", show=False),
    ]
    DEFAULT_CSS = """
    DescribeScreen #title { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    DescribeScreen VerticalScroll { height: 1fr; }
    DescribeScreen #body { padding: 0 1; }
    """

    def __init__(self, title: str, render: Callable[[], RenderableType]) -> None:
        super().__init__()
        self.title_text = title
        self._page = render

    def compose(self) -> ComposeResult:
        yield Static(self.title_text, id="title")
        with VerticalScroll():
            yield Static(self._page(), id="body")
        yield Footer()

    def redraw(self) -> None:
        self.query_one("#body", Static).update(self._page())

    def action_scroll(self, lines: int) -> None:
        self.query_one(VerticalScroll).scroll_relative(y=lines, animate=False)
