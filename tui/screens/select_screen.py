"""SelectScreen: the selection simulator (`s` or `:select CRITERIA`). Criteria in, every
broker out, ranked as the reconciler ranks them (the registry's explain): score parts for
the eligible, the first rejection for the rest; redrawn as brokers change. The criteria
become the SCORE column's criteria in the Brokers view."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from kidp_ops.explaining import describe_parts, summary
from kidp_ops.selection import Candidate, SelectionCriteria
from tui.criteria import criteria_text


def ranking(criteria: SelectionCriteria, candidates: Sequence[Candidate]) -> RenderableType:
    table = Table(box=None, header_style="bold", padding=(0, 1, 0, 0), expand=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("BROKER", no_wrap=True, ratio=2)
    table.add_column("SCORE", justify="right", no_wrap=True)
    table.add_column("WHY", ratio=3)
    for place, candidate in enumerate(candidates, start=1):
        name = candidate.broker.metadata.name
        if candidate.accepted and candidate.parts is not None:
            style = "bold green" if place == 1 else "green"
            table.add_row(
                Text(str(place), style=style),
                Text(name, style=style),
                f"{candidate.parts.total:.1f}",
                describe_parts(candidate.parts),
            )
        else:
            table.add_row("-", Text(name, style="dim"), "", Text(str(candidate.rejected), "red"))
    return Group(Text(summary(criteria, candidates) + "\n", style="bold"), table)


class SelectScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]
    DEFAULT_CSS = """
    SelectScreen #title { height: 1; background: $panel; text-style: bold; padding: 0 1; }
    SelectScreen Input { height: 3; }
    SelectScreen #problem { height: auto; color: $error; padding: 0 1; }
    SelectScreen VerticalScroll { height: 1fr; padding: 0 1; }
    """

    @dataclass
    class CriteriaChanged(Message):
        text: str

    def __init__(
        self, criteria: SelectionCriteria, explain: Callable[[SelectionCriteria], list[Candidate]]
    ) -> None:
        super().__init__()
        self.criteria = criteria
        self._explain = explain

    def compose(self) -> ComposeResult:
        yield Static("Selection simulator: where would it go right now?", id="title")
        field = Input(
            value=criteria_text(self.criteria),
            placeholder="e.g. postgresql eastus | provider=mysql cloud=aws ns=team-x",
            id="criteria",
        )
        field.cursor_blink = False  # a steady screen, for people and snapshots
        yield field
        yield Static("", id="problem")
        with VerticalScroll():
            yield Static(ranking(self.criteria, self._explain(self.criteria)), id="ranking")
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.CriteriaChanged(event.value))

    def show_problem(self, problem: str) -> None:
        self.query_one("#problem", Static).update(problem)

    def show_criteria(self, criteria: SelectionCriteria) -> None:
        self.criteria = criteria
        self.show_problem("")
        self.redraw()

    def redraw(self) -> None:
        self.query_one("#ranking", Static).update(
            ranking(self.criteria, self._explain(self.criteria))
        )
