"""Informer: a watch-fed cache of one kind, with handlers (client-go's SharedInformer, small).

`run()` lists, then watches from the list's resourceVersion. A watch that ends (timeout, a
dropped stream) is resumed from the last resourceVersion seen; `Gone` (the version was
compacted away) triggers a relist, and the relist is folded into the cache as the
ADDED / MODIFIED / DELETED events that turn the old cache into the new one, so handlers
never see a gap and never need a timed resync. Errors back off exponentially (capped) and
are logged; the informer keeps going until it is cancelled.

Handlers are plain callables `handler(event_type, obj)` run in order on the event loop,
after the cache is updated; for DELETED, `obj` is the last state the informer saw. A
handler that raises is logged and does not stop the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from kidp_ops.cluster.base import Cluster, ClusterError, Gone, ResourceKind, WatchEvent
from kidp_ops.kinds import object_key

log = logging.getLogger("kidp_ops.informer")

Manifest = dict[str, Any]
ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
Handler = Callable[[ChangeType, Manifest], None]

WATCH_TIMEOUT_SECONDS = 300.0
BACKOFF_BASE = 0.2
BACKOFF_CAP = 30.0


def error_backoff(failures: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait after `failures` consecutive errors (1, 2, ...): base * 2^(n-1), capped."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2.0 ** min(failures - 1, 30)))


def relist_changes(
    cached: dict[str, Manifest], listed: list[Manifest]
) -> list[tuple[ChangeType, Manifest]]:
    """The events that turn `cached` into `listed` (pure): ADDED and MODIFIED in list order,
    then DELETED for what disappeared. An object whose resourceVersion did not change is
    not reported again."""
    changes: list[tuple[ChangeType, Manifest]] = []
    seen: set[str] = set()
    for obj in listed:
        key = object_key(obj)
        seen.add(key)
        old = cached.get(key)
        if old is None:
            changes.append(("ADDED", obj))
        elif _version(old) != _version(obj):
            changes.append(("MODIFIED", obj))
    changes.extend(("DELETED", obj) for key, obj in cached.items() if key not in seen)
    return changes


def _version(obj: Manifest) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class Informer:
    """The cache of one kind (optionally one namespace) kept current by list + watch."""

    def __init__(
        self,
        cluster: Cluster,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        watch_timeout: float = WATCH_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self.kind = kind
        self.namespace = namespace
        self.watch_timeout = watch_timeout
        self._clock = clock
        self._cache: dict[str, Manifest] = {}
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._resource_version = ""
        self._last_event: float | None = None
        self._last_contact: float | None = None
        self.relists = 0
        self.errors = 0
        self.last_error = ""

    # --- reading ----------------------------------------------------------------------

    def get(self, key: str) -> Manifest | None:
        return self._cache.get(key)

    def items(self) -> list[Manifest]:
        return list(self._cache.values())

    def cached_keys(self) -> list[str]:
        return list(self._cache)

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def has_synced(self) -> bool:
        """True once the first list has been delivered to the handlers."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self._synced.wait()

    def seconds_since_event(self) -> float | None:
        """Age of the last change event (not bookmarks); None before the first one."""
        return None if self._last_event is None else self._clock() - self._last_event

    def seconds_since_contact(self) -> float | None:
        """Age of the last sign of life from the watch (any event, bookmark or list):
        what a readiness check uses to call a watch stale."""
        return None if self._last_contact is None else self._clock() - self._last_contact

    # --- handlers ---------------------------------------------------------------------

    def add_handler(self, handler: Handler, *, replay: bool = True) -> None:
        """Register `handler`; with `replay`, it first gets ADDED for every cached object."""
        self._handlers.append(handler)
        if replay:
            for obj in list(self._cache.values()):
                self._call(handler, "ADDED", obj)

    def _emit(self, change: ChangeType, obj: Manifest) -> None:
        key = object_key(obj)
        if change == "DELETED":
            obj = self._cache.pop(key, obj)
        else:
            self._cache[key] = obj
        self._last_event = self._clock()
        for handler in self._handlers:
            self._call(handler, change, obj)

    @staticmethod
    def _call(handler: Handler, change: ChangeType, obj: Manifest) -> None:
        try:
            handler(change, obj)
        except Exception:
            log.exception("informer handler %r failed on %s %s", handler, change, object_key(obj))

    # --- the loop ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Informer]:
        """Run in a task owned by the block; cancelled and awaited when it exits."""
        task = asyncio.create_task(self.run(), name=f"informer-{self.kind.resource}")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """List, then watch forever (until cancelled)."""
        failures = 0
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch_once()
                failures = 0
            except Gone:
                log.info("%s watch expired; relisting", self.kind.resource)
                need_list = True
            except ClusterError as error:
                failures += 1
                self.errors += 1
                self.last_error = str(error)
                delay = error_backoff(failures)
                log.warning("%s informer: %s (retrying in %.1fs)", self.kind.resource, error, delay)
                await asyncio.sleep(delay)

    async def _relist(self) -> None:
        listed = await self.cluster.list(self.kind, namespace=self.namespace)
        if self._synced.is_set():
            self.relists += 1
        for change, obj in relist_changes(self._cache, listed.items):
            self._emit(change, obj)
        self._resource_version = listed.resource_version
        self._last_contact = self._clock()
        self._synced.set()

    async def _watch_once(self) -> None:
        events = self.cluster.watch(
            self.kind,
            resource_version=self._resource_version,
            namespace=self.namespace,
            timeout_seconds=self.watch_timeout,
        )
        try:
            async for event in events:
                self._observe(event)
        finally:
            closer = getattr(events, "aclose", None)
            if closer is not None:
                await closer()

    def _observe(self, event: WatchEvent) -> None:
        self._last_contact = self._clock()
        version = event.resource_version
        if version:
            self._resource_version = version
        if event.type != "BOOKMARK":
            self._emit(event.type, event.object)
