"""HeaderBar: one line that is always on screen: what we look at, whether actions are
allowed, the fleet in a few words, pause and log warnings, and the clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual.widgets import Static


@dataclass(frozen=True, slots=True)
class HeaderState:
    target: str
    readonly: bool
    brokers: str  # "5 brokers, 1 down"
    databases: str  # "26 dbs, 1 Failed"
    paused: int | None  # changes held while paused; None: live
    warnings: int
    now: datetime


class HeaderBar(Static):
    DEFAULT_CSS = """
    HeaderBar { height: 1; background: $primary-background; color: $text; }
    """

    def show(self, state: HeaderState) -> None:
        width = max(20, self.size.width or 80)
        right = Text(f" {state.now:%H:%M:%S}Z", style="bold")
        left = Text(" kidp-ops ", style="bold reverse")
        left.append(" ")
        left.append(
            "READ-ONLY" if state.readonly else "read-write",
            style="bold yellow" if state.readonly else "green",
        )
        if state.paused is not None:
            left.append(f"  PAUSED ({state.paused} held, p)", style="bold black on yellow")
        if state.warnings:
            left.append(f"  {state.warnings} log warnings (l)", style="yellow")
        left.append(f"  {state.target}", style="bold")
        middle = Text(f"  {state.brokers}  {state.databases}")
        line = left + middle
        line.truncate(width - right.cell_len, overflow="ellipsis", pad=True)
        self.update(line + right, layout=False)  # one line, always: no layout pass
