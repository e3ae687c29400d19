"""The status of a Broker outside the daemon's broker namespaces (pure).

It is never probed, so its health phase means nothing: phase Unknown, the refusal as its
message, `Accepted=False` and `Ready=False`, both with reason NamespaceNotTrusted. The
patch is None once the status already says so (the daemon writes it once, not per event).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kidp_ops.health.states import READY
from kidp_ops.times import format_time
from kidp_ops.trust import ACCEPTED, NOT_TRUSTED


def untrusted_patch(
    status: Mapping[str, Any], *, refusal: str, now: datetime, generation: int | None
) -> dict[str, Any] | None:
    """The merge patch of `.status` for an untrusted Broker, or None when it says so."""
    conditions = [dict(c) for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    wanted = {ACCEPTED: refusal, READY: "not probed: " + refusal}
    current = {c.get("type"): c for c in conditions}
    settled = status.get("phase") == "Unknown" and status.get("message") == refusal
    if settled and all(
        (current.get(type_) or {}).get("status") == "False"
        and (current.get(type_) or {}).get("reason") == NOT_TRUSTED
        and (current.get(type_) or {}).get("message") == message
        for type_, message in wanted.items()
    ):
        return None
    kept = [c for c in conditions if c.get("type") not in wanted]
    for type_, message in wanted.items():
        old = current.get(type_) or {}
        flipped = old.get("status") != "False" or not old.get("lastTransitionTime")
        condition: dict[str, Any] = {
            "type": type_,
            "status": "False",
            "reason": NOT_TRUSTED,
            "message": message,
            "lastTransitionTime": format_time(now) if flipped else old["lastTransitionTime"],
        }
        if generation is not None:
            condition["observedGeneration"] = generation
        kept.append(condition)
    patch: dict[str, Any] = {"phase": "Unknown", "message": refusal, "conditions": kept}
    if generation is not None:
        patch["observedGeneration"] = generation
    return patch
