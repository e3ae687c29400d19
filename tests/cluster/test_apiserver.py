"""The Kubernetes-shaped HTTP facade (`kidp_ops.cluster.apiserver`), spoken to in plain HTTP.

The Cluster behind it is `MemoryCluster`, a small in-memory fake that records what the
facade asked of it, so these tests pin the facade's own work: paths, status codes,
Status bodies, watch lines, discovery. The contract suite covers the real adapters.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kidp_ops.cluster import apiserver_watch
from kidp_ops.cluster.apiserver import serve
from kidp_ops.cluster.base import (
    BROKERS,
    AlreadyExists,
    Cluster,
    Conflict,
    FieldProblem,
    Gone,
    Invalid,
    Manifest,
    NotFound,
    ObjectList,
    ResourceKind,
    WatchEvent,
    kind_for_manifest,
)
from kidp_ops.cluster.fields import parse_field_selector
from kidp_ops.cluster.labels import parse_selector
from kidp_ops.cluster.patching import merge_patch
from tests.support.kubeserver import running_apiserver

NS = "kidp-system"
BROKERS_URL = f"/apis/platform.company.com/v1/namespaces/{NS}/brokers"
MERGE = {"Content-Type": "application/merge-patch+json"}


class MemoryCluster(Cluster):
    """Just enough of a Cluster to drive the facade: a dict, an event log, a call record."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Manifest] = {}
        self.log: list[tuple[int, WatchEvent]] = []
        self.version = 0
        self.floor = 0  # a watch from below this version is Gone
        self.open_watches = 0
        self.selectors: list[str | None] = []
        self.closed = False
        self._changed = asyncio.Event()

    # --- helpers ---------------------------------------------------------------------

    def _key(self, kind: ResourceKind, name: str, namespace: str | None) -> tuple[str, str, str]:
        return (kind.resource, (namespace or "default") if kind.namespaced else "", name)

    def _record(self, event_type: str, obj: Manifest, *, bump: bool = True) -> None:
        if bump:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
        self.log.append((self.version, WatchEvent(event_type, copy.deepcopy(obj))))  # type: ignore[arg-type]
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def bookmark(self, kind: ResourceKind) -> None:
        version = {"resourceVersion": str(self.version)}
        obj = {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": version}
        self._record("BOOKMARK", obj, bump=False)

    def _current(self, kind: ResourceKind, name: str, namespace: str | None) -> Manifest:
        found = self.objects.get(self._key(kind, name, namespace))
        if found is None:
            raise NotFound(f'{kind.resource} "{name}" not found')
        return found

    @staticmethod
    def _concerns(event: WatchEvent, kind: ResourceKind, namespace: str | None) -> bool:
        if event.object["kind"] != kind.kind:
            return False
        return event.type == "BOOKMARK" or namespace in (
            None,
            event.object["metadata"]["namespace"],
        )

    def _check_version(self, current: Manifest, wanted: Any) -> None:
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified")

    # --- the port ----------------------------------------------------------------------

    async def get(self, kind: ResourceKind, name: str, *, namespace: str | None = None) -> Manifest:
        return copy.deepcopy(self._current(kind, name, namespace))

    async def list(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList:
        self.selectors.append(label_selector)
        matches, fields = parse_selector(label_selector), parse_field_selector(kind, field_selector)
        items = [
            copy.deepcopy(obj)
            for (resource, ns, _), obj in sorted(self.objects.items())
            if resource == kind.resource
            and namespace in (None, ns)
            and matches(obj["metadata"].get("labels") or {})
            and fields(obj)
        ]
        return ObjectList(items, str(self.version))

    async def watch(
        self,
        kind: ResourceKind,
        *,
        resource_version: str,
        namespace: str | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        start = int(resource_version)
        if start < self.floor:
            raise Gone(f"too old resource version: {start} ({self.floor})")
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        position = sum(1 for version, _ in self.log if version <= start)
        self.open_watches += 1
        try:
            while True:
                for _, event in self.log[position:]:
                    position += 1
                    if self._concerns(event, kind, namespace):
                        yield WatchEvent(event.type, copy.deepcopy(event.object))
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    return
        finally:
            self.open_watches -= 1

    async def create(self, manifest: Manifest) -> Manifest:
        kind = kind_for_manifest(manifest)
        obj = copy.deepcopy(manifest)
        meta = obj["metadata"]
        meta["name"] = meta.get("name") or f"{meta.get('generateName', 'x')}{self.version + 1}"
        if kind is BROKERS and not str(obj.get("spec", {}).get("endpoint", "")).startswith("http"):
            problem = FieldProblem(".spec.endpoint", "must be an http(s) URL")
            raise Invalid("invalid", problems=(problem, FieldProblem("", "and one more thing")))
        key = self._key(kind, meta["name"], meta.get("namespace"))
        if key in self.objects:
            raise AlreadyExists(f'{kind.resource} "{meta["name"]}" already exists')
        meta["uid"] = f"uid-{self.version + 1}"
        self.objects[key] = obj
        self._record("ADDED", obj)
        return copy.deepcopy(obj)

    async def replace(self, manifest: Manifest) -> Manifest:
        kind, meta = kind_for_manifest(manifest), manifest["metadata"]
        current = self._current(kind, meta["name"], meta.get("namespace"))
        self._check_version(current, meta.get("resourceVersion"))
        return self._store(kind, {**copy.deepcopy(manifest), "status": current.get("status")})

    def _store(self, kind: ResourceKind, obj: Manifest) -> Manifest:
        if obj.get("status") is None:
            obj.pop("status", None)
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self.objects[self._key(kind, meta["name"], meta.get("namespace"))]
            self._record("DELETED", obj)
        else:
            self.objects[self._key(kind, meta["name"], meta.get("namespace"))] = obj
            self._record("MODIFIED", obj)
        return copy.deepcopy(obj)

    async def patch(
        self, kind: ResourceKind, name: str, patch: Manifest, *, namespace: str | None = None
    ) -> Manifest:
        current = self._current(kind, name, namespace)
        self._check_version(current, (patch.get("metadata") or {}).get("resourceVersion"))
        patched = merge_patch(current, {k: v for k, v in patch.items() if k != "status"})
        return self._store(kind, patched)

    async def patch_status(
        self, kind: ResourceKind, name: str, patch: Manifest, *, namespace: str | None = None
    ) -> Manifest:
        current = self._current(kind, name, namespace)
        self._check_version(current, (patch.get("metadata") or {}).get("resourceVersion"))
        return self._store(kind, merge_patch(current, {"status": patch.get("status")}))

    async def delete(
        self, kind: ResourceKind, name: str, *, namespace: str | None = None
    ) -> Manifest | None:
        current = self._current(kind, name, namespace)
        if current["metadata"].get("finalizers"):
            marked = merge_patch(
                current, {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}
            )
            return self._store(kind, marked)
        del self.objects[self._key(kind, name, namespace)]
        self._record("DELETED", current)
        return None

    async def close(self) -> None:
        self.closed = True


# --- fixtures and helpers ----------------------------------------------------------------


@dataclass
class Api:
    cluster: MemoryCluster
    http: aiohttp.ClientSession
    url: str


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    cluster = MemoryCluster()
    async with serve(cluster) as url, aiohttp.ClientSession(base_url=url) as http:
        yield Api(cluster, http, url)


def broker(name: str = "b1", namespace: str | None = NS, **meta: Any) -> Manifest:
    metadata: Manifest = {"name": name, **meta}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "platform.company.com/v1",
        "kind": "Broker",
        "metadata": metadata,
        "spec": {"endpoint": "http://127.0.0.1:1"},
    }


async def lines(response: aiohttp.ClientResponse, *, count: int = 0) -> list[Manifest]:
    """The watch events of a stream: the first `count`, or all until the server ends it."""

    async def read() -> list[Manifest]:
        events = []
        async for line in response.content:
            if line.strip():
                events.append(json.loads(line))
            if count and len(events) >= count:
                break
        return events

    return await asyncio.wait_for(read(), 10)


async def poll(condition: Callable[[], bool], *, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def assert_status(body: Manifest, *, code: int, reason: str) -> None:
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert (body["code"], body["reason"]) == (code, reason)
    assert body["message"]


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


@pytest.mark.parametrize(
    "content_type", ["application/merge-patch+json", "application/strategic-merge-patch+json"]
)
async def test_merge_patch(api: Api, content_type: str) -> None:
    await api.cluster.create(broker("b1", labels={"a": "1", "b": "2"}))
    patch = {"metadata": {"labels": {"a": None, "c": "3"}}}
    headers = {"Content-Type": content_type}
    async with api.http.patch(f"{BROKERS_URL}/b1", json=patch, headers=headers) as response:
        assert response.status == 200
        assert (await response.json())["metadata"]["labels"] == {"b": "2", "c": "3"}


async def test_json_patch_is_unsupported_media_type(api: Api) -> None:
    await api.cluster.create(broker("b1"))
    headers = {"Content-Type": "application/json-patch+json"}
    ops = [{"op": "replace", "path": "/spec/endpoint", "value": "http://x"}]
    async with api.http.patch(f"{BROKERS_URL}/b1", json=ops, headers=headers) as response:
        assert response.status == 415
        status = await response.json()
    assert_status(status, code=415, reason="UnsupportedMediaType")
    assert "application/merge-patch+json" in status["message"]


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


async def test_bookmarks_only_when_allowed(api: Api) -> None:
    async with api.http.get(BROKERS_URL, params=watch_params("0", timeoutSeconds="1")) as plain:
        await poll(lambda: api.cluster.open_watches == 1)  # the bookmark reaches the facade
        api.cluster.bookmark(BROKERS)
        await api.cluster.create(broker("b1"))
        assert [e["type"] for e in await lines(plain)] == ["ADDED"]
    params = watch_params(str(api.cluster.version), allowWatchBookmarks="true")
    async with api.http.get(BROKERS_URL, params=params) as with_bookmarks:
        await poll(lambda: api.cluster.open_watches == 1)
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


async def test_client_disconnect_closes_the_cluster_watch(api: Api) -> None:
    async with api.http.get(BROKERS_URL, params=watch_params("0", timeoutSeconds="60")) as response:
        await api.cluster.create(broker("b1"))
        await lines(response, count=1)
        assert api.cluster.open_watches == 1
        response.close()
    await poll(lambda: api.cluster.open_watches == 0)


async def test_shutdown_ends_open_watches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(apiserver_watch, "LIVENESS_SECONDS", 60)  # only shutdown can end it
    cluster = MemoryCluster()
    async with aiohttp.ClientSession() as http:
        async with serve(cluster) as url:
            response = await http.get(
                url + BROKERS_URL, params=watch_params("0", timeoutSeconds="600")
            )
            await poll(lambda: cluster.open_watches == 1)
            started = time.monotonic()
        assert time.monotonic() - started < 2  # not the 5 s shutdown timeout
        assert await lines(response) == []  # the stream ended cleanly
        response.close()
    assert cluster.open_watches == 0


async def test_bad_timeout_is_400(api: Api) -> None:
    async with api.http.get(BROKERS_URL, params=watch_params(timeoutSeconds="soon")) as response:
        assert response.status == 400


# --- discovery -------------------------------------------------------------------------------


async def get_json(api: Api, path: str) -> Manifest:
    async with api.http.get(path) as response:
        assert response.status == 200, path
        body: Manifest = await response.json()
        return body


async def test_version(api: Api) -> None:
    version = await get_json(api, "/version")
    assert (version["major"], version["minor"], version["gitVersion"]) == (
        "1",
        "30",
        "v1.30.0-kidp",
    )


async def test_core_discovery(api: Api) -> None:
    versions = await get_json(api, "/api")
    assert (versions["kind"], versions["versions"]) == ("APIVersions", ["v1"])
    core = await get_json(api, "/api/v1")
    assert core["kind"] == "APIResourceList" and core["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in core["resources"]}
    assert set(by_name) == {"namespaces", "secrets", "events"}
    assert by_name["events"]["shortNames"] == ["ev"]
    assert by_name["secrets"]["namespaced"] is True


async def test_group_discovery(api: Api) -> None:
    groups = await get_json(api, "/apis")
    assert groups["kind"] == "APIGroupList"
    names = [g["name"] for g in groups["groups"]]
    assert names == ["platform.company.com", "coordination.k8s.io", "apiextensions.k8s.io"]
    platform = groups["groups"][0]
    assert platform["preferredVersion"] == {
        "groupVersion": "platform.company.com/v1",
        "version": "v1",
    }
    assert (await get_json(api, "/apis/platform.company.com"))["kind"] == "APIGroup"


async def test_resource_discovery(api: Api) -> None:
    resources = await get_json(api, "/apis/platform.company.com/v1")
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["brokers"] == {
        "name": "brokers",
        "singularName": "broker",
        "namespaced": True,
        "kind": "Broker",
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        "shortNames": ["br"],
    }
    assert by_name["brokers/status"]["verbs"] == ["get", "patch", "update"]
    assert {"databases", "databases/status"} <= set(by_name)
    crds = await get_json(api, "/apis/apiextensions.k8s.io/v1")
    assert crds["resources"][0]["namespaced"] is False
    assert crds["resources"][0]["shortNames"] == ["crd"]


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


async def test_openapi_tells_kubectl_the_server_validates(api: Api) -> None:
    root = await get_json(api, "/openapi/v3")
    relative = root["paths"]["apis/platform.company.com/v1"]["serverRelativeURL"]
    document = await get_json(api, relative)
    path = "/apis/platform.company.com/v1/namespaces/{namespace}/brokers/{name}"
    patch = document["paths"][path]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "platform.company.com",
        "version": "v1",
        "kind": "Broker",
    }
    assert {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}} in patch[
        "parameters"
    ]
    crds = await get_json(api, root["paths"]["apis/apiextensions.k8s.io/v1"]["serverRelativeURL"])
    assert "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}" in crds["paths"]


# --- the test server helper ------------------------------------------------------------------


def test_running_apiserver_serves_and_cleans_up() -> None:
    async def factory() -> MemoryCluster:
        return MemoryCluster()

    with running_apiserver(factory) as server:
        config = json.loads(server.kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == server.url
        server.call(lambda c: c.create(broker("b1")))
        with urllib.request.urlopen(f"{server.url}{BROKERS_URL}/b1") as response:
            assert json.load(response)["metadata"]["name"] == "b1"
        kubeconfig, cluster = server.kubeconfig, server.cluster
    assert cluster.closed
    assert not kubeconfig.exists()
    assert not any(t.name == "kidp-test-apiserver" for t in threading.enumerate())
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{server.url}/version", timeout=5)


def test_running_apiserver_reports_a_failing_factory() -> None:
    async def factory() -> MemoryCluster:
        raise RuntimeError("no cluster today")

    with pytest.raises(RuntimeError, match="no cluster today"), running_apiserver(factory):
        pass


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_works_against_the_facade(tmp_path: Path) -> None:
    async def factory() -> MemoryCluster:
        return MemoryCluster()

    with running_apiserver(factory) as server:

        def kubectl(*args: str, stdin: str | None = None) -> str:
            command = ["kubectl", f"--kubeconfig={server.kubeconfig}", f"--cache-dir={tmp_path}"]
            done = subprocess.run(
                [*command, *args],
                check=False,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert "v1.30.0-kidp" in kubectl("version")
        assert "brokers" in kubectl("api-resources")
        assert "created" in kubectl("apply", "-f", "-", stdin=json.dumps(broker("b1")))
        assert "unchanged" in kubectl("apply", "-f", "-", stdin=json.dumps(broker("b1")))
        kubectl("patch", "br", "b1", "-n", NS, "--type=merge", "-p", '{"spec":{"region":"eu"}}')
        status = '{"status":{"phase":"Ready"}}'
        kubectl("patch", "br", "b1", "-n", NS, "--subresource=status", "--type=merge", "-p", status)
        shown = kubectl(
            "get", "br", "b1", "-n", NS, "-o", "jsonpath={.spec.region} {.status.phase}"
        )
        assert shown == "eu Ready"
        assert "b1" in kubectl("get", "brokers", "-A")
        kubectl("delete", "br", "b1", "-n", NS)
        assert server.call(lambda c: c.list(BROKERS)).items == []


def test_running_apiserver_reports_a_failing_close() -> None:
    class Stubborn(MemoryCluster):
        async def close(self) -> None:
            raise RuntimeError("will not close")

    async def factory() -> MemoryCluster:
        return Stubborn()

    with pytest.raises(RuntimeError, match="failed") as caught, running_apiserver(factory):
        pass
    assert "will not close" in str(caught.value.__cause__)
