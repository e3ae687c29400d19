"""What a broker says, read one way for callbacks and polling; and the replay guard."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kidp_ops.cluster.patching import merge_patch
from kidp_ops.reconcilers import patches
from kidp_ops.reconcilers.outcomes import (
    DIGESTS_KEPT,
    CallbackStamp,
    DeploymentResult,
    deployment_result,
    from_callback,
    is_stale,
    stamped,
)
from kidp_ops.reconcilers.provisioning import FINALIZER

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("phase", "status", "expected"),
    [
        ("Ready", "success", "Ready"),
        ("Ready", None, "Ready"),  # a seed broker's docs leave status out
        ("Ready", "failed", "Failed"),  # failed wins over any phase
        ("Provisioning", "success", "Provisioning"),  # success needs phase Ready for Ready
        ("Deleted", "success", "Deleted"),
        ("Deleting", "in-progress", "Deleting"),
        ("Deprovisioned", "success", "Deleted"),  # our earlier brokers' words
        ("Deprovisioning", None, "Deleting"),
        (None, "unknown", "NoPhase"),  # the seed broker's /v1/status
        ("Suspended", "success", "NoPhase"),
        ("", None, "NoPhase"),
    ],
)
def test_one_mapping_for_every_source(phase: str | None, status: str | None, expected: str) -> None:
    assert deployment_result(phase=phase, status=status).phase == expected


def test_messages_say_what_the_broker_did_not() -> None:
    seed = deployment_result(
        phase=None, status="unknown", message="Status endpoint - implementation pending"
    )
    assert seed.message == (
        'the broker reports no phase (status "unknown": Status endpoint - implementation pending)'
    )
    odd = deployment_result(phase="Suspended", status=None)
    assert odd.message == "the broker reports an unknown phase 'Suspended' (no status)"
    failed = deployment_result(phase="Failed", status="failed", message="m", error="quota")
    assert failed.message == "quota"  # the seed's webhook reads `error` for failures


def test_a_seed_callback_body_converts() -> None:
    result = from_callback(
        {
            "deploymentId": "deploy-1",
            "status": "success",
            "phase": "Ready",
            "time": "2025-10-03T09:30:00.5Z",
            "endpoint": "db.example",
            "port": 5432,
            "connectionSecret": "db-conn",
            "estimatedMonthlyCost": 45.5,
            "additionalMetadata": {"engine": "postgresql"},
        }
    )
    assert result == DeploymentResult(
        "Ready",
        "",
        "deploy-1",
        endpoint="db.example",
        port=5432,
        connection_secret="db-conn",
        monthly_cost=45.5,
        reported_at=datetime(2025, 10, 3, 9, 30, 0, 500000, tzinfo=UTC),
    )
    odd = from_callback({"deploymentId": "d", "phase": "Ready", "port": True, "time": "soon"})
    assert (odd.port, odd.reported_at, odd.monthly_cost) == (None, None, None)


def stamp(seconds: float, digest: str = "a" * 64) -> CallbackStamp:
    when = NOW + timedelta(seconds=seconds)
    return CallbackStamp(when.isoformat().replace("+00:00", "Z"), when, digest)


def test_only_newer_callbacks_apply() -> None:
    status: dict[str, Any] = {}
    first = stamp(0, "1" * 64)
    assert not is_stale(status, first)
    status["lastCallback"] = stamped(status, first)
    assert is_stale(status, first)  # the same one again
    assert is_stale(status, stamp(-1, "2" * 64))  # an older one
    same_second = stamp(0, "3" * 64)  # another callback signed in the same second
    assert not is_stale(status, same_second)
    status["lastCallback"] = stamped(status, same_second)
    assert status["lastCallback"]["digests"] == ["1" * 64, "3" * 64]
    assert is_stale(status, first) and is_stale(status, same_second)
    later = stamp(5, "4" * 64)
    assert not is_stale(status, later)
    status["lastCallback"] = stamped(status, later)
    assert status["lastCallback"] == {"time": later.text, "digests": ["4" * 64]}


@given(st.lists(st.integers(0, 3), min_size=1, max_size=40))
@example([3] * (DIGESTS_KEPT + 1))  # more callbacks in one second than digests kept
def test_no_callback_applies_twice_and_time_only_moves_forward(seconds: list[int]) -> None:
    status: dict[str, Any] = {}
    applied: list[CallbackStamp] = []
    for index, second in enumerate(seconds):
        candidate = stamp(second, f"{index:064x}")
        if not is_stale(status, candidate):
            status["lastCallback"] = stamped(status, candidate)
            applied.append(candidate)
        assert all(is_stale(status, a) for a in applied)  # none could be replayed now
        assert len(status["lastCallback"]["digests"]) <= DIGESTS_KEPT
    assert [a.when for a in applied] == sorted(a.when for a in applied)


def test_results_record_their_stamp_and_the_cost() -> None:
    manifest = {
        "metadata": {"name": "d", "namespace": "ns", "generation": 1, "finalizers": [FINALIZER]},
        "status": {"phase": "Provisioning", "deploymentId": "d-1"},
    }
    result = DeploymentResult(
        "Ready", "ok", "d-1", endpoint="h", port=1, monthly_cost=25.0, reported_at=NOW
    )
    patch = patches.result_patch(manifest, result=result, now=NOW, stamp=stamp(0))
    assert patch is not None
    after = merge_patch(copy.deepcopy(manifest), patch)["status"]
    assert after["lastCallback"]["time"] == "2026-11-25T10:00:00Z"
    assert after["cost"] == {
        "estimatedMonthly": 25.0,
        "currency": "USD",
        "lastUpdated": "2026-11-25T10:00:00Z",
    }
    quiet = patches.result_patch(
        {**manifest, "status": {**manifest["status"], "message": "same"}},
        result=DeploymentResult("Provisioning", "same", "d-1"),
        now=NOW,
        stamp=stamp(1),
    )
    assert quiet == {"status": {"lastCallback": stamped({}, stamp(1))}}  # nothing but the stamp
