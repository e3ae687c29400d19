"""BrokerClient against real servers on 127.0.0.1: the reference broker, and a rogue one."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from kidp_ops.brokerapi.client import (
    BrokerClient,
    BrokerError,
    BrokerProtocolError,
    BrokerRejected,
    BrokerTimeout,
    BrokerUnreachable,
    Credentials,
    DeploymentNotFound,
    DeprovisionOutcome,
)
from kidp_ops.brokerapi.models import DeprovisionRequest, ProvisionRequest
from kidp_ops.simbroker.knobs import Knobs
from kidp_ops.simbroker.server import RunningBroker, running_broker
from tests.simbroker.conftest import fast_config
from tests.support.waiting import until


def _request(request_id: str = "uid-1") -> ProvisionRequest:
    return ProvisionRequest(
        resource_type="Database",
        resource_name="orders-db",
        namespace="team-payments",
        spec={"engine": "postgresql"},
        request_id=request_id,
    )


@pytest.fixture
async def broker() -> AsyncIterator[RunningBroker]:
    async with running_broker(fast_config()) as running:
        yield running


@pytest.fixture
async def client(broker: RunningBroker) -> AsyncIterator[BrokerClient]:
    async with BrokerClient(broker.url, timeout=2.0) as c:
        yield c


Handler = Callable[[web.Request], Any]


@pytest.fixture
async def rogue() -> AsyncIterator[Callable[[dict[str, Handler]], Any]]:
    """`url = await rogue({"/health": handler})`: an aiohttp server that breaks the contract."""
    runners: list[web.AppRunner] = []

    async def serve(routes: dict[str, Handler]) -> str:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_route("*", path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield serve
    for runner in runners:
        await runner.cleanup()


# --- the happy path -----------------------------------------------------------------------


async def test_provision_status_resources_deprovision(client: BrokerClient) -> None:
    accepted = await client.provision(_request())
    assert accepted.status == "accepted"
    again = await client.provision(_request())
    assert again.deployment_id == accepted.deployment_id

    async def ready() -> bool:
        return (await client.status(accepted.deployment_id)).phase == "Ready"

    await until(ready, timeout=2.0)
    listed = await client.resources("team-payments")
    assert [r.deployment_id for r in listed.resources] == [accepted.deployment_id]
    assert (await client.resources("elsewhere")).total == 0
    health = await client.health()
    assert (health.status, health.active_deployments, health.total_deployments) == (
        "healthy",
        1,
        1,
    )

    outcome = await client.deprovision(DeprovisionRequest(deployment_id=accepted.deployment_id))
    assert outcome is DeprovisionOutcome.ACCEPTED


async def test_deprovision_of_an_unknown_deployment_is_already_gone(client: BrokerClient) -> None:
    outcome = await client.deprovision(DeprovisionRequest(deployment_id="dep-never"))
    assert outcome is DeprovisionOutcome.ALREADY_GONE


async def test_status_of_an_unknown_deployment(client: BrokerClient) -> None:
    with pytest.raises(DeploymentNotFound) as info:
        await client.status("dep-never")
    assert info.value.status == 404
    assert info.value.error == "NotFound"
    assert isinstance(info.value, BrokerRejected)


# --- health answers a prober must survive ---------------------------------------------------


async def test_degraded_is_returned_for_the_caller_to_judge(
    broker: RunningBroker, client: BrokerClient
) -> None:
    broker.set_knobs(health_mode="degraded")
    assert (await client.health()).status == "degraded"


async def test_fail_is_rejected_with_503(broker: RunningBroker, client: BrokerClient) -> None:
    broker.set_knobs(health_mode="fail")
    with pytest.raises(BrokerRejected) as info:
        await client.health()
    assert info.value.status == 503


async def test_garbage_is_a_protocol_error(broker: RunningBroker, client: BrokerClient) -> None:
    broker.set_knobs(health_mode="garbage")
    with pytest.raises(BrokerProtocolError, match="unexpected health response"):
        await client.health()


async def test_huge_is_a_protocol_error(broker: RunningBroker, client: BrokerClient) -> None:
    broker.set_knobs(health_mode="huge")
    with pytest.raises(BrokerProtocolError, match="larger than 65536 bytes"):
        await client.health()


async def test_hang_is_a_timeout(broker: RunningBroker) -> None:
    broker.set_knobs(health_mode="hang")
    async with BrokerClient(broker.url, timeout=0.3) as client:
        with pytest.raises(BrokerTimeout, match=r"no answer within 0.3s"):
            await client.health()


async def test_refused_connection_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with BrokerClient(f"http://127.0.0.1:{port}", timeout=2.0) as client:
        with pytest.raises(BrokerUnreachable) as info:
            await client.health()
    assert not isinstance(info.value, BrokerTimeout)
    assert "ConnectError" in info.value.message


async def test_health_path_must_be_a_path(client: BrokerClient) -> None:
    for bad in ("http://evil.example/health", "//evil.example/health", "health"):
        with pytest.raises(ValueError, match="must be a path"):
            await client.health(bad)


# --- credentials and refusals ---------------------------------------------------------------


async def test_credentials_are_sent_as_the_contract_says() -> None:
    async with running_broker(fast_config(api_key="k1", token="t1")) as b:
        async with BrokerClient(b.url) as anonymous:
            with pytest.raises(BrokerRejected) as info:
                await anonymous.health()
            assert (info.value.status, info.value.error) == (401, "Unauthorized")
        for credentials in (Credentials.api_key("k1"), Credentials.bearer("t1")):
            async with BrokerClient(b.url, credentials=credentials) as c:
                assert (await c.health()).status == "healthy"
    assert "k1" not in repr(Credentials.api_key("k1"))


async def test_at_capacity_is_rejected_with_429() -> None:
    async with (
        running_broker(fast_config(knobs=Knobs(delay=5, capacity=1))) as b,
        BrokerClient(b.url) as client,
    ):
        await client.provision(_request("a"))
        with pytest.raises(BrokerRejected) as info:
            await client.provision(_request("b"))
    assert (info.value.status, info.value.error) == (429, "AtCapacity")
    assert "at capacity" in info.value.message


# --- a broker that breaks the contract ------------------------------------------------------


async def test_wrong_shapes_are_protocol_errors(rogue: Callable[..., Any]) -> None:
    async def wrong_shape(_request: web.Request) -> web.Response:
        return web.json_response({"unexpected": True})

    async def a_list(_request: web.Request) -> web.Response:
        return web.json_response([1, 2, 3])

    url = await rogue({"/health": a_list, "/v1/status": a_list, "/v1/provision": wrong_shape})
    async with BrokerClient(url) as client:
        with pytest.raises(BrokerProtocolError, match="health"):
            await client.health()
        with pytest.raises(BrokerProtocolError, match="status response"):
            await client.status("d")
        with pytest.raises(BrokerProtocolError, match=r"provision response: deploymentId"):
            await client.provision(_request())


async def test_a_status_answer_without_a_phase_is_not_an_error(rogue: Callable[..., Any]) -> None:
    """The seed's broker answers every status query like this: 'still working'."""

    async def seed_status(request: web.Request) -> web.Response:
        assert request.query["id"] == request.query["deploymentId"] == "deploy-1"
        body = {"deploymentId": "deploy-1", "message": "pending", "status": "unknown"}
        return web.json_response(body)

    url = await rogue({"/v1/status": seed_status})
    async with BrokerClient(url) as client:
        answer = await client.status("deploy-1")
    assert (answer.phase, answer.status, answer.message) == (None, "unknown", "pending")


async def test_redirects_are_not_followed_and_text_errors_are_kept(
    rogue: Callable[..., Any],
) -> None:
    async def redirect(_request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest")

    async def text_error(_request: web.Request) -> web.Response:
        return web.Response(status=500, text="database on fire\nstack trace here")

    url = await rogue({"/health": redirect, "/v1/resources": text_error})
    async with BrokerClient(url) as client:
        with pytest.raises(BrokerRejected) as redirected:
            await client.health()
        assert redirected.value.status == 302
        with pytest.raises(BrokerRejected) as failed:
            await client.resources()
    assert failed.value.message == "HTTP 500: database on fire"


async def test_every_failure_is_a_broker_error() -> None:
    for error in (BrokerUnreachable, BrokerTimeout, BrokerProtocolError, DeploymentNotFound):
        assert issubclass(error, BrokerError)
    async with BrokerClient("http://127.0.0.1:1") as client:
        with pytest.raises(BrokerError):
            await client.resources()


async def test_deeply_nested_answers_are_broker_errors_not_crashes(
    rogue: Callable[..., Any],
) -> None:
    """A broker's bytes are untrusted: 100,000 nested arrays in an error body or an answer
    end as one BrokerError, never a RecursionError."""
    deep = b"[" * 100_000 + b"]" * 100_000

    async def deep_error(_request: web.Request) -> web.Response:
        return web.Response(status=500, body=deep, content_type="application/json")

    async def deep_answer(_request: web.Request) -> web.Response:
        return web.Response(
            body=b'{"deploymentId": ' + deep + b"}", content_type="application/json"
        )

    url = await rogue({"/v1/resources": deep_error, "/v1/status": deep_answer})
    async with BrokerClient(url) as client:
        with pytest.raises(BrokerRejected) as failed:
            await client.resources()
        assert failed.value.message.startswith("HTTP 500")
        with pytest.raises(BrokerProtocolError):
            await client.status("d")
