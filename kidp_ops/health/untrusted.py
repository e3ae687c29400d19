"""The status of a Broker outside the daemon's broker namespaces (pure).

It is never probed, so its health phase means nothing: phase Unknown, the refusal as its
message, `Accepted=False` and `Ready=False`, both with reason NamespaceNotTrusted. The
patch is None once the status already says so (the daemon writes it once, not per event).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kidp_ops.conditions import set_condition
from kidp_ops.health.states import READY
from kidp_ops.trust import ACCEPTED, NOT_TRUSTED


def untrusted_patch(
    status: Mapping[str, Any], *, refusal: str, now: datetime, generation: int | None
) -> dict[str, Any] | None:
    """The merge patch of `.status` for an untrusted Broker, or None when it says so."""
    before = [dict(c) for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    conditions = before
    for type_, message in ((ACCEPTED, refusal), (READY, "not probed: " + refusal)):
        conditions = set_condition(
            conditions, type_=type_, status="False", reason=NOT_TRUSTED, message=message,
            now=now, generation=generation,
        )  # fmt: skip
    if (status.get("phase"), status.get("message"), before) == ("Unknown", refusal, conditions):
        return None
    patch: dict[str, Any] = {"phase": "Unknown", "message": refusal, "conditions": conditions}
    if generation is not None:
        patch["observedGeneration"] = generation
    return patch
