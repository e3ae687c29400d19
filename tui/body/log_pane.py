"""LogPane: what the process logs (the daemon's, in dev), shown in the app, never over it.

`PaneHandler` is a logging handler that only queues records (any thread may log); the app
drains the queue into the pane on its clock tick. The pane is hidden until `l` shows it.
"""

from __future__ import annotations

import logging
from collections import deque

from rich.text import Text
from textual.widgets import RichLog

LEVEL_STYLES = {"WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold red"}


class PaneHandler(logging.Handler):
    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.queued: deque[logging.LogRecord] = deque(maxlen=2000)
        self.warnings = 0
        self.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )

    def emit(self, record: logging.LogRecord) -> None:
        self.queued.append(record)
        if record.levelno >= logging.WARNING:
            self.warnings += 1

    def drain(self) -> list[logging.LogRecord]:
        taken = []
        while self.queued:
            taken.append(self.queued.popleft())
        return taken


class LogPane(RichLog):
    DEFAULT_CSS = """
    LogPane { height: 8; border-top: solid $primary; display: none; }
    LogPane.-shown { display: block; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(max_lines=1000, wrap=False, markup=False, **kwargs)  # type: ignore[arg-type]

    def add(self, formatter: logging.Formatter, records: list[logging.LogRecord]) -> None:
        for record in records:
            self.write(Text(formatter.format(record), style=LEVEL_STYLES.get(record.levelname, "")))
