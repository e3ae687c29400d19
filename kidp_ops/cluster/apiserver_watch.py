"""Watch streams of the API facade: newline-delimited JSON events on a chunked response.

A real API server answers a watch with 200 at once and then writes one JSON event per
line; a resourceVersion that is too old is reported in-band as an ERROR event carrying a
410 Status, and the stream ends. When the client asked for Tables (`kubectl get -w`), each
event's object is a one-row Table, as kube-apiserver sends it. The Cluster's async iterator
is closed when the client goes away (noticed within LIVENESS_SECONDS), when the server
shuts down, or when it ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kidp_ops.cluster.apiserver_protocol import (
    RequestRejected,
    failure_status,
    flag,
    object_filter,
    status_object,
)
from kidp_ops.cluster.base import Cluster, ClusterError, Manifest, ResourceKind, WatchEvent

log = logging.getLogger(__name__)

SHUTDOWN = web.AppKey("kidp_watch_shutdown", asyncio.Event)
LIVENESS_SECONDS = 0.5  # how often an idle stream checks that its client is still there


@dataclass(frozen=True, slots=True)
class WatchQuery:
    resource_version: str
    timeout_seconds: float | None
    bookmarks: bool
    label_selector: str | None
    keep: Callable[[Manifest], bool] | None

    @classmethod
    def parse(cls, query: Mapping[str, str], kind: ResourceKind) -> WatchQuery:
        raw_timeout = query.get("timeoutSeconds")
        try:
            timeout = float(raw_timeout) if raw_timeout else None
        except ValueError:
            message = f"timeoutSeconds must be a number, not {raw_timeout!r}"
            raise RequestRejected(400, message) from None
        return cls(
            resource_version=query.get("resourceVersion", ""),
            timeout_seconds=timeout if timeout and timeout > 0 else None,
            bookmarks=flag(query.get("allowWatchBookmarks")),
            label_selector=query.get("labelSelector") or None,
            keep=object_filter(kind, query),
        )


Render = Callable[[Manifest], Manifest]  # an event's object as sent (a Table row, ...)


async def stream_watch(
    request: web.Request,
    *,
    cluster: Cluster,
    kind: ResourceKind,
    namespace: str | None,
    render: Render | None = None,
) -> web.StreamResponse:
    """Answer `?watch=true`: relay the Cluster's events until it ends or the client leaves."""
    query = WatchQuery.parse(request.query, kind)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    events = _events(cluster, kind, namespace=namespace, query=query)
    try:
        await _relay(request, response, events, query, render)
    except ClusterError as exc:
        await _send_quietly(response, "ERROR", failure_status(exc, kind=kind, name=""))
    except ConnectionError:
        return response  # the client is gone: nothing more to say
    except Exception:
        log.exception("watch of %s failed", kind.resource)
        failure = status_object(code=500, reason="InternalError", message="watch failed")
        await _send_quietly(response, "ERROR", failure)
    finally:
        await events.aclose()
    with suppress(ConnectionError):
        await response.write_eof()
    return response


async def _events(
    cluster: Cluster, kind: ResourceKind, *, namespace: str | None, query: WatchQuery
) -> AsyncGenerator[WatchEvent, None]:
    """The Cluster's events; with no resourceVersion (or "0") the current objects come
    first as ADDED, as a real API server sends them."""
    version = query.resource_version
    if version in ("", "0"):
        listed = await cluster.list(kind, namespace=namespace, label_selector=query.label_selector)
        for item in listed.items:
            yield WatchEvent("ADDED", item)
        version = listed.resource_version
    changes = cluster.watch(
        kind, resource_version=version, namespace=namespace, timeout_seconds=query.timeout_seconds
    )
    try:
        async for event in changes:
            yield event
    finally:
        await _aclose(changes)


async def _aclose(iterator: AsyncIterator[WatchEvent]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


async def _relay(
    request: web.Request,
    response: web.StreamResponse,
    events: AsyncIterator[WatchEvent],
    query: WatchQuery,
    render: Render | None,
) -> None:
    relevant = _Relevance(query.keep)
    stopping = asyncio.ensure_future(request.app[SHUTDOWN].wait())
    try:
        while (event := await _next_event(request, events, stopping)) is not None:
            if event.type == "BOOKMARK" and not query.bookmarks:
                continue
            event_type = relevant(event)
            if event_type is not None:
                shown = event.object
                if render is not None and event_type != "BOOKMARK":
                    shown = render(event.object)
                await _send(response, event_type, shown)
    finally:
        stopping.cancel()
        await asyncio.wait({stopping})


async def _next_event(
    request: web.Request, events: AsyncIterator[WatchEvent], stopping: asyncio.Future[Any]
) -> WatchEvent | None:
    """The next event, or None when the stream ended, the client left or the server stops."""
    step = asyncio.ensure_future(anext(events, None))
    try:
        while True:
            await asyncio.wait(
                {step, stopping}, timeout=LIVENESS_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            if step.done():
                return step.result()
            if stopping.done() or _client_gone(request):
                return None
    finally:
        if not step.done():
            step.cancel()  # unwinds the Cluster's iterator inside the step
            await asyncio.wait({step})


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class _Relevance:
    """What a filtered watch sends: an object that stops matching is DELETED for it."""

    def __init__(self, keep: Callable[[Manifest], bool] | None) -> None:
        self._keep = keep
        self._shown: set[tuple[str, str]] = set()

    def __call__(self, event: WatchEvent) -> str | None:
        if self._keep is None or event.type == "BOOKMARK":
            return event.type
        meta = event.object.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if self._keep(event.object):
            if event.type == "DELETED":
                self._shown.discard(key)
            else:
                self._shown.add(key)
            return event.type
        if key in self._shown:
            self._shown.discard(key)
            return "DELETED"
        return None


async def _send(response: web.StreamResponse, event_type: str, obj: Manifest) -> None:
    line = json.dumps({"type": event_type, "object": obj}, separators=(",", ":"))
    await response.write(line.encode() + b"\n")


async def _send_quietly(response: web.StreamResponse, event_type: str, obj: Manifest) -> None:
    with suppress(ConnectionError):
        await _send(response, event_type, obj)
