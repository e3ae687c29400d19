"""Deleting a Database through the broker that holds it, confirmed (act half).

After a 202 the Database stays (phase Deleting, condition DeprovisionPending reason
AwaitingBroker) until the broker confirms: a deprovisioned callback, a status poll saying
so (or 404), or its inventory no longer listing the deployment (the fallback for brokers
that report no phase, like the seed's). A failed deprovision keeps the finalizer, says why
and is retried with backoff; only the abandon annotation lets go without the broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kidp_ops.brokerapi.client import (
    BrokerClient,
    BrokerError,
    BrokerRejected,
    DeploymentNotFound,
    DeprovisionOutcome,
)
from kidp_ops.brokerapi.models import DeprovisionRequest
from kidp_ops.controller.queue import Result
from kidp_ops.reconcilers import patches
from kidp_ops.reconcilers import provisioning as p
from kidp_ops.reconcilers.database_state import DatabaseState, NoClient
from kidp_ops.reconcilers.outcomes import CallbackStamp, deployment_result


class DeprovisioningSteps(DatabaseState):
    """Deprovision, AwaitRemoval, FindDeployment, RemoveFinalizer and Abandon."""

    async def _deprovision(
        self, key: str, obj: Mapping[str, Any], broker: p.BrokerKey, deployment_id: str
    ) -> Result | None:
        now = self.clock()
        body = p.deprovision_body(obj, deployment_id, self.callback_url)
        try:
            client = await self._client(broker)
            outcome = await client.deprovision(DeprovisionRequest.model_validate(body))
        except NoClient as exc:
            return await self._deletion_waits(key, obj, broker, "BrokerNotFound", str(exc), now)
        except BrokerError as exc:
            reason = (
                "DeprovisionRejected" if isinstance(exc, BrokerRejected) else "BrokerUnreachable"
            )
            message = f"broker {broker}: {exc}"
            return await self._deletion_waits(key, obj, broker, reason, message, now)
        self._succeeded(key)
        if outcome is DeprovisionOutcome.ALREADY_GONE:
            await self._finish_deletion(obj, f"broker {broker} does not know {deployment_id}")
            return None
        self._contact[key] = self.clock()
        patch = patches.awaiting_patch(
            obj, broker=broker, deployment_id=deployment_id, message="", now=now
        )
        obj = await self._patch_status(obj, patch)
        self._lifecycle(obj, "deleting", broker=broker.key, deployment_id=deployment_id)
        await self._event(
            obj,
            "DeprovisionAccepted",
            f"broker {broker} accepted to deprovision {deployment_id}; waiting for it to confirm",
        )
        return Result(requeue_after=self.poll_after)

    async def _deletion_waits(
        self,
        key: str,
        obj: Mapping[str, Any],
        broker: p.BrokerKey,
        reason: str,
        message: str,
        now: datetime,
    ) -> Result:
        """A deprovision that failed: keep the finalizer, say why, retry with backoff."""
        text = (
            f'waiting to deprovision: {message} (to let it go anyway, annotate {p.ABANDON}="true")'
        )
        if (obj.get("status") or {}).get("message") != patches.clip(text):
            patch = patches.deprovision_pending_patch(obj, reason=reason, message=text, now=now)
            obj = await self._patch_status(obj, patch)
            await self._event(obj, "DeprovisionPending", text, warning=True)
        return self._failed(key, broker)

    async def _confirm_removal(
        self, key: str, obj: Mapping[str, Any], broker: p.BrokerKey, deployment_id: str
    ) -> Result | None:
        """Ask the broker whether the deployment is gone: its status, or (when it reports
        no phase) its inventory."""
        now = self.clock()
        try:
            client = await self._client(broker)
            state, message = await self._removal(client, obj, deployment_id)
        except NoClient as exc:
            return await self._deletion_waits(key, obj, broker, "BrokerNotFound", str(exc), now)
        except BrokerError:
            return self._failed(key, broker)
        self._succeeded(key)
        self._contact[key] = self.clock()
        if state == "gone":
            await self._finish_deletion(obj, message)
            return None
        if state == "failed":
            return await self._deprovision_failed(key, obj, message, now)
        return Result(requeue_after=self.poll_after)

    async def _deprovision_failed(
        self,
        key: str,
        obj: Mapping[str, Any],
        message: str,
        now: datetime,
        *,
        stamp: CallbackStamp | None = None,
    ) -> Result | None:
        """The broker says the deprovision failed (a status poll, or a callback with its
        `stamp`, written guarded): DeprovisionFailed, a Warning, retried after the backoff
        (the write wakes the Wait)."""
        text = f"the broker failed to deprovision: {message}"
        patch = patches.deprovision_pending_patch(
            obj, reason="DeprovisionFailed", message=text, now=now, stamp=stamp
        )
        stored = await self._patch_status(obj, patch, guarded=stamp is not None)
        await self._event(stored, "DeprovisionFailed", text, warning=True)
        broker = p.broker_ref(obj)
        return self._failed(key, broker) if broker is not None else None

    async def _removal(
        self, client: BrokerClient, obj: Mapping[str, Any], deployment_id: str
    ) -> tuple[str, str]:
        """("gone" | "failed" | "working", why), from the broker's status answer, else (when
        it reports no phase, like the seed's) from its inventory."""
        try:
            answer = await client.status(deployment_id)
        except DeploymentNotFound:
            return "gone", f"the broker answers 404 for deployment {deployment_id}"
        result = deployment_result(phase=answer.phase, status=answer.status, message=answer.message)
        if result.phase == "Deleted":
            return "gone", f"the broker reports deployment {deployment_id} deleted"
        if result.phase == "Failed":
            return "failed", result.message
        if result.phase != "NoPhase":
            return "working", result.message
        meta = obj["metadata"]
        inventory = await client.resources(meta["namespace"])
        listed = any(
            item.deployment_id == deployment_id
            or item.is_for(
                request_id=str(meta.get("uid", "")),
                namespace=meta["namespace"],
                resource_type=p.WIRE_RESOURCE_TYPE,
                name=meta["name"],
            )
            for item in inventory.resources
        )
        if listed:
            return "working", "the broker still lists the deployment"
        return "gone", f"the broker's inventory no longer lists deployment {deployment_id}"

    async def _find_deployment(
        self, key: str, obj: Mapping[str, Any], broker: p.BrokerKey, request_id: str
    ) -> Result | None:
        now = self.clock()
        meta = obj["metadata"]
        try:
            client = await self._client(broker)
            inventory = await client.resources(meta["namespace"])
        except NoClient as exc:
            return await self._deletion_waits(key, obj, broker, "BrokerNotFound", str(exc), now)
        except BrokerError as exc:
            return await self._deletion_waits(
                key, obj, broker, "BrokerUnreachable", f"broker {broker}: {exc}", now
            )
        found = next(
            (
                item
                for item in inventory.resources
                if item.is_for(
                    request_id=request_id,
                    namespace=meta["namespace"],
                    resource_type=p.WIRE_RESOURCE_TYPE,
                    name=meta["name"],
                )
            ),
            None,
        )
        if found is None:
            await self._finish_deletion(obj, f"broker {broker} holds nothing for it")
            return None
        return await self._deprovision(key, obj, broker, found.deployment_id)

    async def _finish_deletion(self, obj: Mapping[str, Any], message: str) -> None:
        """The deployment is confirmed gone (or never existed): the Database may go."""
        await self._event(obj, "Deprovisioned", message)
        await self._patch_meta(obj, patches.finalizer_patch(obj, add=False))
        self._lifecycle(obj, "deleted", message=message)

    async def _abandon(
        self, obj: Mapping[str, Any], broker: p.BrokerKey | None, deployment_id: str | None
    ) -> None:
        left = (
            f"deployment {deployment_id} on broker {broker}"
            if broker and deployment_id
            else f"whatever broker {broker} created for it"
            if broker
            else "nothing (no broker was asked)"
        )
        await self._event(
            obj,
            "Abandoned",
            f"deleted without the broker's confirmation ({p.ABANDON}); left behind: {left}",
            warning=True,
        )
        await self._patch_meta(obj, patches.finalizer_patch(obj, add=False))
        self._lifecycle(
            obj, "abandoned", broker=broker.key if broker else None, deployment_id=deployment_id
        )
