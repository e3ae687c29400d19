"""The seed system's Go manager can use our reference broker.

The requests are the exact bytes the seed's manager sends (`pkg/brokerclient`: Go's
json.Marshal of its request structs, checked here against real Go); the callbacks are
checked the way that manager checks them: decoded into its CallbackRequest, re-marshalled
by Go, and the signature verified over the re-marshal (`tests/support/gocheck`).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from kidp_ops.brokerapi import signing
from kidp_ops.simbroker.knobs import Knobs
from tests.simbroker.conftest import Receiver, StartBroker
from tests.support.golang import ask
from tests.support.waiting import until

CALLBACK = "http://manager-webhook-service.kidp-system.svc.cluster.local:9090/v1/callback"
SEED_PROVISION_FIELDS = {
    "resourceType": "database",
    "resourceName": "postgres-app-db",
    "namespace": "default",
    "team": "Team/platform-team",
    "owner": "platform-team",
    "callbackUrl": CALLBACK,
    "spec": {"engine": "postgresql", "version": "15", "size": "medium"},
}
SEED_PROVISION = (
    '{"resourceType":"database","resourceName":"postgres-app-db","namespace":"default",'
    '"team":"Team/platform-team","owner":"platform-team","callbackUrl":"' + CALLBACK + '",'
    '"spec":{"engine":"postgresql","size":"medium","version":"15"}}'
)


def test_the_request_bytes_are_what_the_seed_manager_marshals(gocheck: Path) -> None:
    answer = ask(gocheck, {"mode": "provision", "request": SEED_PROVISION_FIELDS})
    assert answer["bytes"] == SEED_PROVISION


async def test_the_seed_manager_provisions_deprovisions_and_asks(
    start_broker: StartBroker, http: httpx.AsyncClient, receiver: Receiver, gocheck: Path
) -> None:
    broker = await start_broker(callback_name="sim", knobs=Knobs(delay=0.05))
    body = SEED_PROVISION.replace(CALLBACK, receiver.url).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "KIDP-Manager/0.1.0"}
    first = await http.post(f"{broker.url}/v1/provision", content=body, headers=headers)
    assert first.status_code == 202, first.text
    deployment_id = first.json()["deploymentId"]
    assert deployment_id and first.json()["status"] == "accepted"
    # No requestId: the same namespace/type/name is the same deployment, provisioned once.
    again = await http.post(f"{broker.url}/v1/provision", content=body, headers=headers)
    assert again.json()["deploymentId"] == deployment_id
    listed = await http.post(f"{broker.url}/v1/resources", json={"namespace": "default"})
    assert listed.json()["total"] == 1

    got = await receiver.next()
    assert got.headers["X-KIDP-Broker-Name"] == "sim"  # --callback-name: bare, as seed brokers
    callback = json.loads(got.body)
    assert (callback["resourceType"], callback["status"], callback["phase"]) == (
        "database",  # the seed's webhook accepts exactly this
        "success",
        "Ready",
    )
    assert callback["deploymentId"] == deployment_id
    verdict = ask(
        gocheck,
        {
            "mode": "callback",
            "body": got.body.decode(),
            "timestamp": got.headers["X-KIDP-Timestamp"],
            "signature": got.headers["X-KIDP-Signature"],
            "publicKey": broker.public_key,
        },
    )
    assert verdict == {"remarshal": got.body.decode(), "equal": True, "verified": True}
    assert signing.verify(
        broker.public_key,
        got.headers["X-KIDP-Timestamp"],
        got.body,
        got.headers["X-KIDP-Signature"],
    )

    status = await http.get(f"{broker.url}/v1/status", params={"id": deployment_id})
    assert status.json()["phase"] == "Ready"
    deprovision = json.dumps(
        {
            "deploymentId": deployment_id,
            "resourceType": "database",
            "resourceName": "postgres-app-db",
            "namespace": "default",
            "callbackUrl": receiver.url,
        },
        separators=(",", ":"),
    )
    gone = await http.post(f"{broker.url}/v1/deprovision", content=deprovision, headers=headers)
    assert gone.status_code == 202
    assert gone.json()["status"] == "accepted"  # 2xx with JSON: what that manager needs
    deleted = json.loads((await receiver.next()).body)
    assert (deleted["status"], deleted["phase"]) == ("success", "Deleted")

    async def removed() -> bool:
        answer = await http.get(f"{broker.url}/v1/status", params={"id": deployment_id})
        return answer.status_code == 404

    await until(removed, timeout=2.0)
