"""The Database reconciler's pure decisions and status patches."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kidp_ops.cluster.patching import merge_patch
from kidp_ops.conditions import find, set_condition
from kidp_ops.model.resources import Broker
from kidp_ops.reconcilers import patches
from kidp_ops.reconcilers import provisioning as p
from kidp_ops.reconcilers.outcomes import DeploymentResult
from kidp_ops.selection import Candidate, Filter, SelectionCriteria
from tests.conftest import broker_manifest

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
BROKER = p.BrokerKey("kidp-system", "aws-1")


def db(*, status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    metadata = {
        "name": "orders",
        "namespace": "team-payments",
        "uid": "uid-1",
        "generation": 1,
        "resourceVersion": "7",
        "finalizers": [p.FINALIZER],
        **meta,
    }
    return {
        "apiVersion": "platform.company.com/v1",
        "kind": "Database",
        "metadata": metadata,
        "spec": {"engine": "postgresql", "target": "aws-us-west-2"},
        "status": status or {},
    }


def step(
    manifest: dict[str, Any],
    last_contact: datetime | None = None,
    retry_at: datetime | None = None,
) -> p.Step:
    return p.next_step(
        manifest, now=NOW, last_contact=last_contact, poll_after=30, retry_at=retry_at
    )


REF = {"name": "aws-1", "namespace": "kidp-system"}


def test_the_steps_in_order() -> None:
    assert step(db(finalizers=[])) == p.AddFinalizer()
    assert step(db()) == p.Schedule()
    assert step(db(status={"brokerRef": REF, "phase": "Provisioning"})) == p.Provision(BROKER)
    waiting = db(status={"brokerRef": REF, "deploymentId": "d-1", "phase": "Provisioning"})
    assert step(waiting) == p.AwaitResult(BROKER, "d-1")  # after a restart: poll now
    assert step(waiting, NOW - timedelta(seconds=10)) == p.Wait(20.0)
    assert step(waiting, NOW - timedelta(seconds=99)) == p.AwaitResult(BROKER, "d-1")
    intent = db(status={"brokerRef": REF, "phase": "Provisioning"})
    later = NOW + timedelta(seconds=8)
    assert step(intent, retry_at=later) == p.Wait(8.0)  # the broker failed: back off
    assert step(intent, retry_at=NOW) == p.Provision(BROKER)
    for phase in ("Ready", "Failed"):
        done = db(status={"brokerRef": REF, "deploymentId": "d-1", "phase": phase})
        assert isinstance(step(done), p.Idle)


DELETING = {"deletionTimestamp": "2026-11-25T09:59:00Z"}
AWAITING = {
    "type": "DeprovisionPending",
    "status": "True",
    "reason": "AwaitingBroker",
    "lastTransitionTime": "2026-11-25T09:59:30Z",
}


def test_deletion_steps() -> None:
    never = step(db(**DELETING))
    assert never == p.RemoveFinalizer("no broker was ever asked for it")
    with_id = db(status={"brokerRef": REF, "deploymentId": "d-1"}, **DELETING)
    assert step(with_id) == p.Deprovision(BROKER, "d-1")
    intent_only = db(status={"brokerRef": REF, "phase": "Provisioning"}, **DELETING)
    assert step(intent_only) == p.FindDeployment(BROKER, "uid-1")
    not_ours = db(finalizers=["other/finalizer"], **DELETING)
    assert isinstance(step(not_ours), p.Idle)


def test_deletion_waits_for_the_broker_to_confirm() -> None:
    accepted = db(
        status={"brokerRef": REF, "deploymentId": "d-1", "conditions": [AWAITING]}, **DELETING
    )
    assert step(accepted) == p.AwaitRemoval(BROKER, "d-1")  # after a restart: ask now
    assert step(accepted, NOW - timedelta(seconds=5)) == p.Wait(25.0)
    assert step(accepted, NOW - timedelta(seconds=30)) == p.AwaitRemoval(BROKER, "d-1")
    failed = {**AWAITING, "reason": "DeprovisionFailed"}
    refused = db(
        status={"brokerRef": REF, "deploymentId": "d-1", "conditions": [failed]}, **DELETING
    )
    assert step(refused, retry_at=NOW + timedelta(seconds=40)) == p.Wait(40.0)
    assert step(refused, retry_at=NOW) == p.Deprovision(BROKER, "d-1")  # try again


def test_only_the_abandon_annotation_lets_go_without_the_broker() -> None:
    for value in ("true", "True", " TRUE "):
        meta = {**DELETING, "annotations": {p.ABANDON: value}}
        with_id = db(status={"brokerRef": REF, "deploymentId": "d-1"}, **meta)
        assert step(with_id) == p.Abandon(BROKER, "d-1")
    for value in ("false", "yes", ""):
        meta = {**DELETING, "annotations": {p.ABANDON: value}}
        with_id = db(status={"brokerRef": REF, "deploymentId": "d-1"}, **meta)
        assert step(with_id) == p.Deprovision(BROKER, "d-1")
    alive = db(status={"brokerRef": REF, "deploymentId": "d-1"}, annotations={p.ABANDON: "true"})
    assert isinstance(step(alive), p.Wait | p.AwaitResult)  # only deletion reads it


def test_broker_ref_defaults_to_the_database_namespace() -> None:
    assert p.broker_ref(db(status={"brokerRef": {"name": "b"}})) == p.BrokerKey(
        "team-payments", "b"
    )
    assert p.broker_ref(db(status={"brokerRef": {}})) is None


def test_finalizer_patch_keeps_other_finalizers_and_guards_the_version() -> None:
    manifest = db(finalizers=["other/x"])
    assert patches.finalizer_patch(manifest, add=True) == {
        "metadata": {"finalizers": ["other/x", p.FINALIZER], "resourceVersion": "7"}
    }
    manifest = db(finalizers=["other/x", p.FINALIZER])
    assert patches.finalizer_patch(manifest, add=False)["metadata"]["finalizers"] == ["other/x"]


def apply(manifest: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    assert patch is not None
    merged: dict[str, Any] = merge_patch(copy.deepcopy(manifest), patch)
    return merged


def test_a_whole_provisioning_story() -> None:
    manifest = db()
    manifest = apply(
        manifest,
        patches.unschedulable_patch(
            manifest, reason="NoBrokerAvailable", message="2 brokers: at capacity", now=NOW
        ),
    )
    status = manifest["status"]
    assert status["phase"] == "Pending"
    scheduled = find(status["conditions"], "Scheduled")
    assert scheduled is not None and scheduled["status"] == "False"
    assert scheduled["message"] == "2 brokers: at capacity"
    later = NOW + timedelta(seconds=5)
    event = "Selected broker kidp-system/aws-1 (score 243.5 of 4 candidates)"
    manifest = apply(
        manifest, patches.intent_patch(manifest, broker=BROKER, event=event, now=later)
    )
    status = manifest["status"]
    assert status["phase"] == "Provisioning"
    assert status["brokerRef"] == REF
    scheduled = find(status["conditions"], "Scheduled")
    assert scheduled is not None and scheduled["lastTransitionTime"] == "2026-11-25T10:00:05Z"
    ready = find(status["conditions"], "Ready")
    # Ready stayed False since the first patch: its transition time did not move.
    assert ready is not None and ready["lastTransitionTime"] == "2026-11-25T10:00:00Z"
    manifest = apply(
        manifest,
        patches.accepted_patch(
            manifest, broker=BROKER, deployment_id="d-9", message="queued", now=later
        ),
    )
    assert manifest["status"]["deploymentId"] == "d-9"
    assert "accepted the request (deployment d-9): queued" in manifest["status"]["message"]
    result = DeploymentResult(
        "Ready", "", endpoint="pg.internal", port=5432, connection_secret="orders-conn"
    )
    manifest = apply(manifest, patches.result_patch(manifest, result=result, now=later))
    status = manifest["status"]
    assert (status["phase"], status["endpoint"], status["port"]) == ("Ready", "pg.internal", 5432)
    assert status["connectionSecretRef"] == {"name": "orders-conn", "namespace": "team-payments"}
    ready = find(status["conditions"], "Ready")
    assert ready is not None and ready["status"] == "True" and ready["reason"] == "Provisioned"
    assert status["observedGeneration"] == 1


def test_results() -> None:
    manifest = db(status={"brokerRef": REF, "deploymentId": "d", "message": "working"})
    assert (
        patches.result_patch(manifest, result=DeploymentResult("Provisioning", "working"), now=NOW)
        is None
    )
    assert patches.result_patch(manifest, result=DeploymentResult("Provisioning"), now=NOW) is None
    moved = patches.result_patch(manifest, result=DeploymentResult("Provisioning", "50%"), now=NOW)
    assert moved is not None and moved["status"]["message"] == "50%"
    failed = apply(
        manifest,
        patches.result_patch(manifest, result=DeploymentResult("Failed", "quota"), now=NOW),
    )
    assert failed["status"]["phase"] == "Failed"
    assert failed["status"]["message"] == "provisioning failed: quota"


def test_provision_errors() -> None:
    manifest = db(status={"brokerRef": REF, "phase": "Provisioning"})
    transient = apply(
        manifest,
        patches.provision_error_patch(
            manifest, broker=BROKER, error="connection refused", permanent=False, now=NOW
        ),
    )
    assert transient["status"]["phase"] == "Provisioning"
    assert find(transient["status"]["conditions"], "Ready")["reason"] == "BrokerUnreachable"  # type: ignore[index]
    permanent = apply(
        manifest,
        patches.provision_error_patch(
            manifest, broker=BROKER, error="HTTP 422: bad size", permanent=True, now=NOW
        ),
    )
    assert permanent["status"]["phase"] == "Failed"
    assert (
        permanent["status"]["message"]
        == "broker kidp-system/aws-1 rejected the request: HTTP 422: bad size"
    )


def test_deprovision_pending_then_accepted() -> None:
    manifest = db(status={"brokerRef": REF, "deploymentId": "d", "phase": "Ready"})
    pending = apply(
        manifest,
        patches.deprovision_pending_patch(
            manifest,
            reason="BrokerUnreachable",
            message="broker kidp-system/aws-1: connection refused",
            now=NOW,
        ),
    )
    assert pending["status"]["phase"] == "Deleting"
    condition = find(pending["status"]["conditions"], "DeprovisionPending")
    assert condition is not None and condition["reason"] == "BrokerUnreachable"
    awaiting = apply(
        pending,
        patches.awaiting_patch(pending, broker=BROKER, deployment_id="d", message="", now=NOW),
    )
    condition = find(awaiting["status"]["conditions"], "DeprovisionPending")
    assert condition is not None and condition["reason"] == "AwaitingBroker"
    assert p.awaiting_removal(awaiting) and not p.awaiting_removal(pending)
    assert awaiting["status"]["phase"] == "Deleting"


def test_the_provision_body_speaks_the_seed_managers_words() -> None:
    manifest = db()
    manifest["spec"] = {
        "owner": {"kind": "Application", "name": "orders-api", "namespace": "team-payments"},
        "engine": "postgresql",
        "version": "15",
        "size": "medium",
    }
    assert p.provision_body(manifest, "http://m/cb") == {
        "resourceType": "database",
        "resourceName": "orders",
        "namespace": "team-payments",
        "team": "Application/orders-api",
        "owner": "orders-api",
        "callbackUrl": "http://m/cb",
        "spec": {"engine": "postgresql", "version": "15", "size": "medium"},
        "requestId": "uid-1",
    }
    assert p.deprovision_body(manifest, "d-1", "http://m/cb") == {
        "deploymentId": "d-1",
        "resourceType": "database",
        "resourceName": "orders",
        "namespace": "team-payments",
        "callbackUrl": "http://m/cb",
    }


@pytest.mark.parametrize(
    ("status", "meaning"),
    [
        (429, "reschedule"),
        (None, "retry"),
        (408, "retry"),
        (409, "retry"),
        (425, "retry"),
        (500, "retry"),
        (503, "retry"),
        (400, "permanent"),
        (401, "permanent"),
        (403, "permanent"),
        (404, "permanent"),
        (422, "permanent"),
    ],
)
def test_provision_failures(status: int | None, meaning: str) -> None:
    assert p.provision_failure(status) == meaning


def test_retry_delays_double_up_to_five_minutes() -> None:
    assert [p.retry_delay(n) for n in (1, 2, 3, 4, 7, 8, 50)] == [5, 10, 20, 40, 300, 300, 300]


def test_no_broker_message_names_the_closest_first() -> None:
    def candidate(name: str, reason: str) -> Candidate:
        return Candidate(Broker.from_manifest(broker_manifest(name)), None, None, reason)

    criteria = SelectionCriteria("Database", "postgresql", "aws", "us-east-1")
    found = [candidate(f"b{i}", f"reason {i}") for i in range(7)]
    failed = {f"kidp-system/b{i}": list(Filter)[i] for i in range(7)}
    message = p.no_broker_message(criteria, found, failed)
    asked = "Database (provider postgresql, cloud aws, region us-east-1)"
    assert message.startswith(f"no broker matches {asked}: kidp-system/b6: reason 6;")
    assert "kidp-system/b6: reason 6; kidp-system/b5: reason 5" in message
    assert message.endswith("; and 2 more")
    assert p.no_broker_message(criteria, [], {}).endswith("no brokers registered")


def test_a_request_only_unprobed_brokers_fit_awaits_their_first_health_check() -> None:
    def broker(name: str, phase: str | None, **spec: Any) -> Broker:
        manifest = broker_manifest(name, **spec)
        if phase:
            manifest["status"] = {"phase": phase}
        return Broker.from_manifest(manifest)

    criteria = SelectionCriteria("Database", "postgresql", "aws", "us-east-1")
    brokers = [
        broker("new-b", None),  # never probed, would fit: awaited
        broker("new-a", None),
        broker("new-west", None, region="us-west-2"),  # never probed, would not fit anyway
        broker("new-full", None, maxConcurrentDeployments=1),  # would be full (1 reserved)
        broker("down", "Offline"),  # probed and down: a fault, not awaited
    ]
    failed = {b.key: Filter.PHASE for b in brokers}
    reserved = {"kidp-system/new-full": 1}
    awaited = p.awaiting_first_probe(brokers, criteria, failed, reserved)
    assert awaited == ["kidp-system/new-a", "kidp-system/new-b"]
    message = p.awaiting_probe_message(criteria, awaited)
    assert message == (
        "waiting for the first health check of kidp-system/new-a, kidp-system/new-b, which "
        "would fit Database (provider postgresql, cloud aws, region us-east-1)"
    )
    assert p.awaiting_first_probe(brokers[2:], criteria, failed, reserved) == []
    many = [f"kidp-system/b{i}" for i in range(7)]
    assert p.awaiting_probe_message(criteria, many).startswith(
        "waiting for the first health check of kidp-system/b0, kidp-system/b1, kidp-system/b2, "
        "kidp-system/b3, kidp-system/b4 and 2 more, which"
    )


def test_long_messages_are_clipped() -> None:
    manifest = db()
    patch = patches.unschedulable_patch(
        manifest, reason="NoBrokerAvailable", message="x" * 50_000, now=NOW
    )
    assert len(patch["status"]["message"]) == patches.MESSAGE_LIMIT


statuses = st.sampled_from(["True", "False", "Unknown"])


@given(st.lists(statuses, min_size=1, max_size=12))
def test_transition_time_moves_only_when_status_flips(sequence: list[str]) -> None:
    conditions: list[Any] = []
    previous: tuple[str, str] | None = None
    for second, state in enumerate(sequence):
        now = NOW + timedelta(seconds=second)
        conditions = set_condition(
            conditions, type_="Ready", status=state, reason="R", message=str(second), now=now
        )
        current = find(conditions, "Ready")
        assert current is not None and len(conditions) == 1
        if previous is not None and previous[0] == state:
            assert current["lastTransitionTime"] == previous[1]
        else:
            assert current["lastTransitionTime"] == now.strftime("%Y-%m-%dT%H:%M:%SZ")
        previous = (state, current["lastTransitionTime"])


@pytest.mark.parametrize("other_first", [True, False])
def test_set_condition_keeps_other_types_in_place(other_first: bool) -> None:
    other = {"type": "Scheduled", "status": "True", "lastTransitionTime": "x"}
    start = [other] if other_first else []
    result = set_condition(start, type_="Ready", status="True", reason="R", message="m", now=NOW)
    assert [c["type"] for c in result] == (["Scheduled", "Ready"] if other_first else ["Ready"])
