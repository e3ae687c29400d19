"""The reference broker over real HTTP on 127.0.0.1: the v1 contract and the knobs."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime

import httpx
import pytest

from kidp_ops.simbroker.config import BrokerConfig
from kidp_ops.simbroker.knobs import Knobs, parse_health_mode
from kidp_ops.simbroker.server import RunningBroker, running_broker
from tests.simbroker.conftest import StartBroker, fast_config, provision_body
from tests.support.waiting import until

HEALTH_KEYS = {
    "status",
    "version",
    "time",
    "uptime",
    "uptimeSeconds",
    "activeDeployments",
    "totalDeployments",
    "failedDeployments",
}


# --- health -------------------------------------------------------------------------------


async def test_health_has_the_contract_shape(
    broker: RunningBroker, http: httpx.AsyncClient
) -> None:
    response = await http.get(f"{broker.url}/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == HEALTH_KEYS
    assert body["status"] == "healthy"
    assert body["version"] == "1.0.0-sim"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["time"])
    datetime.fromisoformat(body["time"])
    assert re.fullmatch(r"(\d+h)?(\d+m)?\d+s", body["uptime"])
    assert body["uptimeSeconds"] >= 0
    assert (body["activeDeployments"], body["totalDeployments"], body["failedDeployments"]) == (
        0,
        0,
        0,
    )
    ready = await http.get(f"{broker.url}/readiness")
    assert ready.status_code == 200


@pytest.mark.parametrize(
    ("mode", "status", "body_status", "ready"),
    [
        ("healthy", 200, "healthy", 200),
        ("degraded", 200, "degraded", 200),
        ("fail", 503, "unhealthy", 503),
    ],
)
async def test_health_modes_with_json_answers(
    broker: RunningBroker,
    http: httpx.AsyncClient,
    mode: str,
    status: int,
    body_status: str,
    ready: int,
) -> None:
    broker.set_knobs(health_mode=mode)
    response = await http.get(f"{broker.url}/health")
    assert response.status_code == status
    assert response.json()["status"] == body_status
    assert (await http.get(f"{broker.url}/readiness")).status_code == ready


async def test_garbage_mode_answers_200_with_a_body_that_is_not_json(
    broker: RunningBroker, http: httpx.AsyncClient
) -> None:
    broker.set_knobs(health_mode="garbage")
    response = await http.get(f"{broker.url}/health")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_huge_mode_answers_more_than_64_kib_of_json(
    broker: RunningBroker, http: httpx.AsyncClient
) -> None:
    broker.set_knobs(health_mode="huge")
    response = await http.get(f"{broker.url}/health")
    assert response.status_code == 200
    assert len(response.content) > 1024 * 1024
    assert response.json()["status"] == "healthy"


async def test_hang_mode_holds_only_that_request(
    broker: RunningBroker, http: httpx.AsyncClient
) -> None:
    broker.set_knobs(health_mode="hang")
    hanging = asyncio.create_task(http.get(f"{broker.url}/health", timeout=0.5))

    async def held() -> bool:
        return broker.simulation.hanging == 1

    await until(held)
    other = await http.get(f"{broker.url}/v1/resources", timeout=1.0)  # not blocked
    assert other.status_code == 200
    assert (await http.get(f"{broker.url}/readiness", timeout=1.0)).status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        await hanging

    async def released() -> bool:  # the broker notices that the client gave up
        return broker.simulation.hanging == 0

    await until(released)


async def test_hang_mode_ends_when_the_broker_stops() -> None:
    """A client that never gives up does not keep the broker from stopping."""
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=30) as http:
        async with running_broker(
            fast_config(knobs=Knobs(health_mode=parse_health_mode("hang")))
        ) as b:
            hanging = asyncio.create_task(http.get(f"{b.url}/health"))
            await until(lambda: b.simulation.hanging == 1)
            started = loop.time()
        assert loop.time() - started < 1.5
        assert (await hanging).status_code == 503


async def test_flap_mode_alternates_on_the_servers_clock(
    broker: RunningBroker, http: httpx.AsyncClient
) -> None:
    broker.set_knobs(health_mode="flap:0.15")
    seen: list[int] = []

    async def saw_both_and_back() -> bool:
        code = (await http.get(f"{broker.url}/health")).status_code
        if not seen or seen[-1] != code:
            seen.append(code)
        return seen[:3] == [200, 503, 200]

    await until(saw_both_and_back, timeout=1.5, every=0.03)


# --- provision / deprovision / status / resources -------------------------------------------


async def test_provision_is_idempotent_by_request_id(
    broker: RunningBroker, http: httpx.AsyncClient
) -> None:
    first = await http.post(f"{broker.url}/v1/provision", json=provision_body("uid-1"))
    again = await http.post(f"{broker.url}/v1/provision", json=provision_body("uid-1"))
    other = await http.post(f"{broker.url}/v1/provision", json=provision_body("uid-2"))
    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["status"] == "accepted"
    assert first.json()["deploymentId"] == again.json()["deploymentId"]
    assert other.json()["deploymentId"] != first.json()["deploymentId"]
    assert "already accepted" in again.json()["message"]
    health = (await http.get(f"{broker.url}/health")).json()
    assert health["totalDeployments"] == 2
    assert (await http.get(f"{broker.url}/v1/resources")).json()["total"] == 2


async def test_concurrent_identical_provisions_create_one_deployment(
    broker: RunningBroker, http: httpx.AsyncClient
) -> None:
    answers = await asyncio.gather(
        *(http.post(f"{broker.url}/v1/provision", json=provision_body("uid-c")) for _ in range(20))
    )
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["deploymentId"] for a in answers}) == 1
    assert (await http.get(f"{broker.url}/health")).json()["totalDeployments"] == 1
    inventory = (await http.get(f"{broker.url}/v1/resources")).json()
    assert inventory["total"] == 1
    assert inventory["resources"][0]["requestId"] == "uid-c"


async def test_same_request_id_same_deployment_id_across_restarts(
    start_broker: StartBroker, http: httpx.AsyncClient
) -> None:
    ids = []
    for _ in range(2):
        b = await start_broker()
        answer = await http.post(f"{b.url}/v1/provision", json=provision_body("uid-r"))
        ids.append(answer.json()["deploymentId"])
    assert ids[0] == ids[1]


async def test_a_bad_body_is_400_in_the_seed_brokers_words(
    broker: RunningBroker, http: httpx.AsyncClient
) -> None:
    body = provision_body()
    del body["namespace"]
    missing = await http.post(f"{broker.url}/v1/provision", json=body)
    assert missing.status_code == 400
    assert missing.json() == {
        "error": "validation_failed",
        "message": "namespace is required",
        "code": 400,
    }
    bad_url = await http.post(
        f"{broker.url}/v1/provision", json=provision_body(callbackUrl="ftp://x")
    )
    assert (bad_url.status_code, bad_url.json()["error"]) == (400, "validation_failed")
    not_json = await http.post(
        f"{broker.url}/v1/provision",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert (not_json.status_code, not_json.json()["error"]) == (400, "invalid_request")


async def test_status_and_resources_follow_the_lifecycle(
    broker: RunningBroker, http: httpx.AsyncClient
) -> None:
    url = broker.url
    accepted = await http.post(f"{url}/v1/provision", json=provision_body("uid-s"))
    await http.post(
        f"{url}/v1/provision", json=provision_body("uid-t", namespace="other", resourceName="x")
    )
    deployment_id = accepted.json()["deploymentId"]
    status = (await http.get(f"{url}/v1/status", params={"id": deployment_id})).json()
    assert set(status) == {"deploymentId", "phase", "status", "message", "lastUpdated"}
    assert status["phase"] == "Provisioning"

    async def ready() -> bool:
        answer = await http.get(f"{url}/v1/status", params={"deploymentId": deployment_id})
        return bool(answer.json()["phase"] == "Ready")

    await until(ready)
    listed = (await http.get(f"{url}/v1/resources", params={"namespace": "team-payments"})).json()
    assert listed["total"] == 1
    item = listed["resources"][0]
    assert set(item) == {
        "deploymentId",
        "requestId",
        "resourceType",
        "resourceName",
        "namespace",
        "phase",
        "endpoint",
    }
    assert item["deploymentId"] == deployment_id
    assert item["endpoint"].startswith("orders-db.team-payments.")
    assert (await http.get(f"{url}/v1/resources")).json()["total"] == 2
    asked = await http.post(
        f"{url}/v1/resources", json={"namespace": "other", "resourceType": "DATABASE"}
    )
    assert [i["resourceName"] for i in asked.json()["resources"]] == ["x"]
    health = (await http.get(f"{url}/health")).json()
    assert health["activeDeployments"] == 2


async def test_deprovision_removes_the_deployment(
    start_broker: StartBroker, http: httpx.AsyncClient
) -> None:
    url = (await start_broker(knobs=Knobs(delay=0.3))).url
    deployment_id = (await http.post(f"{url}/v1/provision", json=provision_body("uid-d"))).json()[
        "deploymentId"
    ]
    gone = await http.post(f"{url}/v1/deprovision", json={"deploymentId": deployment_id})
    assert gone.status_code == 202
    assert gone.json()["deploymentId"] == deployment_id
    params = {"deploymentId": deployment_id}
    assert (await http.get(f"{url}/v1/status", params=params)).json()["phase"] == "Deleting"
    assert (await http.get(f"{url}/health")).json()["activeDeployments"] == 0
    again = await http.post(f"{url}/v1/deprovision", json={"deploymentId": deployment_id})
    assert again.status_code == 202

    async def removed() -> bool:
        return (await http.get(f"{url}/v1/status", params=params)).status_code == 404

    await until(removed)
    listed = (await http.get(f"{url}/v1/resources")).json()
    assert (listed["resources"], listed["total"]) == ([], 0)


async def test_unknown_deployment_is_404(broker: RunningBroker, http: httpx.AsyncClient) -> None:
    gone = await http.post(f"{broker.url}/v1/deprovision", json={"deploymentId": "dep-nope"})
    assert gone.status_code == 404
    assert gone.json() == {
        "error": "NotFound",
        "message": "deployment 'dep-nope' not found",
        "code": 404,
    }
    status = await http.get(f"{broker.url}/v1/status", params={"deploymentId": "dep-nope"})
    assert status.status_code == 404
    assert status.json()["error"] == "NotFound"


async def test_failure_rate_one_fails_every_provisioning(
    start_broker: StartBroker, http: httpx.AsyncClient
) -> None:
    b = await start_broker(knobs=Knobs(delay=0.02, failure_rate=1.0))
    deployment_id = (await http.post(f"{b.url}/v1/provision", json=provision_body())).json()[
        "deploymentId"
    ]

    async def failed() -> bool:
        answer = await http.get(f"{b.url}/v1/status", params={"deploymentId": deployment_id})
        return bool(answer.json()["phase"] == "Failed")

    await until(failed)
    health = (await http.get(f"{b.url}/health")).json()
    assert (health["failedDeployments"], health["activeDeployments"]) == (1, 0)


async def test_the_seed_makes_failures_repeatable(
    start_broker: StartBroker, http: httpx.AsyncClient
) -> None:
    outcomes = []
    for _ in range(2):
        b = await start_broker(knobs=Knobs(delay=0.01, failure_rate=0.5), seed=42)
        for i in range(12):
            await http.post(f"{b.url}/v1/provision", json=provision_body(f"uid-{i}"))

        async def settled(b: RunningBroker = b) -> bool:
            items = (await http.get(f"{b.url}/v1/resources")).json()["resources"]
            return all(item["phase"] in ("Ready", "Failed") for item in items)

        await until(settled)
        items = (await http.get(f"{b.url}/v1/resources")).json()["resources"]
        outcomes.append([(i["requestId"], i["phase"]) for i in items])
    assert outcomes[0] == outcomes[1]
    assert {phase for _, phase in outcomes[0]} == {"Ready", "Failed"}


async def test_capacity_refuses_with_429_and_counts_only_active(
    start_broker: StartBroker, http: httpx.AsyncClient
) -> None:
    b = await start_broker(knobs=Knobs(delay=5.0, capacity=2))
    first = await http.post(f"{b.url}/v1/provision", json=provision_body("a"))
    await http.post(f"{b.url}/v1/provision", json=provision_body("b"))
    full = await http.post(f"{b.url}/v1/provision", json=provision_body("c"))
    assert full.status_code == 429
    assert full.json()["error"] == "AtCapacity"
    assert "2 of 2" in full.json()["message"]
    assert full.headers["Retry-After"] == "5"
    replay = await http.post(f"{b.url}/v1/provision", json=provision_body("a"))
    assert replay.status_code == 202  # idempotent replays are not new work
    deployment_id = first.json()["deploymentId"]
    await http.post(f"{b.url}/v1/deprovision", json={"deploymentId": deployment_id})
    assert (await http.post(f"{b.url}/v1/provision", json=provision_body("c"))).status_code == 202
    assert (await http.get(f"{b.url}/health")).json()["totalDeployments"] == 3


# --- credentials ------------------------------------------------------------------------------


async def test_api_key_is_required_when_configured(
    start_broker: StartBroker, http: httpx.AsyncClient
) -> None:
    b = await start_broker(api_key="s3cret")
    for path in ("/health", "/v1/resources", "/admin/knobs"):
        missing = await http.get(f"{b.url}{path}")
        assert missing.status_code == 401, path
        assert missing.json()["error"] == "Unauthorized"
        wrong = await http.get(f"{b.url}{path}", headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401
        right = await http.get(f"{b.url}{path}", headers={"X-API-Key": "s3cret"})
        assert right.status_code == 200, path
    posted = await http.post(f"{b.url}/v1/provision", json=provision_body())
    assert posted.status_code == 401
    assert (await http.get(f"{b.url}/readiness")).status_code == 200
    assert (await http.get(f"{b.url}/openapi.json")).status_code == 200


async def test_bearer_token_is_required_when_configured(
    start_broker: StartBroker, http: httpx.AsyncClient
) -> None:
    b = await start_broker(token="tok-1", api_key="key-1")
    missing = await http.get(f"{b.url}/health")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    bad_scheme = await http.get(f"{b.url}/health", headers={"Authorization": "Basic tok-1"})
    assert bad_scheme.status_code == 401
    bearer = await http.get(f"{b.url}/health", headers={"Authorization": "Bearer tok-1"})
    assert bearer.status_code == 200
    key = await http.get(f"{b.url}/health", headers={"X-API-Key": "key-1"})
    assert key.status_code == 200  # with both configured, either one is enough


# --- admin knobs ------------------------------------------------------------------------------


async def test_admin_knobs_read_and_change(broker: RunningBroker, http: httpx.AsyncClient) -> None:
    knobs = (await http.get(f"{broker.url}/admin/knobs")).json()
    assert knobs == {
        "delay": 0.05,
        "failureRate": 0.0,
        "deprovisionFailureRate": 0.0,
        "healthMode": "healthy",
        "capacity": 0,
        "version": "1.0.0-sim",
    }
    patch = {"version": "2.1.0", "healthMode": "flap:5", "capacity": 3, "failureRate": 0.25}
    changed = await http.patch(f"{broker.url}/admin/knobs", json=patch)
    assert changed.status_code == 200
    assert changed.json() == {**knobs, **patch}
    assert broker.simulation.knobs.capacity == 3
    assert (await http.get(f"{broker.url}/health")).json()["version"] == "2.1.0"


@pytest.mark.parametrize(
    "patch",
    [
        {"failureRate": 1.5},
        {"failureRate": "high"},
        {"delay": -1},
        {"delay": 1e9},
        {"capacity": 1.5},
        {"capacity": -1},
        {"capacity": True},
        {"healthMode": "sideways"},
        {"healthMode": "flap:0"},
        {"version": ""},
        {"speed": 3},
        {"capacity": 2, "healthMode": "bogus"},  # nothing of a bad patch is applied
    ],
)
async def test_admin_knobs_reject_bad_values_with_422(
    broker: RunningBroker, http: httpx.AsyncClient, patch: dict[str, object]
) -> None:
    response = await http.patch(f"{broker.url}/admin/knobs", json=patch)
    assert response.status_code == 422
    assert broker.simulation.knobs == fast_config().knobs


# --- the machine-readable contract ---------------------------------------------------------


async def test_openapi_document_describes_the_contract(
    broker: RunningBroker, http: httpx.AsyncClient
) -> None:
    document = (await http.get(f"{broker.url}/openapi.json")).json()
    paths = document["paths"]
    for path in ("/health", "/v1/provision", "/v1/deprovision", "/v1/status", "/v1/resources"):
        assert path in paths, path
    assert not any(p.startswith("/admin") for p in paths)
    provision = paths["/v1/provision"]["post"]
    assert "202" in provision["responses"]
    assert "429" in provision["responses"]
    assert "callbacks" in provision
    schemas = document["components"]["schemas"]
    assert {"ProvisionRequest", "CallbackPayload", "HealthResponse", "ResourceList"} <= set(schemas)
    request = schemas["ProvisionRequest"]
    assert request["required"] == ["resourceType", "resourceName", "namespace"]
    assert {"team", "owner", "callbackUrl", "spec", "requestId"} <= set(request["properties"])
    assert {"APIKeyHeader", "HTTPBearer"} <= set(document["components"]["securitySchemes"])


async def test_default_config_runs_on_a_free_port() -> None:
    async with running_broker(BrokerConfig()) as b, httpx.AsyncClient() as http:
        assert b.port > 0
        assert b.url == f"http://127.0.0.1:{b.port}"
        assert (await http.get(f"{b.url}/health")).status_code == 200
