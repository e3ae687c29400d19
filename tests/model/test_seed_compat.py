"""Manifests of the seed system (aykay76/kidp v1) are valid here and mean the same.

The fixtures in tests/fixtures/seed/ use every field of the seed's Database and Broker
CRDs, in its shapes. Where kidp-ops is stricter on purpose, the message says why (and
docs/seed-compatibility.md lists the rule).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from kidp_ops.health.credentials import SecretCache, auth_headers
from kidp_ops.health.states import CannotProbe
from kidp_ops.model import manifests
from kidp_ops.model.bundled import crd_schema
from kidp_ops.model.resources import Broker, Database
from kidp_ops.model.validation import manifest_problems
from kidp_ops.reconcilers.provisioning import provision_body
from kidp_ops.selection import SelectionCriteria, failed_filter, rejection
from tests.conftest import REPO

SEED = REPO / "tests" / "fixtures" / "seed"
NOW = datetime(2025, 10, 3, 9, 30, 30, tzinfo=UTC)


def _documents() -> dict[str, dict[str, Any]]:
    loaded = manifests.load([str(SEED)])
    assert not loaded.problems
    return {d.manifest["metadata"]["name"]: d.manifest for d in loaded.documents}


def test_every_seed_shaped_manifest_is_valid() -> None:
    loaded = manifests.load([str(SEED)])
    assert [str(p) for p in manifests.validate(loaded)] == []
    kinds = sorted(d.manifest["kind"] for d in loaded.documents)
    assert kinds == ["Broker"] * 3 + ["Database"] * 4


def _ready(manifest: dict[str, Any]) -> Broker:
    ready = copy.deepcopy(manifest)
    ready["status"] = {"phase": "Ready", "lastHeartbeat": "2025-10-03T09:30:00Z"}
    return Broker.from_manifest(ready)


def test_broker_fields_mean_what_they_mean_in_the_seed() -> None:
    docs = _documents()
    onprem = _ready(docs["seed-onprem"])
    assert onprem.spec.priority == -5
    # A type listed twice matches through either entry (the seed's registry loops them).
    local = "local"
    for provider in ("postgresql", "mongodb"):
        criteria = SelectionCriteria("Database", provider, "on-prem", local)
        assert failed_filter(onprem, criteria) is None, provider
    kafka = SelectionCriteria("Database", "kafka", "on-prem", local)
    assert rejection(onprem, kafka) == (
        "Database capability lacks provider kafka (has: postgresql, mysql)"
    )
    azure = Broker.from_manifest(docs["seed-azure"])
    assert azure.spec.priority == 2**31 - 1
    # maxConcurrentDeployments below 1 is unlimited: 3 active do not fill it.
    assert failed_filter(azure, SelectionCriteria("Database", "postgresql")) is None
    assert azure.spec.authentication is not None
    assert azure.spec.authentication.type == "jwt"  # the seed's default
    assert azure.status.callback_public_key == "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="


async def test_jwt_without_a_secret_is_valid_but_cannot_be_probed() -> None:
    aws = Broker.from_manifest(_documents()["seed-aws"])
    outcome = await auth_headers(aws, SecretCache(None))
    assert isinstance(outcome, CannotProbe)
    assert outcome.reason == "invalid spec: authentication jwt needs a secretRef"


def test_database_fields_go_to_the_broker_as_given() -> None:
    docs = _documents()
    ledger = copy.deepcopy(docs["ledger"])
    ledger["metadata"]["uid"] = "uid-ledger"
    body = provision_body(ledger, "http://manager/v1/callback")
    assert body["resourceType"] == "database"
    assert (body["team"], body["owner"], body["requestId"]) == (
        "Team/payments",
        "payments",
        "uid-ledger",
    )
    assert body["spec"]["backup"] == {
        "enabled": True,
        "retention": "30d",
        "schedule": "0 2 * * *",
        "pointInTimeRestore": True,
    }
    assert body["spec"]["encryption"]["inTransit"] == {"enabled": True, "minTLSVersion": "1.2"}
    assert "owner" not in body["spec"]
    sessions = copy.deepcopy(docs["sessions"])
    sessions["metadata"]["uid"] = "uid-sessions"
    assert provision_body(sessions, "http://m/cb")["team"] == "Application/checkout-api"
    audit = Database.from_manifest(docs["audit"])
    assert audit.status.cost is not None and audit.status.cost.estimated_monthly == 45.5
    assert audit.status.cloud_resource_id is not None
    assert audit.status.last_backup == datetime(2025, 10, 3, 2, 0, tzinfo=UTC)


def _broker(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "platform.company.com/v1",
        "kind": "Broker",
        "metadata": {"name": "b", "namespace": "kidp-system"},
        "spec": {"endpoint": "http://b:8080", "cloudProvider": "aws", **spec},
    }


@pytest.mark.parametrize(
    ("spec", "field", "why"),
    [
        (
            {"healthCheck": {"endpoint": "http://169.254.169.254/"}},
            ".spec.healthCheck.endpoint",
            "never a URL",
        ),
        (
            {"authentication": {"type": "jwt", "secretRef": {"name": "s", "namespace": "t"}}},
            ".spec.authentication.secretRef.namespace",
            "a Broker cannot make it read another tenant's Secret",
        ),
        (
            {"healthCheck": {"intervalSeconds": 10, "timeoutSeconds": 10}},
            ".spec.healthCheck.timeoutSeconds",
            "a probe must end before the next one is due",
        ),
        ({"healthCheck": {"timeoutSeconds": 120}}, ".spec.healthCheck.timeoutSeconds", "60"),
        ({"endpoint": "http://b:8080/?x=1"}, ".spec.endpoint", "paths are appended to it"),
        ({"callbackPublicKey": "bm90IGEga2V5"}, ".spec.callbackPublicKey", "32-byte Ed25519"),
    ],
)
def test_stricter_rules_say_why(spec: dict[str, Any], field: str, why: str) -> None:
    problems = manifest_problems(_broker(**spec))
    mine = [p for p in problems if p.field == field]
    assert mine, problems
    assert why in mine[0].message


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("spec", "priority"), 2**31, "2147483648 is above the maximum 2147483647"),
        (("spec", "priority"), -(2**31) - 1, "is below the minimum -2147483648"),
        (("spec", "maxConcurrentDeployments"), 2**40, "above the maximum 2147483647"),
        (("spec", "healthCheck", "intervalSeconds"), 1e30, "1e+30 is float, expected integer"),
        (("spec", "healthCheck", "failureThreshold"), 3.0, "3.0 is float, expected integer"),
    ],
)
def test_int32_fields_are_range_checked_as_the_api_server_does(
    path: tuple[str, ...], value: Any, message: str
) -> None:
    broker = _broker(healthCheck={})
    node = broker
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    schema = crd_schema("brokers.platform.company.com")
    schema.default(broker)
    found = [str(p) for p in schema.problems(broker)]
    assert any(message in text for text in found), found
