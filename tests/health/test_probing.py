"""The prober against real HTTP servers on 127.0.0.1 (no HTTP mocking)."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.health.credentials import SecretCache
from kidp_ops.health.probing import Prober, failure_reason, health_outcome, probe_url
from kidp_ops.health.states import CannotProbe, ProbeFailure, ProbeSuccess
from kidp_ops.model.resources import (
    Authentication,
    Broker,
    BrokerSpec,
    HealthCheck,
    ObjectMeta,
    SecretKeyRef,
)
from tests.conftest import broker_manifest
from tests.health.servers import BrokerServer
from tests.support.waiting import until

NAMESPACE = "kidp-system"


def broker(
    endpoint: str,
    path: str = "/health",
    *,
    name: str = "b1",
    timeout: int = 5,
    auth: Authentication | None = None,
) -> Broker:
    return Broker(
        metadata=ObjectMeta(name=name, namespace=NAMESPACE),
        spec=BrokerSpec(
            endpoint=endpoint,
            cloud_provider="aws",
            health_check=HealthCheck(endpoint=path, timeout_seconds=timeout),
            authentication=auth,
        ),
    )


@pytest.fixture
async def server() -> AsyncIterator[BrokerServer]:
    async with BrokerServer() as running:
        yield running


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    async with Prober(concurrency=16) as running:
        yield running


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A port that is bound but not listening: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def failure(prober: Prober, target: Broker) -> str:
    outcome = await prober.probe(target)
    assert isinstance(outcome, ProbeFailure), outcome
    assert outcome.latency_ms is not None and outcome.latency_ms >= 0
    return outcome.reason


# --- outcomes over HTTP --------------------------------------------------------------


async def test_healthy_broker(server: BrokerServer, prober: Prober) -> None:
    outcome = await prober.probe(broker(server.url))
    assert isinstance(outcome, ProbeSuccess)
    assert (outcome.version, outcome.active_deployments) == ("1.4.2", 3)
    assert 0 < outcome.latency_ms < 2000
    sent = server.headers["/health"]
    assert sent["Accept-Encoding"] == "identity"
    assert sent["User-Agent"].startswith("kidp-ops-prober")


async def test_endpoint_with_base_path(server: BrokerServer, prober: Prober) -> None:
    outcome = await prober.probe(broker(server.url + "/api/", "/health"))
    assert isinstance(outcome, ProbeFailure) and outcome.reason == "HTTP 404"
    assert server.hits == ["/api/health"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/degraded", 'status "degraded"'),
        ("/unavailable", "HTTP 503"),
        ("/garbage", "invalid JSON"),
        ("/list", "invalid health body: not a JSON object"),
        ("/huge", "body over 64 KiB"),
        ("/stream", "body over 64 KiB"),
        ("/redirect", "HTTP 302"),
        ("/gzip", "unsupported content-encoding 'gzip'"),
        ("/bad-types", "invalid health body: activeDeployments is not an integer"),
        ("/bad-version", "invalid health body: version is not a string"),
    ],
)
async def test_failure_reasons(
    server: BrokerServer, prober: Prober, path: str, reason: str
) -> None:
    assert await failure(prober, broker(server.url, path)) == reason


async def test_body_of_exactly_64_kib_is_read(server: BrokerServer, prober: Prober) -> None:
    assert isinstance(await prober.probe(broker(server.url, "/exact")), ProbeSuccess)


async def test_redirect_is_not_followed(server: BrokerServer, prober: Prober) -> None:
    assert await failure(prober, broker(server.url, "/redirect")) == "HTTP 302"
    assert server.hits == ["/redirect"]


async def test_connection_refused(refused_url: str, prober: Prober) -> None:
    assert await failure(prober, broker(refused_url)) == "connection refused"


@pytest.mark.parametrize("path", ["/hang", "/drip"])
async def test_timeout_is_total_and_bounded(
    server: BrokerServer, prober: Prober, path: str
) -> None:
    started = time.monotonic()
    assert await failure(prober, broker(server.url, path, timeout=1)) == "timeout after 1s"
    assert time.monotonic() - started < 2.5


async def test_hanging_broker_does_not_delay_the_others_in_a_sweep(server: BrokerServer) -> None:
    hung = broker(server.url, "/hang", name="hung", timeout=2)
    others = [broker(server.url, "/slow", name=f"ok-{i}") for i in range(30)]
    async with Prober(concurrency=8) as prober:
        started = time.monotonic()
        outcomes = await prober.sweep([hung, *others])
        elapsed = time.monotonic() - started
    hung_outcome = outcomes["kidp-system/hung"]
    assert isinstance(hung_outcome, ProbeFailure) and hung_outcome.reason == "timeout after 2s"
    assert all(isinstance(outcomes[b.key], ProbeSuccess) for b in others)
    # 30 x 300 ms over the 7 free slots: about 1.5 s, all served while the hang holds one.
    served = max(server.hit_times["/slow"]) - started
    assert served < 1.9, served
    assert elapsed < 2.5, elapsed


async def test_one_bound_for_all_probes(server: BrokerServer) -> None:
    targets = [broker(server.url, "/slow", name=f"b{i}") for i in range(9)]
    async with Prober(concurrency=3) as prober:
        outcomes = await asyncio.gather(*(prober.probe(b) for b in targets))
    assert all(isinstance(o, ProbeSuccess) for o in outcomes)
    assert server.max_in_flight == 3


async def test_hanging_brokers_cannot_starve_a_healthy_one(server: BrokerServer) -> None:
    """Twelve brokers hang (30 s timeouts) with only two slots per lane: each hung probe
    moves to a slow slot after `slow_after`, so the lanes keep turning over, and the
    healthy broker's probe starts while all twelve still hang."""
    hung = [broker(server.url, "/hang", name=f"h{i}", timeout=30) for i in range(12)]
    async with Prober(
        concurrency=2, suspect_concurrency=2, slow_concurrency=20, slow_after=0.1
    ) as prober:
        hanging = [asyncio.create_task(prober.probe(b, suspect=True)) for b in hung]
        try:
            await until(lambda: server.hits.count("/hang") == 12, timeout=5)
            started = time.monotonic()
            outcome = await prober.probe(broker(server.url, name="ok"))
            assert isinstance(outcome, ProbeSuccess)
            assert time.monotonic() - started < 1.0
            assert server.in_flight == 12  # still hanging
        finally:
            for task in hanging:
                task.cancel()
            await asyncio.gather(*hanging, return_exceptions=True)


async def test_when_the_slow_slots_are_full_a_probe_keeps_its_lane_slot(
    server: BrokerServer,
) -> None:
    """The bound on sockets holds: lanes (2 + 2) plus slow slots (1) is 5 probes at most."""
    hung = [broker(server.url, "/hang", name=f"h{i}", timeout=30) for i in range(8)]
    async with Prober(
        concurrency=2, suspect_concurrency=2, slow_concurrency=1, slow_after=0.05
    ) as prober:
        hanging = [
            asyncio.create_task(prober.probe(b, suspect=i % 2 == 0)) for i, b in enumerate(hung)
        ]
        try:
            await until(lambda: server.in_flight == 5, timeout=5)
            assert server.max_in_flight == 5
        finally:
            for task in hanging:
                task.cancel()
            await asyncio.gather(*hanging, return_exceptions=True)


async def test_sweep_keys_by_namespace_and_name(server: BrokerServer, prober: Prober) -> None:
    outcomes = await prober.sweep(
        [broker(server.url, name="a"), broker(server.url, "/degraded", name="b")]
    )
    assert isinstance(outcomes["kidp-system/a"], ProbeSuccess)
    failed = outcomes["kidp-system/b"]
    assert isinstance(failed, ProbeFailure) and failed.reason == 'status "degraded"'
    assert await prober.sweep([]) == {}


@pytest.mark.parametrize(
    "path", ["http://127.0.0.1:1/health", "//evil.example/health", "/\\evil", "health", "/a b"]
)
async def test_health_endpoint_must_be_a_path(
    server: BrokerServer, prober: Prober, path: str
) -> None:
    outcome = await prober.probe(broker(server.url, path))
    assert isinstance(outcome, CannotProbe)
    assert outcome.reason.startswith("invalid spec: healthCheck.endpoint")
    assert server.hits == []


async def test_prober_must_be_started() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await Prober().probe(broker("http://127.0.0.1:1"))


# --- credentials ---------------------------------------------------------------------


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {
            k.replace("_", "-"): base64.b64encode(v.encode()).decode() for k, v in data.items()
        },
    }


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    opened = await EmbeddedCluster.open(tmp_path / "state", install_crds=False)
    try:
        yield opened
    finally:
        await opened.close()


async def test_api_key_from_secret(server: BrokerServer, cluster: EmbeddedCluster) -> None:
    await cluster.create(secret("creds", api_key="s3cret\n"))
    auth = Authentication(type="api-key", secret_ref=SecretKeyRef("creds"))
    async with Prober(cluster=cluster) as prober:
        assert isinstance(await prober.probe(broker(server.url, "/auth", auth=auth)), ProbeSuccess)
    assert server.headers["/auth"]["X-API-Key"] == "s3cret"
    assert "Authorization" not in server.headers["/auth"]


async def test_jwt_from_secret_with_named_key(
    server: BrokerServer, cluster: EmbeddedCluster
) -> None:
    await cluster.create(secret("jwt", bearer="eyJ.a.b"))
    auth = Authentication(type="jwt", secret_ref=SecretKeyRef("jwt", key="bearer"))
    async with Prober(cluster=cluster) as prober:
        assert isinstance(await prober.probe(broker(server.url, "/auth", auth=auth)), ProbeSuccess)
    assert server.headers["/auth"]["Authorization"] == "Bearer eyJ.a.b"


async def test_credentials_from_a_manifest_broker(
    server: BrokerServer, cluster: EmbeddedCluster
) -> None:
    await cluster.create(secret("creds", token="t0k"))
    manifest = broker_manifest(
        endpoint=server.url,
        authentication={"type": "jwt", "secretRef": {"name": "creds"}},
        healthCheck={"endpoint": "/auth"},
    )
    async with Prober(cluster=cluster) as prober:
        outcome = await prober.probe(Broker.from_manifest(manifest))
    assert isinstance(outcome, ProbeSuccess)
    assert server.headers["/auth"]["Authorization"] == "Bearer t0k"


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        (
            Authentication(type="api-key", secret_ref=SecretKeyRef("absent")),
            "secret kidp-system/absent not found",
        ),
        (
            Authentication(type="api-key", secret_ref=SecretKeyRef("creds", key="other")),
            "key other missing in secret kidp-system/creds",
        ),
        (
            Authentication(type="jwt", secret_ref=SecretKeyRef("creds")),
            "key token missing in secret kidp-system/creds",
        ),
        (
            Authentication(type="api-key", secret_ref=SecretKeyRef("creds", key="bad")),
            "key bad in secret kidp-system/creds is not a valid header value",
        ),
        (Authentication(type="api-key"), "invalid spec: authentication api-key needs a secretRef"),
        (Authentication(type="mtls", secret_ref=SecretKeyRef("creds")), "mtls not supported yet"),
    ],
)
async def test_cannot_probe_without_credentials(
    server: BrokerServer, cluster: EmbeddedCluster, auth: Authentication, reason: str
) -> None:
    await cluster.create(secret("creds", api_key="k", bad="a\r\nX-Evil: 1"))
    async with Prober(cluster=cluster) as prober:
        assert await prober.probe(broker(server.url, "/auth", auth=auth)) == CannotProbe(reason)
    assert server.hits == []


async def test_secret_that_is_not_base64(server: BrokerServer, cluster: EmbeddedCluster) -> None:
    broken = secret("creds")
    broken["data"] = {"api-key": "!!not base64!!"}
    await cluster.create(broken)
    auth = Authentication(type="api-key", secret_ref=SecretKeyRef("creds"))
    async with Prober(cluster=cluster) as prober:
        outcome = await prober.probe(broker(server.url, auth=auth))
    assert outcome == CannotProbe("cannot read secret kidp-system/creds: data is not base64")


async def test_without_a_cluster_secrets_cannot_be_read(
    server: BrokerServer, prober: Prober
) -> None:
    auth = Authentication(type="api-key", secret_ref=SecretKeyRef("creds"))
    outcome = await prober.probe(broker(server.url, auth=auth))
    assert outcome == CannotProbe(
        "cannot read secret kidp-system/creds: no cluster to read Secrets from"
    )


async def test_secret_cache_keeps_values_for_its_ttl(cluster: EmbeddedCluster) -> None:
    now = [0.0]
    cache = SecretCache(cluster, ttl=10.0, clock=lambda: now[0])
    assert await cache.get("creds", namespace=NAMESPACE) is None
    await cluster.create(secret("creds", token="one"))
    now[0] = 9.9
    assert await cache.get("creds", namespace=NAMESPACE) is None  # cached absence
    now[0] = 10.0
    assert await cache.get("creds", namespace=NAMESPACE) == {"token": b"one"}


async def test_concurrent_reads_of_one_secret_share_a_read(cluster: EmbeddedCluster) -> None:
    await cluster.create(secret("creds", token="one"))
    reads = 0
    original = cluster.get_secret_data

    async def counting(name: str, *, namespace: str) -> dict[str, bytes]:
        nonlocal reads
        reads += 1
        return await original(name, namespace=namespace)

    cluster.get_secret_data = counting  # type: ignore[method-assign]
    cache = SecretCache(cluster)
    values = await asyncio.gather(*(cache.get("creds", namespace=NAMESPACE) for _ in range(20)))
    assert values == [{"token": b"one"}] * 20
    assert reads == 1


# --- pure parts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "path", "expected"),
    [
        ("http://h:8080", "/health", "http://h:8080/health"),
        ("http://h:8080/", "/health", "http://h:8080/health"),
        ("https://h/api", "/v1/health?deep=1", "https://h/api/v1/health?deep=1"),
        ("http://h", "/", "http://h/"),
        ("http://h", "/@evil.example", "http://h/@evil.example"),  # a path, same host
    ],
)
def test_probe_url_joins_a_path(endpoint: str, path: str, expected: str) -> None:
    assert str(probe_url(endpoint, path)) == expected


@pytest.mark.parametrize(
    ("endpoint", "path", "reason"),
    [
        ("http://h", "http://evil/x", "healthCheck.endpoint 'http://evil/x' is not a path"),
        ("http://h", "//evil/x", "healthCheck.endpoint '//evil/x' is not a path"),
        ("ftp://h", "/health", "endpoint 'ftp://h' is not an http(s) URL"),
        ("http://h?x=1", "/health", "endpoint must not have a query or fragment"),
        ("not a url", "/health", "endpoint 'not a url' is not an http(s) URL"),
    ],
)
def test_probe_url_refuses_other_targets(endpoint: str, path: str, reason: str) -> None:
    assert probe_url(endpoint, path) == CannotProbe(f"invalid spec: {reason}")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"status":"healthy"}', ProbeSuccess(latency_ms=1.0)),
        (
            b'{"status":"healthy","version":"2","activeDeployments":0}',
            ProbeSuccess(version="2", active_deployments=0, latency_ms=1.0),
        ),
        (b'{"version":"2"}', ProbeFailure("status missing", latency_ms=1.0)),
        (b'{"status":null}', ProbeFailure("status null", latency_ms=1.0)),
        (b'{"status":"HEALTHY"}', ProbeFailure('status "HEALTHY"', latency_ms=1.0)),
        (b"", ProbeFailure("invalid JSON", latency_ms=1.0)),
        (b"\xff\xfe", ProbeFailure("invalid JSON", latency_ms=1.0)),
        (
            b'{"status":"healthy","activeDeployments":true}',
            ProbeFailure(
                "invalid health body: activeDeployments is not an integer", latency_ms=1.0
            ),
        ),
        (
            b'{"status":"healthy","activeDeployments":-1}',
            ProbeFailure("invalid health body: activeDeployments is out of range", latency_ms=1.0),
        ),
        (b"[" * 100_000, ProbeFailure("invalid JSON", latency_ms=1.0)),
    ],
)
def test_health_outcome(body: bytes, expected: object) -> None:
    assert health_outcome(body, latency_ms=1.0) == expected


def test_long_status_is_shortened() -> None:
    outcome = health_outcome(b'{"status":"' + b"x" * 500 + b'"}', latency_ms=1.0)
    assert isinstance(outcome, ProbeFailure) and len(outcome.reason) < 60


def test_failure_reasons_of_exceptions() -> None:
    assert failure_reason(TimeoutError(), timeout_seconds=5) == "timeout after 5s"
    assert failure_reason(aiohttp.ServerDisconnectedError(), timeout_seconds=5) == (
        "server disconnected"
    )
    assert failure_reason(ConnectionResetError(104, "reset"), timeout_seconds=5) == (
        "connection reset"
    )
    assert failure_reason(aiohttp.InvalidURL("http://x"), timeout_seconds=5) == "invalid URL"
    assert failure_reason(ValueError("boom"), timeout_seconds=5) == "probe error: ValueError"
