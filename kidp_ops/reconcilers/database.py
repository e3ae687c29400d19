"""DatabaseReconciler: carry out `provisioning.next_step` against the cluster and brokers.

Every decision is in `reconcilers/provisioning.py` (what next), `outcomes.py` (what a broker
said) and `patches.py` (what to write); the acts are mixins: `placing.py` (select,
provision, poll), `deprovisioning.py` (delete, confirmed), over `database_state.py` (the
per-key memories and writing helpers). This module ties them together: informer events,
the step dispatch, and callbacks.

One key is never worked on twice at once: the work queue guarantees it between workers,
and a per-key lock extends it to results arriving as callbacks (`apply_callback`), so a
callback never interleaves with a reconcile of the same Database and overwrites its write.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kidp_ops.cluster.base import Conflict, NotFound
from kidp_ops.controller.informer import ChangeType
from kidp_ops.controller.queue import QueueFed, Result
from kidp_ops.kinds import object_key
from kidp_ops.reconcilers import patches
from kidp_ops.reconcilers import provisioning as p
from kidp_ops.reconcilers.database_state import DEFAULT_POLL_AFTER, NoClient
from kidp_ops.reconcilers.deprovisioning import DeprovisioningSteps
from kidp_ops.reconcilers.outcomes import (
    Applied,
    CallbackStamp,
    DeploymentResult,
    is_stale,
    stamped,
)
from kidp_ops.reconcilers.placing import PlacingSteps
from kidp_ops.times import parse_time

__all__ = ["DEFAULT_POLL_AFTER", "DatabaseReconciler", "NoClient"]
CALLBACK_WRITE_ATTEMPTS = 4


class DatabaseReconciler(PlacingSteps, DeprovisioningSteps, QueueFed):
    name = "database"

    # --- events -----------------------------------------------------------------------

    def handle(self, change: ChangeType, obj: Mapping[str, Any]) -> None:
        """Database informer handler."""
        key = object_key(obj)
        if change == "DELETED":
            self._forget(key, obj)
            return
        if self.queue is not None:
            self.queue.add(key)

    def _forget(self, key: str, obj: Mapping[str, Any]) -> None:
        for memory in (self._latest, self._contact, self._failures, self._retry_at):
            memory.pop(key, None)
        self._waiting.discard(key)
        for keys in self._blocked.values():
            keys.discard(key)
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]
        self._release(obj)

    def on_broker(self, change: ChangeType, obj: Mapping[str, Any]) -> None:
        """Broker informer handler: a Ready broker retries the Databases no broker fitted
        and those waiting for this very broker to answer (provision or deprovision) at once,
        without waiting out their backoff."""
        if change == "DELETED":
            self.clients.retire(object_key(obj))
            return
        if (obj.get("status") or {}).get("phase") != "Ready" or self.queue is None:
            return
        for key in self._blocked.pop(object_key(obj), ()):
            self._retry_at.pop(key, None)
            self.queue.add(key)
        if not (obj.get("spec") or {}).get("unschedulable"):
            for key in list(self._waiting):
                self.queue.add(key)

    @property
    def waiting(self) -> frozenset[str]:
        return frozenset(self._waiting)

    # --- reconcile --------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        async with self._lock(key):
            return await self._reconcile(key)

    async def _reconcile(self, key: str) -> Result | None:
        obj = self.current(key)
        if obj is None:
            return None
        now = self.clock()
        step = p.next_step(
            obj,
            now=now,
            last_contact=self._contact.get(key),
            poll_after=self.poll_after,
            retry_at=self._retry_at.get(key),
        )
        return await self._act(key, obj, step, now)

    async def _act(
        self, key: str, obj: Mapping[str, Any], step: p.Step, now: datetime
    ) -> Result | None:
        match step:
            case p.AddFinalizer():
                await self._patch_meta(obj, patches.finalizer_patch(obj, add=True))
                created = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
                self._lifecycle(obj, "created", at=created)
            case p.Schedule():
                return await self._schedule(key, obj, now)
            case p.Provision(broker=broker):
                return await self._provision(key, obj, broker, resumed=True)
            case p.AwaitResult(broker=broker, deployment_id=deployment_id):
                return await self._poll(key, obj, broker, deployment_id)
            case p.Deprovision(broker=broker, deployment_id=deployment_id):
                return await self._deprovision(key, obj, broker, deployment_id)
            case p.AwaitRemoval(broker=broker, deployment_id=deployment_id):
                return await self._confirm_removal(key, obj, broker, deployment_id)
            case p.FindDeployment(broker=broker, request_id=request_id):
                return await self._find_deployment(key, obj, broker, request_id)
            case p.RemoveFinalizer(message=message):
                await self._finish_deletion(obj, message)
            case p.Abandon(broker=broker, deployment_id=deployment_id):
                await self._abandon(obj, broker, deployment_id)
            case p.Wait(seconds=seconds):
                return Result(requeue_after=seconds)
            case p.Idle():
                pass
        return None

    # --- callbacks --------------------------------------------------------------------

    async def apply_callback(
        self, key: str, result: DeploymentResult, stamp: CallbackStamp
    ) -> Applied:
        """Apply what a verified callback says (the callback endpoint calls this), under
        the key's lock. Refused (STALE, nothing written) when the Database already applied
        a callback signed at or after this one; the write that applies it records its
        stamp, guarded by the resourceVersion, so two replicas (or two deliveries) cannot
        both apply one callback: the loser re-reads, finds it stale, and refuses."""
        async with self._lock(key):
            obj = self.current(key)
            for _attempt in range(CALLBACK_WRITE_ATTEMPTS):
                if obj is None:
                    return Applied.GONE
                if is_stale(obj.get("status") or {}, stamp):
                    return Applied.STALE
                try:
                    await self._apply_callback(key, obj, result, stamp)
                except Conflict:
                    obj = await self._read(key)
                    continue
                except NotFound:
                    return Applied.GONE
                self._contact[key] = self.clock()
                return Applied.APPLIED
            raise Conflict(f"Database {key} kept changing while applying a callback")

    async def _apply_callback(
        self, key: str, obj: Mapping[str, Any], result: DeploymentResult, stamp: CallbackStamp
    ) -> None:
        now = self.clock()
        if not (obj.get("metadata") or {}).get("deletionTimestamp"):
            before = (obj.get("status") or {}).get("phase")
            patch = patches.result_patch(obj, result=result, now=now, stamp=stamp)
            stored = await self._patch_status(obj, patch, guarded=True)
            await self._phase_event(stored, before, result)
            return
        if result.phase == "Deleted":
            await self._finish_deletion(obj, "the broker confirmed it deleted the deployment")
            return
        if result.phase == "Failed":
            await self._deprovision_failed(key, obj, result.message, now, stamp=stamp)
            return
        # Still deleting, or news about provisioning that no longer matters: record it.
        patch = {"status": {"lastCallback": stamped(obj.get("status") or {}, stamp)}}
        await self._patch_status(obj, patch, guarded=True)
