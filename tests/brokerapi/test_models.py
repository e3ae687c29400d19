"""The contract models: camelCase on the wire, tolerant of unknown fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pydantic
import pytest

from kidp_ops.brokerapi.models import (
    CallbackPayload,
    HealthResponse,
    ProvisionRequest,
    ResourceList,
    rfc3339,
)


def test_requests_serialize_camel_case() -> None:
    request = ProvisionRequest(
        resource_type="Database",
        resource_name="orders-db",
        namespace="team-payments",
        callback_url="http://127.0.0.1:9/cb",
        request_id="uid-1",
        owner={"kind": "Team", "name": "payments"},  # type: ignore[arg-type]
    )
    wire = json.loads(request.to_json_bytes())
    assert wire["resourceType"] == "Database"
    assert wire["requestId"] == "uid-1"
    assert wire["callbackUrl"] == "http://127.0.0.1:9/cb"
    assert wire["owner"] == {"kind": "Team", "name": "payments", "namespace": ""}
    assert ProvisionRequest.model_validate(wire) == request


def test_unknown_fields_are_ignored_and_both_spellings_parse() -> None:
    health = HealthResponse.model_validate(
        {"status": "healthy", "activeDeployments": 3, "somethingNew": True}
    )
    assert health.active_deployments == 3
    assert HealthResponse.model_validate({"status": "ok", "active_deployments": 2}).status == "ok"


def test_required_fields_and_url_scheme() -> None:
    with pytest.raises(pydantic.ValidationError, match="requestId"):
        ProvisionRequest.model_validate(
            {"resourceType": "Database", "resourceName": "a", "namespace": "n"}
        )
    with pytest.raises(pydantic.ValidationError, match="callbackUrl"):
        ProvisionRequest.model_validate(
            {
                "resourceType": "Database",
                "resourceName": "a",
                "namespace": "n",
                "requestId": "r",
                "callbackUrl": "file:///etc/passwd",
            }
        )


def test_callback_time_is_rfc3339_utc() -> None:
    payload = CallbackPayload(
        deployment_id="dep-1",
        status="success",
        phase="Ready",
        time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert json.loads(payload.to_json_bytes())["time"] == "2026-01-02T03:04:05Z"
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    with pytest.raises(pydantic.ValidationError):
        CallbackPayload.model_validate({"deploymentId": "d", "status": "maybe", "phase": "x"})


def test_resource_list_shape() -> None:
    listed = ResourceList.model_validate(
        {"resources": [{"deploymentId": "d", "phase": "Ready", "endpoint": None}], "total": 1}
    )
    assert listed.resources[0].deployment_id == "d"
