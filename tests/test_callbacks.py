"""The callback gate: the sender by name, its key only, +-5 minutes, replays, bounded bodies."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kidp_ops.brokerapi.signing import (
    HEADER_BROKER_NAME,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    callback_headers,
    generate_private_key,
    public_key_b64,
)
from kidp_ops.callbacks import CallbackGate, DeploymentIndex, Verdict
from kidp_ops.registry import BrokerRegistry
from tests.conftest import broker_manifest

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
BROKER = "kidp-system/aws-1"
KEY = generate_private_key()
OTHER_KEY = generate_private_key()


def database(name: str, deployment_id: str | None, broker: str = "aws-1") -> dict[str, Any]:
    status: dict[str, Any] = {"brokerRef": {"name": broker, "namespace": "kidp-system"}}
    if deployment_id:
        status["deploymentId"] = deployment_id
    return {"metadata": {"name": name, "namespace": "team"}, "status": status}


def registered(name: str, namespace: str = "kidp-system", *, key: Any = KEY, **spec: Any) -> Any:
    manifest = broker_manifest(name, namespace, **spec)
    manifest["status"] = {"phase": "Ready"}
    if key is not None:
        manifest["status"]["callbackPublicKey"] = public_key_b64(key)
    return manifest


def make_gate(*brokers: dict[str, Any]) -> tuple[CallbackGate, DeploymentIndex, BrokerRegistry]:
    registry = BrokerRegistry()
    for manifest in brokers or (registered("aws-1"), registered("azure-1", key=OTHER_KEY)):
        registry.handle("ADDED", manifest)
    index = DeploymentIndex()
    index.handle("ADDED", database("orders", "d-1"))
    index.handle("ADDED", database("ledger", "d-2", broker="azure-1"))
    refs = {"team/orders": BROKER, "team/ledger": "kidp-system/azure-1"}
    gate = CallbackGate(brokers=registry, broker_ref_of=refs.get, index=index)
    return gate, index, registry


def body(deployment_id: str = "d-1", **extra: Any) -> bytes:
    payload = {
        "deploymentId": deployment_id,
        "status": "success",
        "phase": "Ready",
        "endpoint": "pg.internal",
        "port": 5432,
        "connectionSecret": "orders-conn",
        "time": NOW.isoformat(),
        **extra,
    }
    return json.dumps(payload).encode()


def signed(
    raw: bytes, *, key: Any = KEY, broker: str = BROKER, at: datetime = NOW
) -> dict[str, str]:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return callback_headers(key, broker_name=broker, timestamp=stamp, body=raw)


def test_a_good_callback_is_accepted_and_says_ready() -> None:
    gate, _, _ = make_gate()
    raw = body()
    verdict = gate.check(signed(raw), raw, now=NOW)
    assert verdict.accepted, verdict.reason
    assert (verdict.database, verdict.deployment_id, verdict.broker) == (
        "team/orders",
        "d-1",
        BROKER,
    )
    assert verdict.result is not None
    assert (verdict.result.phase, verdict.result.endpoint, verdict.result.port) == (
        "Ready",
        "pg.internal",
        5432,
    )
    assert verdict.result.connection_secret == "orders-conn"
    assert verdict.stamp is not None and verdict.stamp.when == NOW
    assert len(verdict.stamp.digest) == 64


def reject(verdict: Verdict, status: int, words: str) -> None:
    assert not verdict.accepted
    assert verdict.status == status
    assert words in verdict.reason


def test_another_key_or_a_changed_byte_fails() -> None:
    gate, _, _ = make_gate()
    raw = body()
    reject(gate.check(signed(raw, key=OTHER_KEY), raw, now=NOW), 401, "does not verify")
    headers = signed(raw)
    tampered = raw.replace(b"5432", b"5433")
    reject(gate.check(headers, tampered, now=NOW), 401, "does not verify")
    moved = dict(headers, **{HEADER_TIMESTAMP: "2026-11-25T10:00:01Z"})
    reject(gate.check(moved, raw, now=NOW), 401, "does not verify")


def test_a_key_sent_with_the_request_is_never_trusted() -> None:
    gate, _, _ = make_gate()
    raw = body(publicKey=public_key_b64(OTHER_KEY))
    headers = signed(raw, key=OTHER_KEY)
    headers["X-KIDP-Public-Key"] = public_key_b64(OTHER_KEY)
    reject(gate.check(headers, raw, now=NOW), 401, "does not verify")


def test_a_bare_name_resolves_to_the_one_broker_of_that_name() -> None:
    gate, _, _ = make_gate()
    raw = body()
    verdict = gate.check(signed(raw, broker="aws-1"), raw, now=NOW)
    assert verdict.accepted, verdict.reason
    assert verdict.broker == BROKER


def test_an_ambiguous_bare_name_is_refused() -> None:
    gate, _, _ = make_gate(registered("aws-1"), registered("aws-1", "team-x"))
    raw = body()
    reject(
        gate.check(signed(raw, broker="aws-1"), raw, now=NOW),
        401,
        "ambiguous broker name aws-1 (kidp-system/aws-1, team-x/aws-1); send namespace/name",
    )
    assert gate.check(signed(raw), raw, now=NOW).accepted  # namespace/name still works


def test_the_key_pinned_in_the_spec_wins_over_the_registered_one() -> None:
    pinned = registered("aws-1", key=OTHER_KEY, callbackPublicKey=public_key_b64(KEY))
    gate, _, _ = make_gate(pinned)
    raw = body()
    assert gate.check(signed(raw), raw, now=NOW).accepted  # signed with the pinned KEY
    again = body(message="signed with the key in status")
    reject(gate.check(signed(again, key=OTHER_KEY), again, now=NOW), 401, "does not verify")


def test_unknown_broker_is_forbidden() -> None:
    gate, _, _ = make_gate(registered("azure-1", key=OTHER_KEY))
    raw = body()
    reject(gate.check(signed(raw), raw, now=NOW), 403, "unknown broker kidp-system/aws-1")
    reject(gate.check(signed(raw, broker="aws-1"), raw, now=NOW), 403, "unknown broker aws-1")


def test_a_known_broker_without_a_registered_key_is_asked_to_retry() -> None:
    gate, _, _ = make_gate(registered("aws-1", key=None))
    raw = body()
    reject(gate.check(signed(raw), raw, now=NOW), 503, "no callbackPublicKey yet")


@pytest.mark.parametrize(("offset", "ok"), [(-299, True), (299, True), (-301, False), (301, False)])
def test_timestamps_outside_five_minutes(offset: int, ok: bool) -> None:
    gate, _, _ = make_gate()
    raw = body()
    verdict = gate.check(signed(raw, at=NOW + timedelta(seconds=offset)), raw, now=NOW)
    assert verdict.accepted is ok, verdict.reason
    if not ok:
        reject(verdict, 401, "outside +-5 minutes")


def _respell(signature: str) -> str:
    """The same signature bytes in other base64 text: the last data character carries 4
    unused bits (a 64-byte signature ends in `X==`), which decoders ignore."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(signature[-3])
    respelled = signature[:-3] + alphabet[last ^ 0b0001] + signature[-2:]
    assert respelled != signature
    assert base64.b64decode(respelled) == base64.b64decode(signature)
    return respelled


def test_replay_is_refused_even_with_the_signature_spelled_anew() -> None:
    gate, _, _ = make_gate()
    raw = body()
    headers = signed(raw)
    assert gate.check(headers, raw, now=NOW).accepted
    reject(gate.check(headers, raw, now=NOW + timedelta(seconds=1)), 409, "replayed")
    respelled = dict(headers, **{HEADER_SIGNATURE: _respell(headers[HEADER_SIGNATURE])})
    reject(gate.check(respelled, raw, now=NOW + timedelta(seconds=2)), 409, "replayed")


def test_a_broker_cannot_report_on_another_brokers_deployment() -> None:
    gate, _, _ = make_gate()
    raw = body("d-2")  # provisioned through azure-1
    reject(
        gate.check(signed(raw), raw, now=NOW), 403, "not provisioned by broker kidp-system/aws-1"
    )


def test_bad_requests_are_400_not_500() -> None:
    gate, _, _ = make_gate()
    raw = body()
    headers = signed(raw)
    reject(gate.check({}, raw, now=NOW), 400, "missing header")
    no_name = {k: v for k, v in headers.items() if k != HEADER_BROKER_NAME}
    reject(gate.check(no_name, raw, now=NOW), 400, HEADER_BROKER_NAME)
    bad_stamp = dict(headers, **{HEADER_TIMESTAMP: "yesterday"})
    reject(gate.check(bad_stamp, raw, now=NOW), 400, "not RFC 3339")
    naive = dict(headers, **{HEADER_TIMESTAMP: "2026-11-25T10:00:00"})
    reject(gate.check(naive, raw, now=NOW), 400, "not RFC 3339")
    unknown = body("d-404")
    reject(gate.check(signed(unknown), unknown, now=NOW), 404, "no Database has deployment d-404")
    not_json = b"{nope"
    reject(gate.check(signed(not_json), not_json, now=NOW), 400, "not JSON")
    deep = b'{"deploymentId":"d-1","details":' + b"[" * 5000 + b"]" * 5000 + b"}"
    reject(gate.check(signed(deep), deep, now=NOW), 400, "nested 5001 deep")
    huge = b" " * (300 * 1024)
    reject(gate.check(signed(huge), huge, now=NOW), 413, "body over")


def test_index_follows_the_database_events() -> None:
    index = DeploymentIndex()
    index.handle("ADDED", database("a", None))
    assert len(index) == 0
    index.handle("MODIFIED", database("a", "d-1"))
    assert index.database_for("d-1") == "team/a"
    index.handle("MODIFIED", database("a", "d-2"))
    assert index.database_for("d-1") is None and index.database_for("d-2") == "team/a"
    index.handle("DELETED", database("a", "d-2"))
    assert index.database_for("d-2") is None and len(index) == 0
    assert index.finished_by("d-2") == BROKER


def test_a_late_callback_for_a_deleted_database_is_expected() -> None:
    gate, index, _ = make_gate()
    index.handle("DELETED", database("orders", "d-1"))
    raw = body(status="success", phase="Deleted")
    verdict = gate.check(signed(raw), raw, now=NOW)
    assert verdict.status == 200 and verdict.result is None
    assert "deleted already" in verdict.reason
    other = body("d-1", message="another broker claiming it")
    reject(
        gate.check(signed(other, key=OTHER_KEY, broker="kidp-system/azure-1"), other, now=NOW),
        404,
        "no Database",
    )
