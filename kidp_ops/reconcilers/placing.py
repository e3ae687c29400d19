"""Placing a Database: select a broker, record the intent, provision, poll (act half).

The decisions are `provisioning.py`'s; the statuses `patches.py`'s. A broker that is full
(429) created nothing: the intent is dropped and the Database selected again; one that is
away is retried with backoff, and at once when it reports Ready again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kidp_ops.brokerapi.client import (
    BrokerClient,
    BrokerError,
    BrokerRejected,
    DeploymentNotFound,
)
from kidp_ops.brokerapi.models import ProvisionRequest
from kidp_ops.controller.queue import Result
from kidp_ops.history import SelectionRecord
from kidp_ops.model.resources import Database
from kidp_ops.placement import PlacementError, criteria_for
from kidp_ops.reconcilers import patches
from kidp_ops.reconcilers import provisioning as p
from kidp_ops.reconcilers.database_state import DatabaseState, NoClient, log
from kidp_ops.reconcilers.outcomes import DeploymentResult, deployment_result
from kidp_ops.selection import Candidate, SelectionCriteria, failed_filter


class PlacingSteps(DatabaseState):
    """Schedule, Provision and AwaitResult."""

    # --- scheduling -------------------------------------------------------------------

    async def _schedule(self, key: str, obj: Mapping[str, Any], now: datetime) -> Result | None:
        database = Database.from_manifest(obj)
        try:
            criteria = criteria_for(database, self.registry)
        except PlacementError as exc:
            message = f"cannot place this Database: {exc}"
            if (obj.get("status") or {}).get("message") != message:
                patch = patches.unschedulable_patch(
                    obj, reason="InvalidPlacement", message=message, now=now
                )
                await self._patch_status(obj, patch)
                await self._event(obj, "InvalidPlacement", message, warning=True)
            return None
        count = self.registry.eligible_count(criteria)  # before the reservation
        rejections = self._rejections(criteria)  # likewise: the chosen one is not full yet
        chosen = self.registry.select(criteria, now=now, reserve_for=database.metadata.uid)
        if chosen is None:
            await self._no_broker(key, obj, criteria, now)
            return None
        self._waiting.discard(key)
        broker = p.BrokerKey(chosen.broker.metadata.namespace, chosen.broker.metadata.name)
        event = p.selected_event(broker, chosen.score or 0.0, count)
        self._record_selection(key, criteria, chosen, count, now, rejections=rejections)
        obj = await self._patch_status(
            obj, patches.intent_patch(obj, broker=broker, event=event, now=now)
        )
        await self._event(obj, "Selected", event)
        self._lifecycle(obj, "scheduled", broker=broker.key, message=event)
        return await self._provision(key, obj, broker)

    def _filtered_out(self, criteria: SelectionCriteria) -> dict[str, Any]:
        """The first filter each broker fails for `criteria` (the eligible ones left out)."""
        reserved = self.registry.reserved()
        return {
            broker.key: found
            for broker in self.registry.brokers()
            if (
                found := failed_filter(broker, criteria, reserved_count=reserved.get(broker.key, 0))
            )
        }

    def _rejections(self, criteria: SelectionCriteria) -> Counter[str]:
        """How many brokers each filter rejected (for the history: why not the others)."""
        return Counter(str(found) for found in self._filtered_out(criteria).values())

    async def _no_broker(
        self, key: str, obj: Mapping[str, Any], criteria: SelectionCriteria, now: datetime
    ) -> None:
        failed = self._filtered_out(criteria)
        unprobed = p.awaiting_first_probe(
            self.registry.brokers(), criteria, failed, self.registry.reserved()
        )
        if unprobed:  # not a fault: they are probed at once, and their Ready event wakes us
            reason, message = p.AWAITING_HEALTH_CHECK, p.awaiting_probe_message(criteria, unprobed)
        else:
            candidates = self.registry.explain(criteria, now=now)
            reason, message = "NoBrokerAvailable", p.no_broker_message(criteria, candidates, failed)
        self._waiting.add(key)
        rejections = Counter(str(found) for found in failed.values())
        self._record_selection(key, criteria, None, 0, now, reason=message, rejections=rejections)
        status = obj.get("status") or {}
        if status.get("message") != message or status.get("phase") != "Pending":
            patch = patches.unschedulable_patch(obj, reason=reason, message=message, now=now)
            await self._patch_status(obj, patch)
            await self._event(obj, reason, message, warning=not unprobed)

    def _record_selection(
        self,
        key: str,
        criteria: SelectionCriteria,
        chosen: Candidate | None,
        eligible: int,
        now: datetime,
        *,
        reason: str = "",
        rejections: Mapping[str, int] | None = None,
    ) -> None:
        broker = chosen.broker.key if chosen is not None else None
        parts = chosen.parts if chosen is not None else None
        self.history.record_selection(
            SelectionRecord(
                time=now,
                request=key,
                resource_type=criteria.resource_type,
                provider=criteria.provider,
                cloud_provider=criteria.cloud_provider,
                region=criteria.region,
                broker=broker,
                score=chosen.score if chosen is not None else None,
                candidates=len(self.registry),
                eligible=eligible,
                reason=reason,
                namespace=criteria.namespace,
                parts=(parts.priority, parts.load, parts.heartbeat) if parts else None,
                rejections=dict(rejections or {}),
            )
        )
        if self.metrics is not None:
            namespace, _, name = (broker or "").partition("/")
            self.metrics.selections.labels(
                namespace, name, criteria.resource_type, criteria.provider or ""
            ).inc()

    # --- provisioning -----------------------------------------------------------------

    async def _provision(
        self, key: str, obj: Mapping[str, Any], broker: p.BrokerKey, *, resumed: bool = False
    ) -> Result | None:
        """Ask `broker` to provision (requestId = uid). `resumed`: a request made before
        (failed, timed out, or its answer lost in a crash); the broker may have finished it
        already and will not call back again, so its status is polled at once."""
        now = self.clock()
        request = ProvisionRequest.model_validate(p.provision_body(obj, self.callback_url))
        try:
            client = await self._client(broker)
            accepted = await client.provision(request)
        except (NoClient, BrokerError) as exc:
            return await self._provision_failed(key, obj, broker, exc, now)
        self._succeeded(key)
        if resumed:
            self._contact.pop(key, None)  # no contact yet: AwaitResult polls now
        else:
            self._contact[key] = self.clock()
        patch = patches.accepted_patch(
            obj,
            broker=broker,
            deployment_id=accepted.deployment_id,
            message=accepted.message,
            now=now,
        )
        obj = await self._patch_status(obj, patch)
        await self._event(
            obj,
            "ProvisioningAccepted",
            f"broker {broker} accepted: deployment {accepted.deployment_id}",
        )
        self._lifecycle(obj, "accepted", broker=broker.key, deployment_id=accepted.deployment_id)
        return Result(requeue_after=0.0 if resumed else self.poll_after)

    async def _provision_failed(
        self,
        key: str,
        obj: Mapping[str, Any],
        broker: p.BrokerKey,
        exc: NoClient | BrokerError,
        now: datetime,
    ) -> Result | None:
        status = exc.status if isinstance(exc, BrokerRejected) else None
        error = f"HTTP {exc.status}: {exc.reason}" if isinstance(exc, BrokerRejected) else str(exc)
        match p.provision_failure(status):
            case "reschedule":
                self._release(obj)
                patch = patches.rescheduled_patch(obj, broker=broker, error=error, now=now)
                await self._patch_status(obj, patch)
                await self._event(
                    obj, "BrokerAtCapacity", f"broker {broker}: {error}", warning=True
                )
                return Result(requeue=True)
            case "permanent":
                self._release(obj)
                patch = patches.provision_error_patch(
                    obj, broker=broker, error=error, permanent=True, now=now
                )
                obj = await self._patch_status(obj, patch)
                await self._event(obj, "ProvisioningRejected", error, warning=True)
                self._lifecycle(obj, "failed", broker=broker.key, message=error)
                return None
        before = (obj.get("status") or {}).get("message")
        patch = patches.provision_error_patch(
            obj, broker=broker, error=error, permanent=False, now=now
        )
        obj = await self._patch_status(obj, patch)
        if (obj.get("status") or {}).get("message") != before:  # not on every retry
            await self._event(obj, "ProvisioningRetry", error, warning=True)
        return self._failed(key, broker)

    async def _poll(
        self, key: str, obj: Mapping[str, Any], broker: p.BrokerKey, deployment_id: str
    ) -> Result | None:
        try:
            client = await self._client(broker)
            answer = await client.status(deployment_id)
        except DeploymentNotFound:
            # The broker lost it (restarted without state): ask again with the same
            # requestId, which the broker maps to the same deployment.
            log.warning("broker %s forgot deployment %s; provisioning again", broker, deployment_id)
            return await self._provision(key, obj, broker, resumed=True)
        except (NoClient, BrokerError):
            return self._failed(key, broker)
        self._succeeded(key)
        self._contact[key] = self.clock()
        result = deployment_result(
            phase=answer.phase,
            status=answer.status,
            message=answer.message,
            deployment_id=answer.deployment_id or deployment_id,
        )
        if result.phase == "Ready":
            result = await self._with_endpoint(client, obj, result, deployment_id)
        await self._apply_result(obj, result)
        return (
            None if result.phase in ("Ready", "Failed") else Result(requeue_after=self.poll_after)
        )

    async def _with_endpoint(
        self,
        client: BrokerClient,
        obj: Mapping[str, Any],
        result: DeploymentResult,
        deployment_id: str,
    ) -> DeploymentResult:
        """A polled Ready has no endpoint: the inventory may have it."""
        try:
            inventory = await client.resources(obj["metadata"]["namespace"])
        except BrokerError:
            return result
        endpoint = next(
            (r.endpoint for r in inventory.resources if r.deployment_id == deployment_id), None
        )
        return DeploymentResult("Ready", result.message, deployment_id, endpoint=endpoint)

    async def _apply_result(self, obj: Mapping[str, Any], result: DeploymentResult) -> None:
        """Write a provisioning result (from a poll) and its Event."""
        now = self.clock()
        before = (obj.get("status") or {}).get("phase")
        obj = await self._patch_status(obj, patches.result_patch(obj, result=result, now=now))
        await self._phase_event(obj, before, result)

    async def _phase_event(
        self, obj: Mapping[str, Any], before: str | None, result: DeploymentResult
    ) -> None:
        after = (obj.get("status") or {}).get("phase")
        if before == after:
            return
        if after == "Ready":
            where = result.endpoint or "an unreported endpoint"
            if result.port is not None:
                where += f":{result.port}"
            await self._event(obj, "Provisioned", f"ready at {where}")
            self._lifecycle(obj, "ready", message=f"ready at {where}")
        elif after == "Failed":
            self._release(obj)
            await self._event(obj, "ProvisioningFailed", result.message, warning=True)
            self._lifecycle(obj, "failed", message=result.message)
