"""Waiting in tests: poll a condition until a deadline, never a bare sleep.

    await until(lambda: pool.reconciles == 3)            # a plain predicate
    await until(lease_renewed, what="a renewal")         # or a coroutine function
    until_sync(lambda: path.exists(), timeout=20)        # outside an event loop (subprocesses)

Both check at once (no wait when the condition already holds), then every `every`
seconds, and fail the test with `what` once `timeout` seconds have passed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

Check = Callable[[], bool | Awaitable[bool]]
T = TypeVar("T")


async def until(
    predicate: Check, timeout: float = 5.0, every: float = 0.01, *, what: str = "condition"
) -> None:
    """Return once `predicate()` is true (awaited when it returns an awaitable); fail the
    test when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not await _holds(predicate):
        assert time.monotonic() < deadline, f"{what} not reached in {timeout:g}s"
        await asyncio.sleep(every)


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


async def _holds(predicate: Check) -> bool:
    result = predicate()
    if inspect.isawaitable(result):
        result = await result
    return bool(result)
