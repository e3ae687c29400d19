"""What the kube adapter adds on top of the contract: configuration, error mapping, and
watch threads that end when the iterator is closed. The contract suite
(test_contract.py) covers every port behaviour through the same adapter."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from kidp_ops.cluster import kube_watch
from kidp_ops.cluster.base import (
    BROKERS,
    SECRETS,
    AlreadyExists,
    ClusterError,
    Conflict,
    FieldProblem,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    Unavailable,
    WatchEvent,
)
from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.cluster.kube import KubeCluster
from kidp_ops.cluster.kube_errors import error_from_status
from tests.conftest import broker_manifest
from tests.support.kubeserver import RunningApiServer, running_apiserver, write_kubeconfig
from tests.support.waiting import until

NS = "kidp-system"
WATCH_THREAD = "kidp-kube-watch-"


class CountingCluster(EmbeddedCluster):
    """An EmbeddedCluster that counts the watches the API facade opens on it."""

    watch_calls = 0

    def watch(self, *args: Any, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        self.watch_calls += 1
        return super().watch(*args, **kwargs)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningApiServer[CountingCluster]]:
    async def backing() -> CountingCluster:
        # Bookmarks rarely: an idle watch must be stopped by us, not woken by the server.
        cluster = await CountingCluster.open(tmp_path / "state", bookmark_seconds=3600)
        assert isinstance(cluster, CountingCluster)
        return cluster

    with running_apiserver(backing) as running:
        yield running


@pytest.fixture
async def kube(server: RunningApiServer[CountingCluster]) -> AsyncIterator[KubeCluster]:
    cluster = await KubeCluster.connect(kubeconfig=str(server.kubeconfig))
    try:
        yield cluster
    finally:
        await cluster.close()


def watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(WATCH_THREAD)]


# --- connecting ------------------------------------------------------------------------------


def assert_one_line_unavailable(caught: pytest.ExceptionInfo[Unavailable], *parts: str) -> None:
    message = caught.value.message
    assert "\n" not in message and "Traceback" not in message
    for part in parts:
        assert part in message, message


async def test_missing_kubeconfig_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "kubeconfig"
    with pytest.raises(Unavailable) as caught:
        await KubeCluster.connect(kubeconfig=str(path))
    assert_one_line_unavailable(caught, "cannot load the Kubernetes configuration", str(path))


async def test_no_kubeconfig_at_all_is_unavailable() -> None:
    with pytest.raises(Unavailable) as caught:  # HOME points nowhere (tests/conftest.py)
        await KubeCluster.connect()
    assert_one_line_unavailable(caught, "~/.kube/config")


async def test_unknown_context_is_unavailable(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:1")
    with pytest.raises(Unavailable) as caught:
        await KubeCluster.connect(kubeconfig=str(kubeconfig), context="prod")
    assert_one_line_unavailable(caught, "context 'prod'")


async def test_not_in_a_pod_is_unavailable() -> None:
    with pytest.raises(Unavailable) as caught:
        await KubeCluster.connect(in_cluster=True)
    assert_one_line_unavailable(caught, "in-cluster service account")


async def test_unreachable_server_is_unavailable(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    with pytest.raises(Unavailable) as caught:
        await KubeCluster.connect(kubeconfig=str(kubeconfig))
    assert_one_line_unavailable(caught, f"127.0.0.1:{port}", "Connection refused")
    assert not [t for t in threading.enumerate() if t.name.startswith("kidp-kube")]


async def test_the_kubeconfig_credentials_are_sent(tmp_path: Path) -> None:
    from aiohttp import web

    seen: list[str] = []

    async def version(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"major": "1", "minor": "30"})

    app = web.Application()
    app.router.add_get("/version", version)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
        kube = await KubeCluster.connect(kubeconfig=str(kubeconfig))
        await kube.close()
    finally:
        await runner.cleanup()
    assert seen == ["Bearer kidp-test-token"]


async def test_closed_cluster_refuses_calls(kube: KubeCluster) -> None:
    await kube.close()
    with pytest.raises(Unavailable):
        await kube.get(BROKERS, "b1", namespace=NS)


# --- error mapping ---------------------------------------------------------------------------


def status(code: int, reason: str, message: str = "m", **details: Any) -> bytes:
    import json

    body = {"kind": "Status", "code": code, "reason": reason, "message": message}
    if details:
        body["details"] = details
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (404, "NotFound", NotFound),
        (409, "AlreadyExists", AlreadyExists),
        (409, "Conflict", Conflict),
        (410, "Expired", Gone),
        (422, "Invalid", Invalid),
        (400, "BadRequest", Invalid),
        (401, "Unauthorized", Forbidden),
        (403, "Forbidden", Forbidden),
        (429, "TooManyRequests", Unavailable),
        (500, "InternalError", Unavailable),
        (503, "ServiceUnavailable", Unavailable),
    ],
)
def test_status_codes_map_to_cluster_errors(
    code: int, reason: str, expected: type[ClusterError]
) -> None:
    error = error_from_status(code, status(code, reason, "what\nhappened"))
    assert type(error) is expected
    assert error.code == expected.code
    assert "\n" not in error.message


def test_invalid_causes_become_dotted_field_problems() -> None:
    causes = [
        {"field": "spec.endpoint", "message": "bad URL", "reason": "FieldValueInvalid"},
        {"field": "spec.capabilities[0]", "message": "empty"},
        {"message": "the whole object is odd"},
    ]
    error = error_from_status(422, status(422, "Invalid", causes=causes))
    assert isinstance(error, Invalid)
    assert error.problems == (
        FieldProblem(".spec.endpoint", "bad URL"),
        FieldProblem(".spec.capabilities[0]", "empty"),
        FieldProblem("", "the whole object is odd"),
    )


def test_a_non_status_error_body_still_maps() -> None:
    error = error_from_status(502, b"<html>bad gateway</html>", fallback="Bad Gateway")
    assert isinstance(error, Unavailable)
    assert error.message == "Bad Gateway"


# --- watch threads ---------------------------------------------------------------------------


async def test_aclose_stops_an_idle_watch_thread(
    kube: KubeCluster, server: RunningApiServer[CountingCluster]
) -> None:
    head = (await kube.list(BROKERS)).resource_version
    events = kube.watch(BROKERS, resource_version=head)
    step = asyncio.ensure_future(anext(events))
    # The server is watching, so the thread has its response and reads (or soon will):
    # only a socket shutdown can wake it, as no event or bookmark will come for an hour.
    await until(lambda: server.cluster.watch_calls == 1 and len(watch_threads()) == 1)
    step.cancel()
    await asyncio.wait({step})
    await events.aclose()  # type: ignore[attr-defined]
    await until(lambda: not watch_threads(), timeout=2)


async def test_breaking_out_of_the_loop_stops_the_thread(kube: KubeCluster) -> None:
    head = (await kube.list(BROKERS)).resource_version
    await kube.create(broker_manifest("b1"))
    async for event in kube.watch(BROKERS, resource_version=head):
        assert event.object["metadata"]["name"] == "b1"
        break
    await until(lambda: not watch_threads(), timeout=2)


async def test_close_joins_every_watch_thread(kube: KubeCluster) -> None:
    head = (await kube.list(BROKERS)).resource_version
    watches = [kube.watch(BROKERS, resource_version=head) for _ in range(3)]
    steps = [asyncio.ensure_future(anext(w)) for w in watches]
    await until(lambda: len(watch_threads()) == 3)
    await kube.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("kidp-kube")]
    outcomes = await asyncio.gather(*steps, return_exceptions=True)
    assert all(isinstance(o, StopAsyncIteration) for o in outcomes)  # the watches ended
    for watch in watches:
        await watch.aclose()  # type: ignore[attr-defined]


async def test_watch_reconnects_from_its_last_version(
    kube: KubeCluster,
    server: RunningApiServer[CountingCluster],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kube_watch, "SEGMENT_SECONDS", 1)  # the server ends each segment
    head = (await kube.list(BROKERS)).resource_version
    events = kube.watch(BROKERS, resource_version=head)
    await kube.create(broker_manifest("b1"))
    first = await asyncio.wait_for(anext(events), 5)
    await until(lambda: server.cluster.watch_calls >= 2)  # a second segment has begun
    await kube.create(broker_manifest("b2"))
    second = await asyncio.wait_for(anext(events), 5)
    await events.aclose()  # type: ignore[attr-defined]
    names = [e.object["metadata"]["name"] for e in (first, second)]
    assert names == ["b1", "b2"]  # nothing replayed, nothing lost


async def test_a_server_that_goes_away_ends_the_watch_with_unavailable(tmp_path: Path) -> None:
    async def backing() -> EmbeddedCluster:
        return await EmbeddedCluster.open(tmp_path / "state", bookmark_seconds=3600)

    with running_apiserver(backing) as server:
        kube = await KubeCluster.connect(kubeconfig=str(server.kubeconfig))
        head = (await kube.list(BROKERS)).resource_version
        events = kube.watch(BROKERS, resource_version=head)
        await kube.create(broker_manifest("b1"))
        await asyncio.wait_for(anext(events), 5)
    try:
        with pytest.raises(Unavailable, match="cannot reach"):
            await asyncio.wait_for(anext(events), 10)
    finally:
        await kube.close()
    assert not watch_threads()


async def test_watch_timeout_is_kept_to_the_fraction(kube: KubeCluster) -> None:
    head = (await kube.list(BROKERS)).resource_version
    started = time.monotonic()
    seen = [e async for e in kube.watch(BROKERS, resource_version=head, timeout_seconds=0.3)]
    elapsed = time.monotonic() - started
    assert seen == []
    assert 0.3 <= elapsed < 0.9  # the server rounds up to 1 s; the adapter ends at 0.3 s


# --- built-in kinds through the typed client -------------------------------------------------


async def test_builtin_list_items_get_their_kind(
    kube: KubeCluster, server: RunningApiServer[CountingCluster]
) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": NS}}
    await kube.create(secret)
    listed = await kube.list(SECRETS, namespace=NS)
    assert [(i["apiVersion"], i["kind"]) for i in listed.items] == [("v1", "Secret")]


def test_the_typed_client_understands_the_facade(
    server: RunningApiServer[CountingCluster],
) -> None:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(server.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        core: Any = client.CoreV1Api(api_client)
        body = {"metadata": {"name": "creds"}, "stringData": {"k": "v"}}
        core.create_namespaced_secret(NS, body)
        secrets = core.list_namespaced_secret(NS)
        assert [s.metadata.name for s in secrets.items] == ["creds"]
        with pytest.raises(client.ApiException) as caught:
            core.read_namespaced_secret("missing", NS)
        assert caught.value.status == 404
        custom: Any = client.CustomObjectsApi(api_client)
        created = custom.create_namespaced_custom_object(
            "platform.company.com", "v1", NS, "brokers", broker_manifest("b1", namespace=NS)
        )
        assert created["spec"]["priority"] == 100
    finally:
        api_client.close()
