"""The DatabaseReconciler's shared state and its writing helpers (the act half's base).

`DatabaseState` holds what the reconciler remembers per Database key (its own last write,
the last word from the broker, failures and backoff, which broker a key waits for) and the
helpers every step uses to write: status and metadata patches, Events, broker clients,
retries. The steps are mixins over it: `placing.py` (select, provision, poll),
`deprovisioning.py` (delete through the same broker, confirmed), and `database.py` (the
reconciler: events, the step dispatch, callbacks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from kidp_ops.brokerapi.client import BrokerClient
from kidp_ops.clock import utc_now
from kidp_ops.cluster.base import DATABASES, Cluster, ClusterError, NotFound
from kidp_ops.controller.informer import Informer
from kidp_ops.controller.queue import Result, WorkQueue
from kidp_ops.history import HistorySink, LifecycleRecord, LifecycleStep, NullSink
from kidp_ops.kinds import object_key
from kidp_ops.reconcilers import provisioning as p
from kidp_ops.reconcilers.clients import BrokerClients, CredentialsError
from kidp_ops.times import format_time

if TYPE_CHECKING:
    from kidp_ops.metrics import Metrics
    from kidp_ops.registry import BrokerRegistry

log = logging.getLogger("kidp_ops.databases")
DEFAULT_POLL_AFTER = 30.0


class NoClient(Exception):
    """The broker of a Database cannot be called: it is gone, or its credentials are."""


def _version(obj: Mapping[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class DatabaseState:
    """Per-key memories and writing helpers shared by the Database reconciler's steps."""

    def __init__(
        self,
        *,
        cluster: Cluster,
        informer: Informer,
        registry: BrokerRegistry,
        clients: BrokerClients,
        callback_url: str,
        history: HistorySink | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utc_now,
        poll_after: float = DEFAULT_POLL_AFTER,
        retry_first: float = p.RETRY_FIRST,
    ) -> None:
        self.cluster = cluster
        self.informer = informer
        self.registry = registry
        self.clients = clients
        self.callback_url = callback_url
        self.history: HistorySink = history or NullSink()
        self.metrics = metrics
        self.clock = clock
        self.poll_after = poll_after
        self.retry_first = retry_first  # the first backoff after a failed broker call
        self.queue: WorkQueue[str] | None = None
        self._latest: dict[str, Mapping[str, Any]] = {}  # our own last write, per key
        self._contact: dict[str, datetime] = {}  # last word from the broker, per key
        self._failures: dict[str, int] = {}  # broker calls failed in a row, per key
        self._retry_at: dict[str, datetime] = {}  # no broker call before, per key
        self._waiting: set[str] = set()  # no broker fitted: retried on broker events
        self._blocked: dict[str, set[str]] = {}  # broker key -> keys retrying against it
        self._locks: dict[str, asyncio.Lock] = {}

    def current(self, key: str) -> Mapping[str, Any] | None:
        """The Database as last seen: the informer's copy, or our own write when newer."""
        cached = self.informer.get(key)
        if cached is None:
            return None
        ours = self._latest.get(key)
        return ours if ours is not None and _version(ours) > _version(cached) else cached

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def _read(self, key: str) -> Mapping[str, Any] | None:
        namespace, _, name = key.partition("/")
        try:
            stored = await self.cluster.get(DATABASES, name, namespace=namespace)
        except NotFound:
            return None
        self._latest[key] = stored
        return stored

    # --- writing ----------------------------------------------------------------------

    async def _patch_meta(self, obj: Mapping[str, Any], patch: dict[str, Any]) -> None:
        meta = obj["metadata"]
        try:
            stored = await self.cluster.patch(
                DATABASES, meta["name"], patch, namespace=meta["namespace"]
            )
        except NotFound:
            return
        if stored["metadata"].get("deletionTimestamp") and not stored["metadata"].get("finalizers"):
            self._latest.pop(object_key(stored), None)  # that was the last finalizer: gone
            return
        self._latest[object_key(stored)] = stored

    async def _patch_status(
        self, obj: Mapping[str, Any], patch: dict[str, Any] | None, *, guarded: bool = False
    ) -> Mapping[str, Any]:
        """Write `patch` (None: nothing). `guarded`: only onto the version `obj` is (a
        Conflict otherwise), so a decision made on `obj` is never applied to a newer one."""
        if patch is None:
            return obj
        meta = obj["metadata"]
        if guarded:
            patch = {**patch, "metadata": {"resourceVersion": meta.get("resourceVersion")}}
        stored = await self.cluster.patch_status(
            DATABASES, meta["name"], patch, namespace=meta["namespace"]
        )
        self._latest[object_key(stored)] = stored
        if self.metrics is not None:
            self.metrics.status_writes.labels("database").inc()
        return stored

    async def _event(
        self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False
    ) -> None:
        try:
            await self.cluster.create_event(
                involved=dict(obj),
                reason=reason,
                message=message,
                type="Warning" if warning else "Normal",
                now=format_time(self.clock()),
            )
        except ClusterError as exc:  # events are best effort
            log.warning("cannot record event %s on %s: %s", reason, object_key(obj), exc)

    def _lifecycle(
        self,
        obj: Mapping[str, Any],
        step: LifecycleStep,
        *,
        broker: str | None = None,
        deployment_id: str | None = None,
        message: str = "",
        at: datetime | None = None,
    ) -> None:
        """Record a step of the Database's life in the history (provision latency)."""
        status = obj.get("status") or {}
        ref = p.broker_ref(obj)
        self.history.record_lifecycle(
            LifecycleRecord(
                time=at or self.clock(),
                request=object_key(obj),
                step=step,
                broker=broker or (ref.key if ref else None),
                deployment_id=deployment_id or status.get("deploymentId"),
                message=message,
            )
        )

    def _failed(self, key: str, broker: p.BrokerKey) -> Result:
        """A broker call failed: try again after the key's backoff, or as soon as the
        broker reports Ready again."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = p.retry_delay(failures, first=self.retry_first)
        self._retry_at[key] = self.clock() + timedelta(seconds=delay)
        self._blocked.setdefault(broker.key, set()).add(key)
        return Result(requeue_after=delay)

    def _succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
        self._retry_at.pop(key, None)

    async def _client(self, broker: p.BrokerKey) -> BrokerClient:
        """The broker's client; NoClient when the broker is gone or its credentials are."""
        known = self.registry.get(broker.key)
        if known is None:
            raise NoClient(f"broker {broker} not found")
        try:
            return await self.clients.client_for(known)
        except CredentialsError as exc:
            raise NoClient(f"broker {broker}: {exc}") from None

    def _release(self, obj: Mapping[str, Any]) -> None:
        uid = (obj.get("metadata") or {}).get("uid")
        if uid:
            self.registry.release(str(uid))
