"""`kidp-ops daemon` with brokers built to the seed system's contract, unmodified.

The broker is `tests/support/seedbroker.py`: what the seed's `cmd/broker` answers (strict
Go-style decoding, a deprovision 202 without deploymentId, a status without phase, an empty
inventory, never a callback). The Broker and Database manifests are in the seed's shapes;
the Broker's callback key is pinned by its operator in `spec.callbackPublicKey`. Callbacks,
where there are any, are what a seed broker using its `pkg/broker` callback client sends:
Go's json.Marshal bytes, a bare `X-KIDP-Broker-Name`, and an `X-KIDP-Public-Key` that
kidp-ops must not trust.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import pytest

from kidp_ops.brokerapi import signing
from kidp_ops.brokerapi.gojson import marshal_callback
from kidp_ops.cluster.base import DATABASES, EVENTS, NotFound
from tests.e2e.rig import NS, POLL_AFTER, TEAM, DaemonProcess, Rig
from tests.support.seedbroker import SeedBroker

pytestmark = pytest.mark.slow

KEY = signing.generate_private_key()  # the broker's; its public half pinned in the spec
STRANGER = signing.generate_private_key()


async def apply_seed_broker(rig: Rig, url: str) -> None:
    """The Broker as a seed-era GitOps repository has it, plus the operator's pinned key."""
    await rig.cluster.create(
        {
            "apiVersion": "platform.company.com/v1",
            "kind": "Broker",
            "metadata": {"name": "seed-aws", "namespace": NS},
            "spec": {
                "endpoint": url,
                "cloudProvider": "aws",
                "region": "us-east-1",
                "priority": 100,
                "maxConcurrentDeployments": 10,
                "capabilities": [{"resourceType": "Database", "providers": ["postgresql"]}],
                "authentication": {"type": "none"},
                "healthCheck": {"endpoint": "/health", "intervalSeconds": 5, "timeoutSeconds": 1},
                "callbackPublicKey": signing.public_key_b64(KEY),
            },
        }
    )


async def apply_seed_database(rig: Rig, name: str) -> None:
    await rig.cluster.create(
        {
            "apiVersion": "platform.company.com/v1",
            "kind": "Database",
            "metadata": {"name": name, "namespace": TEAM},
            "spec": {
                "owner": {"kind": "Team", "name": "platform-team"},
                "engine": "postgresql",
                "version": "15",
                "size": "medium",
                "target": "aws-us-east-1",
                "backup": {"enabled": True, "retention": "30d"},
                "encryption": {"atRest": {"enabled": True}, "inTransit": {"enabled": True}},
            },
        }
    )


async def broker_ready(rig: Rig) -> bool:
    return (await rig.broker_status("seed-aws")).get("phase") == "Ready"


async def with_deployment(rig: Rig, name: str) -> dict[str, Any] | None:
    obj = await rig.database(name)
    return obj if (obj.get("status") or {}).get("deploymentId") else None


async def gone(rig: Rig, name: str) -> bool:
    try:
        await rig.cluster.get(DATABASES, name, namespace=TEAM)
    except NotFound:
        return True
    return False


async def provisioned(rig: Rig, seed: SeedBroker, name: str) -> dict[str, Any]:
    """Until the Database holds the seed broker's deploymentId; checks the request."""
    db = await rig.eventually(partial(with_deployment, rig, name), f"{name} has a deploymentId")
    [request] = seed.bodies("/v1/provision")
    assert request["resourceType"] == "database"
    assert (request["team"], request["owner"]) == ("Team/platform-team", "platform-team")
    assert request["requestId"] == db["metadata"]["uid"]  # ours: a seed broker ignores it
    assert request["spec"]["backup"] == {"enabled": True, "retention": "30d"}
    assert db["status"]["deploymentId"].startswith("deploy-")
    assert db["status"]["phase"] == "Provisioning"
    return db


async def delete_and_confirm(rig: Rig, seed: SeedBroker, name: str, deployment: str) -> None:
    """Deletion completes: a 202 without deploymentId, a status without phase, then the
    broker's (empty) inventory no longer listing it."""
    await rig.cluster.delete(DATABASES, name, namespace=TEAM)
    await rig.eventually(partial(gone, rig, name), f"{name} deleted", timeout=POLL_AFTER + 20)
    [deprovision] = seed.bodies("/v1/deprovision")
    assert deprovision == {
        "deploymentId": deployment,
        "resourceType": "database",
        "resourceName": name,
        "namespace": TEAM,
        "callbackUrl": deprovision["callbackUrl"],
    }
    assert deprovision["callbackUrl"].endswith("/v1/callback")
    inventory = [q for _, path, q, _ in seed.requests if path == "/v1/resources"]
    assert inventory and all(q.get("namespace") == TEAM for q in inventory)
    events = await rig.cluster.list(EVENTS, namespace=TEAM)
    mine = [e for e in events.items if e["involvedObject"]["name"] == name]
    mine.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
    reasons = [e["reason"] for e in mine]
    assert reasons[-2:] == ["DeprovisionAccepted", "Deprovisioned"], reasons


def seed_callback(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """What a seed broker's callback client sends: Go's bytes, its bare name, its key."""
    body = marshal_callback(payload)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "KIDP-Broker/0.1.0",
        **signing.callback_headers(KEY, broker_name="seed-aws", timestamp=stamp, body=body),
        "X-KIDP-Public-Key": signing.public_key_b64(STRANGER),  # never trusted
    }
    return body, headers


async def post(daemon: DaemonProcess, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.post(f"{daemon.url}/v1/callback", content=body, headers=headers)


async def test_a_seed_broker_with_a_signed_callback(rig: Rig, seed: tuple[SeedBroker, str]) -> None:
    broker, url = seed
    daemon = await rig.daemon(lead=True)
    await apply_seed_broker(rig, url)
    await rig.eventually(partial(broker_ready, rig), "the seed broker Ready")
    await apply_seed_database(rig, "postgres-app-db")
    db = await provisioned(rig, broker, "postgres-app-db")
    deployment = db["status"]["deploymentId"]
    payload = {
        "deploymentId": deployment,
        "resourceType": "database",
        "resourceName": "postgres-app-db",
        "namespace": TEAM,
        "status": "success",
        "phase": "Ready",
        "message": "Database provisioned and healthy",
        "time": datetime.now(UTC),
        "endpoint": "postgres-app-db.team-e2e.svc.cluster.local",
        "port": 5432,
        "connectionSecret": "postgres-app-db-credentials",
        "additionalMetadata": {"engine": "postgresql", "version": "15.2"},
        "estimatedMonthlyCost": 45.5,
    }
    # Signed with the stranger's key (the one in X-KIDP-Public-Key): refused.
    forged_body = marshal_callback(payload)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    forged = signing.callback_headers(
        STRANGER, broker_name="seed-aws", timestamp=stamp, body=forged_body
    )
    forged["X-KIDP-Public-Key"] = signing.public_key_b64(STRANGER)
    assert (await post(daemon, forged_body, forged)).status_code == 401
    body, headers = seed_callback(payload)
    answer = await post(daemon, body, headers)
    assert answer.status_code == 202, answer.text
    ready = await rig.eventually(partial(rig.database_ready, "postgres-app-db"), "Ready")
    status = ready["status"]
    assert (status["endpoint"], status["port"]) == (payload["endpoint"], 5432)
    assert status["connectionSecretRef"] == {
        "name": "postgres-app-db-credentials",
        "namespace": TEAM,
    }
    assert (status["cost"]["estimatedMonthly"], status["cost"]["currency"]) == (45.5, "USD")
    version = ready["metadata"]["resourceVersion"]
    replay = await post(daemon, body, headers)  # the same callback again
    assert replay.status_code == 409, replay.text
    assert (await rig.database("postgres-app-db"))["metadata"]["resourceVersion"] == version
    await delete_and_confirm(rig, broker, "postgres-app-db", deployment)


async def test_a_seed_broker_that_never_calls_back(rig: Rig, seed: tuple[SeedBroker, str]) -> None:
    broker, url = seed
    await rig.daemon(lead=True)
    await apply_seed_broker(rig, url)
    await rig.eventually(partial(broker_ready, rig), "the seed broker Ready")
    await apply_seed_database(rig, "quiet-db")
    db = await provisioned(rig, broker, "quiet-db")
    deployment = db["status"]["deploymentId"]

    async def polled() -> dict[str, Any] | None:
        obj = await rig.database("quiet-db")
        return obj if "reports no phase" in (obj.get("status") or {}).get("message", "") else None

    db = await rig.eventually(polled, "the status poll seen", timeout=POLL_AFTER + 15)
    assert db["status"]["phase"] == "Provisioning"  # still working: not Failed, not Ready
    assert 'status "unknown"' in db["status"]["message"]
    status_queries = [q for _, path, q, _ in broker.requests if path == "/v1/status"]
    assert status_queries[0] == {"id": deployment, "deploymentId": deployment}
    await delete_and_confirm(rig, broker, "quiet-db", deployment)
