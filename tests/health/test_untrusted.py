"""The status of a Broker outside the broker namespaces (`health/untrusted.py`, pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kidp_ops.health.untrusted import untrusted_patch

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
REFUSAL = "namespace team-x is not a broker namespace (kidp-system)"


def test_written_once_then_left_alone_with_transition_times_kept() -> None:
    ready = {"type": "Ready", "status": "True", "reason": "Healthy", "message": "ok",
             "lastTransitionTime": "2026-11-29T09:00:00Z"}  # fmt: skip
    status: dict[str, Any] = {"phase": "Ready", "conditions": [ready]}
    patch = untrusted_patch(status, refusal=REFUSAL, now=NOW, generation=3)
    assert patch is not None
    assert (patch["phase"], patch["message"], patch["observedGeneration"]) == (
        "Unknown", REFUSAL, 3
    )  # fmt: skip
    by_type = {c["type"]: c for c in patch["conditions"]}
    assert by_type["Accepted"]["message"] == REFUSAL
    assert by_type["Ready"]["message"] == "not probed: " + REFUSAL
    for condition in by_type.values():
        assert (condition["status"], condition["reason"]) == ("False", "NamespaceNotTrusted")
        assert condition["lastTransitionTime"] == "2026-11-29T10:00:00Z"  # both flipped now
    later = NOW + timedelta(minutes=5)
    assert untrusted_patch(patch, refusal=REFUSAL, now=later, generation=3) is None
    again = untrusted_patch(patch, refusal=REFUSAL, now=later, generation=4)  # spec edited
    assert again is not None and again["observedGeneration"] == 4
    assert {c["lastTransitionTime"] for c in again["conditions"]} == {"2026-11-29T10:00:00Z"}
