"""What a broker says about a deployment, read one way for callbacks and for polling (pure).

A callback body, a `/v1/status` answer and an inventory item all come down to a
`DeploymentResult`: one of the seed system's phases (Provisioning, Ready, Failed, Deleting,
Deleted; our earlier Deprovisioning/Deprovisioned are read as Deleting/Deleted) or NO_PHASE
when the broker cannot tell (the seed's broker answers every status query with
`status: "unknown"` and no phase). The rules, the same for every source:

- `status: "failed"` is Failed, whatever the phase says;
- Ready needs the phase Ready: a "success" whose phase is anything else is that phase, so
  a success callback never makes a Database Ready unless its phase says so;
- a missing phase is NO_PHASE ("still working"), with a message saying the broker reports
  no phase;
- an unknown phase is kept as NO_PHASE too, with its name in the message.

Whether a result moves a Database depends on what the Database is doing (provisioning or
being deleted): that is `reconcilers/patches.py` and the reconciler's business, not this
module's.

The replay guard of callbacks lives here as well: `CallbackStamp` is what a callback is
signed at, and `is_stale` tells, from the Database's `status.lastCallback`, whether it is
not newer than the last one applied (ARCHITECTURE.md §6).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from kidp_ops.brokerapi.models import PHASE_ALIASES
from kidp_ops.times import parse_time

ResultPhase = Literal["Provisioning", "Ready", "Failed", "Deleting", "Deleted", "NoPhase"]
NO_PHASE: ResultPhase = "NoPhase"
_PHASES: dict[str, ResultPhase] = {
    "Provisioning": "Provisioning",
    "Ready": "Ready",
    "Failed": "Failed",
    "Deleting": "Deleting",
    "Deleted": "Deleted",
}
DIGESTS_KEPT = 16


@dataclass(frozen=True, slots=True)
class DeploymentResult:
    """One report about a deployment, from a callback, a status poll or the inventory."""

    phase: ResultPhase
    message: str = ""
    deployment_id: str | None = None  # when known: a result for another deployment is stale
    endpoint: str | None = None
    port: int | None = None
    connection_secret: str | None = None
    monthly_cost: float | None = None
    reported_at: datetime | None = None  # the broker's time of the report, when it gives one


def deployment_result(
    *,
    phase: str | None,
    status: str | None = None,
    message: str = "",
    error: str = "",
    deployment_id: str | None = None,
) -> DeploymentResult:
    """The phase rules of the module docstring; endpoint and the rest are added by the
    callers that have them (`from_callback`)."""
    named = PHASE_ALIASES.get(phase or "", phase or "")
    if status == "failed":
        why = error or message or "no reason given"
        return DeploymentResult("Failed", why, deployment_id)
    known = _PHASES.get(named)
    if known is not None:
        return DeploymentResult(known, message, deployment_id)
    shown = f'status "{status}"' if status else "no status"
    what = f"an unknown phase {named!r}" if named else "no phase"
    text = f"the broker reports {what} ({shown}{': ' + message if message else ''})"
    return DeploymentResult(NO_PHASE, text, deployment_id)


def from_callback(payload: Mapping[str, Any]) -> DeploymentResult:
    """A callback body (the seed's CallbackRequest; unknown fields ignored)."""
    result = deployment_result(
        phase=_text(payload.get("phase")),
        status=_text(payload.get("status")),
        message=_text(payload.get("message")),
        error=_text(payload.get("error")),
        deployment_id=_text(payload.get("deploymentId")) or None,
    )
    port = payload.get("port")
    cost = payload.get("estimatedMonthlyCost")
    return DeploymentResult(
        result.phase,
        result.message,
        result.deployment_id,
        endpoint=_text(payload.get("endpoint")) or None,
        port=port if isinstance(port, int) and not isinstance(port, bool) and port > 0 else None,
        connection_secret=_text(payload.get("connectionSecret")) or None,
        monthly_cost=_positive(cost),
        reported_at=_time(payload.get("time")),
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _positive(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _time(value: Any) -> datetime | None:
    try:
        return parse_time(value) if isinstance(value, str) else None
    except ValueError:
        return None


# --- the replay guard -----------------------------------------------------------------------


class Applied(enum.Enum):
    """What became of a verified callback at the Database."""

    APPLIED = "applied"
    STALE = "stale"  # not newer than the last callback applied to the Database: refused
    GONE = "gone"  # the Database does not exist any more


@dataclass(frozen=True, slots=True)
class CallbackStamp:
    """When a callback was signed (`X-KIDP-Timestamp`, as sent and parsed) and a digest of
    everything signed (`sha256(timestamp + "." + body)`, hex)."""

    text: str
    when: datetime
    digest: str


def is_stale(status: Mapping[str, Any], stamp: CallbackStamp) -> bool:
    """True when the Database already applied a callback signed at or after `stamp`:
    older ones are refused, and of those signed at the very same time, the digests seen.
    Once DIGESTS_KEPT callbacks of one second are applied, the rest of that second are
    refused too: the list stays bounded and no digest is forgotten (so none replays)."""
    last = status.get("lastCallback") or {}
    if not isinstance(last, Mapping):
        return False
    try:
        when = parse_time(last.get("time"))
    except ValueError:
        return False
    if when is None or stamp.when > when:
        return False
    if stamp.when < when:
        return True
    digests = last.get("digests") or ()
    return stamp.digest in digests or len(digests) >= DIGESTS_KEPT


def stamped(status: Mapping[str, Any], stamp: CallbackStamp) -> dict[str, Any]:
    """The `lastCallback` to write once a callback with `stamp` is applied."""
    last = status.get("lastCallback") or {}
    digests: list[str] = []
    if isinstance(last, Mapping) and last.get("time") and _same_time(last.get("time"), stamp):
        digests = [d for d in last.get("digests") or () if isinstance(d, str)]
    digests = [*digests, stamp.digest][-DIGESTS_KEPT:]
    return {"time": stamp.text, "digests": digests}


def _same_time(text: Any, stamp: CallbackStamp) -> bool:
    try:
        return parse_time(text) == stamp.when
    except ValueError:
        return False
