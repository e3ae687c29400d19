"""Graceful shutdown of a controller: SIGTERM -> finish what is running, hand over, exit.

    stop = asyncio.Event()
    with stop_on_signals(stop):
        await run_until_stopped(term_of(pool), stop=stop, elector=elector, grace=25)

On the first SIGTERM or SIGINT the stop event is set, and then, in order:

1. the work queue is shut down: no reconcile starts any more;
2. reconciles in flight get up to `grace` seconds to finish, then they are cancelled;
3. the Lease is released (holder "") so another replica takes over at its next retry
   instead of waiting for the lease to expire;
4. `run_until_stopped` returns (True when nothing had to be cancelled).

A second signal cancels the task that installed the handlers: the same steps without the
grace period (cancellation still releases the lease). A stop requested while this process
only campaigns for the lease ends the campaign at once. Kubernetes sends SIGKILL after
`terminationGracePeriodSeconds` (30 by default), so `grace` should stay below it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from kidp_ops.aio import cancel_and_wait
from kidp_ops.controller.leader import LeaderElector
from kidp_ops.controller.queue import WorkerPool

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 25.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(
    stop: asyncio.Event, *, signals: tuple[signal.Signals, ...] = STOP_SIGNALS
) -> Iterator[None]:
    """Set `stop` on the first of `signals`; cancel the current task on the second.
    The handlers live on the running loop and are removed on exit."""
    loop = asyncio.get_running_loop()
    owner = asyncio.current_task()

    def handle(signum: signal.Signals) -> None:
        if not stop.is_set():
            log.info("%s received: finishing in-flight work, then stopping", signum.name)
            stop.set()
        elif owner is not None:
            log.warning("%s received again: stopping now", signum.name)
            owner.cancel()

    for signum in signals:
        loop.add_signal_handler(signum, handle, signum)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


Term = Callable[[], AbstractAsyncContextManager[Sequence[WorkerPool[Any]]]]
"""One leadership term: entered when this process starts leading, it yields the worker
pools to run (a pool cannot be restarted, so every term builds its own) and is left when
they have stopped."""


def term_of(*pools: WorkerPool[Any]) -> Term:
    """A term that runs exactly these pools (for a single term, as in tests)."""

    @contextlib.asynccontextmanager
    async def term() -> AsyncIterator[Sequence[WorkerPool[Any]]]:
        yield pools

    return term


async def run_until_stopped(
    term: Term,
    *,
    stop: asyncio.Event,
    elector: LeaderElector | None = None,
    grace: float = DEFAULT_GRACE_SECONDS,
) -> bool:
    """Run the pools of `term` (while leading, when an elector is given) until `stop` is
    set, then stop them gracefully. True when every in-flight reconcile finished within
    `grace`.

    Raises LeadershipLost when the lease could not be renewed (the workers were cancelled
    at once: another replica may already be reconciling).
    """
    graceful = True

    async def work() -> None:
        nonlocal graceful
        async with term() as pools:
            graceful = await _work_until_stopped(pools, stop=stop, grace=grace)

    if elector is None:
        await work()
        return graceful
    campaign = asyncio.create_task(elector.run(work), name="leader-election")
    stopped = asyncio.create_task(stop.wait(), name="stop-requested")
    try:
        await asyncio.wait({campaign, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not campaign.done() and not elector.is_leader:
            campaign.cancel()  # still campaigning: there is nothing to finish or hand over
        await asyncio.wait({campaign})
    finally:
        await cancel_and_wait(campaign, stopped)
    if not campaign.cancelled():
        campaign.result()
    return graceful


async def _work_until_stopped(
    pools: Sequence[WorkerPool[Any]], *, stop: asyncio.Event, grace: float
) -> bool:
    """Run every pool until `stop`; then stop them all together within one grace period."""
    running = [asyncio.create_task(pool.run(), name=f"{pool.name}-workers") for pool in pools]
    stopped = asyncio.create_task(stop.wait(), name="stop-requested")
    graceful = True
    try:
        await asyncio.wait({*running, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            finished = await asyncio.gather(*(pool.stop(grace=grace) for pool in pools))
            graceful = all(finished)
        await asyncio.wait(running)
    finally:
        await cancel_and_wait(*running, stopped)
    for task in running:
        task.result()
    return graceful
