"""The Database reconciler's decisions, pure: what to do next and which status to write.

`next_step(manifest, ...)` reads a Database (as stored) and returns one Step; the reconciler
(`reconcilers/database.py`) carries it out and calls back into the patch builders here, so
every status a Database can show is written by one function with a test.

The order is the design's (ARCHITECTURE.md §7): finalizer first; then select and record the
intent (`brokerRef`, phase Provisioning) *before* calling the broker; then provision with
requestId = metadata.uid (idempotent at the broker), store the deploymentId; then wait for
the signed callback, polling `/v1/status` when none came in time. On deletion, deprovision
through `status.brokerRef` only, and drop the finalizer only once the broker said 202 or 404.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from kidp_ops.reconcilers.conditions import remove_condition, set_condition

FINALIZER = "platform.company.com/database-cleanup"
READY, SCHEDULED, DEPROVISION_PENDING = "Ready", "Scheduled", "DeprovisionPending"
MESSAGE_LIMIT = 2000

Manifest = Mapping[str, Any]
Patch = dict[str, Any]


# --- steps ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerKey:
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True, slots=True)
class AddFinalizer:
    pass


@dataclass(frozen=True, slots=True)
class RemoveFinalizer:
    pass


@dataclass(frozen=True, slots=True)
class Schedule:
    pass


@dataclass(frozen=True, slots=True)
class Provision:
    broker: BrokerKey


@dataclass(frozen=True, slots=True)
class AwaitResult:
    """Provisioning was accepted; poll `/v1/status` in `poll_in` seconds (0: now)."""

    broker: BrokerKey
    deployment_id: str
    poll_in: float


@dataclass(frozen=True, slots=True)
class Deprovision:
    broker: BrokerKey
    deployment_id: str


@dataclass(frozen=True, slots=True)
class FindDeployment:
    """Deleted after the intent was written but before a deploymentId was stored: ask the
    broker's inventory for our requestId, so nothing is left behind."""

    broker: BrokerKey
    request_id: str


@dataclass(frozen=True, slots=True)
class Idle:
    reason: str


Step = (
    AddFinalizer
    | RemoveFinalizer
    | Schedule
    | Provision
    | AwaitResult
    | Deprovision
    | FindDeployment
    | Idle
)


def _meta(manifest: Manifest) -> Mapping[str, Any]:
    return manifest.get("metadata") or {}


def _status(manifest: Manifest) -> Mapping[str, Any]:
    return manifest.get("status") or {}


def broker_ref(manifest: Manifest) -> BrokerKey | None:
    ref = _status(manifest).get("brokerRef") or {}
    if not ref.get("name"):
        return None
    namespace = ref.get("namespace") or _meta(manifest).get("namespace") or "default"
    return BrokerKey(namespace, ref["name"])


def next_step(
    manifest: Manifest,
    *,
    now: datetime,
    last_contact: datetime | None,
    poll_after: float,
) -> Step:
    """What to do for this Database now.

    `last_contact` is when the reconciler last heard about the deployment (provision
    accepted or a poll); None after a restart, which polls at once.
    """
    meta, status = _meta(manifest), _status(manifest)
    finalizers = meta.get("finalizers") or []
    ref = broker_ref(manifest)
    deployment_id = status.get("deploymentId")
    if meta.get("deletionTimestamp"):
        if FINALIZER not in finalizers:
            return Idle("being deleted; not ours to clean up")
        if ref is None:
            return RemoveFinalizer()
        if deployment_id:
            return Deprovision(ref, deployment_id)
        return FindDeployment(ref, str(meta.get("uid", "")))
    if FINALIZER not in finalizers:
        return AddFinalizer()
    if ref is None:
        return Schedule()
    if status.get("phase") in ("Ready", "Failed"):
        # Failed without a deploymentId is a rejected request: asking again on every
        # unrelated event would only be rejected again.
        return Idle(f"phase {status.get('phase')}")
    if not deployment_id:
        return Provision(ref)
    if last_contact is None:
        return AwaitResult(ref, deployment_id, 0.0)
    waited = (now - last_contact).total_seconds()
    return AwaitResult(ref, deployment_id, max(0.0, poll_after - waited))


# --- patches ----------------------------------------------------------------------------


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


def _conditions(manifest: Manifest) -> list[Mapping[str, Any]]:
    return list(_status(manifest).get("conditions") or [])


def _generation(manifest: Manifest) -> int | None:
    generation = _meta(manifest).get("generation")
    return int(generation) if generation is not None else None


def _clip(text: str) -> str:
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
    current: list[Any] = _conditions(manifest)
    for type_, state, reason, message in conditions:
        current = set_condition(
            current,
            type_=type_,
            status=state,
            reason=reason,
            message=_clip(message),
            now=now,
            generation=generation,
        )
    status: dict[str, Any] = {"conditions": current, **fields}
    if generation is not None:
        status["observedGeneration"] = generation
    return {"status": status}


def unschedulable_patch(manifest: Manifest, *, reason: str, message: str, now: datetime) -> Patch:
    """No broker fits (reason NoBrokerAvailable) or the placement is unreadable
    (InvalidPlacement): phase Pending, and a Scheduled=False condition that says why."""
    return _status_patch(
        manifest,
        now=now,
        phase="Pending",
        message=_clip(message),
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
        message=_clip(text),
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
        message=_clip(text),
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
        return _status_patch(
            manifest,
            now=now,
            phase="Failed",
            message=_clip(text),
            conditions=[(READY, "False", "ProvisioningRejected", text)],
        )
    text = f"broker {broker} unreachable, retrying: {error}"
    return _status_patch(
        manifest,
        now=now,
        message=_clip(text),
        conditions=[(READY, "False", "BrokerUnreachable", text)],
    )


@dataclass(frozen=True, slots=True)
class DeploymentResult:
    """What a callback or a `/v1/status` poll says about a deployment."""

    phase: Literal["Provisioning", "Ready", "Failed"]
    message: str = ""
    endpoint: str | None = None
    port: int | None = None
    connection_secret: str | None = None
    deployment_id: str | None = None  # when known: a result for another deployment is stale


def _where(endpoint: str | None, port: int | None) -> str:
    if not endpoint:
        return ""
    return f"{endpoint}:{port}" if port is not None else endpoint


def result_patch(manifest: Manifest, *, result: DeploymentResult, now: datetime) -> Patch | None:
    """Ready (endpoint, port, secret, Ready=True) or Failed; None when nothing changes, and
    for a Database being deleted or a result about a deployment it no longer has."""
    status = _status(manifest)
    if _meta(manifest).get("deletionTimestamp"):
        return None
    current = status.get("deploymentId")
    if result.deployment_id and current and result.deployment_id != current:
        return None
    if result.phase == "Provisioning":
        if not result.message or result.message == status.get("message"):
            return None
        return _status_patch(manifest, now=now, message=_clip(result.message), conditions=[])
    if result.phase == "Ready":
        fields: dict[str, Any] = {"phase": "Ready", "message": result.message or "ready"}
        if result.endpoint:
            fields["endpoint"] = result.endpoint
        if result.port is not None:
            fields["port"] = result.port
        if result.connection_secret:
            namespace = _meta(manifest).get("namespace")
            fields["connectionSecretRef"] = {
                "name": result.connection_secret,
                "namespace": namespace,
            }
        where = _where(result.endpoint, result.port)
        text = f"provisioned: {where}" if where else "provisioned"
        return _status_patch(
            manifest, now=now, conditions=[(READY, "True", "Provisioned", text)], **fields
        )
    text = f"provisioning failed: {result.message or 'no reason given'}"
    return _status_patch(
        manifest,
        now=now,
        phase="Failed",
        message=_clip(text),
        conditions=[(READY, "False", "ProvisioningFailed", text)],
    )


def deprovision_pending_patch(
    manifest: Manifest, *, reason: str, message: str, now: datetime
) -> Patch:
    """Deletion waits: say why (broker unreachable, broker gone, ...) on the Database."""
    return _status_patch(
        manifest,
        now=now,
        phase="Deleting",
        message=_clip(message),
        conditions=[(DEPROVISION_PENDING, "True", reason, message)],
    )


def deprovision_accepted_patch(manifest: Manifest, *, broker: BrokerKey, now: datetime) -> Patch:
    conditions = remove_condition(_conditions(manifest), DEPROVISION_PENDING)
    return {
        "status": {
            "phase": "Deleting",
            "message": f"deprovisioned through broker {broker}",
            "conditions": conditions,
        }
    }
