"""CommandBar: k9s' prompt for `:` commands and `/` filters; Enter submits, Escape cancels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textual import events
from textual.message import Message
from textual.widgets import Input

Mode = Literal[":", "/"]


class CommandBar(Input):
    DEFAULT_CSS = """
    CommandBar, CommandBar:focus {
        height: 1; border: none; padding: 0 1; display: none; background: $boost;
    }
    CommandBar.-open { display: block; }
    CommandBar.-error { color: $error; }
    """

    @dataclass
    class Submitted(Message):
        mode: Mode
        text: str

    @dataclass
    class Cancelled(Message):
        mode: Mode

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.mode: Mode = ":"

    def open(self, mode: Mode, text: str = "") -> None:
        self.mode = mode
        self.remove_class("-error")
        self.add_class("-open")
        self.placeholder = (
            "brokers | databases | events | logs | ns NAME | select CRITERIA | help | q"
            if mode == ":"
            else "regex, !regex (inverse), -l key=value"
        )
        self.value = text
        self.cursor_position = len(text)
        # At once, not on the next turn (focus() is deferred): keys typed right after `:`
        # (k9s users type `:db` in one go) are already queued and must land here.
        self.screen.set_focus(self)

    def close(self) -> None:
        self.remove_class("-open")
        if self.has_focus:
            self.screen.set_focus(None)

    def error(self, message: str) -> None:
        """Open the bar again with the problem shown (one line)."""
        self.open(self.mode)
        self.add_class("-error")
        self.value = ""
        self.placeholder = f"{message}  (Esc to close)"

    async def action_submit(self) -> None:
        # Closed at once, so keys typed right after Enter go to the screen, not in here.
        self.close()
        self.post_message(self.Submitted(self.mode, self.value))

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape":
            event.stop()
            self.post_message(self.Cancelled(self.mode))
