"""The work queue (driven by a manual clock where time matters) and the worker pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from kidp_ops.controller.queue import (
    QueueEmpty,
    QueueShutDown,
    Result,
    WorkerPool,
    WorkQueue,
    backoff_delay,
    run_workers,
)
from tests.support.clocks import ManualClock
from tests.support.waiting import until

DEADLINE = 5.0


def drain(queue: WorkQueue[str]) -> list[str]:
    """Every ready key, each marked done at once."""
    keys: list[str] = []
    while True:
        try:
            key = queue.get_nowait()
        except QueueEmpty:
            return keys
        keys.append(key)
        queue.done(key)


# --- pure backoff ---------------------------------------------------------------------


def test_backoff_doubles_from_base_and_caps() -> None:
    assert [backoff_delay(n, base=0.05, cap=1.0) for n in range(6)] == [
        0.05,
        0.1,
        0.2,
        0.4,
        0.8,
        1.0,
    ]
    assert backoff_delay(10_000, base=0.05, cap=60.0) == 60.0
    with pytest.raises(ValueError):
        backoff_delay(-1)


# --- the queue ------------------------------------------------------------------------


def test_keys_are_deduplicated_and_fifo() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "c", "b", "a"):
        queue.add(key)
    assert len(queue) == queue.depth == 3
    assert drain(queue) == ["a", "b", "c"]


def test_a_key_added_while_processing_is_requeued_on_done_only() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get_nowait() == "a"
    queue.add("a")
    queue.add("a")
    assert queue.processing == {"a"}
    with pytest.raises(QueueEmpty):  # never handed to a second worker meanwhile
        queue.get_nowait()
    queue.done("a")
    assert queue.get_nowait() == "a"
    queue.done("a")
    with pytest.raises(QueueEmpty):  # the two adds made one more run, not two
        queue.get_nowait()


def test_add_after_waits_for_its_due_time() -> None:
    clock = ManualClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 5)
    queue.add_after("now", 0)
    assert drain(queue) == ["now"]
    assert queue.delayed == 1
    clock.advance(4.9)
    assert drain(queue) == []
    clock.advance(0.1)
    assert drain(queue) == ["a"]
    assert queue.delayed == 0


def test_the_earlier_due_time_wins() -> None:
    clock = ManualClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 10)
    queue.add_after("a", 2)  # earlier: replaces
    queue.add_after("a", 8)  # later: ignored
    clock.advance(2)
    assert drain(queue) == ["a"]
    clock.advance(10)
    assert drain(queue) == []  # the superseded timers did not fire


def test_delayed_keys_come_out_in_due_order() -> None:
    clock = ManualClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("late", 3)
    queue.add_after("early", 1)
    queue.add_after("middle", 2)
    clock.advance(3)
    assert drain(queue) == ["early", "middle", "late"]


def test_rate_limited_backoff_grows_per_key_and_forget_resets_it() -> None:
    clock = ManualClock()
    queue: WorkQueue[str] = WorkQueue(backoff_base=1.0, backoff_cap=4.0, clock=clock)

    def retry_after(key: str) -> float:
        """Seconds until a rate-limited `key` comes out again."""
        queue.add_rate_limited(key)
        waited = 0.0
        while not drain(queue):
            clock.advance(0.5)
            waited += 0.5
        return waited

    assert [retry_after("a") for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
    assert queue.num_requeues("a") == 4
    assert retry_after("b") == 1.0  # per key
    queue.forget("a")
    assert queue.num_requeues("a") == 0
    assert retry_after("a") == 1.0


async def test_get_waits_for_an_add() -> None:
    queue: WorkQueue[str] = WorkQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.add("a")
    assert await asyncio.wait_for(getter, DEADLINE) == "a"


async def test_get_wakes_when_a_delayed_key_is_due() -> None:
    queue: WorkQueue[str] = WorkQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    started = time.monotonic()
    queue.add_after("a", 0.05)
    assert await asyncio.wait_for(getter, DEADLINE) == "a"
    assert time.monotonic() - started >= 0.045


async def test_an_earlier_add_after_wakes_a_waiting_get() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 60)
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add_after("b", 0.02)
    assert await asyncio.wait_for(getter, DEADLINE) == "b"


async def test_shutdown_releases_waiting_getters_and_stops_accepting() -> None:
    queue: WorkQueue[str] = WorkQueue()
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    queue.shutdown()
    for getter in getters:
        with pytest.raises(QueueShutDown):
            await asyncio.wait_for(getter, DEADLINE)
    queue.add("a")
    queue.add_after("b", 0.01)
    queue.add_rate_limited("c")
    assert len(queue) == 0 and queue.delayed == 0
    assert queue.shutting_down
    with pytest.raises(QueueShutDown):
        await queue.get()


async def test_a_cancelled_get_loses_no_key() -> None:
    queue: WorkQueue[str] = WorkQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    queue.add("a")
    assert queue.get_nowait() == "a"


# --- the worker pool ------------------------------------------------------------------


class Recorder:
    """A reconcile that records calls and overlap, and can be held at a gate."""

    def __init__(self, outcome: Callable[[str, int], Awaitable[Result | None]] | None = None):
        self.calls: list[str] = []
        self.running: set[str] = set()
        self.max_running = 0
        self.overlap: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self._outcome = outcome

    async def __call__(self, key: str) -> Result | None:
        if key in self.running:
            self.overlap.append(key)
        self.running.add(key)
        self.max_running = max(self.max_running, len(self.running))
        self.calls.append(key)
        try:
            await self.gate.wait()
            if self._outcome is not None:
                return await self._outcome(key, self.calls.count(key))
            return None
        finally:
            self.running.discard(key)


async def stopped(pool: WorkerPool[str], task: asyncio.Task[None], grace: float = 1.0) -> bool:
    graceful = await pool.stop(grace=grace)
    await asyncio.wait_for(task, DEADLINE)
    return graceful


async def test_concurrency_is_bounded_by_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder()
    reconcile.gate.clear()
    pool = WorkerPool(queue, reconcile, workers=3)
    task = asyncio.create_task(pool.run())
    for i in range(10):
        queue.add(f"k{i}")
    await until(lambda: len(reconcile.running) == 3)
    assert pool.in_flight == reconcile.running
    assert queue.depth == 7
    reconcile.gate.set()
    await until(lambda: pool.reconciles == 10)
    assert reconcile.max_running == 3
    assert sorted(reconcile.calls) == sorted(f"k{i}" for i in range(10))
    assert await stopped(pool, task)


async def test_one_key_never_runs_twice_at_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder()
    reconcile.gate.clear()
    pool = WorkerPool(queue, reconcile, workers=4)
    task = asyncio.create_task(pool.run())
    queue.add("a")
    await until(lambda: reconcile.running == {"a"})
    for _ in range(5):
        queue.add("a")  # while "a" runs: marked dirty, one more run afterwards
    queue.add("b")
    # An idle worker took "b", queued after the adds: a ready "a" would have come first.
    await until(lambda: "b" in reconcile.running)
    assert reconcile.calls == ["a", "b"]
    reconcile.gate.set()
    await until(lambda: pool.reconciles == 3)
    assert reconcile.calls == ["a", "b", "a"]
    assert reconcile.overlap == []
    assert await stopped(pool, task)


async def test_errors_retry_with_backoff_and_success_forgets() -> None:
    async def flaky(key: str, attempt: int) -> None:
        if attempt < 3:
            raise RuntimeError(f"attempt {attempt} fails")

    queue: WorkQueue[str] = WorkQueue(backoff_base=0.01)
    reconcile = Recorder(flaky)
    pool = WorkerPool(queue, reconcile, workers=2)
    task = asyncio.create_task(pool.run())
    queue.add("a")
    await until(lambda: pool.reconciles == 3)
    assert pool.failures == 2
    assert queue.num_requeues("a") == 0  # forgotten after the success
    assert await stopped(pool, task)


async def test_requeue_after_and_requeue_results() -> None:
    async def outcome(key: str, attempt: int) -> Result:
        if key == "periodic" and attempt < 3:
            return Result(requeue_after=0.02)
        if key == "again" and attempt < 2:
            return Result(requeue=True)
        return Result()

    queue: WorkQueue[str] = WorkQueue(backoff_base=0.01)
    reconcile = Recorder(outcome)
    pool = WorkerPool(queue, reconcile, workers=2)
    task = asyncio.create_task(pool.run())
    queue.add("periodic")
    queue.add("again")
    await until(lambda: pool.reconciles == 5 and not pool.in_flight)
    # Nothing is running, ready or delayed: no run can follow without a new add.
    assert (queue.depth, queue.delayed, queue.processing) == (0, 0, frozenset())
    assert sorted(reconcile.calls) == ["again", "again", "periodic", "periodic", "periodic"]
    assert pool.failures == 0
    assert await stopped(pool, task)


async def test_stop_waits_for_in_flight_reconciles_within_grace() -> None:
    queue: WorkQueue[str] = WorkQueue()
    reconcile = Recorder()
    reconcile.gate.clear()
    pool = WorkerPool(queue, reconcile, workers=2)
    task = asyncio.create_task(pool.run())
    queue.add("a")
    queue.add("b")
    queue.add("c")  # waits: not started before the stop
    await until(lambda: len(pool.in_flight) == 2)
    stopping = asyncio.create_task(stopped(pool, task, grace=5.0))
    await until(lambda: queue.shutting_down)
    reconcile.gate.set()  # the reconciles in flight finish after the stop began
    assert await asyncio.wait_for(stopping, DEADLINE)
    assert sorted(reconcile.calls) == ["a", "b"] and pool.reconciles == 2


async def test_stop_cancels_what_outlives_the_grace_period() -> None:
    queue: WorkQueue[str] = WorkQueue()
    cancelled: list[str] = []

    async def stuck(key: str) -> None:
        try:
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            cancelled.append(key)
            raise

    pool = WorkerPool(queue, stuck, workers=1)
    task = asyncio.create_task(pool.run())
    queue.add("a")
    await until(lambda: pool.in_flight == {"a"})
    started = time.monotonic()
    assert not await stopped(pool, task, grace=0.05)
    assert time.monotonic() - started < 2.0
    assert cancelled == ["a"]
    assert pool.in_flight == frozenset()


async def test_run_workers_returns_when_the_queue_shuts_down() -> None:
    queue: WorkQueue[str] = WorkQueue()
    seen: list[str] = []

    async def record(key: str) -> None:
        seen.append(key)
        if key == "last":
            queue.shutdown()

    queue.add("first")
    queue.add("last")
    await asyncio.wait_for(run_workers(queue, record, workers=1), DEADLINE)
    assert seen == ["first", "last"]


def test_pool_needs_a_worker() -> None:
    async def noop(key: str) -> None:
        return None

    with pytest.raises(ValueError):
        WorkerPool(WorkQueue[str](), noop, workers=0)
