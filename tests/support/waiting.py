"""Waiting in tests: poll a condition until a deadline, never a bare sleep.

    await until(lambda: pool.reconciles == 3)            # a plain predicate
    await until(lease_renewed, what="a renewal")         # or a coroutine function
    db = await eventually(fetch_db, lambda d: d["status"]["phase"] == "Ready")
    until_sync(lambda: path.exists(), timeout=20)        # outside an event loop (subprocesses)

Each checks at once (no wait when the condition already holds), then every `every`
seconds, and fails the test with `what` (and the last value seen) once `timeout` seconds
have passed. The one polling loop of the test suite: helpers elsewhere call these.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from typing import IO, Any, TypeVar

Check = Callable[[], bool | Awaitable[bool]]
T = TypeVar("T")


async def eventually(
    fetch: Callable[[], Awaitable[T] | T],
    accept: Callable[[T], Any] = bool,
    *,
    timeout: float = 5.0,
    every: float = 0.01,
    what: str = "condition",
    ignore: tuple[type[BaseException], ...] = (),
    explain: Callable[[], str] | None = None,
) -> T:
    """The first value of `fetch()` (awaited when it returns an awaitable) that `accept`
    accepts (by default: a truthy one). An exception in `ignore` counts as a no (a server
    not listening yet). After `timeout` seconds the test fails with `what`, the last value
    and, when given, `explain()` (e.g. the last log lines of the processes involved)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = fetch()
            if inspect.isawaitable(value):
                value = await value
            last = value
            if accept(value):
                return value  # type: ignore[no-any-return]
        except ignore as exc:
            last = exc
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"{what} not reached in {timeout:g}s (last: {last!r}){detail}")
        await asyncio.sleep(every)


async def until(
    predicate: Check, timeout: float = 5.0, every: float = 0.01, *, what: str = "condition"
) -> None:
    """Return once `predicate()` is true (awaited when it returns an awaitable); fail the
    test when `timeout` seconds pass first."""
    await eventually(predicate, timeout=timeout, every=every, what=what)


def until_sync(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    every: float = 0.01,
    *,
    what: str = "condition",
) -> T:
    """`until` for code without an event loop (a test driving subprocesses); returns the
    predicate's first truthy value."""
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"{what} not reached in {timeout:g}s"
        time.sleep(every)
    return found


def collect_lines(stream: IO[str]) -> tuple[list[str], threading.Thread]:
    """The lines `stream` prints, appended by a thread as they come, so a wait on them
    (`until_sync`) keeps its deadline while the process is silent, and the pipe is drained.
    The thread ends at the stream's end (join it for the last lines)."""
    lines: list[str] = []

    def read() -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reader
