"""Serve any Cluster over HTTP in the shape of the Kubernetes REST API.

The official `kubernetes` client, client-go and kubectl talk to it as to a real API
server: the same paths (`/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}`,
`/api/v1/...` for the core group), the same verbs, `Status` objects for every error,
watch streams, the status subresource and the discovery documents kubectl reads first.
It adds no semantics of its own: every rule (optimistic concurrency, finalizers,
validation, generateName) is the Cluster's, so `KubeCluster -> HTTP -> this -> Cluster`
behaves as the Cluster does.

    async with serve(cluster) as url:  # "http://127.0.0.1:PORT"
        ...

Authentication is not checked: bind it to 127.0.0.1 (the default).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.typedefs import Handler

from kidp_ops.cluster import apiserver_protocol as protocol
from kidp_ops.cluster.apiserver_protocol import RequestRejected
from kidp_ops.cluster.apiserver_watch import SHUTDOWN, stream_watch
from kidp_ops.cluster.base import KNOWN_KINDS, Cluster, ClusterError, Manifest, ResourceKind
from kidp_ops.cluster.patching import merge_diff

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_SECONDS = 5.0
_NAMESPACE_KIND = ResourceKind("", "v1", "Namespace", "namespaces", namespaced=False)
_BODY_NAME = web.RequestKey("kidp_body_name", str)  # a create's object name, for errors


def build_app(cluster: Cluster) -> web.Application:
    """The aiohttp application serving `cluster`. The caller owns (and closes) the cluster."""
    app = web.Application(middlewares=[_status_errors], client_max_size=8 * 1024 * 1024)
    app[SHUTDOWN] = asyncio.Event()
    app.on_shutdown.append(_end_watches)
    _add_discovery_routes(app)
    _add_namespace_routes(app, cluster)
    for kind in KNOWN_KINDS:
        _add_resource_routes(app, _Resource(cluster, kind))
    return app


@asynccontextmanager
async def serve(cluster: Cluster, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `cluster` on host:port (0: any free port); yields the base URL."""
    runner = web.AppRunner(
        build_app(cluster), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"http://{shown}:{bound_port}"
    finally:
        await runner.cleanup()


async def _end_watches(app: web.Application) -> None:
    app[SHUTDOWN].set()


def _json(data: Manifest, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


@web.middleware
async def _status_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as a Kubernetes Status object, never as HTML or a traceback."""
    try:
        return await handler(request)
    except RequestRejected as exc:
        return _json(exc.status(), status=exc.code)
    except ClusterError as exc:
        return _json(protocol.failure_status(exc, kind=None, name=""), status=exc.code)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _json(protocol.http_failure(exc.status, exc.reason), status=exc.status)
    except Exception:
        log.exception("error serving %s %s", request.method, request.path)
        failure = protocol.status_object(
            code=500, reason="InternalError", message="an internal error occurred"
        )
        return _json(failure, status=500)


# --- discovery ---------------------------------------------------------------------------


def _document(document: Manifest) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return _json(document)

    return handler


async def _api_versions(request: web.Request) -> web.StreamResponse:
    return _json(protocol.api_versions(request.host))


async def _ok(_: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


def _add_discovery_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/version", _document(protocol.VERSION_INFO))
    router.add_get("/api", _api_versions)
    router.add_get("/api/v1", _document(protocol.resource_list("v1")))
    router.add_get("/apis", _document(protocol.group_list()))
    for group, version in protocol.group_versions():
        router.add_get(f"/apis/{group}", _document(protocol.api_group(group)))
        group_version = f"{group}/{version}"
        router.add_get(f"/apis/{group_version}", _document(protocol.resource_list(group_version)))
    for probe in ("/healthz", "/livez", "/readyz"):
        router.add_get(probe, _ok)
    router.add_get("/openapi/v3", _document(protocol.openapi_root()))
    router.add_get("/openapi/v3/api/v1", _document(protocol.openapi_document("v1")))
    for group, version in protocol.group_versions():
        document = protocol.openapi_document(f"{group}/{version}")
        router.add_get(f"/openapi/v3/apis/{group}/{version}", _document(document))


def _add_namespace_routes(app: web.Application, cluster: Cluster) -> None:
    """Namespaces are implicit in the port; kubectl still reads them (to explain a
    NotFound, or for `create namespace`), so every namespace exists and is Active."""

    async def read(request: web.Request) -> web.StreamResponse:
        return _json(protocol.namespace_object(request.match_info["name"]))

    async def create(request: web.Request) -> web.StreamResponse:
        body = await protocol.read_object(request, _NAMESPACE_KIND)
        name = body["metadata"].get("name")
        if not name:
            raise RequestRejected(400, "metadata.name is required")
        return _json(protocol.namespace_object(name), status=201)

    async def collection(_: web.Request) -> web.StreamResponse:
        names = {"default"}
        for kind in KNOWN_KINDS:
            if kind.namespaced:
                listed = await cluster.list(kind)
                names.update(i["metadata"].get("namespace", "default") for i in listed.items)
        items = [protocol.namespace_object(n) for n in sorted(names)]
        return _json({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {}, "items": items})

    app.router.add_get("/api/v1/namespaces", collection)
    app.router.add_post("/api/v1/namespaces", create)
    app.router.add_get("/api/v1/namespaces/{name}", read)


# --- resources ---------------------------------------------------------------------------

ResourceHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _add_resource_routes(app: web.Application, resource: _Resource) -> None:
    kind, router = resource.kind, app.router
    prefix = protocol.api_prefix(kind)
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
    if kind in protocol.STATUS_SUBRESOURCE_KINDS:
        add("GET", f"{item}/status", resource.read)
        add("PUT", f"{item}/status", resource.replace_status)
        add("PATCH", f"{item}/status", resource.patch_status)


def _guarded(kind: ResourceKind, handler: ResourceHandler) -> Handler:
    """Turn the Cluster's errors into Status objects naming the object and its kind."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ClusterError as exc:
            name = request.match_info.get("name") or request.get(_BODY_NAME, "")
            return _json(protocol.failure_status(exc, kind=kind, name=name), status=exc.code)

    return guarded


class _Resource:
    """The REST verbs of one ResourceKind, each translated to one Cluster call."""

    def __init__(self, cluster: Cluster, kind: ResourceKind) -> None:
        self.cluster = cluster
        self.kind = kind

    def _namespace(self, request: web.Request) -> str | None:
        return request.match_info.get("namespace") if self.kind.namespaced else None

    async def read_collection(self, request: web.Request) -> web.StreamResponse:
        namespace, query = self._namespace(request), request.query
        if protocol.flag(query.get("watch")):
            return await stream_watch(
                request, cluster=self.cluster, kind=self.kind, namespace=namespace
            )
        protocol.object_filter(self.kind, query)  # a bad selector is 400, before any read
        listed = await self.cluster.list(
            self.kind,
            namespace=namespace,
            label_selector=query.get("labelSelector") or None,
            field_selector=query.get("fieldSelector") or None,
        )
        items = listed.items
        return _json(
            {
                "apiVersion": self.kind.api_version,
                "kind": f"{self.kind.kind}List",
                "metadata": {"resourceVersion": listed.resource_version},
                "items": items,
            }
        )

    async def create(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_placed(request)
        request[_BODY_NAME] = body["metadata"].get("name") or ""
        return _json(await self.cluster.create(body), status=201)

    async def read(self, request: web.Request) -> web.StreamResponse:
        name, namespace = request.match_info["name"], self._namespace(request)
        return _json(await self.cluster.get(self.kind, name, namespace=namespace))

    async def replace(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_named(request)
        return _json(await self.cluster.replace(body))

    async def patch(self, request: web.Request) -> web.StreamResponse:
        patch = await protocol.read_merge_patch(request)
        name, namespace = request.match_info["name"], self._namespace(request)
        return _json(await self.cluster.patch(self.kind, name, patch, namespace=namespace))

    async def delete(self, request: web.Request) -> web.StreamResponse:
        name, namespace = request.match_info["name"], self._namespace(request)
        remaining = await self.cluster.delete(self.kind, name, namespace=namespace)
        if remaining is not None:  # held by finalizers, now with deletionTimestamp
            return _json(remaining)
        return _json(protocol.success_status(self.kind, name))

    async def replace_status(self, request: web.Request) -> web.StreamResponse:
        """PUT .../status: the body's status replaces the stored one; nothing else changes.

        The port has no "replace status", so this sends the merge patch that turns the
        current status into the new one, with the body's resourceVersion as precondition.
        """
        body = await self._read_named(request)
        name, namespace = request.match_info["name"], self._namespace(request)
        current = await self.cluster.get(self.kind, name, namespace=namespace)
        patch: Manifest = {"status": merge_diff(current.get("status"), body.get("status"))}
        if version := body["metadata"].get("resourceVersion"):
            patch["metadata"] = {"resourceVersion": version}
        return _json(await self.cluster.patch_status(self.kind, name, patch, namespace=namespace))

    async def patch_status(self, request: web.Request) -> web.StreamResponse:
        patch = await protocol.read_merge_patch(request)
        name, namespace = request.match_info["name"], self._namespace(request)
        return _json(await self.cluster.patch_status(self.kind, name, patch, namespace=namespace))

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
