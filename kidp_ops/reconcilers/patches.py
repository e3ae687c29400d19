"""Every status a Database can show, each built by one pure function (a JSON merge patch).

The reconciler and the callback endpoint write only what these return. Conditions follow
Kubernetes' rules (`conditions.set_condition`): lastTransitionTime moves only on a flip.

- `Scheduled`: BrokerSelected / NoBrokerAvailable / AwaitingHealthCheck / InvalidPlacement /
  BrokerAtCapacity;
- `Ready`: Provisioning / ProvisioningAccepted / Provisioned / ProvisioningRejected /
  ProvisioningFailed / BrokerUnreachable;
- `DeprovisionPending` (while deleting): AwaitingBroker (the broker accepted; waiting for
  it to confirm) / BrokerUnreachable / BrokerNotFound / DeprovisionRejected /
  DeprovisionFailed (with the broker's reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from kidp_ops.conditions import set_condition
from kidp_ops.reconcilers.outcomes import CallbackStamp, DeploymentResult, stamped
from kidp_ops.reconcilers.provisioning import (
    AWAITING_BROKER,
    DEPROVISION_PENDING,
    FINALIZER,
    READY,
    SCHEDULED,
    BrokerKey,
)
from kidp_ops.times import format_time

MESSAGE_LIMIT = 2000
COST_CURRENCY = "USD"  # the seed's callbacks carry a number only

Manifest = Mapping[str, Any]
Patch = dict[str, Any]


def _meta(manifest: Manifest) -> Mapping[str, Any]:
    return manifest.get("metadata") or {}


def _status(manifest: Manifest) -> Mapping[str, Any]:
    return manifest.get("status") or {}


def finalizer_patch(manifest: Manifest, *, add: bool) -> Patch:
    """Metadata merge patch with the whole list (merge patch replaces lists), guarded by
    the resourceVersion so a concurrent change is a Conflict, not a lost finalizer."""
    meta = _meta(manifest)
    current = list(meta.get("finalizers") or [])
    if add and FINALIZER not in current:
        current.append(FINALIZER)
    if not add:
        current = [f for f in current if f != FINALIZER]
    return {"metadata": {"finalizers": current, "resourceVersion": meta.get("resourceVersion")}}


def _generation(manifest: Manifest) -> int | None:
    generation = _meta(manifest).get("generation")
    return int(generation) if generation is not None else None


def clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def _status_patch(
    manifest: Manifest,
    *,
    now: datetime,
    conditions: Sequence[tuple[str, str, str, str]],
    **fields: Any,
) -> Patch:
    """A status patch: `fields` (camelCase) plus conditions as (type, status, reason, message)."""
    generation = _generation(manifest)
    current: list[Any] = list(_status(manifest).get("conditions") or [])
    for type_, state, reason, message in conditions:
        current = set_condition(
            current,
            type_=type_,
            status=state,
            reason=reason,
            message=clip(message),
            now=now,
            generation=generation,
        )
    status: dict[str, Any] = {"conditions": current, **fields}
    if generation is not None:
        status["observedGeneration"] = generation
    return {"status": status}


# --- scheduling and provisioning ---------------------------------------------------------


def unschedulable_patch(manifest: Manifest, *, reason: str, message: str, now: datetime) -> Patch:
    """No broker fits (reason NoBrokerAvailable) or the placement is unreadable
    (InvalidPlacement): phase Pending, and a Scheduled=False condition that says why."""
    return _status_patch(
        manifest,
        now=now,
        phase="Pending",
        message=clip(message),
        conditions=[
            (SCHEDULED, "False", reason, message),
            (READY, "False", "Pending", "waiting for a broker"),
        ],
    )


def intent_patch(manifest: Manifest, *, broker: BrokerKey, event: str, now: datetime) -> Patch:
    """The decision, written before the broker is called: brokerRef + phase Provisioning."""
    return _status_patch(
        manifest,
        now=now,
        phase="Provisioning",
        brokerRef={"name": broker.name, "namespace": broker.namespace},
        message=event,
        conditions=[
            (SCHEDULED, "True", "BrokerSelected", event),
            (READY, "False", "Provisioning", f"provisioning through broker {broker}"),
        ],
    )


def accepted_patch(
    manifest: Manifest, *, broker: BrokerKey, deployment_id: str, message: str, now: datetime
) -> Patch:
    text = f"broker {broker} accepted the request (deployment {deployment_id})"
    if message:
        text += f": {message}"
    return _status_patch(
        manifest,
        now=now,
        deploymentId=deployment_id,
        message=clip(text),
        conditions=[(READY, "False", "ProvisioningAccepted", text)],
    )


def rescheduled_patch(manifest: Manifest, *, broker: BrokerKey, error: str, now: datetime) -> Patch:
    """The broker refused for lack of room (429): it created nothing, so the intent is
    dropped (brokerRef removed) and the Database is selected again."""
    text = f"broker {broker} has no room ({error}); selecting again"
    return _status_patch(
        manifest,
        now=now,
        phase="Pending",
        brokerRef=None,
        message=clip(text),
        conditions=[
            (SCHEDULED, "False", "BrokerAtCapacity", text),
            (READY, "False", "Pending", "waiting for a broker"),
        ],
    )


def provision_error_patch(
    manifest: Manifest, *, broker: BrokerKey, error: str, permanent: bool, now: datetime
) -> Patch:
    """A rejected request (permanent: phase Failed) or an unreachable broker (retried)."""
    if permanent:
        text = f"broker {broker} rejected the request: {error}"
        return _failed_patch(manifest, reason="ProvisioningRejected", text=text, now=now)
    text = f"broker {broker} unreachable, retrying: {error}"
    return _status_patch(
        manifest,
        now=now,
        message=clip(text),
        conditions=[(READY, "False", "BrokerUnreachable", text)],
    )


def _failed_patch(manifest: Manifest, *, reason: str, text: str, now: datetime) -> Patch:
    return _status_patch(
        manifest,
        now=now,
        phase="Failed",
        message=clip(text),
        conditions=[(READY, "False", reason, text)],
    )


def _where(endpoint: str | None, port: int | None) -> str:
    if not endpoint:
        return ""
    return f"{endpoint}:{port}" if port is not None else endpoint


def result_patch(
    manifest: Manifest,
    *,
    result: DeploymentResult,
    now: datetime,
    stamp: CallbackStamp | None = None,
) -> Patch | None:
    """What a provisioning result makes of a Database that is not being deleted: Ready
    (endpoint, port, secret, cost, Ready=True), Failed, or a new message while it works.
    None when nothing changes, for a Database being deleted, and for a result about a
    deployment it no longer has. A callback's `stamp` is recorded (the replay guard)."""
    status = _status(manifest)
    if _meta(manifest).get("deletionTimestamp"):
        return None
    current = status.get("deploymentId")
    if result.deployment_id and current and result.deployment_id != current:
        return None
    patch = _result_fields(manifest, result, now)
    if stamp is not None:
        patch = patch or {"status": {}}
        patch["status"]["lastCallback"] = stamped(status, stamp)
    return patch


def _result_fields(manifest: Manifest, result: DeploymentResult, now: datetime) -> Patch | None:
    status = _status(manifest)
    if result.phase == "Ready":
        return _ready_patch(manifest, result, now)
    if result.phase == "Failed":
        text = f"provisioning failed: {result.message or 'no reason given'}"
        return _failed_patch(manifest, reason="ProvisioningFailed", text=text, now=now)
    if result.phase in ("Deleting", "Deleted"):
        # Not asked to deprovision: the broker lost or removed it on its own.
        text = f"the broker reports the deployment {result.phase.lower()}"
        return _failed_patch(manifest, reason="ProvisioningFailed", text=text, now=now)
    if not result.message or clip(result.message) == status.get("message"):
        return None
    return _status_patch(manifest, now=now, message=clip(result.message), conditions=[])


def _ready_patch(manifest: Manifest, result: DeploymentResult, now: datetime) -> Patch:
    fields: dict[str, Any] = {"phase": "Ready", "message": clip(result.message or "ready")}
    if result.endpoint:
        fields["endpoint"] = result.endpoint
    if result.port is not None:
        fields["port"] = result.port
    if result.connection_secret:
        namespace = _meta(manifest).get("namespace")
        fields["connectionSecretRef"] = {"name": result.connection_secret, "namespace": namespace}
    if result.monthly_cost is not None:
        fields["cost"] = {
            "estimatedMonthly": result.monthly_cost,
            "currency": COST_CURRENCY,
            "lastUpdated": format_time(result.reported_at or now),
        }
    where = _where(result.endpoint, result.port)
    text = f"provisioned: {where}" if where else "provisioned"
    return _status_patch(
        manifest, now=now, conditions=[(READY, "True", "Provisioned", text)], **fields
    )


# --- deletion ---------------------------------------------------------------------------


def deprovision_pending_patch(
    manifest: Manifest,
    *,
    reason: str,
    message: str,
    now: datetime,
    stamp: CallbackStamp | None = None,
) -> Patch:
    """Deletion waits: say why (AwaitingBroker, BrokerUnreachable, DeprovisionFailed, ...)."""
    patch = _status_patch(
        manifest,
        now=now,
        phase="Deleting",
        message=clip(message),
        conditions=[(DEPROVISION_PENDING, "True", reason, message)],
    )
    if stamp is not None:
        patch["status"]["lastCallback"] = stamped(_status(manifest), stamp)
    return patch


def awaiting_patch(
    manifest: Manifest, *, broker: BrokerKey, deployment_id: str, message: str, now: datetime
) -> Patch:
    """The broker accepted the deprovision (202): wait for it to confirm."""
    text = f"broker {broker} accepted to deprovision {deployment_id}; waiting for it to confirm"
    if message:
        text += f" ({message})"
    return deprovision_pending_patch(manifest, reason=AWAITING_BROKER, message=text, now=now)
