"""The Kubernetes adapter: the Cluster port over the official `kubernetes` client.

Every kind goes through one generic request path (`ApiClient.param_serialize` and
`call_api`) built from its ResourceKind (group, version, plural), not through
CustomObjectsApi / CoreV1Api / CoordinationV1Api / ApiextensionsV1Api. The port already
names resources the way the REST API does, so one path serves all six kinds without a
per-kind table of method names; responses stay raw JSON (no model round trip, which
would drop unknown fields and turn names into snake_case); every verb sends the same
`application/merge-patch+json` (the typed core APIs pick strategic merge for a dict
body); and errors come from one place.

Blocking calls run in a dedicated thread pool; each watch has its own thread
(`kube_watch`). Errors are mapped at this boundary (`kube_errors`) into the ClusterError
hierarchy, the way httpx maps httpcore's exceptions.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from kidp_ops.cluster.base import (
    Cluster,
    Invalid,
    Manifest,
    NotConnected,
    ObjectList,
    ResourceKind,
    Unavailable,
    WatchEvent,
    kind_for_manifest,
)
from kidp_ops.cluster.kube_errors import error_from_status, map_error, one_line
from kidp_ops.cluster.kube_watch import WatchThread

CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 60.0
WATCH_READ_MARGIN_SECONDS = 30.0  # a silent watch connection is dead after its timeout + this
STOP_GRACE_SECONDS = 5.0  # how long close() waits for watch threads to end
WORKERS = 8
MERGE_PATCH = "application/merge-patch+json"

Query = Sequence[tuple[str, str | int]]


class KubeCluster(Cluster):
    """A Cluster backed by a Kubernetes API server. Open with `await KubeCluster.connect()`."""

    def __init__(self, api_client: Any, *, workers: int = WORKERS) -> None:
        self._api: Any = api_client
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kidp-kube")
        self._watches: list[WatchThread] = []
        self._closed = False

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    # --- lifecycle ---------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool = False,
    ) -> KubeCluster:
        """Load the configuration (kubeconfig, or the pod's service account) and check that
        the API server answers; any failure is Unavailable with a one-line message."""
        configuration = await asyncio.to_thread(
            _load_configuration, kubeconfig=kubeconfig, context=context, in_cluster=in_cluster
        )
        cluster = cls(k8s_client.ApiClient(configuration))
        cluster._api.user_agent = "kidp-ops"
        try:
            await cluster.server_version()
        except BaseException:
            await cluster.close()
            raise
        return cluster

    async def server_version(self) -> Manifest:
        """GET /version: the cheapest proof that the server is there."""
        return await self._request("GET", "/version")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for stream in self._watches:
            stream.stop()
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for stream in self._watches:
            stream.thread.join(max(0.0, deadline - time.monotonic()))
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._api.close()

    # --- the port ----------------------------------------------------------------------

    async def get(self, kind: ResourceKind, name: str, *, namespace: str | None = None) -> Manifest:
        obj = await self._request("GET", _item_path(kind, name, namespace))
        return _with_kind(obj, kind)

    async def list(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList:
        selectors = (("labelSelector", label_selector), ("fieldSelector", field_selector))
        query = [(key, value) for key, value in selectors if value]
        listed = await self._request("GET", _collection_path(kind, namespace), query=query)
        items = [_with_kind(item, kind) for item in listed.get("items") or []]
        version = str((listed.get("metadata") or {}).get("resourceVersion", ""))
        return ObjectList(items=items, resource_version=version)

    async def create(self, manifest: Manifest) -> Manifest:
        kind = kind_for_manifest(manifest)
        namespace = _metadata(manifest).get("namespace")
        path = _collection_path(kind, (namespace or "default") if kind.namespaced else None)
        return _with_kind(await self._request("POST", path, body=manifest), kind)

    async def replace(self, manifest: Manifest) -> Manifest:
        kind = kind_for_manifest(manifest)
        meta = _metadata(manifest)
        if not meta.get("name"):
            raise Invalid("required field is missing", field=".metadata.name")
        path = _item_path(kind, meta["name"], meta.get("namespace"))
        return _with_kind(await self._request("PUT", path, body=manifest), kind)

    async def patch(
        self, kind: ResourceKind, name: str, patch: Manifest, *, namespace: str | None = None
    ) -> Manifest:
        path = _item_path(kind, name, namespace)
        return _with_kind(await self._request("PATCH", path, body=patch), kind)

    async def patch_status(
        self, kind: ResourceKind, name: str, patch: Manifest, *, namespace: str | None = None
    ) -> Manifest:
        path = f"{_item_path(kind, name, namespace)}/status"
        return _with_kind(await self._request("PATCH", path, body=patch), kind)

    async def delete(
        self, kind: ResourceKind, name: str, *, namespace: str | None = None
    ) -> Manifest | None:
        result = await self._request("DELETE", _item_path(kind, name, namespace))
        if result.get("kind") == "Status":  # gone at once
            return None
        if (result.get("metadata") or {}).get("deletionTimestamp"):
            return _with_kind(result, kind)  # held by finalizers
        return None

    async def watch(
        self,
        kind: ResourceKind,
        *,
        resource_version: str,
        namespace: str | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        self._check_open()
        stream = WatchThread(
            opener=functools.partial(self._open_watch, _collection_path(kind, namespace)),
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
            name=f"kidp-kube-watch-{kind.plural}",
        )
        self._watches = [w for w in self._watches if w.thread.is_alive()] + [stream]
        stream.start()
        try:
            while (event := await self._next_event(stream)) is not None:
                yield WatchEvent(event.type, _with_kind(event.object, kind))
        finally:
            stream.stop()  # does not block: safe in a generator closed by the GC

    async def _next_event(self, stream: WatchThread) -> WatchEvent | None:
        try:
            return await stream.next()
        except Exception as exc:
            raise map_error(exc, host=self.host) from None

    # --- HTTP ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable(f"the connection to {self.host} is closed")

    async def _request(
        self, method: str, path: str, *, query: Query = (), body: Manifest | None = None
    ) -> Manifest:
        self._check_open()
        call = functools.partial(self._send, method, path, query=query, body=body)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _send(self, method: str, path: str, *, query: Query, body: Manifest | None) -> Manifest:
        """One request and its JSON answer (in a worker thread); errors mapped."""
        timeout = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
        try:
            response = self._open(method, path, query=query, body=body, timeout=timeout)
            data = response.read()
        except Exception as exc:
            raise map_error(exc, host=self.host) from None
        if not 200 <= response.status < 300:
            raise error_from_status(response.status, data)
        try:
            decoded = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Unavailable(
                f"{self.host}{path} answered with something other than JSON"
            ) from None
        return decoded if isinstance(decoded, dict) else {}

    def _open(
        self,
        method: str,
        path: str,
        *,
        query: Query,
        body: Manifest | None,
        timeout: tuple[float, float],
    ) -> Any:
        """Send one request; the RESTResponse is returned unread."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = MERGE_PATCH if method == "PATCH" else "application/json"
        method, url, headers, body, _ = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        return self._api.call_api(
            method, url, header_params=headers, body=body, _request_timeout=timeout
        )

    def _open_watch(self, path: str, resource_version: str, timeout_seconds: int) -> Any:
        """Open one watch segment (in the watch thread); the urllib3 response, unread."""
        query: list[tuple[str, str | int]] = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout_seconds),
        ]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        timeout = (CONNECT_TIMEOUT_SECONDS, timeout_seconds + WATCH_READ_MARGIN_SECONDS)
        response = self._open("GET", path, query=query, body=None, timeout=timeout)
        if not 200 <= response.status < 300:
            raise error_from_status(response.status, response.read())
        return response.response


# --- paths ---------------------------------------------------------------------------------


def _prefix(kind: ResourceKind) -> str:
    return f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"


def _collection_path(kind: ResourceKind, namespace: str | None) -> str:
    """The collection in one namespace, or across all when `namespace` is None."""
    if kind.namespaced and namespace:
        return f"{_prefix(kind)}/namespaces/{quote(namespace, safe='')}/{kind.plural}"
    return f"{_prefix(kind)}/{kind.plural}"


def _item_path(kind: ResourceKind, name: str, namespace: str | None) -> str:
    if not name:
        raise Invalid("required field is missing", field=".metadata.name")
    scope = (namespace or "default") if kind.namespaced else None
    return f"{_collection_path(kind, scope)}/{quote(name, safe='')}"


def _metadata(manifest: Manifest) -> dict[str, Any]:
    meta = manifest.get("metadata")
    if not isinstance(meta, dict):
        raise Invalid("required field is missing (an object with a name)", field=".metadata")
    return meta


def _with_kind(obj: Manifest, kind: ResourceKind) -> Manifest:
    """A real server leaves apiVersion and kind out of built-in list items; put them back."""
    obj.setdefault("apiVersion", kind.api_version)
    obj.setdefault("kind", kind.kind)
    return obj


# --- configuration -------------------------------------------------------------------------


def _load_configuration(*, kubeconfig: str | None, context: str | None, in_cluster: bool) -> Any:
    """A client Configuration from a kubeconfig file or the pod's service account."""
    configuration = k8s_client.Configuration()
    if in_cluster:
        source = "the in-cluster service account"
    else:
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        source = kubeconfig + (f" (context {context!r})" if context else "")
    try:
        if in_cluster:
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        else:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except Exception as exc:  # ConfigException, OSError, YAML errors: all from user input
        detail = one_line(exc) or type(exc).__name__
        if not in_cluster and kubeconfig and os.pathsep not in kubeconfig:
            path = os.path.expanduser(kubeconfig)
            if not os.path.exists(path):
                detail = "no such file"
            elif os.path.isdir(path):
                detail = "it is a directory, not a kubeconfig file"
        raise NotConnected(
            f"cannot load the Kubernetes configuration from {source}: {detail}"
        ) from None
    return configuration
