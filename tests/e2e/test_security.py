"""Issue 10's attacks, as an attacker would make them: over HTTP against `kidp-ops daemon`
processes on loopback, with brokers that speak the seed's contract.

- a signed callback already applied, replayed with its signature re-spelled, after the
  daemon was killed and restarted, and to a second replica: 409, the Database unchanged;
- a tenant's Broker in its own namespace with priority 1,000,000: never probed, never
  chosen, `Accepted=False`, counted; a Broker's `allowedNamespaces` explained;
- slow and greedy HTTP clients: the health endpoints keep answering, a declared 10 GB
  body is refused at once, slow request heads are closed;
- refused callbacks with attacker text: logged escaped, cut and rate-limited, counted.
"""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from kidp_ops.brokerapi import signing
from kidp_ops.brokerapi.gojson import marshal_callback
from kidp_ops.cluster.base import BROKERS
from tests.e2e.rig import NS, TEAM, DaemonProcess, Rig
from tests.e2e.test_seed_brokers import (
    KEY,
    apply_seed_broker,
    apply_seed_database,
    broker_ready,
    post,
    provisioned,
)
from tests.support.seedbroker import SeedBroker, running_seed_broker

pytestmark = pytest.mark.slow

TENANT_NS = "team-intruder"


def signed(payload: dict[str, Any], at: datetime) -> tuple[bytes, dict[str, str]]:
    """A seed broker's callback, signed at `at` (whole seconds, as Go's RFC 3339)."""
    body = marshal_callback(payload)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "Content-Type": "application/json",
        **signing.callback_headers(KEY, broker_name="seed-aws", timestamp=stamp, body=body),
    }
    return body, headers


def respelled(signature: str) -> str:
    """The same signature bytes spelled differently: the last base64 character before
    the padding carries unused low bits, which decoders ignore."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    body = signature.rstrip("=")
    padding = signature[len(body) :]
    assert padding, "an Ed25519 signature (64 bytes) is padded in base64"
    last = alphabet[alphabet.index(body[-1]) ^ 1]
    other = body[:-1] + last + padding
    assert other != signature and base64.b64decode(other) == base64.b64decode(signature)
    return other


def payload_for(
    db: dict[str, Any], status: str, phase: str, message: str, at: datetime
) -> dict[str, Any]:
    return {
        "deploymentId": db["status"]["deploymentId"],
        "resourceType": "database",
        "resourceName": db["metadata"]["name"],
        "namespace": TEAM,
        "status": status,
        "phase": phase,
        "message": message,
        "time": at,
        "endpoint": "orders.team-e2e.svc.cluster.local" if status == "success" else "",
        "port": 5432 if status == "success" else 0,
    }


async def test_replayed_callbacks_are_refused_respelled_after_restart_and_on_a_replica(
    rig: Rig, seed: tuple[SeedBroker, str]
) -> None:
    broker, url = seed
    first = await rig.daemon(lead=True)
    second = await rig.daemon(lead=False)  # a standby replica: it serves callbacks too
    await apply_seed_broker(rig, url)
    await rig.eventually(partial(broker_ready, rig), "the seed broker Ready")
    await apply_seed_database(rig, "orders")
    db = await provisioned(rig, broker, "orders")

    now = datetime.now(UTC).replace(microsecond=0)
    older = payload_for(db, "failed", "Failed", "instance lost", now - timedelta(seconds=30))
    newer = payload_for(db, "success", "Ready", "ready", now)
    failed_body, failed_headers = signed(older, now - timedelta(seconds=30))
    body, headers = signed(newer, now)

    # the failure first (signed earlier), then the success: both move the Database forward
    assert (await post(first, failed_body, failed_headers)).status_code == 202
    assert (await post(first, body, headers)).status_code == 202
    ready = await rig.eventually(partial(rig.database_ready, "orders"), "orders Ready")
    version = ready["metadata"]["resourceVersion"]
    assert ready["status"]["lastCallback"]["time"] == now.strftime("%Y-%m-%dT%H:%M:%SZ")

    async def refused(daemon: DaemonProcess, body: bytes, headers: dict[str, str]) -> None:
        answer = await post(daemon, body, headers)
        assert answer.status_code == 409, answer.text
        current = await rig.database("orders")
        assert current["metadata"]["resourceVersion"] == version
        assert current["status"]["phase"] == "Ready"

    again = {**headers, signing.HEADER_SIGNATURE: respelled(headers[signing.HEADER_SIGNATURE])}
    replay_failed = {
        **failed_headers,
        signing.HEADER_SIGNATURE: respelled(failed_headers[signing.HEADER_SIGNATURE]),
    }
    # (a) re-spelled signatures, to the replica that accepted them
    await refused(first, body, again)
    await refused(first, failed_body, replay_failed)
    # (c) the other replica, whose memory never saw them
    await refused(second, body, headers)
    await refused(second, failed_body, failed_headers)
    # (b) after a crash: a new process, an empty memory
    first.kill()
    await rig.restart(first)
    await refused(first, failed_body, failed_headers)
    await refused(first, body, headers)
    await refused(first, body, again)
    # a newer callback is still welcome (replays are refused, not the broker)
    later = now + timedelta(seconds=1)
    fresh_body, fresh_headers = signed(payload_for(db, "success", "Ready", "resized", later), later)
    assert (await post(second, fresh_body, fresh_headers)).status_code == 202
    current = await rig.database("orders")
    assert current["status"]["message"] == "resized"


async def trusted_seed_broker(rig: Rig, url: str) -> None:
    await apply_seed_broker(rig, url)
    await rig.eventually(partial(broker_ready, rig), "the seed broker Ready")


def tenant_broker(url: str, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "platform.company.com/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "endpoint": url,
            "cloudProvider": "aws",
            "region": "us-east-1",
            "priority": 1_000_000,
            "capabilities": [{"resourceType": "Database", "providers": ["postgresql"]}],
            "authentication": {"type": "none"},
            "healthCheck": {"endpoint": "/health", "intervalSeconds": 5, "timeoutSeconds": 1},
            **spec,
        },
    }


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for found in (obj.get("status") or {}).get("conditions") or ():
        if found.get("type") == kind:
            return dict(found)
    return None


def kidp_ops(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kidp_ops.cli", *args, "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_tenant_broker_is_never_probed_nor_chosen(
    rig: Rig, seed: tuple[SeedBroker, str]
) -> None:
    trusted, url = seed
    async with running_seed_broker() as (intruder, intruder_url):
        daemon = await rig.daemon(lead=True)  # default: trusts kidp-system only
        await trusted_seed_broker(rig, url)
        await rig.cluster.create(tenant_broker(intruder_url, TENANT_NS, "greedy"))

        async def refused_condition() -> dict[str, Any] | None:
            obj = await rig.cluster.get(BROKERS, "greedy", namespace=TENANT_NS)
            found = condition(obj, "Accepted")
            return found if found and found.get("status") == "False" else None

        accepted = await rig.eventually(refused_condition, "greedy gets Accepted=False")
        assert accepted["reason"] == "NamespaceNotTrusted"
        assert "kidp-system" in accepted["message"]
        scrape = await rig.eventually(daemon.scrape, "metrics")
        assert scrape.value("kidp_brokers_untrusted") == 1.0

        await apply_seed_database(rig, "victim")
        db = await provisioned(rig, trusted, "victim")
        assert db["status"]["brokerRef"]["name"] == "seed-aws"
        # however high its priority, the tenant's endpoint was never called: no probe,
        # no provision request carrying another team's Database
        assert intruder.requests == []
        greedy = await rig.cluster.get(BROKERS, "greedy", namespace=TENANT_NS)
        assert (greedy.get("status") or {}).get("phase") in (None, "Unknown")

    # the CLI sees what the daemon sees
    shown = kidp_ops("select", "--database", "victim", "-n", TEAM, "--explain", state=rig.state)
    assert shown.returncode == 0, shown.stderr
    assert "seed-aws" in shown.stdout and "greedy" not in shown.stdout
    assert f"{TENANT_NS}/greedy" in shown.stderr  # a note names what was skipped


async def test_allowed_namespaces_narrow_a_trusted_broker(
    rig: Rig, seed: tuple[SeedBroker, str]
) -> None:
    trusted, url = seed
    async with running_seed_broker() as (dedicated, dedicated_url):
        await rig.daemon(lead=True)
        await trusted_seed_broker(rig, url)
        await rig.cluster.create(
            tenant_broker(dedicated_url, NS, "team-x-only", allowedNamespaces=["team-x"])
        )

        async def dedicated_ready() -> bool:
            return (await rig.broker_status("team-x-only")).get("phase") == "Ready"

        await rig.eventually(dedicated_ready, "team-x-only Ready")  # trusted: probed
        await apply_seed_database(rig, "not-for-x")
        db = await provisioned(rig, trusted, "not-for-x")
        assert db["status"]["brokerRef"]["name"] == "seed-aws"
        assert dedicated.bodies("/v1/provision") == []
    shown = kidp_ops("select", "--database", "not-for-x", "-n", TEAM, "--explain", state=rig.state)
    assert shown.returncode == 0, shown.stderr
    assert f"namespace {TEAM} not allowed" in shown.stdout


async def _slow_head(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/callback HTTP/1.1\r\nHost: daemon\r\nX-Slow: ")
    await writer.drain()
    return reader, writer


async def test_slow_and_greedy_clients_do_not_hold_the_daemon(rig: Rig) -> None:
    daemon = await rig.daemon(lead=True)
    slow = [await _slow_head(daemon.port) for _ in range(500)]
    try:
        started = time.monotonic()
        for path in ("/healthz", "/readyz", "/healthz"):
            answer = await daemon.get(path)
            assert answer.status_code == 200, (path, answer.text)
        assert time.monotonic() - started < 5

        # a declared 10 GB body: 413 at once, nothing read
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        writer.write(
            b"POST /v1/callback HTTP/1.1\r\nHost: daemon\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n{"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 413"), head
        writer.close()

        # every slow request head is closed by the daemon (header timeout, 10 s)
        async def closed(reader: asyncio.StreamReader) -> bool:
            try:
                return await asyncio.wait_for(reader.read(1), 20) == b""
            except ConnectionError:
                return True

        results = await asyncio.gather(*(closed(r) for r, _ in slow))
        assert all(results)
        assert time.monotonic() - started < 20
    finally:
        for _, writer in slow:
            writer.close()
    assert (await daemon.get("/healthz")).status_code == 200


async def test_refused_callbacks_are_logged_escaped_cut_and_rate_limited(rig: Rig) -> None:
    daemon = await rig.daemon(lead=True)
    # what an HTTP parser lets through in a header: bidi overrides and 8 KB of text
    evil = "forged\u202eli.txt" + "A" * 7900
    async with httpx.AsyncClient(timeout=5) as http:
        for n in range(100):
            answer = await http.post(
                f"{daemon.url}/v1/callback",
                content=b"{}",
                headers={
                    "X-KIDP-Broker-Name": f"{evil}{n}".encode(),
                    "X-KIDP-Timestamp": "2026-01-01T00:00:00Z",
                    "X-KIDP-Signature": "AAAA",
                },
            )
            assert 400 <= answer.status_code < 500, answer.text
    scrape = await daemon.scrape()
    refused = sum(
        value
        for labels, value in scrape.select("kidp_callbacks_total")
        if labels.get("result") != "accepted"
    )
    assert refused == 100  # the metric keeps every one
    lines = [line for line in daemon.output().splitlines() if "callback refused" in line]
    assert 1 <= len(lines) <= 30, len(lines)  # the log: a minute's budget
    assert all(len(line) < 400 for line in lines), max(map(len, lines))
    assert "\u202e" not in daemon.output()
    assert any("forged\\u202eli.txt" in line for line in lines), lines[0]


def test_a_new_state_directory_is_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    manifest = tmp_path / "broker.yaml"
    manifest.write_text(
        "apiVersion: platform.company.com/v1\nkind: Broker\n"
        "metadata: {name: b1, namespace: kidp-system}\n"
        "spec:\n  endpoint: http://127.0.0.1:9\n  cloudProvider: aws\n  region: us-east-1\n"
        "  capabilities: [{resourceType: Database, providers: [postgresql]}]\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "kidp_ops.cli", "apply", "-f", str(manifest), "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=lambda: os.umask(0),  # the worst umask a user can have
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    stores = [path for path in state.iterdir() if path.name.startswith("store.db")]
    assert "store.db" in [path.name for path in stores]
    for path in stores:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
