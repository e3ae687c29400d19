"""The API facade over a small in-memory Cluster, for tests of the facade's own work.

`MemoryCluster` records what the facade asked of it (selectors, open watches), so the
facade's tests pin paths, status codes, Status bodies, watch lines, Tables and discovery;
the contract suite covers the real adapters.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

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

NS = "kidp-system"
BROKERS_URL = f"/apis/platform.company.com/v1/namespaces/{NS}/brokers"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


class MemoryCluster(Cluster):
    """Just enough of a Cluster to drive the facade: a dict, an event log, a call record."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Manifest] = {}
        self.log: list[tuple[int, WatchEvent]] = []
        self.version = 0
        self.floor = 0  # a watch from below this version is Gone
        self.open_watches = 0
        self.selectors: list[str | None] = []
        self.field_selectors: list[str | None] = []
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
        self.field_selectors.append(field_selector)
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


async def open_api() -> AsyncIterator[Api]:
    """The facade over a fresh MemoryCluster on 127.0.0.1, and a client session for it."""
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


def assert_status(body: Manifest, *, code: int, reason: str) -> None:
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert (body["code"], body["reason"]) == (code, reason)
    assert body["message"]


async def get_json(api: Api, path: str, **headers: str) -> Manifest:
    async with api.http.get(path, headers=headers) as response:
        assert response.status == 200, path
        body: Manifest = await response.json()
        return body
