"""Our broker client against a broker that speaks exactly the seed's contract.

What went wrong before issue 9, and works now: the seed's broker decodes strictly (an
object where Go has a string is a 400), answers a deprovision without a deploymentId, a
status without a phase and an empty inventory.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from kidp_ops.brokerapi.client import BrokerClient, BrokerRejected, DeprovisionOutcome
from kidp_ops.brokerapi.models import DeprovisionRequest, ProvisionRequest
from kidp_ops.reconcilers.provisioning import deprovision_body, provision_body
from tests.support.seedbroker import SeedBroker, running_seed_broker

DATABASE = {
    "metadata": {"name": "orders", "namespace": "team-payments", "uid": "uid-1"},
    "spec": {"owner": {"kind": "Application", "name": "api"}, "engine": "postgresql"},
}


@pytest.fixture
async def seed() -> AsyncIterator[tuple[SeedBroker, str]]:
    async with running_seed_broker() as running:
        yield running


async def test_our_requests_are_what_a_seed_broker_accepts(seed: tuple[SeedBroker, str]) -> None:
    broker, url = seed
    async with BrokerClient(url) as client:
        body = provision_body(DATABASE, "http://127.0.0.1:9/v1/callback")
        accepted = await client.provision(ProvisionRequest.model_validate(body))
        assert accepted.deployment_id.startswith("deploy-")
        [sent] = broker.bodies("/v1/provision")
        assert (sent["team"], sent["owner"]) == ("Application/api", "api")
        request = deprovision_body(DATABASE, accepted.deployment_id, body["callbackUrl"])
        outcome = await client.deprovision(DeprovisionRequest.model_validate(request))
        assert outcome is DeprovisionOutcome.ACCEPTED  # a 202 without deploymentId
        status = await client.status(accepted.deployment_id)
        assert (status.phase, status.status) == (None, "unknown")
        assert (await client.resources("team-payments")).resources == []


async def test_the_seed_broker_decodes_like_go(seed: tuple[SeedBroker, str]) -> None:
    """The shapes our manager used to send: an owner object, no team."""
    _, url = seed
    old = {
        "resourceType": "Database",
        "resourceName": "orders",
        "namespace": "team-payments",
        "owner": {"kind": "Team", "name": "payments"},
        "callbackUrl": "http://127.0.0.1:9/cb",
        "spec": {},
        "requestId": "uid-1",
    }
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.post(f"{url}/v1/provision", content=json.dumps(old))
        assert answer.status_code == 400
        assert answer.json() == {
            "error": "invalid_request",
            "message": "Failed to parse request body: json: cannot unmarshal object into Go "
            "struct field ProvisionRequest.owner of type string",
            "code": 400,
        }
        assert answer.content.endswith(b"}\n")  # Go's json.Encoder
        no_team = {**old, "owner": "payments"}
        answer = await http.post(f"{url}/v1/provision", content=json.dumps(no_team))
        assert answer.json()["message"] == "team is required"
        no_id = await http.get(f"{url}/v1/status")
        assert (no_id.status_code, no_id.text) == (400, "Missing deployment ID\n")
        assert (await http.get(f"{url}/v1/provision")).status_code == 405
    async with BrokerClient(url) as client:
        with pytest.raises(BrokerRejected, match="team is required"):
            await client.provision(ProvisionRequest.model_validate({**no_team, "team": ""}))
