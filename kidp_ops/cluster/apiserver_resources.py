"""The REST verbs of one kind, each translated to Cluster calls (the API facade's core).

Reads answer plain JSON or, when the client asks for it in `Accept` (kubectl get), a Table
with the kind's columns (`apiserver_tables`). Writes go to the Cluster unchanged, except
two patch types the port does not have: a JSON patch or a strategic merge patch is applied
here to the object just read, and the difference is sent as a merge patch with that
object's resourceVersion as precondition (retried when another writer came between, as
kube-apiserver retries its own patches).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from kidp_ops.cluster import apiserver_protocol as protocol
from kidp_ops.cluster import apiserver_tables as tables
from kidp_ops.cluster.apiserver_discovery import STATUS_SUBRESOURCE_KINDS, api_prefix
from kidp_ops.cluster.apiserver_protocol import PLAIN, Patch, RequestRejected
from kidp_ops.cluster.apiserver_watch import stream_watch
from kidp_ops.cluster.base import (
    CRDS,
    PLATFORM_KINDS,
    Cluster,
    ClusterError,
    Conflict,
    Manifest,
    NotFound,
    ResourceKind,
)
from kidp_ops.cluster.patching import json_patch, merge_diff, strategic_merge_patch

BODY_NAME = web.RequestKey("kidp_body_name", str)  # a create's object name, for errors
PATCH_ATTEMPTS = 5
TABLE_OFFERS = {
    PLAIN: "",
    ("Table", "meta.k8s.io", "v1"): "v1",
    ("Table", "meta.k8s.io", "v1beta1"): "v1beta1",
}
ResourceHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Manifest, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def table_version(request: web.Request) -> str:
    """ "v1"/"v1beta1" when the client wants a Table, "" for plain JSON (406: neither)."""
    return protocol.negotiate(request.headers.get("Accept"), TABLE_OFFERS)


def include_object(request: web.Request) -> str:
    include = request.query.get("includeObject") or "Metadata"
    if include not in tables.INCLUDE_OBJECT:
        allowed = ", ".join(tables.INCLUDE_OBJECT)
        raise RequestRejected(400, f"includeObject must be one of {allowed}, not {include!r}")
    return include


def add_resource_routes(app: web.Application, resource: Resource) -> None:
    kind, router = resource.kind, app.router
    prefix = api_prefix(kind)
    scoped = f"{prefix}/namespaces/{{namespace}}" if kind.namespaced else prefix
    collection, item = f"{scoped}/{kind.plural}", f"{scoped}/{kind.plural}/{{name}}"

    def add(method: str, path: str, handler: ResourceHandler) -> None:
        router.add_route(method, path, _guarded(kind, handler))

    add("GET", collection, resource.read_collection)
    if kind.namespaced:
        add("GET", f"{prefix}/{kind.plural}", resource.read_collection)  # all namespaces
    add("POST", collection, resource.create)
    add("GET", item, resource.read)
    add("PUT", item, resource.replace)
    add("PATCH", item, resource.patch)
    add("DELETE", item, resource.delete)
    if kind in STATUS_SUBRESOURCE_KINDS:
        add("GET", f"{item}/status", resource.read)
        add("PUT", f"{item}/status", resource.replace_status)
        add("PATCH", f"{item}/status", resource.patch_status)


def _guarded(kind: ResourceKind, handler: ResourceHandler) -> ResourceHandler:
    """Turn the Cluster's errors into Status objects naming the object and its kind."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ClusterError as exc:
            name = request.match_info.get("name") or request.get(BODY_NAME, "")
            status = protocol.failure_status(exc, kind=kind, name=name)
            return json_response(status, status=exc.code)

    return guarded


class Resource:
    """The REST verbs of one ResourceKind, each translated to Cluster calls."""

    def __init__(self, cluster: Cluster, kind: ResourceKind) -> None:
        self.cluster = cluster
        self.kind = kind

    def _namespace(self, request: web.Request) -> str | None:
        return request.match_info.get("namespace") if self.kind.namespaced else None

    def _where(self, request: web.Request) -> tuple[str, str | None]:
        return request.match_info["name"], self._namespace(request)

    # --- reads ---------------------------------------------------------------------------

    async def _columns(self) -> list[tables.Column]:
        """The kind's columns; a custom kind's come from its CRD as stored now."""
        crd = None
        if self.kind in PLATFORM_KINDS:
            try:
                crd = await self.cluster.get(CRDS, self.kind.resource)
            except NotFound:
                crd = None
        return tables.columns_for(self.kind, crd)

    async def _table(
        self, request: web.Request, items: list[Manifest], version: str, resource_version: str
    ) -> Manifest:
        return tables.table(
            items,
            await self._columns(),
            resource_version=resource_version,
            table_version=version,
            include=include_object(request),
            now=datetime.now(UTC),
        )

    async def read_collection(self, request: web.Request) -> web.StreamResponse:
        namespace, query = self._namespace(request), request.query
        as_table = table_version(request)
        if protocol.flag(query.get("watch")):
            return await self._watch(request, namespace, as_table)
        protocol.object_filter(self.kind, query)  # a bad selector is 400, before any read
        listed = await self.cluster.list(
            self.kind,
            namespace=namespace,
            label_selector=query.get("labelSelector") or None,
            field_selector=query.get("fieldSelector") or None,
        )
        if as_table:
            table = await self._table(request, listed.items, as_table, listed.resource_version)
            return json_response(table)
        return json_response(
            {
                "apiVersion": self.kind.api_version,
                "kind": f"{self.kind.kind}List",
                "metadata": {"resourceVersion": listed.resource_version},
                "items": listed.items,
            }
        )

    async def _watch(
        self, request: web.Request, namespace: str | None, as_table: str
    ) -> web.StreamResponse:
        render = None
        if as_table:
            columns, include = await self._columns(), include_object(request)

            def render(obj: Manifest) -> Manifest:
                version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
                return tables.table(
                    [obj],
                    columns,
                    resource_version=version,
                    table_version=as_table,
                    include=include,
                    now=datetime.now(UTC),
                )

        return await stream_watch(
            request, cluster=self.cluster, kind=self.kind, namespace=namespace, render=render
        )

    async def read(self, request: web.Request) -> web.StreamResponse:
        as_table = table_version(request)
        name, namespace = self._where(request)
        obj = await self.cluster.get(self.kind, name, namespace=namespace)
        if as_table:
            version = str(obj["metadata"].get("resourceVersion", ""))
            return json_response(await self._table(request, [obj], as_table, version))
        return json_response(obj)

    # --- writes ----------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        protocol.refuse_dry_run(request.query)
        body = await self._read_placed(request)
        request[BODY_NAME] = body["metadata"].get("name") or ""
        return json_response(await self.cluster.create(body), status=201)

    async def replace(self, request: web.Request) -> web.StreamResponse:
        protocol.refuse_dry_run(request.query)
        body = await self._read_named(request)
        return json_response(await self.cluster.replace(body))

    async def patch(self, request: web.Request) -> web.StreamResponse:
        return await self._patch(request, status=False)

    async def patch_status(self, request: web.Request) -> web.StreamResponse:
        return await self._patch(request, status=True)

    async def _patch(self, request: web.Request, *, status: bool) -> web.StreamResponse:
        protocol.refuse_dry_run(request.query)
        patch = await protocol.read_patch(request, self.kind)
        name, namespace = self._where(request)
        send = self.cluster.patch_status if status else self.cluster.patch
        if patch.media_type == protocol.MERGE_PATCH:
            return json_response(await send(self.kind, name, patch.body, namespace=namespace))
        for _attempt in range(PATCH_ATTEMPTS):
            current = await self.cluster.get(self.kind, name, namespace=namespace)
            merge = _as_merge_patch(current, _applied(patch, current), status=status)
            try:
                return json_response(await send(self.kind, name, merge, namespace=namespace))
            except Conflict:
                if merge["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
                    raise  # the patch itself asked for that version
        raise Conflict(f'{self.kind.resource} "{name}" kept changing while patching it')

    async def delete(self, request: web.Request) -> web.StreamResponse:
        protocol.refuse_dry_run(request.query)
        name, namespace = self._where(request)
        remaining = await self.cluster.delete(self.kind, name, namespace=namespace)
        if remaining is not None:  # held by finalizers, now with deletionTimestamp
            return json_response(remaining)
        return json_response(protocol.success_status(self.kind, name))

    async def replace_status(self, request: web.Request) -> web.StreamResponse:
        """PUT .../status: the body's status replaces the stored one; nothing else changes.

        The port has no "replace status", so this sends the merge patch that turns the
        current status into the new one, with the body's resourceVersion as precondition.
        """
        protocol.refuse_dry_run(request.query)
        body = await self._read_named(request)
        name, namespace = self._where(request)
        current = await self.cluster.get(self.kind, name, namespace=namespace)
        patch: Manifest = {"status": merge_diff(current.get("status"), body.get("status"))}
        if version := body["metadata"].get("resourceVersion"):
            patch["metadata"] = {"resourceVersion": version}
        return json_response(
            await self.cluster.patch_status(self.kind, name, patch, namespace=namespace)
        )

    async def _read_placed(self, request: web.Request) -> Manifest:
        """The request's object, its namespace defaulted to (and checked against) the URL's."""
        body = await protocol.read_object(request, self.kind)
        meta = body["metadata"]
        if not self.kind.namespaced:
            meta.pop("namespace", None)
            return body
        namespace = request.match_info["namespace"]
        if meta.get("namespace") not in (None, "", namespace):
            raise RequestRejected(
                400,
                f"the namespace of the object ({meta['namespace']}) does not match the "
                f"namespace on the URL ({namespace})",
            )
        meta["namespace"] = namespace
        return body

    async def _read_named(self, request: web.Request) -> Manifest:
        body = await self._read_placed(request)
        name = request.match_info["name"]
        if body["metadata"].get("name") != name:
            raise RequestRejected(
                400,
                f"the name of the object ({body['metadata'].get('name')}) does not match "
                f"the name on the URL ({name})",
            )
        return body


def _applied(patch: Patch, current: Manifest) -> Any:
    if patch.media_type == protocol.JSON_PATCH:
        return json_patch(current, patch.body)
    return strategic_merge_patch(current, patch.body)


def _as_merge_patch(current: Manifest, desired: Any, *, status: bool) -> Manifest:
    """The merge patch from `current` to `desired`, preconditioned on a resourceVersion
    (the patch's own when it set one, else the one it was applied to)."""
    if not isinstance(desired, dict):
        raise RequestRejected(400, "the patched object is not a JSON object")
    if status:
        merge: Manifest = {"status": merge_diff(current.get("status"), desired.get("status"))}
    else:
        merge = merge_diff(current, desired)
    wanted = (desired.get("metadata") or {}).get("resourceVersion")
    version = wanted or current["metadata"]["resourceVersion"]
    merge.setdefault("metadata", {})["resourceVersion"] = version
    return merge
