"""DatabaseReconciler: carry out `provisioning.next_step` against the cluster and brokers.

Every decision is in `reconcilers/provisioning.py`; this module does the I/O: status and
finalizer patches, Kubernetes Events, selection through the registry (with a reservation
keyed by the Database's uid), and the broker calls. Databases that no broker fits wait
with a condition and are retried when a broker becomes selectable (a broker event), not on
a timer; Databases retrying against an unreachable broker are retried with backoff and
also as soon as that broker reports Ready again.

One key is never worked on twice at once: the work queue guarantees it between workers,
and a per-key lock extends it to results arriving as callbacks (`apply_result`), so a
callback never interleaves with a reconcile of the same Database and overwrites its write.

(Over 400 lines: it is the one act half of every step in `provisioning.py`; splitting the
deletion steps out would split one lock and one set of per-key memories across classes.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kidp_ops import explaining
from kidp_ops.brokerapi.client import (
    BrokerError,
    BrokerRejected,
    DeploymentNotFound,
    DeprovisionOutcome,
)
from kidp_ops.brokerapi.models import DeprovisionRequest, ProvisionRequest
from kidp_ops.clock import utc_now
from kidp_ops.cluster.base import DATABASES, Cluster, ClusterError, NotFound
from kidp_ops.controller.informer import ChangeType, Informer
from kidp_ops.controller.queue import QueueFed, Result, WorkQueue
from kidp_ops.history import HistorySink, NullSink, SelectionRecord
from kidp_ops.kinds import object_key
from kidp_ops.model.resources import Database
from kidp_ops.placement import PlacementError, criteria_for
from kidp_ops.reconcilers import provisioning as p
from kidp_ops.reconcilers.clients import BrokerClients, CredentialsError
from kidp_ops.selection import Filter, SelectionCriteria, failed_filter
from kidp_ops.times import format_time

if TYPE_CHECKING:
    from kidp_ops.brokerapi.client import BrokerClient
    from kidp_ops.metrics import Metrics
    from kidp_ops.registry import BrokerRegistry

log = logging.getLogger("kidp_ops.databases")
REASONS_SHOWN = 5
DEFAULT_POLL_AFTER = 30.0
AT_CAPACITY = 429
RETRYABLE_REJECTIONS = frozenset({408, 409, 425})  # and every 5xx


def _version(obj: Mapping[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class DatabaseReconciler(QueueFed):
    name = "database"

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
        self.queue: WorkQueue[str] | None = None
        self._latest: dict[str, Mapping[str, Any]] = {}  # our own last write, per key
        self._contact: dict[str, datetime] = {}  # last word from the broker, per key
        self._waiting: set[str] = set()  # no broker fitted: retried on broker events
        self._blocked: dict[str, set[str]] = {}  # broker key -> keys retrying against it
        self._locks: dict[str, asyncio.Lock] = {}

    # --- events -----------------------------------------------------------------------

    def handle(self, change: ChangeType, obj: Mapping[str, Any]) -> None:
        """Database informer handler."""
        key = object_key(obj)
        if change == "DELETED":
            self._latest.pop(key, None)
            self._contact.pop(key, None)
            self._waiting.discard(key)
            for keys in self._blocked.values():
                keys.discard(key)
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                del self._locks[key]
            uid = (obj.get("metadata") or {}).get("uid")
            if uid:
                self.registry.release(str(uid))
            return
        if self.queue is not None:
            self.queue.add(key)

    def on_broker(self, change: ChangeType, obj: Mapping[str, Any]) -> None:
        """Broker informer handler: a Ready broker retries the Databases no broker fitted
        and those waiting for this very broker to answer (provision or deprovision)."""
        if change == "DELETED":
            self.clients.retire(object_key(obj))
            return
        if (obj.get("status") or {}).get("phase") != "Ready":
            return
        if self.queue is None:
            return
        for key in self._blocked.pop(object_key(obj), ()):
            self.queue.add(key)
        if not (obj.get("spec") or {}).get("unschedulable"):
            for key in list(self._waiting):
                self.queue.add(key)

    @property
    def waiting(self) -> frozenset[str]:
        return frozenset(self._waiting)

    # --- reconcile --------------------------------------------------------------------

    def current(self, key: str) -> Mapping[str, Any] | None:
        """The Database as last seen: the informer's copy, or our own write when newer."""
        cached = self.informer.get(key)
        if cached is None:
            return None
        ours = self._latest.get(key)
        return ours if ours is not None and _version(ours) > _version(cached) else cached

    _current = current  # the old name, still used by daemon.py (prefer handle_callback)

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def _block(self, key: str, broker: p.BrokerKey) -> None:
        self._blocked.setdefault(broker.key, set()).add(key)

    async def reconcile(self, key: str) -> Result | None:
        async with self._lock(key):
            return await self._reconcile(key)

    async def _reconcile(self, key: str) -> Result | None:
        obj = self.current(key)
        if obj is None:
            return None
        now = self.clock()
        step = p.next_step(
            obj, now=now, last_contact=self._contact.get(key), poll_after=self.poll_after
        )
        match step:
            case p.AddFinalizer():
                await self._patch_meta(obj, p.finalizer_patch(obj, add=True))
            case p.Schedule():
                return await self._schedule(key, obj, now)
            case p.Provision(broker=broker):
                return await self._provision(key, obj, broker, resumed=True)
            case p.AwaitResult(broker=broker, deployment_id=deployment_id, poll_in=poll_in):
                if poll_in > 0:
                    return Result(requeue_after=poll_in)
                return await self._poll(key, obj, broker, deployment_id)
            case p.Deprovision(broker=broker, deployment_id=deployment_id):
                return await self._deprovision(key, obj, broker, deployment_id)
            case p.FindDeployment(broker=broker, request_id=request_id):
                return await self._find_deployment(key, obj, broker, request_id)
            case p.RemoveFinalizer():
                await self._patch_meta(obj, p.finalizer_patch(obj, add=False))
            case p.Idle():
                pass
        return None

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
        self, obj: Mapping[str, Any], patch: dict[str, Any] | None
    ) -> Mapping[str, Any]:
        if patch is None:
            return obj
        meta = obj["metadata"]
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

    # --- steps ------------------------------------------------------------------------

    async def _schedule(self, key: str, obj: Mapping[str, Any], now: datetime) -> Result | None:
        database = Database.from_manifest(obj)
        try:
            criteria = criteria_for(database, self.registry)
        except PlacementError as exc:
            message = f"cannot place this Database: {exc}"
            if (obj.get("status") or {}).get("message") != message:
                patch = p.unschedulable_patch(
                    obj, reason="InvalidPlacement", message=message, now=now
                )
                await self._patch_status(obj, patch)
                await self._event(obj, "InvalidPlacement", message, warning=True)
            return None
        count = self.registry.eligible_count(criteria)  # before the reservation
        chosen = self.registry.select(criteria, now=now, reserve_for=database.metadata.uid)
        if chosen is None:
            await self._no_broker(key, obj, criteria, now)
            return None
        self._waiting.discard(key)
        broker = p.BrokerKey(chosen.broker.metadata.namespace, chosen.broker.metadata.name)
        of = f" of {count} candidates"
        event = f"Selected broker {broker} (score {chosen.score:.1f}{of})"
        self._record_selection(key, criteria, chosen.broker.key, chosen.score, now)
        obj = await self._patch_status(
            obj, p.intent_patch(obj, broker=broker, event=event, now=now)
        )
        await self._event(obj, "Selected", event)
        return await self._provision(key, obj, broker)

    async def _no_broker(
        self, key: str, obj: Mapping[str, Any], criteria: SelectionCriteria, now: datetime
    ) -> None:
        candidates = self.registry.explain(criteria, now=now)
        reserved = self.registry.reserved()
        closest = sorted(
            candidates,
            key=lambda c: (
                -list(Filter).index(
                    failed_filter(c.broker, criteria, reserved_count=reserved.get(c.broker.key, 0))
                    or Filter.CAPACITY
                )
            ),
        )
        reasons = [f"{c.broker.key}: {c.rejected}" for c in closest[:REASONS_SHOWN]]
        more = len(candidates) - len(reasons)
        asked = explaining.describe_criteria(criteria)
        if not candidates:
            message = f"no broker matches {asked}: no brokers registered"
        else:
            message = f"no broker matches {asked}: " + "; ".join(reasons)
            if more > 0:
                message += f"; and {more} more"
        self._waiting.add(key)
        self._record_selection(key, criteria, None, None, now, reason=message)
        status = obj.get("status") or {}
        if status.get("message") != message or status.get("phase") != "Pending":
            await self._patch_status(
                obj,
                p.unschedulable_patch(obj, reason="NoBrokerAvailable", message=message, now=now),
            )
            await self._event(obj, "NoBrokerAvailable", message, warning=True)

    def _record_selection(
        self,
        key: str,
        criteria: SelectionCriteria,
        broker: str | None,
        score: float | None,
        now: datetime,
        *,
        reason: str = "",
    ) -> None:
        self.history.record_selection(
            SelectionRecord(
                time=now,
                request=key,
                resource_type=criteria.resource_type,
                provider=criteria.provider,
                cloud_provider=criteria.cloud_provider,
                region=criteria.region,
                broker=broker,
                score=score,
                candidates=len(self.registry),
                eligible=0 if broker is None else 1,
                reason=reason,
            )
        )
        if self.metrics is not None:
            namespace, _, name = (broker or "").partition("/")
            self.metrics.selections.labels(
                namespace, name, criteria.resource_type, criteria.provider or ""
            ).inc()

    async def _client(self, obj: Mapping[str, Any], broker: p.BrokerKey) -> BrokerClient | str:
        """The broker's client, or why there is none (gone, credentials)."""
        known = self.registry.get(broker.key)
        if known is None:
            return f"broker {broker} not found"
        try:
            return await self.clients.client_for(known)
        except CredentialsError as exc:
            return f"broker {broker}: {exc}"

    async def _provision(
        self, key: str, obj: Mapping[str, Any], broker: p.BrokerKey, *, resumed: bool = False
    ) -> Result | None:
        """Ask `broker` to provision (requestId = uid). `resumed`: a request made before
        (failed, timed out, or its answer lost in a crash); the broker may have finished it
        already and will not call back again, so its status is polled at once."""
        now = self.clock()
        client = await self._client(obj, broker)
        if isinstance(client, str):
            self._block(key, broker)
            await self._patch_status(
                obj,
                p.provision_error_patch(obj, broker=broker, error=client, permanent=False, now=now),
            )
            return Result(requeue=True)
        request = ProvisionRequest.model_validate(provision_body(obj, self.callback_url))
        try:
            accepted = await client.provision(request)
        except BrokerRejected as exc:
            if exc.status == AT_CAPACITY:
                return await self._reschedule(obj, broker, exc, now)
            permanent = exc.status not in RETRYABLE_REJECTIONS and exc.status < 500
            error = f"HTTP {exc.status}: {exc.reason}"
            if permanent:
                self._release(obj)
            else:
                self._block(key, broker)
            before = (obj.get("status") or {}).get("message")
            obj = await self._patch_status(
                obj,
                p.provision_error_patch(
                    obj, broker=broker, error=error, permanent=permanent, now=now
                ),
            )
            if (obj.get("status") or {}).get("message") != before:  # not on every retry
                reason = "ProvisioningRejected" if permanent else "ProvisioningRetry"
                await self._event(obj, reason, error, warning=True)
            return None if permanent else Result(requeue=True)
        except BrokerError as exc:
            self._block(key, broker)
            await self._patch_status(
                obj,
                p.provision_error_patch(
                    obj, broker=broker, error=str(exc), permanent=False, now=now
                ),
            )
            return Result(requeue=True)
        if resumed:
            self._contact.pop(key, None)  # no contact yet: AwaitResult polls now
        else:
            self._contact[key] = self.clock()
        obj = await self._patch_status(
            obj,
            p.accepted_patch(
                obj,
                broker=broker,
                deployment_id=accepted.deployment_id,
                message=accepted.message,
                now=now,
            ),
        )
        await self._event(
            obj,
            "ProvisioningAccepted",
            f"broker {broker} accepted: deployment {accepted.deployment_id}",
        )
        return Result(requeue_after=0.0 if resumed else self.poll_after)

    async def _reschedule(
        self, obj: Mapping[str, Any], broker: p.BrokerKey, exc: BrokerRejected, now: datetime
    ) -> Result:
        """429: the broker created nothing (a known requestId is answered 202 whatever the
        load), so drop the intent and select again after the backoff."""
        self._release(obj)
        error = f"HTTP {exc.status}: {exc.reason}"
        await self._patch_status(obj, p.rescheduled_patch(obj, broker=broker, error=error, now=now))
        await self._event(obj, "BrokerAtCapacity", f"broker {broker}: {error}", warning=True)
        return Result(requeue=True)

    def _release(self, obj: Mapping[str, Any]) -> None:
        uid = (obj.get("metadata") or {}).get("uid")
        if uid:
            self.registry.release(str(uid))

    async def _poll(
        self, key: str, obj: Mapping[str, Any], broker: p.BrokerKey, deployment_id: str
    ) -> Result | None:
        client = await self._client(obj, broker)
        if isinstance(client, str):
            self._block(key, broker)
            return Result(requeue=True)
        try:
            status = await client.status(deployment_id)
        except DeploymentNotFound:
            # The broker lost it (restarted without state): ask again with the same
            # requestId, which the broker maps to the same deployment.
            log.warning("broker %s forgot deployment %s; provisioning again", broker, deployment_id)
            return await self._provision(key, obj, broker, resumed=True)
        except BrokerError:
            self._block(key, broker)
            return Result(requeue=True)
        self._contact[key] = self.clock()
        result = await self._result_from_poll(
            client, obj, status.phase, status.message, deployment_id
        )
        await self._apply_result(obj, result)
        return None if result.phase != "Provisioning" else Result(requeue_after=self.poll_after)

    async def _result_from_poll(
        self,
        client: BrokerClient,
        obj: Mapping[str, Any],
        phase: str,
        message: str,
        deployment_id: str,
    ) -> p.DeploymentResult:
        if phase == "Ready":
            endpoint = None
            try:
                inventory = await client.resources(obj["metadata"]["namespace"])
                endpoint = next(
                    (r.endpoint for r in inventory.resources if r.deployment_id == deployment_id),
                    None,
                )
            except BrokerError:
                pass
            return p.DeploymentResult("Ready", message, endpoint, deployment_id=deployment_id)
        if phase == "Failed":
            return p.DeploymentResult("Failed", message, deployment_id=deployment_id)
        if phase in ("Deprovisioning", "Deprovisioned"):
            text = f"the broker reports deployment {deployment_id} {phase.lower()}"
            return p.DeploymentResult("Failed", text, deployment_id=deployment_id)
        return p.DeploymentResult("Provisioning", message, deployment_id=deployment_id)

    async def apply_result(self, obj: Mapping[str, Any], result: p.DeploymentResult | None) -> None:
        """Write what a callback said (the callback endpoint calls this): under the key's
        lock, on the Database as last seen, so it never interleaves with a reconcile."""
        if result is None:
            return
        key = object_key(obj)
        async with self._lock(key):
            current = self.current(key)
            if current is not None:
                await self._apply_result(current, result)

    async def _apply_result(self, obj: Mapping[str, Any], result: p.DeploymentResult) -> None:
        now = self.clock()
        self._contact[object_key(obj)] = now
        before = (obj.get("status") or {}).get("phase")
        obj = await self._patch_status(obj, p.result_patch(obj, result=result, now=now))
        after = (obj.get("status") or {}).get("phase")
        if before == after:
            return
        if after == "Ready":
            where = result.endpoint or "an unreported endpoint"
            if result.port is not None:
                where += f":{result.port}"
            await self._event(obj, "Provisioned", f"ready at {where}")
        elif after == "Failed":
            self._release(obj)
            await self._event(obj, "ProvisioningFailed", result.message, warning=True)

    async def _deprovision(
        self, key: str, obj: Mapping[str, Any], broker: p.BrokerKey, deployment_id: str
    ) -> Result | None:
        now = self.clock()
        client = await self._client(obj, broker)
        if isinstance(client, str):
            return await self._deprovision_pending(key, obj, broker, "BrokerNotFound", client, now)
        meta = obj["metadata"]
        request = DeprovisionRequest(
            deployment_id=deployment_id,
            resource_type="Database",
            resource_name=meta["name"],
            namespace=meta["namespace"],
            callback_url=self.callback_url,
        )
        try:
            outcome = await client.deprovision(request)
        except BrokerError as exc:
            return await self._broker_failed(key, obj, broker, exc, now)
        gone = "already gone" if outcome is DeprovisionOutcome.ALREADY_GONE else "accepted"
        await self._event(
            obj, "Deprovisioned", f"broker {broker}: deployment {deployment_id} {gone}"
        )
        await self._patch_meta(obj, p.finalizer_patch(obj, add=False))
        return None

    async def _broker_failed(
        self,
        key: str,
        obj: Mapping[str, Any],
        broker: p.BrokerKey,
        exc: BrokerError,
        now: datetime,
    ) -> Result:
        reason = "DeprovisionRejected" if isinstance(exc, BrokerRejected) else "BrokerUnreachable"
        message = f"broker {broker}: {exc}"
        return await self._deprovision_pending(key, obj, broker, reason, message, now)

    async def _deprovision_pending(
        self,
        key: str,
        obj: Mapping[str, Any],
        broker: p.BrokerKey,
        reason: str,
        message: str,
        now: datetime,
    ) -> Result:
        self._block(key, broker)
        text = f"waiting to deprovision: {message}"
        status = obj.get("status") or {}
        if status.get("message") != text:
            await self._patch_status(
                obj, p.deprovision_pending_patch(obj, reason=reason, message=text, now=now)
            )
            await self._event(obj, "DeprovisionPending", text, warning=True)
        return Result(requeue=True)

    async def _find_deployment(
        self, key: str, obj: Mapping[str, Any], broker: p.BrokerKey, request_id: str
    ) -> Result | None:
        now = self.clock()
        client = await self._client(obj, broker)
        if isinstance(client, str):
            return await self._deprovision_pending(key, obj, broker, "BrokerNotFound", client, now)
        try:
            inventory = await client.resources(obj["metadata"]["namespace"])
        except BrokerError as exc:
            return await self._broker_failed(key, obj, broker, exc, now)
        found = next((r for r in inventory.resources if r.request_id == request_id), None)
        if found is None:
            await self._event(obj, "Deprovisioned", f"broker {broker} holds nothing for it")
            await self._patch_meta(obj, p.finalizer_patch(obj, add=False))
            return None
        return await self._deprovision(key, obj, broker, found.deployment_id)


def provision_body(obj: Mapping[str, Any], callback_url: str) -> dict[str, Any]:
    """The `/v1/provision` request for a Database manifest (requestId = metadata.uid)."""
    meta, spec = obj["metadata"], dict(obj.get("spec") or {})
    owner = spec.pop("owner", None)
    body: dict[str, Any] = {
        "resourceType": "Database",
        "resourceName": meta["name"],
        "namespace": meta["namespace"],
        "team": (owner or {}).get("name", "") if (owner or {}).get("kind") == "Team" else "",
        "callbackUrl": callback_url,
        "spec": spec,
        "requestId": meta["uid"],
    }
    if owner:
        body["owner"] = {
            "kind": owner.get("kind", ""),
            "name": owner.get("name", ""),
            "namespace": owner.get("namespace") or "",
        }
    return body
