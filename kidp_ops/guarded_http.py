"""A small HTTP server that a slow or greedy client cannot hold (issue 10).

aiohttp's low-level server, with what it does not bound by itself:

- **Reading the request takes at most `header_timeout`**: a connection that has not sent a
  complete request head that long after it opened (or after its last response, on
  keep-alive) is closed. Slowloris connections go within seconds.
- **A bounded number of connections** (`max_connections`). When the bound is reached, the
  oldest connection still waiting for its request head is dropped to make room, so slow
  connections cannot lock out a health probe; only when every connection is busy with a
  request is a new one refused.
- **Bodies**: a declared `Content-Length` over `max_body` is answered 413 at once (nothing
  read); a body is read within `body_timeout` and never past `max_body`.

Routes are plain `(method, path) -> handler` pairs: the daemon serves a handful of them.
"""

from __future__ import annotations

import asyncio
import errno
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web, web_protocol

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class ListenError(Exception):
    """The address cannot be listened on (in use, or not ours); one line for a person."""


@dataclass(frozen=True, slots=True)
class Limits:
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_body: int = 1024 * 1024
    max_connections: int = 256
    keepalive: float = 5.0


class _Server(web.Server):
    """aiohttp's Server with a deadline for every request head and a connection bound."""

    def __init__(self, handler: Handler, limits: Limits, **kwargs: Any) -> None:
        super().__init__(self._guard(handler), keepalive_timeout=limits.keepalive, **kwargs)
        self.limits = limits
        self._waiting: OrderedDict[web_protocol.RequestHandler, asyncio.TimerHandle] = OrderedDict()
        self.dropped = 0  # connections closed for being slow or over the bound

    def connection_made(
        self, handler: web_protocol.RequestHandler, transport: asyncio.Transport
    ) -> None:
        super().connection_made(handler, transport)
        if len(self.connections) > self.limits.max_connections:
            oldest = next(iter(self._waiting), None)
            self._drop(oldest if oldest is not None else handler)
            if oldest is None:
                return
        self._wait(handler)

    def connection_lost(
        self, handler: web_protocol.RequestHandler, exc: BaseException | None = None
    ) -> None:
        timer = self._waiting.pop(handler, None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(handler, exc)

    def _wait(self, handler: web_protocol.RequestHandler) -> None:
        """`handler`'s connection has `header_timeout` to send its next request head."""
        loop = asyncio.get_running_loop()
        self._waiting[handler] = loop.call_later(self.limits.header_timeout, self._drop, handler)

    def _drop(self, handler: web_protocol.RequestHandler) -> None:
        timer = self._waiting.pop(handler, None)
        if timer is not None:
            timer.cancel()
        self.dropped += 1
        handler.force_close()
        transport = handler.transport
        if transport is not None:
            transport.close()

    def _guard(self, handler: Handler) -> Handler:
        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            protocol = request.protocol
            timer = self._waiting.pop(protocol, None)  # the head is in: no longer slow
            if timer is not None:
                timer.cancel()
            try:
                return await handler(request)
            finally:
                if protocol.transport is not None and not protocol.transport.is_closing():
                    self._wait(protocol)  # keep-alive: the next head has the same deadline

        return handle


async def read_body(request: web.BaseRequest, limits: Limits) -> bytes:
    """The request body within the limits: 413 for a declared or actual size over
    `max_body` (before reading, when declared), 408 when it does not arrive in time."""
    declared = request.content_length
    if declared is not None and declared > limits.max_body:
        raise web.HTTPRequestEntityTooLarge(max_size=limits.max_body, actual_size=declared)
    body = bytearray()
    try:
        async with asyncio.timeout(limits.body_timeout):
            # read() returns what has arrived so far: read to the end, never past the limit
            while chunk := await request.content.read(limits.max_body + 1 - len(body)):
                body += chunk
                if len(body) > limits.max_body:
                    raise web.HTTPRequestEntityTooLarge(
                        max_size=limits.max_body, actual_size=len(body)
                    )
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="request body not received in time\n") from None
    return bytes(body)


def router(routes: Mapping[tuple[str, str], Handler]) -> Handler:
    """One handler for `(method, path)` routes: 404 for an unknown path, 405 for a method."""

    async def route(request: web.BaseRequest) -> web.StreamResponse:
        found = routes.get((request.method, request.path))
        if found is not None:
            return await found(request)
        allowed = sorted(method for method, path in routes if path == request.path)
        if allowed:
            return web.Response(status=405, headers={"Allow": ", ".join(allowed)})
        return web.Response(status=404, text="not found\n")

    return route


@dataclass
class Serving:
    runner: web.ServerRunner
    server: _Server
    port: int

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve(host: str, port: int, handler: Handler, limits: Limits = Limits()) -> Serving:
    """Listen on host:port (0: any free port); ListenError in one line when impossible."""
    server = _Server(handler, limits, handler_cancellation=True)
    runner = web.ServerRunner(server, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=limits.max_connections)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"cannot listen on {where}: the address is already in use") from None
        raise ListenError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
        break
    return Serving(runner, server, bound)
