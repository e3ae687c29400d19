"""TableTitle: the line above the table: the view's title, its filter, sort and scope."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class TableTitle(Static):
    DEFAULT_CSS = """
    TableTitle { height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    def show(self, title: str, *, details: list[str]) -> None:
        text = Text(title, style="bold")
        for detail in details:
            text.append("  ")
            text.append(detail, style="italic")
        self.update(text, layout=False)  # one line, always: no layout pass
