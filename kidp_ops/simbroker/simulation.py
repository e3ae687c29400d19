"""The reference broker's in-memory world: deployments, counters, knobs, background work.

Request handlers call the synchronous methods (`provision`, `deprovision`, ...). They
never await between reading and writing the state, so on one event loop each call is
atomic: two identical provision requests arriving together still create one deployment.

The deploymentId is derived from (broker name, idempotency key), so the same request
always yields the same deploymentId, even across restarts of the broker. The key is the
request's requestId (kidp-ops sends the object's UID), or namespace/resourceType/name for
a manager that sends none (the seed's). A request whose deployment was deprovisioned (and
is gone) provisions anew under the same id.

Phases are the seed system's: Provisioning, Ready, Failed, then Deleting and Deleted.

Background work (the provisioning/deprovisioning timers and callback deliveries) runs
in tasks this object owns; `close()` cancels and awaits them all.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kidp_ops.brokerapi.models import (
    DELETED,
    DELETING,
    FAILED,
    PROVISIONING,
    READY,
    CallbackPayload,
    CallbackStatus,
    DeploymentStatus,
    DeprovisionRequest,
    HealthResponse,
    ProvisionRequest,
    ResourceItem,
    ResourceList,
    ResourceQuery,
)
from kidp_ops.clock import utc_now
from kidp_ops.simbroker.callbacks import CallbackSender
from kidp_ops.simbroker.knobs import Knobs
from kidp_ops.times import go_duration

log = logging.getLogger(__name__)

ACTIVE_PHASES = (PROVISIONING, READY)
#: What a deployment costs a month, by size (the broker reports it in callbacks).
MONTHLY_COST = {"small": 25.0, "medium": 60.0, "large": 150.0, "xlarge": 400.0}
DEFAULT_PORTS = {
    "postgresql": 5432,
    "mysql": 3306,
    "mongodb": 27017,
    "redis": 6379,
    "sqlserver": 1433,
}


class AtCapacity(Exception):
    """Provisioning refused: `capacity` deployments are already active."""


class UnknownDeployment(Exception):
    """No deployment with that id (never provisioned, or deprovisioned and gone)."""


def deployment_id_for(broker_name: str, key: str) -> str:
    """The deployment of idempotency `key` on this broker: the same key, the same id."""
    digest = hashlib.sha256(f"{broker_name}\0{key}".encode()).hexdigest()
    return f"dep-{digest[:20]}"


@dataclass(slots=True)
class Deployment:
    deployment_id: str
    request_id: str
    resource_type: str
    resource_name: str
    namespace: str
    spec: dict[str, Any]
    callback_url: str | None
    phase: str
    message: str
    last_updated: datetime
    endpoint: str | None = None
    port: int | None = None
    connection_secret: str | None = None
    error: str | None = None
    timer: asyncio.Task[None] | None = field(default=None, repr=False)

    def status(self) -> DeploymentStatus:
        return DeploymentStatus(
            deployment_id=self.deployment_id,
            phase=self.phase,
            message=self.message,
            last_updated=self.last_updated,
        )

    def item(self) -> ResourceItem:
        return ResourceItem(
            deployment_id=self.deployment_id,
            request_id=self.request_id,
            resource_type=self.resource_type,
            resource_name=self.resource_name,
            namespace=self.namespace,
            phase=self.phase,
            endpoint=self.endpoint,
        )


def _matches(deployment: Deployment, query: ResourceQuery) -> bool:
    return (
        query.namespace in ("", deployment.namespace)
        and query.resource_type.lower() in ("", deployment.resource_type.lower())
        and query.resource_name in ("", deployment.resource_name)
        and query.deployment_id in ("", deployment.deployment_id)
    )


class Simulation:
    """One broker's state. Create it on the loop that serves it."""

    def __init__(
        self,
        *,
        name: str,
        knobs: Knobs | None = None,
        seed: int | None = None,
        sender: CallbackSender | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.name = name
        self.clock = clock
        self.now = now
        self.sender = sender
        self.stopping = asyncio.Event()
        self.started = clock()
        self.total = 0
        self.failed = 0
        self.hanging = 0  # /health requests held by the hang mode right now
        self._knobs = knobs or Knobs()
        self._knobs_since = self.started  # when the health mode was last set (for flap)
        self._rng = random.Random(seed)
        self._deployments: dict[str, Deployment] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # --- knobs and health ---------------------------------------------------------------

    @property
    def knobs(self) -> Knobs:
        return self._knobs

    def update_knobs(self, **changes: Any) -> Knobs:
        """Validate and apply knob changes (ValueError when one is bad: nothing changes)."""
        updated = self._knobs.changed(**changes)
        if "health_mode" in changes:
            self._knobs_since = self.clock()
        self._knobs = updated
        return updated

    def health_mode_now(self) -> str:
        """The simple health mode in force now (flap resolved on this server's clock)."""
        return self._knobs.health_mode.at(self.clock() - self._knobs_since)

    @property
    def active(self) -> int:
        return sum(d.phase in ACTIVE_PHASES for d in self._deployments.values())

    def health(self, status: str = "healthy") -> HealthResponse:
        uptime = self.clock() - self.started
        return HealthResponse(
            status=status,
            version=self._knobs.version,
            time=self.now().replace(microsecond=0),
            uptime=go_duration(uptime),
            uptime_seconds=round(uptime, 3),
            active_deployments=self.active,
            total_deployments=self.total,
            failed_deployments=self.failed,
        )

    # --- the contract ---------------------------------------------------------------------

    def provision(self, request: ProvisionRequest) -> tuple[Deployment, bool]:
        """(deployment, True when newly created). Raises AtCapacity."""
        deployment_id = deployment_id_for(self.name, request.idempotency_key())
        existing = self._deployments.get(deployment_id)
        if existing is not None:
            return existing, False
        capacity = self._knobs.capacity
        if capacity and self.active >= capacity:
            raise AtCapacity(f"at capacity: {self.active} of {capacity} deployments active")
        deployment = Deployment(
            deployment_id=deployment_id,
            request_id=request.request_id or "",
            resource_type=request.resource_type,
            resource_name=request.resource_name,
            namespace=request.namespace,
            spec=dict(request.spec),
            callback_url=request.callback_url,
            phase=PROVISIONING,
            message="provisioning",
            last_updated=self.now(),
        )
        self._deployments[deployment_id] = deployment
        self.total += 1
        fails = self._rng.random() < self._knobs.failure_rate
        deployment.timer = self._spawn(self._provisioning(deployment, self._knobs.delay, fails))
        return deployment, True

    def deprovision(self, request: DeprovisionRequest) -> Deployment:
        """Start removing a deployment (again: no-op). Raises UnknownDeployment."""
        deployment = self.get(request.deployment_id)
        if deployment.phase == DELETING:
            return deployment
        if deployment.timer is not None:
            deployment.timer.cancel()
        if request.callback_url:
            deployment.callback_url = request.callback_url
        self._set(deployment, DELETING, "deprovisioning")
        fails = self._rng.random() < self._knobs.deprovision_failure_rate
        deployment.timer = self._spawn(self._deprovisioning(deployment, self._knobs.delay, fails))
        return deployment

    def get(self, deployment_id: str) -> Deployment:
        try:
            return self._deployments[deployment_id]
        except KeyError:
            raise UnknownDeployment(f"deployment {deployment_id!r} not found") from None

    def inventory(self, query: ResourceQuery | None = None) -> ResourceList:
        """The deployments this broker holds, narrowed by the query's non-empty fields."""
        query = query or ResourceQuery()
        items = sorted(
            (d for d in self._deployments.values() if _matches(d, query)),
            key=lambda d: (d.namespace, d.resource_name, d.deployment_id),
        )
        return ResourceList(
            resources=[d.item() for d in items],
            total=len(items),
            namespace=query.namespace or None,
        )

    # --- background work ------------------------------------------------------------------

    async def _provisioning(self, deployment: Deployment, delay: float, fails: bool) -> None:
        await asyncio.sleep(delay)
        deployment.timer = None
        if fails:
            self.failed += 1
            deployment.error = "simulated failure (failure rate knob)"
            self._set(deployment, FAILED, "provisioning failed: " + deployment.error)
        else:
            deployment.endpoint = self._endpoint(deployment)
            deployment.port = self._port(deployment)
            deployment.connection_secret = f"{deployment.resource_name}-connection"
            self._set(deployment, READY, "provisioned")
        self._notify(deployment, "failed" if fails else "success", operation="provision")

    async def _deprovisioning(self, deployment: Deployment, delay: float, fails: bool) -> None:
        await asyncio.sleep(delay)
        deployment.timer = None
        if fails:  # it stays: a later deprovision may succeed
            deployment.error = "simulated failure (deprovision failure rate knob)"
            self._set(deployment, FAILED, "deprovisioning failed: " + deployment.error)
            self._notify(deployment, "failed", operation="deprovision")
            return
        self._deployments.pop(deployment.deployment_id, None)
        deployment.endpoint = deployment.port = deployment.connection_secret = None
        deployment.error = None
        self._set(deployment, DELETED, "deprovisioned")
        self._notify(deployment, "success", operation="deprovision")

    def _set(self, deployment: Deployment, phase: str, message: str) -> None:
        deployment.phase = phase
        deployment.message = message
        deployment.last_updated = self.now()

    def _endpoint(self, deployment: Deployment) -> str:
        short = self.name.rpartition("/")[2]
        return f"{deployment.resource_name}.{deployment.namespace}.{short}.sim.kidp.internal"

    @staticmethod
    def _cost(deployment: Deployment) -> float:
        return MONTHLY_COST.get(str(deployment.spec.get("size") or "small"), 25.0)

    @staticmethod
    def _port(deployment: Deployment) -> int:
        engine = str(deployment.spec.get("provider") or deployment.spec.get("engine") or "")
        return DEFAULT_PORTS.get(engine.lower(), 443)

    def _notify(self, deployment: Deployment, status: CallbackStatus, *, operation: str) -> None:
        if self.sender is None or not deployment.callback_url:
            return
        payload = CallbackPayload(
            deployment_id=deployment.deployment_id,
            resource_type=deployment.resource_type,
            resource_name=deployment.resource_name,
            namespace=deployment.namespace,
            status=status,
            phase=deployment.phase,
            message=deployment.message,
            error=deployment.error or "",
            time=self.now(),
            endpoint=deployment.endpoint or "",
            port=deployment.port or 0,
            connection_secret=deployment.connection_secret or "",
            details={"operation": operation, "requestId": deployment.request_id},
            estimated_monthly_cost=self._cost(deployment) if deployment.phase == READY else 0.0,
        )
        self._spawn(self.sender.deliver(deployment.callback_url, payload))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        if self._closed:
            work.close()
            return None
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulation task failed", exc_info=task.exception())

    async def close(self) -> None:
        """Stop: cancel and await every timer and callback, close the callback client."""
        self.stopping.set()
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.sender is not None:
            await self.sender.aclose()
