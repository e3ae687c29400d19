"""The callback gate: signature with the Broker's key only, +-5 minutes, replays, the index."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kidp_ops.brokerapi.signing import (
    HEADER_BROKER_NAME,
    HEADER_TIMESTAMP,
    callback_headers,
    generate_private_key,
    public_key_b64,
)
from kidp_ops.callbacks import CallbackGate, DeploymentIndex, Verdict, result_of

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
BROKER = "kidp-system/aws-1"
KEY = generate_private_key()
OTHER_KEY = generate_private_key()


def database(name: str, deployment_id: str | None, broker: str = "aws-1") -> dict[str, Any]:
    status: dict[str, Any] = {"brokerRef": {"name": broker, "namespace": "kidp-system"}}
    if deployment_id:
        status["deploymentId"] = deployment_id
    return {"metadata": {"name": name, "namespace": "team"}, "status": status}


def make_gate(keys: dict[str, str] | None = None) -> tuple[CallbackGate, DeploymentIndex]:
    index = DeploymentIndex()
    index.handle("ADDED", database("orders", "d-1"))
    index.handle("ADDED", database("ledger", "d-2", broker="azure-1"))
    public = {BROKER: public_key_b64(KEY)} if keys is None else keys
    refs = {"team/orders": BROKER, "team/ledger": "kidp-system/azure-1"}
    gate = CallbackGate(public_key_for=public.get, broker_ref_of=refs.get, index=index)
    return gate, index


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
    gate, _ = make_gate()
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


def reject(verdict: Verdict, status: int, words: str) -> None:
    assert not verdict.accepted
    assert verdict.status == status
    assert words in verdict.reason


def test_another_key_or_a_changed_byte_fails() -> None:
    gate, _ = make_gate()
    raw = body()
    reject(gate.check(signed(raw, key=OTHER_KEY), raw, now=NOW), 401, "does not verify")
    headers = signed(raw)
    tampered = raw.replace(b"5432", b"5433")
    reject(gate.check(headers, tampered, now=NOW), 401, "does not verify")
    moved = dict(headers, **{HEADER_TIMESTAMP: "2026-11-25T10:00:01Z"})
    reject(gate.check(moved, raw, now=NOW), 401, "does not verify")


def test_a_key_sent_with_the_request_is_never_trusted() -> None:
    gate, _ = make_gate()
    raw = body(publicKey=public_key_b64(OTHER_KEY))
    headers = signed(raw, key=OTHER_KEY)
    headers["X-KIDP-Public-Key"] = public_key_b64(OTHER_KEY)
    reject(gate.check(headers, raw, now=NOW), 401, "does not verify")


def test_unknown_broker_or_no_key_is_forbidden() -> None:
    gate, _ = make_gate(keys={})
    raw = body()
    reject(gate.check(signed(raw), raw, now=NOW), 403, "unknown broker kidp-system/aws-1")


def test_a_known_broker_without_a_registered_key_is_asked_to_retry() -> None:
    gate, _ = make_gate(keys={BROKER: ""})  # the Broker exists; its key is not written yet
    raw = body()
    reject(gate.check(signed(raw), raw, now=NOW), 503, "no callbackPublicKey in its status yet")


@pytest.mark.parametrize(("offset", "ok"), [(-299, True), (299, True), (-301, False), (301, False)])
def test_timestamps_outside_five_minutes(offset: int, ok: bool) -> None:
    gate, _ = make_gate()
    raw = body()
    verdict = gate.check(signed(raw, at=NOW + timedelta(seconds=offset)), raw, now=NOW)
    assert verdict.accepted is ok, verdict.reason
    if not ok:
        reject(verdict, 401, "outside +-5 minutes")


def test_replay_is_refused() -> None:
    gate, _ = make_gate()
    raw = body()
    headers = signed(raw)
    assert gate.check(headers, raw, now=NOW).accepted
    reject(gate.check(headers, raw, now=NOW + timedelta(seconds=1)), 409, "replayed")


def test_a_broker_cannot_report_on_another_brokers_deployment() -> None:
    gate, _ = make_gate()
    raw = body("d-2")  # provisioned through azure-1
    reject(
        gate.check(signed(raw), raw, now=NOW), 403, "not provisioned by broker kidp-system/aws-1"
    )


def test_bad_requests() -> None:
    gate, _ = make_gate()
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


def test_result_of_each_status() -> None:
    failed = result_of({"status": "failed", "phase": "Failed", "error": "quota exceeded"})
    assert failed is not None and (failed.phase, failed.message) == ("Failed", "quota exceeded")
    progress = result_of({"status": "in-progress", "phase": "Provisioning", "message": "50%"})
    assert progress is not None and progress.phase == "Provisioning"
    assert result_of({"status": "success", "phase": "Deprovisioned"}) is None
