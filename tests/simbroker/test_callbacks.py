"""Signed callbacks from a real broker to a real receiver on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx

from kidp_ops.brokerapi import signing
from kidp_ops.brokerapi.models import CallbackPayload
from kidp_ops.simbroker.knobs import Knobs
from kidp_ops.simbroker.server import RunningBroker
from tests.simbroker.conftest import Receiver, StartBroker, provision_body
from tests.support.waiting import until


async def _provision(http: httpx.AsyncClient, broker: RunningBroker, **body: Any) -> str:
    answer = await http.post(f"{broker.url}/v1/provision", json=provision_body(**body))
    assert answer.status_code == 202, answer.text
    return str(answer.json()["deploymentId"])


async def test_ready_callback_is_signed_by_the_broker(
    broker: RunningBroker, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    deployment_id = await _provision(http, broker, callbackUrl=receiver.url)
    got = await receiver.next()

    payload = CallbackPayload.model_validate_json(got.body)
    assert payload.deployment_id == deployment_id
    assert (payload.status, payload.phase) == ("success", "Ready")
    assert payload.port == 5432
    assert payload.endpoint
    assert payload.connection_secret == "orders-db-connection"
    assert payload.details["requestId"] == "uid-1"
    assert payload.estimated_monthly_cost == 25.0  # a small one
    assert list(json.loads(got.body)) == [  # the seed's CallbackRequest order, no empty error
        "deploymentId",
        "resourceType",
        "resourceName",
        "namespace",
        "status",
        "phase",
        "message",
        "time",
        "endpoint",
        "port",
        "connectionSecret",
        "details",
        "estimatedMonthlyCost",
    ]

    assert got.headers["X-KIDP-Broker-Name"] == "kidp-system/sim"
    assert got.headers["X-KIDP-Public-Key"] == broker.public_key  # as seed brokers send it
    timestamp = got.headers["X-KIDP-Timestamp"]
    signature = got.headers["X-KIDP-Signature"]
    assert timestamp.endswith("Z")
    assert signing.verify(broker.public_key, timestamp, got.body, signature)


async def test_signature_fails_with_another_key_a_changed_byte_or_timestamp(
    broker: RunningBroker, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    await _provision(http, broker, callbackUrl=receiver.url)
    got = await receiver.next()
    timestamp = got.headers["X-KIDP-Timestamp"]
    signature = got.headers["X-KIDP-Signature"]
    other_key = signing.public_key_b64(signing.generate_private_key())

    assert not signing.verify(other_key, timestamp, got.body, signature)
    for index in (0, len(got.body) // 2, len(got.body) - 1):
        changed = bytearray(got.body)
        changed[index] ^= 0x01
        assert not signing.verify(broker.public_key, timestamp, bytes(changed), signature)
    later = timestamp[:-2] + str((int(timestamp[-2]) + 1) % 10) + "Z"
    assert not signing.verify(broker.public_key, later, got.body, signature)
    assert signing.verify(broker.public_key, timestamp, got.body, signature)


async def test_failed_provisioning_calls_back_with_the_error(
    start_broker: StartBroker, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    broker = await start_broker(knobs=Knobs(delay=0.02, failure_rate=1.0))
    await _provision(http, broker, callbackUrl=receiver.url)
    body = (await receiver.next()).body
    payload = CallbackPayload.model_validate_json(body)
    assert (payload.status, payload.phase) == ("failed", "Failed")
    assert payload.error
    assert "endpoint" not in json.loads(body)  # omitempty, as Go leaves it out


async def test_deprovision_calls_back_when_gone(
    broker: RunningBroker, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    deployment_id = await _provision(http, broker)  # no callbackUrl: no provision callback
    body = {"deploymentId": deployment_id, "callbackUrl": receiver.url}
    assert (await http.post(f"{broker.url}/v1/deprovision", json=body)).status_code == 202
    got = await receiver.next()
    payload = CallbackPayload.model_validate_json(got.body)
    assert (payload.deployment_id, payload.status, payload.phase) == (
        deployment_id,
        "success",
        "Deleted",
    )
    assert payload.details["operation"] == "deprovision"
    assert signing.verify(
        broker.public_key,
        got.headers["X-KIDP-Timestamp"],
        got.body,
        got.headers["X-KIDP-Signature"],
    )
    assert receiver.queue.empty()


async def test_callbacks_are_retried_after_server_errors(
    broker: RunningBroker, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    await _provision(http, broker, callbackUrl=receiver.url)
    bodies = [(await receiver.next()).body for _ in range(3)]
    assert len(set(bodies)) == 1  # the same body each time, signed afresh

    async def recorded() -> bool:
        return bool(broker.simulation.sender and broker.simulation.sender.recent)

    await until(recorded)
    assert broker.simulation.sender is not None
    delivery = broker.simulation.sender.recent[-1]
    assert (delivery.delivered, delivery.attempts, delivery.last_status) == (True, 3, 200)


async def test_a_rejected_callback_is_not_retried(
    broker: RunningBroker, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.statuses = [401]
    await _provision(http, broker, callbackUrl=receiver.url)
    await receiver.next()
    assert broker.simulation.sender is not None
    sender = broker.simulation.sender

    async def recorded() -> bool:
        return bool(sender.recent)

    await until(recorded)
    assert (sender.recent[-1].delivered, sender.recent[-1].attempts) == (False, 1)
    assert receiver.queue.empty()


async def test_an_unreachable_receiver_gives_up_and_the_broker_keeps_serving(
    broker: RunningBroker, http: httpx.AsyncClient
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/callback"
    await _provision(http, broker, callbackUrl=dead)
    assert broker.simulation.sender is not None
    sender = broker.simulation.sender

    async def gave_up() -> bool:
        return bool(sender.recent)

    await until(gave_up)
    delivery = sender.recent[-1]
    assert (delivery.delivered, delivery.attempts, delivery.last_status) == (False, 3, None)
    assert "Connect" in delivery.error
    assert (await http.get(f"{broker.url}/health")).status_code == 200
