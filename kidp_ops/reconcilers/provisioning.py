"""The Database reconciler's decisions, pure: what to do next, and how to talk to a broker.

`next_step(manifest, ...)` reads a Database (as stored) and returns one Step; the reconciler
(`reconcilers/database.py`) carries it out, writing only patches built in
`reconcilers/patches.py`. Everything here is a function of its arguments: no I/O, no clock.

The order is the design's (ARCHITECTURE.md §7): finalizer first; then select and record the
intent (`brokerRef`, phase Provisioning) *before* calling the broker; then provision with
requestId = metadata.uid (idempotent at the broker), store the deploymentId; then wait for
the signed callback, polling `/v1/status` when none came in time.

Deletion goes through `status.brokerRef` only, and the finalizer goes only when the broker
**confirms** the deployment is gone: after a 202 the Database waits (condition
`DeprovisionPending`, reason `AwaitingBroker`) for a deprovisioned callback, a status poll
saying so (or 404), or the broker's inventory no longer listing it (the fallback for
brokers without status phases, like the seed's). A failed deprovision keeps the finalizer
and is retried with backoff. Only the annotation `platform.company.com/abandon: "true"`
lets a Database go while its broker may still hold the deployment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from kidp_ops import explaining
from kidp_ops.conditions import find
from kidp_ops.model.resources import Broker
from kidp_ops.selection import Candidate, Filter, SelectionCriteria, failed_filter

FINALIZER = "platform.company.com/database-cleanup"
ABANDON = "platform.company.com/abandon"
READY, SCHEDULED, DEPROVISION_PENDING = "Ready", "Scheduled", "DeprovisionPending"
AWAITING_BROKER = "AwaitingBroker"
AWAITING_HEALTH_CHECK = "AwaitingHealthCheck"  # Scheduled=False: brokers not yet probed
WIRE_RESOURCE_TYPE = "database"  # what the seed's manager sends, and seed brokers switch on
REASONS_SHOWN = 5
RETRY_FIRST, RETRY_CAP = 5.0, 300.0

Manifest = Mapping[str, Any]


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
    """Deletion is complete: `message` says why it is safe (for the Event)."""

    message: str


@dataclass(frozen=True, slots=True)
class Abandon:
    """The operator let go (annotation): remove the finalizer and leave a Warning Event
    naming the broker and deployment that may be left behind."""

    broker: BrokerKey | None
    deployment_id: str | None


@dataclass(frozen=True, slots=True)
class Schedule:
    pass


@dataclass(frozen=True, slots=True)
class Provision:
    broker: BrokerKey


@dataclass(frozen=True, slots=True)
class AwaitResult:
    """Provisioning was accepted and no word came in time: poll `/v1/status` now."""

    broker: BrokerKey
    deployment_id: str


@dataclass(frozen=True, slots=True)
class Deprovision:
    broker: BrokerKey
    deployment_id: str


@dataclass(frozen=True, slots=True)
class AwaitRemoval:
    """The broker accepted the deprovision and no word came in time: ask it now (status,
    else inventory) whether the deployment is gone."""

    broker: BrokerKey
    deployment_id: str


@dataclass(frozen=True, slots=True)
class FindDeployment:
    """Deleted after the intent was written but before a deploymentId was stored: ask the
    broker's inventory for our request, so nothing is left behind."""

    broker: BrokerKey
    request_id: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do before `seconds` have passed: a backoff after a failure, or the time
    left before a broker that said nothing is asked."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Idle:
    reason: str


Step = (
    AddFinalizer
    | RemoveFinalizer
    | Abandon
    | Schedule
    | Provision
    | AwaitResult
    | Deprovision
    | AwaitRemoval
    | FindDeployment
    | Wait
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


def abandoned(manifest: Manifest) -> bool:
    """The operator's explicit `platform.company.com/abandon: "true"`."""
    annotations = _meta(manifest).get("annotations") or {}
    return str(annotations.get(ABANDON, "")).strip().lower() == "true"


def awaiting_removal(manifest: Manifest) -> bool:
    """The broker accepted the deprovision and we wait for it to confirm."""
    condition = find(_status(manifest).get("conditions") or (), DEPROVISION_PENDING)
    return condition is not None and condition.get("reason") == AWAITING_BROKER


def next_step(
    manifest: Manifest,
    *,
    now: datetime,
    last_contact: datetime | None,
    poll_after: float,
    retry_at: datetime | None = None,
) -> Step:
    """What to do for this Database now.

    `last_contact` is when the reconciler last heard about the deployment (provision or
    deprovision accepted, a poll); None after a restart, which polls at once. `retry_at`
    is when a failed broker call may be tried again (None: now).
    """
    meta, status = _meta(manifest), _status(manifest)
    finalizers = meta.get("finalizers") or []
    ref = broker_ref(manifest)
    deployment_id = status.get("deploymentId")
    if meta.get("deletionTimestamp"):
        if FINALIZER not in finalizers:
            return Idle("being deleted; not ours to clean up")
        return _deletion_step(
            manifest, now=now, last_contact=last_contact, poll_after=poll_after, retry_at=retry_at
        )
    if FINALIZER not in finalizers:
        return AddFinalizer()
    if ref is None:
        return Schedule()
    if status.get("phase") in ("Ready", "Failed"):
        # Failed without a deploymentId is a rejected request: asking again on every
        # unrelated event would only be rejected again.
        return Idle(f"phase {status.get('phase')}")
    if retry_at is not None and now < retry_at:
        return Wait((retry_at - now).total_seconds())
    if not deployment_id:
        return Provision(ref)
    wait = _poll_in(now, last_contact, poll_after)
    return Wait(wait) if wait > 0 else AwaitResult(ref, deployment_id)


def _deletion_step(
    manifest: Manifest,
    *,
    now: datetime,
    last_contact: datetime | None,
    poll_after: float,
    retry_at: datetime | None,
) -> Step:
    """`next_step` of a Database being deleted that still holds our finalizer."""
    ref, deployment_id = broker_ref(manifest), _status(manifest).get("deploymentId")
    if abandoned(manifest):
        return Abandon(ref, deployment_id or None)
    if ref is None:
        return RemoveFinalizer("no broker was ever asked for it")
    if retry_at is not None and now < retry_at:
        return Wait((retry_at - now).total_seconds())
    if not deployment_id:
        return FindDeployment(ref, str(_meta(manifest).get("uid", "")))
    if not awaiting_removal(manifest):
        return Deprovision(ref, deployment_id)
    wait = _poll_in(now, last_contact, poll_after)
    return Wait(wait) if wait > 0 else AwaitRemoval(ref, deployment_id)


def _poll_in(now: datetime, last_contact: datetime | None, poll_after: float) -> float:
    if last_contact is None:
        return 0.0
    return max(0.0, poll_after - (now - last_contact).total_seconds())


def retry_delay(failures: int, *, first: float = RETRY_FIRST) -> float:
    """Seconds before broker call number `failures + 1` after `failures` in a row: `first`
    (5 s), doubling, at most 5 minutes."""
    return min(RETRY_CAP, first * 2.0 ** max(0, min(failures - 1, 16)))


# --- talking to the broker ------------------------------------------------------------------


def provision_body(manifest: Manifest, callback_url: str) -> dict[str, Any]:
    """The `/v1/provision` request for a Database, in the seed manager's words.

    `team` is "<owner kind>/<owner name>" and `owner` the owner's name (strings, as the
    seed's brokers require them); `resourceType` is "database". `spec` is the Database's
    spec as stored, without the owner: what the manifest leaves out, the request leaves out
    (no server-side defaults for backup or encryption). `requestId` (ours, ignored by seed
    brokers) is the uid: the same request always yields the same deployment.
    """
    meta = _meta(manifest)
    spec = {k: v for k, v in (manifest.get("spec") or {}).items() if k != "owner"}
    owner = (manifest.get("spec") or {}).get("owner") or {}
    kind, name = str(owner.get("kind") or ""), str(owner.get("name") or "")
    return {
        "resourceType": WIRE_RESOURCE_TYPE,
        "resourceName": meta["name"],
        "namespace": meta["namespace"],
        "team": f"{kind}/{name}" if kind or name else "",
        "owner": name,
        "callbackUrl": callback_url,
        "spec": spec,
        "requestId": meta["uid"],
    }


def deprovision_body(manifest: Manifest, deployment_id: str, callback_url: str) -> dict[str, Any]:
    """The `/v1/deprovision` request: every field the seed's brokers require."""
    meta = _meta(manifest)
    return {
        "deploymentId": deployment_id,
        "resourceType": WIRE_RESOURCE_TYPE,
        "resourceName": meta["name"],
        "namespace": meta["namespace"],
        "callbackUrl": callback_url,
    }


ProvisionFailure = Literal["reschedule", "retry", "permanent"]
RETRYABLE_REJECTIONS = frozenset({408, 409, 425})  # and every 5xx


def provision_failure(status: int | None) -> ProvisionFailure:
    """What a failed provision call means. None: no answer (unreachable, timeout).

    - 429: the broker is full and created nothing (a known requestId is answered 202
      whatever the load): drop the intent and select again;
    - no answer, 408/409/425 or 5xx: try the same broker again, with backoff;
    - any other 4xx: the broker refuses this request for good (Failed).
    """
    if status == 429:
        return "reschedule"
    if status is None or status in RETRYABLE_REJECTIONS or status >= 500:
        return "retry"
    return "permanent"


def no_broker_message(
    criteria: SelectionCriteria,
    candidates: Sequence[Candidate],
    failed: Mapping[str, Filter],
) -> str:
    """Why nothing fits, closest brokers first: those that failed a later filter were
    nearer to fitting (a full broker is closer than one in the wrong cloud). `failed`
    maps each candidate's key to the filter it failed."""
    order = list(Filter)
    closest = sorted(
        candidates,
        key=lambda c: -order.index(failed.get(c.broker.key, Filter.CAPACITY)),
    )
    asked = explaining.describe_criteria(criteria)
    if not candidates:
        return f"no broker matches {asked}: no brokers registered"
    reasons = [f"{c.broker.key}: {c.rejected}" for c in closest[:REASONS_SHOWN]]
    message = f"no broker matches {asked}: " + "; ".join(reasons)
    more = len(candidates) - len(reasons)
    return message + (f"; and {more} more" if more > 0 else "")


def awaiting_first_probe(
    brokers: Iterable[Broker],
    criteria: SelectionCriteria,
    failed: Mapping[str, Filter],
    reserved: Mapping[str, int],
) -> list[str]:
    """The brokers not yet health-checked (no phase) that would fit `criteria` once Ready,
    sorted. A request only they could serve is waiting for their first probe (as every
    Database is when the daemon or `kidp-ops dev` has just started), not a fault."""
    found = []
    for broker in brokers:
        if failed.get(broker.key) is not Filter.PHASE or broker.status.phase:
            continue
        probed = replace(broker, status=replace(broker.status, phase="Ready"))
        if failed_filter(probed, criteria, reserved_count=reserved.get(broker.key, 0)) is None:
            found.append(broker.key)
    return sorted(found)


def awaiting_probe_message(criteria: SelectionCriteria, brokers: Sequence[str]) -> str:
    shown = ", ".join(brokers[:REASONS_SHOWN])
    more = len(brokers) - REASONS_SHOWN
    shown += f" and {more} more" if more > 0 else ""
    asked = explaining.describe_criteria(criteria)
    return f"waiting for the first health check of {shown}, which would fit {asked}"


def selected_event(broker: BrokerKey, score: float, eligible: int) -> str:
    return f"Selected broker {broker} (score {score:.1f} of {eligible} candidates)"
