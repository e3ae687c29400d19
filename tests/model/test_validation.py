"""The cross-field rules beyond the CRD schema (`model/validation.py`), each both ways."""

from __future__ import annotations

from typing import Any

import pytest

from kidp_ops.brokerapi import signing
from kidp_ops.model.validation import manifest_problems
from tests.conftest import broker_manifest

OWNER = {"kind": "Team", "name": "payments"}


def database(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "platform.company.com/v1",
        "kind": "Database",
        "metadata": {"name": "orders", "namespace": "team-payments"},
        "spec": {"engine": "postgresql", "owner": OWNER, **spec},
    }


def problems(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.field, p.message) for p in manifest_problems(manifest)]


def test_a_minimal_broker_and_database_are_valid() -> None:
    assert problems(broker_manifest()) == []
    assert problems(database(target="aws-us-east-1")) == []


@pytest.mark.parametrize("endpoint", ["http://:8080", "http://user@:8080/v1"])
def test_an_endpoint_without_a_host_is_refused(endpoint: str) -> None:
    assert (".spec.endpoint", "has no host (e.g. http://broker:8080)") in problems(
        broker_manifest(endpoint=endpoint)
    )


def test_an_endpoint_with_a_fragment_is_refused() -> None:
    found = problems(broker_manifest(endpoint="http://b:8080/#x"))
    assert found == [
        (
            ".spec.endpoint",
            "must not have a query or fragment (API and health paths are appended to it)",
        )
    ]


def test_timeout_below_the_interval_passes() -> None:
    check = {"intervalSeconds": 10, "timeoutSeconds": 9}
    assert problems(broker_manifest(healthCheck=check)) == []


def test_a_secret_in_the_brokers_own_namespace_passes() -> None:
    own = {"type": "api-key", "secretRef": {"name": "s", "namespace": "kidp-system"}}
    assert problems(broker_manifest(authentication=own)) == []


def test_a_real_pinned_key_passes() -> None:
    key = signing.public_key_b64(signing.generate_private_key())
    assert problems(broker_manifest(callbackPublicKey=key)) == []


def test_a_region_needs_a_cloud_or_a_target() -> None:
    assert problems(database(region="eastus")) == [
        (".spec.region", "needs cloudProvider (or a target such as azure-eastus)")
    ]
    assert problems(database(region="eastus", cloudProvider="azure")) == []
    assert problems(database(region="eastus", target="azure-eastus")) == []
