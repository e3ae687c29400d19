"""Work queue and worker pool (client-go's workqueue and controller-runtime's workers, small).

The queue hands out keys (`namespace/name`), not objects: the worker reads the current
object from the informer cache, so many events about one object collapse into one
reconcile of its latest state.

Guarantees, as in client-go:

- a key added while it waits is queued once (de-duplication);
- a key is never handed to two workers at once: a key added while it is being processed
  is marked dirty and queued again when the worker calls `done(key)`;
- `add_after(key, delay)` queues the key later; for a key already waiting, the earlier due
  time wins (a later one is ignored);
- `add_rate_limited(key)` queues it after a per-key exponential backoff (`backoff_delay`);
  `forget(key)` resets the key's failure count (call it after a success).

Differences: `shutdown()` stops at once, it does not drain. Waiting workers get
`QueueShutDown` from `get()` (even while keys are still queued), later adds are ignored.
The keys left behind are not lost in practice: they are rebuilt from the informer's list
by whoever reconciles next (the next leader, or this process after a restart).

Time comes from an injectable monotonic clock; `get_nowait()` lets tests with a manual
clock drive delayed keys without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from kidp_ops.controller.informer import Informer

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
Clock = Callable[[], float]

BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 60.0


class QueueShutDown(Exception):
    """`get()` on a queue that was shut down: the worker should exit."""


class QueueEmpty(Exception):
    """`get_nowait()` found no key ready."""


def backoff_delay(
    failures: int, *, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS
) -> float:
    """Seconds before the next retry of a key that failed `failures` times before this one
    (0, 1, 2, ...): base * 2**failures, capped (client-go's ItemExponentialFailureRateLimiter)."""
    if failures < 0:
        raise ValueError("failures must be >= 0")
    return float(min(cap, base * 2.0 ** min(failures, 64)))


@dataclass(frozen=True, slots=True)
class Result:
    """What a reconcile asks for next. `Result()` (or returning None): done until the next
    event. `requeue_after`: run again after that many seconds (a periodic check); `requeue`:
    run again after the key's backoff, as after an error but without logging one."""

    requeue_after: float | None = None
    requeue: bool = False


class WorkQueue(Generic[K]):
    """A de-duplicating, delaying, rate-limited queue of keys for a pool of workers."""

    def __init__(
        self,
        *,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        backoff_cap: float = BACKOFF_CAP_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._clock = clock
        self._ready: deque[K] = deque()
        self._dirty: set[K] = set()  # keys needing a run: queued, or to requeue when done
        self._processing: set[K] = set()
        self._due: dict[K, float] = {}  # delayed keys -> when they become ready
        self._timers: list[tuple[float, int, K]] = []  # heap; stale entries skipped
        self._order = itertools.count()
        self._failures: dict[K, int] = {}
        self._shutting_down = False
        self._changed = asyncio.Event()

    # --- adding -----------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Queue `key` now (once, however often it is added before a worker takes it)."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._ready.append(key)
            self._notify()

    def add_after(self, key: K, delay: float) -> None:
        """Queue `key` after `delay` seconds; an earlier pending due time for it wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        due = self._clock() + delay
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._timers, (due, next(self._order), key))
        self._notify()

    def add_rate_limited(self, key: K) -> None:
        """Queue `key` after its backoff, which doubles with every call until `forget`."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        self.add_after(key, backoff_delay(failures, base=self._backoff_base, cap=self._backoff_cap))

    def forget(self, key: K) -> None:
        """Reset the backoff of `key` (it succeeded)."""
        self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        """How often `key` was rate-limited since it was last forgotten."""
        return self._failures.get(key, 0)

    # --- taking -----------------------------------------------------------------------

    def get_nowait(self) -> K:
        """The next ready key (now marked processing), or QueueEmpty / QueueShutDown."""
        if self._shutting_down:
            raise QueueShutDown
        self._promote_due()
        if not self._ready:
            raise QueueEmpty
        key = self._ready.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    async def get(self) -> K:
        """Wait for the next ready key; the caller must call `done(key)` when finished."""
        while True:
            try:
                return self.get_nowait()
            except QueueEmpty:
                pass
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._seconds_to_next_due()):
                    await changed.wait()

    def done(self, key: K) -> None:
        """The worker finished `key`; if it was added meanwhile, it is queued again."""
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._ready.append(key)
            self._notify()

    def shutdown(self) -> None:
        """Stop: waiting and later `get()` calls raise QueueShutDown, adds are ignored."""
        self._shutting_down = True
        self._notify()

    # --- metrics ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ready)

    @property
    def depth(self) -> int:
        """Keys ready and waiting for a worker (client-go's workqueue_depth)."""
        return len(self._ready)

    @property
    def delayed(self) -> int:
        """Keys waiting for their due time (requeue-after or backoff)."""
        return len(self._due)

    def due_in(self, key: K) -> float | None:
        """Seconds until a delayed `key` is due (on the queue's clock); None if not delayed."""
        due = self._due.get(key)
        return None if due is None else due - self._clock()

    @property
    def processing(self) -> frozenset[K]:
        return frozenset(self._processing)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    # --- internals --------------------------------------------------------------------

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _promote_due(self) -> None:
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:
            due, _, key = heapq.heappop(self._timers)
            if self._due.get(key) == due:
                del self._due[key]
                self.add(key)

    def _seconds_to_next_due(self) -> float | None:
        while self._timers and self._due.get(self._timers[0][2]) != self._timers[0][0]:
            heapq.heappop(self._timers)  # superseded by an earlier due time
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - self._clock())


Reconcile = Callable[[K], Awaitable[Result | None]]


class WorkerPool(Generic[K]):
    """`workers` tasks taking keys from `queue` and running `reconcile(key)`.

    A reconcile that raises is logged and retried with the key's backoff; one that
    returns is forgotten (its backoff reset) and, when it asks, requeued. `run()` lasts
    until the queue is shut down; `stop(grace=...)` shuts it down and waits for the
    reconciles in flight, cancelling those still running after the grace period.
    """

    def __init__(
        self,
        queue: WorkQueue[K],
        reconcile: Reconcile[K],
        *,
        workers: int,
        name: str = "reconcile",
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.queue = queue
        self._reconcile = reconcile
        self._workers = workers
        self.name = name
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[K] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.reconciles = 0  # finished reconciles (for metrics and tests)
        self.failures = 0

    @property
    def in_flight(self) -> frozenset[K]:
        """Keys whose reconcile is running right now."""
        return frozenset(self._in_flight)

    async def run(self) -> None:
        """Run the workers until the queue is shut down (or this task is cancelled)."""
        async with asyncio.TaskGroup() as group:
            self._tasks = [
                group.create_task(self._worker(), name=f"{self.name}-worker-{i}")
                for i in range(self._workers)
            ]

    async def stop(self, *, grace: float) -> bool:
        """Shut the queue down, let in-flight reconciles finish for up to `grace` seconds,
        then cancel the rest. True when everything finished within the grace period."""
        self.queue.shutdown()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
            return True
        log.warning(
            "%s: %d reconcile(s) still running after %.1fs, cancelling: %s",
            self.name,
            len(self._in_flight),
            grace,
            sorted(map(str, self._in_flight)),
        )
        busy = [task for task in self._tasks if not task.done()]
        for task in busy:
            task.cancel()
        if busy:
            await asyncio.wait(busy)
        return False

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            self._in_flight.add(key)
            self._idle.clear()
            try:
                await self._process(key)
            finally:
                self._in_flight.discard(key)
                if not self._in_flight:
                    self._idle.set()
                self.queue.done(key)

    async def _process(self, key: K) -> None:
        try:
            result = await self._reconcile(key)
        except Exception:
            self.reconciles += 1
            self.failures += 1
            log.exception(
                "%s %s failed (retry %d)", self.name, key, self.queue.num_requeues(key) + 1
            )
            self.queue.add_rate_limited(key)
            return
        self.reconciles += 1
        result = result or Result()
        if result.requeue:
            self.queue.add_rate_limited(key)
            return
        self.queue.forget(key)
        if result.requeue_after is not None:
            self.queue.add_after(key, result.requeue_after)


async def run_workers(queue: WorkQueue[K], reconcile: Reconcile[K], *, workers: int) -> None:
    """Run `workers` concurrent reconcilers on `queue` until it is shut down."""
    await WorkerPool(queue, reconcile, workers=workers).run()


class QueueFed:
    """What a reconciler shares: the informer it reads and the queue it feeds while this
    process leads (`attach` queues every cached key at once; `detach` stops feeding)."""

    informer: Informer
    queue: WorkQueue[str] | None = None

    def attach(self, queue: WorkQueue[str]) -> None:
        self.queue = queue
        for key in self.informer.cached_keys():
            queue.add(key)

    def detach(self) -> None:
        self.queue = None
