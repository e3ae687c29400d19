"""Serve any Cluster over HTTP in the shape of the Kubernetes REST API.

kubectl, client-go and the official `kubernetes` client talk to it as to a real API
server: the same paths (`/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}`,
`/api/v1/...` for the core group), the same verbs and patch types, `Status` objects for
every error, watch streams, the status subresource, Table responses with each kind's
columns, field and label selectors, discovery (legacy and aggregated) and OpenAPI
documents built from the CRDs. It adds no semantics of its own: every rule (optimistic
concurrency, finalizers, validation, generateName) is the Cluster's, so
`KubeCluster -> HTTP -> this -> Cluster` behaves as the Cluster does.

    async with serve(cluster, ssl=context, token=secret) as url:  # "https://127.0.0.1:PORT"
        ...

With a `token`, every request must carry `Authorization: Bearer <token>` (401 otherwise,
health probes included: nothing is served to a process that has not read the token).
`kidp_ops.cluster.serving` runs it the way users get it: TLS from a CA of its own, a
token and a kubeconfig. Without `ssl` and `token` (the facade's own tests) it is plain
HTTP with no authentication, so bind it to 127.0.0.1 (the default).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import ssl as tls
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from kidp_ops.cluster import apiserver_discovery as discovery
from kidp_ops.cluster import apiserver_openapi as openapi
from kidp_ops.cluster import apiserver_protocol as protocol
from kidp_ops.cluster import apiserver_tables as tables
from kidp_ops.cluster import openapi_protobuf
from kidp_ops.cluster.apiserver_protocol import PLAIN, RequestRejected
from kidp_ops.cluster.apiserver_resources import (
    Resource,
    add_resource_routes,
    include_object,
    json_response,
    table_version,
)
from kidp_ops.cluster.apiserver_watch import SHUTDOWN
from kidp_ops.cluster.base import CRDS, KNOWN_KINDS, Cluster, ClusterError, Manifest

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_SECONDS = 5.0
MAX_BODY_BYTES = 8 * 1024 * 1024
AGGREGATED_OFFERS = {
    PLAIN: "",
    **{("APIGroupDiscoveryList", discovery.AGGREGATED_GROUP, v): v for v in ("v2", "v2beta1")},
}


def build_app(cluster: Cluster, *, token: str | None = None) -> web.Application:
    """The aiohttp application serving `cluster`. The caller owns (and closes) the cluster."""
    middlewares: list[Middleware] = [_status_errors]
    if token is not None:
        middlewares.append(_bearer_token(token))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app[SHUTDOWN] = asyncio.Event()
    app.on_shutdown.append(_end_watches)
    _add_discovery_routes(app)
    _add_openapi_routes(app, cluster)
    _add_namespace_routes(app, cluster)
    for kind in KNOWN_KINDS:
        add_resource_routes(app, Resource(cluster, kind))
    return app


@asynccontextmanager
async def serve(
    cluster: Cluster,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl: tls.SSLContext | None = None,
    token: str | None = None,
) -> AsyncIterator[str]:
    """Serve `cluster` on host:port (0: any free port); yields the base URL.

    An address that cannot be bound raises OSError before anything is served."""
    runner = web.AppRunner(
        build_app(cluster, token=token), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"{'https' if ssl else 'http'}://{shown}:{bound_port}"
    finally:
        await runner.cleanup()


async def _end_watches(app: web.Application) -> None:
    app[SHUTDOWN].set()


@web.middleware
async def _status_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as a Kubernetes Status object, never as HTML or a traceback."""
    try:
        return await handler(request)
    except RequestRejected as exc:
        return json_response(exc.status(), status=exc.code)
    except ClusterError as exc:
        failure = protocol.failure_status(exc, kind=None, name="")
        return json_response(failure, status=exc.code)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response(protocol.http_failure(exc.status, exc.reason), status=exc.status)
    except Exception:
        log.exception("error serving %s %s", request.method, request.path)
        failure = protocol.status_object(
            code=500, reason="InternalError", message="an internal error occurred"
        )
        return json_response(failure, status=500)


def _bearer_token(token: str) -> Middleware:
    """401 Unauthorized (kube-apiserver's body) unless the request carries `token`."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise RequestRejected(401, "Unauthorized")
        return await handler(request)

    return authenticate


# --- discovery ---------------------------------------------------------------------------


def _document(document: Manifest) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return json_response(document)

    return handler


def _root_discovery(*, legacy: bool) -> Handler:
    """`/api` or `/apis`: the aggregated document when the client accepts it, else the
    legacy one. client-go tells the two apart by the response's Content-Type."""

    async def handler(request: web.Request) -> web.StreamResponse:
        version = protocol.negotiate(request.headers.get("Accept"), AGGREGATED_OFFERS)
        if version:
            document = discovery.aggregated(legacy=legacy, version=version)
            params = f"g={discovery.AGGREGATED_GROUP};v={version};as=APIGroupDiscoveryList"
            return web.Response(
                body=json.dumps(document).encode(),
                headers={"Content-Type": f"application/json;{params}"},
            )
        if legacy:
            return json_response(discovery.api_versions(request.host))
        return json_response(discovery.group_list())

    return handler


async def _ok(_: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


def _add_discovery_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/version", _document(discovery.VERSION_INFO))
    router.add_get("/api", _root_discovery(legacy=True))
    router.add_get("/api/v1", _document(discovery.resource_list("v1")))
    router.add_get("/apis", _root_discovery(legacy=False))
    for group, version in discovery.group_versions():
        router.add_get(f"/apis/{group}", _document(discovery.api_group(group)))
        group_version = f"{group}/{version}"
        router.add_get(f"/apis/{group_version}", _document(discovery.resource_list(group_version)))
    for probe in ("/healthz", "/livez", "/readyz"):
        router.add_get(probe, _ok)


def _add_openapi_routes(app: web.Application, cluster: Cluster) -> None:
    """OpenAPI v3 and v2 from the CRDs stored now (a changed CRD shows at once)."""

    async def crds() -> list[Manifest]:
        return (await cluster.list(CRDS)).items

    def v3(group_version: str) -> Handler:
        async def handler(_: web.Request) -> web.StreamResponse:
            return json_response(openapi.v3_document(group_version, await crds()))

        return handler

    async def v2(request: web.Request) -> web.StreamResponse:
        document = openapi.v2_document(await crds())
        if "protobuf" in request.headers.get("Accept", ""):
            body = openapi_protobuf.document(document)
            return web.Response(body=body, content_type=openapi_protobuf.MEDIA_TYPE)
        return json_response(document)

    app.router.add_get("/openapi/v3", _document(openapi.v3_root()))
    for path, group_version in openapi.v3_relative_paths():
        app.router.add_get(path, v3(group_version))
    app.router.add_get("/openapi/v2", v2)


# size: the route table of the namespaced API, one line per route
def _add_namespace_routes(app: web.Application, cluster: Cluster) -> None:
    """Namespaces are implicit in the port; kubectl still reads them (to explain a
    NotFound, for `get ns`, or for `create namespace`), so every namespace exists and is
    Active, and the listed ones are those holding objects (and `default`)."""

    def answer(request: web.Request, items: list[Manifest], *, one: bool) -> web.Response:
        version = table_version(request)
        if version:
            columns = tables.columns_for(discovery.NAMESPACES, None)
            table = tables.table(
                items,
                columns,
                resource_version="",
                table_version=version,
                include=include_object(request),
                now=datetime.now(UTC),
            )
            return json_response(table)
        if one:
            return json_response(items[0])
        return json_response(
            {"apiVersion": "v1", "kind": "NamespaceList", "metadata": {}, "items": items}
        )

    async def read(request: web.Request) -> web.StreamResponse:
        return answer(request, [discovery.namespace_object(request.match_info["name"])], one=True)

    async def create(request: web.Request) -> web.StreamResponse:
        body = await protocol.read_object(request, discovery.NAMESPACES)
        name = body["metadata"].get("name")
        if not name:
            raise RequestRejected(400, "metadata.name is required")
        return json_response(discovery.namespace_object(name), status=201)

    async def collection(request: web.Request) -> web.StreamResponse:
        names = {"default"}
        for kind in KNOWN_KINDS:
            if kind.namespaced:
                listed = await cluster.list(kind)
                names.update(i["metadata"].get("namespace", "default") for i in listed.items)
        items = [discovery.namespace_object(n) for n in sorted(names)]
        return answer(request, items, one=False)

    app.router.add_get("/api/v1/namespaces", collection)
    app.router.add_post("/api/v1/namespaces", create)
    app.router.add_get("/api/v1/namespaces/{name}", read)
