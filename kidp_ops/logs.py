"""Logging set-up for long-running commands: `text` for people, `json` for log pipelines."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(fmt: str = "text", *, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def shown(text: str, limit: int = 160) -> str:
    """Text from outside (a header, a body) fit for one log line: control characters and
    non-ASCII escaped, cut to `limit` characters with a note of how much was cut."""
    escaped = text.encode("unicode_escape").decode("ascii")
    if len(escaped) <= limit:
        return escaped
    return f"{escaped[:limit]}... ({len(escaped) - limit} more characters)"


class Throttle:
    """At most `per_minute` lines in any 60 seconds through `logger` (a sliding window: a
    burst that straddles a minute boundary gets no second budget); what is held back is
    counted and said in one line before the next line that goes out (a counter metric
    keeps every occurrence)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._clock = clock
        self._sent: deque[float] = deque(maxlen=per_minute)  # when the last lines went out
        self.suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        now = self._clock()
        full = len(self._sent) == self._sent.maxlen
        if full and now - self._sent[0] < 60:
            self.suppressed += 1
            return
        if self.suppressed:
            self._logger.warning("%d more like the line above were not logged", self.suppressed)
            self.suppressed = 0
        self._sent.append(now)
        self._logger.warning(message, *args)


def to_file(path: Path, *, level: int = logging.INFO) -> None:
    """Every log record to `path` (appended), as `configure("text")` would print it, and
    nowhere else: while a full-screen front-end owns the terminal, nothing may write to it
    (the front-end may add a handler of its own)."""
    configure("text", level=level)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    root = logging.getLogger()
    handler.setFormatter(root.handlers[0].formatter)
    root.handlers[:] = [handler]
