"""The Kubernetes-shaped HTTP facade (`kidp_ops.cluster.apiserver`), spoken to in plain HTTP.

The Cluster behind it is `MemoryCluster` (tests/support/facade.py), a small in-memory fake
that records what the facade asked of it, so these tests pin the facade's own work:
paths, status codes, Status bodies, patches, selectors, watch lines. Tables, discovery and
OpenAPI have their own modules; the contract suite covers the real adapters, and
tests/cluster/test_kubectl.py runs kubectl itself against the facade.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import pytest
import yaml

from kidp_ops.cluster import apiserver_watch
from kidp_ops.cluster.apiserver import serve
from kidp_ops.cluster.base import BROKERS
from tests.support.facade import (
    BROKERS_URL,
    JSON_PATCH,
    MERGE,
    NS,
    Api,
    MemoryCluster,
    assert_status,
    broker,
    get_json,
    lines,
)
from tests.support.kubeserver import running_apiserver
from tests.support.waiting import until

# --- reads and writes ----------------------------------------------------------------------


async def test_list_is_a_kind_list_with_its_version(api: Api) -> None:
    await api.cluster.create(broker("a"))
    async with api.http.get(BROKERS_URL) as response:
        assert response.status == 200
        body = await response.json()
    assert body["apiVersion"] == "platform.company.com/v1"
    assert body["kind"] == "BrokerList"
    assert body["metadata"] == {"resourceVersion": "1"}
    assert [i["metadata"]["name"] for i in body["items"]] == ["a"]


async def test_all_namespaces_path_lists_every_namespace(api: Api) -> None:
    await api.cluster.create(broker("a", namespace="one"))
    await api.cluster.create(broker("b", namespace="two"))
    async with api.http.get("/apis/platform.company.com/v1/brokers") as response:
        names = [i["metadata"]["name"] for i in (await response.json())["items"]]
    assert names == ["a", "b"]
    async with api.http.get("/apis/platform.company.com/v1/namespaces/two/brokers") as response:
        assert [i["metadata"]["name"] for i in (await response.json())["items"]] == ["b"]


async def test_create_takes_the_namespace_from_the_url(api: Api) -> None:
    async with api.http.post(BROKERS_URL, json=broker(namespace=None)) as response:
        assert response.status == 201
        created = await response.json()
    assert created["metadata"]["namespace"] == NS
    async with api.http.get(f"{BROKERS_URL}/b1") as response:
        assert await response.json() == created


async def test_create_fills_apiversion_and_kind_from_the_url(api: Api) -> None:
    body = {"metadata": {"name": "s1"}, "data": {}}
    async with api.http.post(f"/api/v1/namespaces/{NS}/secrets", json=body) as response:
        assert response.status == 201
        assert (await response.json())["kind"] == "Secret"


async def test_cluster_scoped_kinds_have_no_namespace(api: Api) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com", "namespace": "ignored"},
    }
    url = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    async with api.http.post(url, json=crd) as response:
        assert response.status == 201
        assert "namespace" not in (await response.json())["metadata"]
    async with api.http.get(f"{url}/things.example.com") as response:
        assert response.status == 200


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (BROKERS_URL, broker(namespace="elsewhere"), "namespace"),
        (BROKERS_URL, {**broker(), "kind": "Database"}, "does not match the URL"),
        (f"/api/v1/namespaces/{NS}/secrets", broker(), "does not match the URL"),
        (BROKERS_URL, ["not", "an", "object"], "JSON object"),
    ],
)
async def test_bad_create_bodies_are_400(api: Api, path: str, body: Any, message: str) -> None:
    async with api.http.post(path, json=body) as response:
        assert response.status == 400
        status = await response.json()
    assert_status(status, code=400, reason="BadRequest")
    assert message in status["message"]
    assert api.cluster.objects == {}


async def test_malformed_json_is_400(api: Api) -> None:
    headers = {"Content-Type": "application/json"}
    async with api.http.post(BROKERS_URL, data=b'{"metadata": ', headers=headers) as response:
        assert response.status == 400
        assert_status(await response.json(), code=400, reason="BadRequest")


async def test_deeply_nested_json_is_400_not_500(api: Api) -> None:
    headers = {"Content-Type": "application/json"}
    deep = b'{"metadata": {"name": "x"}, "spec": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    for method, url in (("POST", BROKERS_URL), ("PATCH", f"{BROKERS_URL}/x")):
        patch = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
        async with api.http.request(method, url, data=deep, headers={**headers, **patch}) as answer:
            assert answer.status == 400, await answer.text()
            status = await answer.json()
            assert_status(status, code=400, reason="BadRequest")
            assert "nested 50001 deep" in status["message"]
    assert api.cluster.objects == {}


async def test_replace_checks_the_name_against_the_url(api: Api) -> None:
    created = await api.cluster.create(broker("b1"))
    async with api.http.put(f"{BROKERS_URL}/other", json=created) as response:
        assert response.status == 400
        assert "name" in (await response.json())["message"]


async def test_replace_and_its_conflict(api: Api) -> None:
    created = await api.cluster.create(broker("b1"))
    changed = {**created, "spec": {"endpoint": "http://new"}}
    async with api.http.put(f"{BROKERS_URL}/b1", json=changed) as response:
        assert response.status == 200
        assert (await response.json())["spec"]["endpoint"] == "http://new"
    async with api.http.put(f"{BROKERS_URL}/b1", json=changed) as response:  # stale version
        assert response.status == 409
        status = await response.json()
    assert_status(status, code=409, reason="Conflict")
    assert status["details"] == {"name": "b1", "group": "platform.company.com", "kind": "brokers"}


# --- errors as Status objects ----------------------------------------------------------------


async def test_not_found_is_a_status_naming_the_object(api: Api) -> None:
    async with api.http.get(f"{BROKERS_URL}/missing") as response:
        assert response.status == 404
        status = await response.json()
    assert_status(status, code=404, reason="NotFound")
    assert status["message"] == 'brokers.platform.company.com "missing" not found'
    assert status["details"]["name"] == "missing"


async def test_already_exists_names_the_object_from_the_body(api: Api) -> None:
    await api.cluster.create(broker("b1"))
    async with api.http.post(BROKERS_URL, json=broker("b1")) as response:
        assert response.status == 409
        status = await response.json()
    assert_status(status, code=409, reason="AlreadyExists")
    assert status["details"]["name"] == "b1"


async def test_invalid_is_422_with_one_cause_per_problem(api: Api) -> None:
    bad = broker("b1")
    bad["spec"]["endpoint"] = "ftp://x"
    async with api.http.post(BROKERS_URL, json=bad) as response:
        assert response.status == 422
        status = await response.json()
    assert_status(status, code=422, reason="Invalid")
    assert status["message"] == ".spec.endpoint: must be an http(s) URL; and one more thing"
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "field": "spec.endpoint",
            "message": "must be an http(s) URL",
        },
        {"reason": "FieldValueInvalid", "message": "and one more thing"},
    ]
    assert status["details"]["kind"] == "Broker"  # kubectl: The Broker "b1" is invalid


async def test_unknown_paths_and_methods_are_statuses(api: Api) -> None:
    async with api.http.get("/apis/platform.company.com/v1/namespaces/x/gadgets") as response:
        assert response.status == 404
        assert_status(await response.json(), code=404, reason="NotFound")
    async with api.http.post("/apis/platform.company.com/v1/brokers", json={}) as response:
        assert response.status == 405  # create needs a namespace
        assert_status(await response.json(), code=405, reason="MethodNotAllowed")


async def test_secrets_have_no_status_subresource(api: Api) -> None:
    async with api.http.get(f"/api/v1/namespaces/{NS}/secrets/s1/status") as response:
        assert response.status == 404


# --- patch, status, delete -------------------------------------------------------------------


async def test_merge_patch(api: Api) -> None:
    await api.cluster.create(broker("b1", labels={"a": "1", "b": "2"}))
    patch = {"metadata": {"labels": {"a": None, "c": "3"}}}
    async with api.http.patch(f"{BROKERS_URL}/b1", json=patch, headers=MERGE) as response:
        assert response.status == 200
        assert (await response.json())["metadata"]["labels"] == {"b": "2", "c": "3"}


async def test_json_patch_is_applied_as_a_merge_patch_with_a_precondition(api: Api) -> None:
    created = await api.cluster.create(broker("b1", labels={"a": "1"}))
    ops = [
        {"op": "test", "path": "/metadata/labels/a", "value": "1"},
        {"op": "replace", "path": "/spec/endpoint", "value": "http://x"},
        {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
        {"op": "remove", "path": "/metadata/labels/a"},
    ]
    async with api.http.patch(f"{BROKERS_URL}/b1", json=ops, headers=JSON_PATCH) as response:
        assert response.status == 200, await response.text()
        patched = await response.json()
    assert patched["spec"]["endpoint"] == "http://x"
    assert patched["metadata"]["labels"] == {"b/c": "2"}
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([{"op": "test", "path": "/spec/endpoint", "value": "no"}], "test failed"),
        ([{"op": "remove", "path": "/spec/missing"}], "does not exist"),
        ([{"op": "jump", "path": "/spec"}], "invalid JSON patch operation"),
        ({"op": "add"}, "JSON array"),
    ],
)
async def test_failing_json_patch_changes_nothing(api: Api, ops: Any, message: str) -> None:
    created = await api.cluster.create(broker("b1"))
    async with api.http.patch(f"{BROKERS_URL}/b1", json=ops, headers=JSON_PATCH) as response:
        assert response.status in (400, 422)
        assert message in (await response.json())["message"]
    assert await api.cluster.get(BROKERS, "b1", namespace=NS) == created


async def test_strategic_merge_patch_of_a_custom_resource_is_refused_as_kube_does(
    api: Api,
) -> None:
    await api.cluster.create(broker("b1"))
    headers = {"Content-Type": "application/strategic-merge-patch+json"}
    async with api.http.patch(f"{BROKERS_URL}/b1", json={}, headers=headers) as response:
        assert response.status == 415
        status = await response.json()
    assert_status(status, code=415, reason="UnsupportedMediaType")
    assert status["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json"
    )


async def test_strategic_merge_patch_of_a_secret_merges_finalizers(api: Api) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s1", "namespace": NS, "finalizers": ["a", "b"]},
        "data": {"k": "dg=="},
    }
    await api.cluster.create(secret)
    patch = {
        "$setElementOrder/finalizers": ["b", "c"],
        "metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]},
        "data": {"k": None, "l": "dw=="},
    }
    headers = {"Content-Type": "application/strategic-merge-patch+json"}
    url = f"/api/v1/namespaces/{NS}/secrets/s1"
    async with api.http.patch(url, json=patch, headers=headers) as response:
        assert response.status == 200, await response.text()
        patched = await response.json()
    assert patched["metadata"]["finalizers"] == ["b", "c"]
    assert patched["data"] == {"l": "dw=="}


async def test_server_side_apply_is_refused_with_what_to_do(api: Api) -> None:
    await api.cluster.create(broker("b1"))
    headers = {"Content-Type": "application/apply-patch+yaml"}
    async with api.http.patch(f"{BROKERS_URL}/b1", data="{}", headers=headers) as response:
        assert response.status == 415
        assert "kubectl apply without --server-side" in (await response.json())["message"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_dry_run_is_refused_and_writes_nothing(api: Api, method: str) -> None:
    await api.cluster.create(broker("b1"))
    url = BROKERS_URL if method == "POST" else f"{BROKERS_URL}/b1"
    body = broker("b2" if method == "POST" else "b1")
    headers = MERGE if method == "PATCH" else {}
    async with api.http.request(
        method, url, params={"dryRun": "All"}, json=body, headers=headers
    ) as response:
        assert response.status == 400
        assert "dry run is not supported" in (await response.json())["message"]
    listed = await api.cluster.list(BROKERS)
    assert [i["metadata"]["name"] for i in listed.items] == ["b1"]
    assert listed.items[0]["metadata"]["resourceVersion"] == "1"


async def test_status_patch_goes_to_patch_status(api: Api) -> None:
    await api.cluster.create(broker("b1"))
    patch = {"status": {"phase": "Ready"}, "spec": {"endpoint": "http://ignored"}}
    async with api.http.patch(f"{BROKERS_URL}/b1/status", json=patch, headers=MERGE) as response:
        assert response.status == 200
        patched = await response.json()
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"]["endpoint"] == "http://127.0.0.1:1"
    async with api.http.get(f"{BROKERS_URL}/b1/status") as response:
        assert (await response.json())["status"] == {"phase": "Ready"}


async def test_status_put_replaces_the_status_only(api: Api) -> None:
    await api.cluster.create(broker("b1"))
    await api.cluster.patch_status(
        BROKERS, "b1", {"status": {"phase": "Ready", "version": "1"}}, namespace=NS
    )
    current = await api.cluster.get(BROKERS, "b1", namespace=NS)
    body = {**current, "spec": {"endpoint": "http://ignored"}, "status": {"phase": "Offline"}}
    async with api.http.put(f"{BROKERS_URL}/b1/status", json=body) as response:
        assert response.status == 200
        replaced = await response.json()
    assert replaced["status"] == {"phase": "Offline"}  # "version" is gone: replaced, not merged
    assert replaced["spec"]["endpoint"] == "http://127.0.0.1:1"
    async with api.http.put(f"{BROKERS_URL}/b1/status", json=body) as response:
        assert response.status == 409  # body's resourceVersion is now stale


async def test_delete_answers_status_or_the_object_held_by_finalizers(api: Api) -> None:
    await api.cluster.create(broker("gone"))
    await api.cluster.create(broker("held", finalizers=["x/y"]))
    async with api.http.delete(f"{BROKERS_URL}/gone") as response:
        assert response.status == 200
        status = await response.json()
    assert (status["kind"], status["status"]) == ("Status", "Success")
    assert status["details"]["name"] == "gone"
    async with api.http.delete(f"{BROKERS_URL}/held") as response:
        assert response.status == 200
        held = await response.json()
    assert held["kind"] == "Broker" and held["metadata"]["deletionTimestamp"]


# --- selectors -------------------------------------------------------------------------------


async def test_label_selector_is_passed_on(api: Api) -> None:
    await api.cluster.create(broker("gold", labels={"tier": "gold"}))
    await api.cluster.create(broker("plain"))
    async with api.http.get(BROKERS_URL, params={"labelSelector": "tier=gold"}) as response:
        names = [i["metadata"]["name"] for i in (await response.json())["items"]]
    assert names == ["gold"]
    assert api.cluster.selectors[-1] == "tier=gold"


async def test_field_selector_on_name(api: Api) -> None:
    await api.cluster.create(broker("a"))
    await api.cluster.create(broker("b"))
    params = {"fieldSelector": "metadata.name!=a"}
    async with api.http.get(BROKERS_URL, params=params) as response:
        assert [i["metadata"]["name"] for i in (await response.json())["items"]] == ["b"]
    params = {"fieldSelector": "spec.endpoint=x"}
    async with api.http.get(BROKERS_URL, params=params) as response:
        assert response.status == 400
        assert "spec.endpoint" in (await response.json())["message"]


async def test_invalid_label_selector_is_400(api: Api) -> None:
    params = {"labelSelector": "a in b", "watch": "true"}
    async with api.http.get(BROKERS_URL, params=params) as response:
        assert response.status == 400
        assert_status(await response.json(), code=400, reason="BadRequest")


# --- watch -----------------------------------------------------------------------------------


def watch_params(version: str = "", **extra: str) -> dict[str, str]:
    params = {"watch": "true", "timeoutSeconds": "5", **extra}
    if version:
        params["resourceVersion"] = version
    return params


async def test_watch_streams_changes_in_order(api: Api) -> None:
    await api.cluster.create(broker("before"))
    async with api.http.get(BROKERS_URL, params=watch_params("1")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        await api.cluster.create(broker("b1"))
        await api.cluster.patch(BROKERS, "b1", {"spec": {"endpoint": "http://x"}}, namespace=NS)
        await api.cluster.delete(BROKERS, "b1", namespace=NS)
        events = await lines(response, count=3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b1"),
        ("MODIFIED", "b1"),
        ("DELETED", "b1"),
    ]
    assert [e["object"]["metadata"]["resourceVersion"] for e in events] == ["2", "3", "4"]


@pytest.mark.parametrize("version", ["", "0"])
async def test_watch_without_version_lists_first(api: Api, version: str) -> None:
    await api.cluster.create(broker("a"))
    await api.cluster.create(broker("b"))
    async with api.http.get(BROKERS_URL, params=watch_params(version)) as response:
        first = await lines(response, count=2)
        await api.cluster.create(broker("c"))
        later = await lines(response, count=1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in first + later] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("ADDED", "c"),
    ]


async def test_watch_ends_after_timeout_seconds(api: Api) -> None:
    started = time.monotonic()
    params = watch_params("0", timeoutSeconds="0.3")
    async with api.http.get(BROKERS_URL, params=params) as response:
        assert await lines(response) == []
    assert time.monotonic() - started < 3
    assert api.cluster.open_watches == 0


async def test_gone_is_one_error_event_then_the_end(api: Api) -> None:
    api.cluster.floor = 5
    async with api.http.get(BROKERS_URL, params=watch_params("2")) as response:
        assert response.status == 200  # as kube-apiserver: the error travels in the stream
        events = await lines(response)
    assert len(events) == 1
    error = events[0]
    assert error["type"] == "ERROR"
    assert_status(error["object"], code=410, reason="Expired")


@pytest.fixture
def quick_liveness(monkeypatch: pytest.MonkeyPatch) -> None:
    """The facade notices a client that went away within 50 ms (instead of 0.5 s)."""
    monkeypatch.setattr(apiserver_watch, "LIVENESS_SECONDS", 0.05)


@pytest.mark.usefixtures("quick_liveness")
async def test_bookmarks_only_when_allowed(api: Api) -> None:
    async with api.http.get(BROKERS_URL, params=watch_params("0")) as plain:
        await until(lambda: api.cluster.open_watches == 1)  # the bookmark reaches the facade
        api.cluster.bookmark(BROKERS)
        await api.cluster.create(broker("b1"))
        # The first line is the later event: the bookmark before it was not passed on.
        assert [e["type"] for e in await lines(plain, count=1)] == ["ADDED"]
    params = watch_params(str(api.cluster.version), allowWatchBookmarks="true")
    async with api.http.get(BROKERS_URL, params=params) as with_bookmarks:
        await until(lambda: api.cluster.open_watches == 1)
        api.cluster.bookmark(BROKERS)
        bookmark = (await lines(with_bookmarks, count=1))[0]
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["resourceVersion"] == str(api.cluster.version)


async def test_filtered_watch_deletes_objects_that_stop_matching(api: Api) -> None:
    await api.cluster.create(broker("b1", labels={"tier": "gold"}))
    params = watch_params("0", labelSelector="tier=gold")
    async with api.http.get(BROKERS_URL, params=params) as response:
        await api.cluster.create(broker("plain"))
        unlabel = {"metadata": {"labels": {"tier": None}}}
        await api.cluster.patch(BROKERS, "b1", unlabel, namespace=NS)
        await api.cluster.patch(BROKERS, "b1", {"spec": {"endpoint": "http://x"}}, namespace=NS)
        await api.cluster.patch(
            BROKERS, "b1", {"metadata": {"labels": {"tier": "gold"}}}, namespace=NS
        )
        events = await lines(response, count=3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b1"),
        ("DELETED", "b1"),  # stopped matching
        ("MODIFIED", "b1"),  # matches again (the plain broker and the unseen edit are skipped)
    ]


@pytest.mark.usefixtures("quick_liveness")
async def test_client_disconnect_closes_the_cluster_watch(api: Api) -> None:
    async with api.http.get(BROKERS_URL, params=watch_params("0", timeoutSeconds="60")) as response:
        await api.cluster.create(broker("b1"))
        await lines(response, count=1)
        assert api.cluster.open_watches == 1
        response.close()
    await until(lambda: api.cluster.open_watches == 0)


async def test_shutdown_ends_open_watches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apiserver_watch, "LIVENESS_SECONDS", 60)  # only shutdown can end it
    cluster = MemoryCluster()
    async with aiohttp.ClientSession() as http:
        async with serve(cluster) as url:
            response = await http.get(
                url + BROKERS_URL, params=watch_params("0", timeoutSeconds="600")
            )
            await until(lambda: cluster.open_watches == 1)
            started = time.monotonic()
        assert time.monotonic() - started < 2  # not the 5 s shutdown timeout
        assert await lines(response) == []  # the stream ended cleanly
        response.close()
    assert cluster.open_watches == 0


async def test_bad_timeout_is_400(api: Api) -> None:
    async with api.http.get(BROKERS_URL, params=watch_params(timeoutSeconds="soon")) as response:
        assert response.status == 400


# --- namespaces -------------------------------------------------------------------------------


async def test_namespaces_are_implicit_and_active(api: Api) -> None:
    await api.cluster.create(broker("a", namespace="team-a"))
    namespace = await get_json(api, "/api/v1/namespaces/anything")
    assert (namespace["kind"], namespace["metadata"]["name"]) == ("Namespace", "anything")
    assert namespace["status"]["phase"] == "Active"
    listed = await get_json(api, "/api/v1/namespaces")
    assert [n["metadata"]["name"] for n in listed["items"]] == ["default", "team-a"]
    body = {"metadata": {"name": "new"}}
    async with api.http.post("/api/v1/namespaces", json=body) as response:
        assert response.status == 201
    core = await get_json(api, "/api/v1")
    assert core["resources"][0]["name"] == "namespaces"


# --- the test server helper ------------------------------------------------------------------


def test_running_apiserver_serves_and_cleans_up() -> None:
    async def factory() -> MemoryCluster:
        return MemoryCluster()

    with running_apiserver(factory) as server:
        config = yaml.safe_load(server.kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == server.url
        assert server.url.startswith("https://127.0.0.1:")
        server.call(lambda c: c.create(broker("b1")))
        request = urllib.request.Request(f"{server.url}{BROKERS_URL}/b1", headers=server.headers)
        with urllib.request.urlopen(request, context=server.client_context()) as response:
            assert json.load(response)["metadata"]["name"] == "b1"
        kubeconfig, cluster, context = server.kubeconfig, server.cluster, server.client_context()
    assert cluster.closed
    assert not kubeconfig.exists()
    assert not any(t.name == "kidp-test-apiserver" for t in threading.enumerate())
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{server.url}/version", timeout=5, context=context)


def test_running_apiserver_reports_a_failing_factory() -> None:
    async def factory() -> MemoryCluster:
        raise RuntimeError("no cluster today")

    with pytest.raises(RuntimeError, match="no cluster today"), running_apiserver(factory):
        pass


def test_running_apiserver_reports_a_failing_close() -> None:
    class Stubborn(MemoryCluster):
        async def close(self) -> None:
            raise RuntimeError("will not close")

    async def factory() -> MemoryCluster:
        return Stubborn()

    with pytest.raises(RuntimeError, match="failed") as caught, running_apiserver(factory):
        pass
    assert "will not close" in str(caught.value.__cause__)
