"""ConnectionBanner: shown while a watch cannot reach the cluster (the informers retry with
backoff on their own); hidden again at the first sign of life."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class ConnectionBanner(Static):
    DEFAULT_CSS = """
    ConnectionBanner { height: 1; background: $error; color: $text; display: none; }
    ConnectionBanner.-lost { display: block; }
    """

    def show_lost(self, problem: str, seconds: float) -> None:
        self.add_class("-lost")
        self.update(
            Text(
                f" CONNECTION LOST {seconds:.0f}s: {problem}  (reconnecting; data as last seen)",
                style="bold",
            )
        )

    def show_ok(self) -> None:
        self.remove_class("-lost")
