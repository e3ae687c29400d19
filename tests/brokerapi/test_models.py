"""The contract models: the seed's shapes, camelCase on the wire, tolerant of unknown fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pydantic
import pytest

from kidp_ops.brokerapi.models import (
    CallbackPayload,
    DeploymentStatus,
    DeprovisionResponse,
    HealthResponse,
    ProvisionRequest,
    ResourceItem,
    ResourceList,
    rfc3339,
)

# What the seed's manager sends for its own sample Database (pkg/brokerclient: json.Marshal
# of its ProvisionRequest: no requestId, owner a string, resourceType lower-case).
SEED_MANAGER_PROVISION = (
    b'{"resourceType":"database","resourceName":"orders-db","namespace":"team-payments",'
    b'"team":"Team/payments","owner":"payments","callbackUrl":"http://manager:9090/v1/callback",'
    b'"spec":{"engine":"postgresql","size":"medium","version":"15"}}'
)


def test_the_seed_managers_provision_request_parses() -> None:
    request = ProvisionRequest.model_validate_json(SEED_MANAGER_PROVISION)
    assert (request.team, request.owner, request.request_id) == ("Team/payments", "payments", None)
    assert request.idempotency_key() == "team-payments/database/orders-db"
    same = ProvisionRequest.model_validate_json(SEED_MANAGER_PROVISION.replace(b"database", b"DB"))
    assert same.idempotency_key() == "team-payments/db/orders-db"


def test_our_request_adds_request_id_and_an_owner_object_is_read_as_its_name() -> None:
    request = ProvisionRequest(
        resource_type="database",
        resource_name="orders-db",
        namespace="team-payments",
        callback_url="http://127.0.0.1:9/cb",
        request_id="uid-1",
        owner={"kind": "Team", "name": "payments"},  # type: ignore[arg-type]
    )
    wire = json.loads(request.to_json_bytes())
    assert wire["requestId"] == "uid-1" == request.idempotency_key()
    assert wire["owner"] == "payments"
    assert wire["callbackUrl"] == "http://127.0.0.1:9/cb"
    assert ProvisionRequest.model_validate(wire) == request


def test_unknown_fields_are_ignored_and_both_spellings_parse() -> None:
    health = HealthResponse.model_validate(
        {"status": "healthy", "activeDeployments": 3, "somethingNew": True}
    )
    assert health.active_deployments == 3
    assert HealthResponse.model_validate({"status": "ok", "active_deployments": 2}).status == "ok"


def test_required_fields_and_url_scheme() -> None:
    with pytest.raises(pydantic.ValidationError, match="namespace"):
        ProvisionRequest.model_validate({"resourceType": "database", "resourceName": "a"})
    with pytest.raises(pydantic.ValidationError, match="callbackUrl"):
        ProvisionRequest.model_validate(
            {
                "resourceType": "database",
                "resourceName": "a",
                "namespace": "n",
                "callbackUrl": "file:///etc/passwd",
            }
        )


def test_the_seed_brokers_answers_parse() -> None:
    """Deprovision without a deploymentId; status with no phase; inventory without requestId."""
    gone = DeprovisionResponse.model_validate_json(
        b'{"status":"accepted","message":"Deprovisioning request accepted for deployment d"}\n'
    )
    assert gone.deployment_id is None
    status = DeploymentStatus.model_validate_json(
        b'{"deploymentId":"d","message":"Status endpoint - implementation pending",'
        b'"status":"unknown"}\n'
    )
    assert (status.phase, status.status) == (None, "unknown")
    listed = ResourceList.model_validate_json(
        b'{"resources":[{"deploymentId":"d","resourceType":"database","resourceName":"x",'
        b'"namespace":"ns","phase":"Ready"}],"total":1,"namespace":"ns"}'
    )
    item = listed.resources[0]
    assert item.request_id == ""
    assert item.is_for(request_id="uid", namespace="ns", resource_type="Database", name="x")
    assert not item.is_for(request_id="uid", namespace="ns", resource_type="Database", name="y")
    ours = ResourceItem(deployment_id="d", request_id="uid", namespace="ns", resource_name="x")
    assert not ours.is_for(request_id="other", namespace="ns", resource_type="", name="x")


def test_callback_bytes_are_what_go_marshals() -> None:
    """Field order of the seed's CallbackRequest, zero values of omitempty fields left out,
    RFC 3339 time with trailing zeros trimmed, Go's float and HTML escaping."""
    payload = CallbackPayload(
        deployment_id="deploy-1",
        resource_type="database",
        resource_name="orders-db",
        namespace="team-payments",
        status="success",
        phase="Ready",
        message="ready <now> & fast",
        time=datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC),
        endpoint="orders-db.example",
        port=5432,
        details={"b": 1, "a": [1.5, "x"]},
        additional_metadata={"version": "15.2", "engine": "postgresql"},
        estimated_monthly_cost=45.5,
    )
    assert payload.to_json_bytes() == (
        b'{"deploymentId":"deploy-1","resourceType":"database","resourceName":"orders-db",'
        b'"namespace":"team-payments","status":"success","phase":"Ready",'
        b'"message":"ready \\u003cnow\\u003e \\u0026 fast","time":"2026-01-02T03:04:05.12Z",'
        b'"endpoint":"orders-db.example","port":5432,"details":{"a":[1.5,"x"],"b":1},'
        b'"additionalMetadata":{"engine":"postgresql","version":"15.2"},'
        b'"estimatedMonthlyCost":45.5}'
    )
    failed = CallbackPayload(
        deployment_id="d",
        status="failed",
        phase="Failed",
        error="no capacity",
        time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
    )
    assert failed.to_json_bytes() == (
        b'{"deploymentId":"d","resourceType":"","resourceName":"","namespace":"",'
        b'"status":"failed","phase":"Failed","message":"","error":"no capacity",'
        b'"time":"2026-01-02T03:04:05+02:00"}'
    )
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=UTC)) == "2026-01-02T03:04:05Z"


def test_resource_list_shape() -> None:
    listed = ResourceList.model_validate(
        {"resources": [{"deploymentId": "d", "phase": "Ready", "endpoint": None}], "total": 1}
    )
    assert listed.resources[0].deployment_id == "d"
