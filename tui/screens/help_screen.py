"""HelpScreen (`?`): generated from the bindings in force where it was opened, plus the
`:` commands and the filter syntax, so it never disagrees with the keys."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from tui import commands, filtering


def bindings_table(bindings: Iterable[tuple[str, str]]) -> Table:
    table = Table(box=None, show_header=True, header_style="bold", padding=(0, 2, 0, 0))
    table.add_column("KEY", style="bold cyan", no_wrap=True)
    table.add_column("WHAT IT DOES")
    for key, description in bindings:
        table.add_row(key, description)
    return table


def _syntax() -> Text:
    text = Text("\nCommands (:)\n", style="bold")
    text.append((commands.__doc__ or "").split("\n\n", 1)[1].rstrip() + "\n")
    text.append("\nFilter (/)\n", style="bold")
    text.append((filtering.__doc__ or "").split("\n\n", 1)[1].rstrip() + "\n")
    return text


class HelpScreen(Screen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Back")]
    DEFAULT_CSS = """
    HelpScreen #title { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    HelpScreen VerticalScroll { padding: 0 1; }
    """

    def __init__(self, bindings: list[tuple[str, str]]) -> None:
        super().__init__()
        self.bindings = bindings

    def compose(self) -> ComposeResult:
        yield Static("Help: the keys of the screen you came from", id="title")
        with VerticalScroll():
            yield Static(bindings_table(self.bindings))
            yield Static(_syntax())
        yield Footer()
