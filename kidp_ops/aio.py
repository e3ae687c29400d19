"""asyncio helpers shared by the controller runtime, the daemon and `kidp-ops dev` (a leaf)."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel `tasks` and wait until every one has finished (their results are left alone)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
