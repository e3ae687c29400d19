"""A real HTTP broker stand-in on 127.0.0.1 whose paths misbehave in every way a probe meets.

    async with BrokerServer() as server:
        server.url            # http://127.0.0.1:<port>
        server.hits           # paths requested, in order
        server.headers        # request headers by path (last request)

Paths: /health (healthy), /degraded, /unavailable (503), /garbage, /list, /huge (70 KiB with
Content-Length), /stream (endless chunked body), /exact (a healthy body of exactly 64 KiB),
/hang (never answers), /drip (headers at once, then one byte every 200 ms), /redirect
(302 to /health), /gzip, /bad-types, /bad-version, /slow (healthy after 300 ms).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
from typing import Any, Self

from aiohttp import web

HEALTHY = {"status": "healthy", "version": "1.4.2", "activeDeployments": 3, "uptime": "1m"}


class BrokerServer:
    def __init__(self) -> None:
        self.hits: list[str] = []
        self.hit_times: dict[str, list[float]] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/{name:.*}", self._route)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.hits.append(request.path)
        self.hit_times.setdefault(request.path, []).append(time.monotonic())
        self.headers[request.path] = dict(request.headers)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            self.in_flight -= 1

    async def _route(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"].split("/")[0]
        if name == "hang":
            await self._release.wait()
            return web.Response(status=204)
        if name == "drip":
            return await self._drip(request)
        if name == "stream":
            return await self._stream(request)
        if name == "slow":
            await asyncio.sleep(0.3)
        return _canned(name)

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 1000
        await response.prepare(request)
        for _ in range(1000):
            await response.write(b" ")
            await asyncio.sleep(0.2)
        return response

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b" " * 16384
        for _ in range(10_000):  # 160 MB: the client must stop reading long before
            await response.write(chunk)
        return response


def _canned(name: str) -> web.Response:
    match name:
        case "health" | "slow" | "auth" | "":
            return web.json_response(HEALTHY)
        case "degraded":
            return web.json_response({"status": "degraded", "version": "1.4.2"})
        case "unavailable":
            return web.json_response({"status": "healthy"}, status=503)
        case "garbage":
            return web.Response(text="<html>definitely not json", content_type="text/html")
        case "list":
            return web.json_response(["healthy"])
        case "huge":
            return web.json_response({"status": "healthy", "pad": "x" * 70_000})
        case "exact":
            body = json.dumps(HEALTHY).encode()
            return web.Response(body=body.ljust(64 * 1024), content_type="application/json")
        case "redirect":
            return web.Response(status=302, headers={"Location": "/health"})
        case "gzip":
            body = gzip.compress(json.dumps(HEALTHY).encode())
            return web.Response(
                body=body,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        case "bad-types":
            return web.json_response({"status": "healthy", "activeDeployments": "3"})
        case "bad-version":
            return web.json_response({"status": "healthy", "version": 2})
        case _:
            return web.json_response({"error": "not found"}, status=404)
