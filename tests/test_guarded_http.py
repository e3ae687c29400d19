"""The daemon's HTTP server against slow and greedy clients, over real loopback sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from kidp_ops.guarded_http import Limits, ListenError, Serving, read_body, router, serve
from tests.support.waiting import until

LIMITS = Limits(header_timeout=0.5, body_timeout=0.5, max_body=1024, max_connections=16)


async def _ok(request: web.BaseRequest) -> web.StreamResponse:
    return web.Response(text="ok\n")


async def _echo(request: web.BaseRequest) -> web.StreamResponse:
    body = await read_body(request, LIMITS)
    return web.Response(text=f"{len(body)}\n")


@pytest.fixture
async def server() -> AsyncIterator[Serving]:
    serving = await serve(
        "127.0.0.1",
        0,
        router({("GET", "/healthz"): _ok, ("POST", "/v1/callback"): _echo}),
        LIMITS,
    )
    try:
        yield serving
    finally:
        await serving.close()


async def _get(port: int, path: str = "/healthz") -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


async def _raw(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def _closed(reader: asyncio.StreamReader) -> bool:
    """True once the server has closed the connection (EOF after any response bytes)."""
    try:
        while await asyncio.wait_for(reader.read(65536), 5):
            pass
    except ConnectionError:
        return True  # reset by the server: closed as well
    except TimeoutError:
        return False  # still open after 5 s
    return True


async def test_routes_answer_404_and_405(server: Serving) -> None:
    assert await _get(server.port) == (200, "ok\n")
    assert (await _get(server.port, "/nope"))[0] == 404
    assert (await _get(server.port, "/v1/callback"))[0] == 405


async def test_slow_request_heads_are_dropped_and_health_still_answers(server: Serving) -> None:
    # slowloris: many connections that send half a request head and then trickle
    slow = [await _raw(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") for _ in range(40)]
    started = time.monotonic()
    for _ in range(3):
        assert await _get(server.port) == (200, "ok\n")
    for reader, _writer in slow:
        assert await _closed(reader)
    # every slow connection went within the header deadline (plus scheduling slack)
    assert time.monotonic() - started < LIMITS.header_timeout + 3
    assert server.server.dropped >= 40
    for _reader, writer in slow:
        writer.close()


async def test_connections_over_the_bound_evict_the_oldest_idle_one(server: Serving) -> None:
    idle = [await _raw(server.port, b"") for _ in range(LIMITS.max_connections)]
    await until(lambda: len(server.server.connections) >= LIMITS.max_connections, what="connected")
    # the bound is reached by idle connections: a health probe still gets in
    assert await _get(server.port) == (200, "ok\n")
    assert await _closed(idle[0][0])
    for _reader, writer in idle:
        writer.close()


async def test_idle_keepalive_connection_gets_the_same_deadline(server: Serving) -> None:
    reader, writer = await _raw(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    assert await _closed(reader)  # no next request head: closed, not kept forever
    writer.close()


async def test_declared_huge_body_is_refused_before_reading(server: Serving) -> None:
    reader, writer = await _raw(
        server.port,
        b"POST /v1/callback HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n",
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 413")
    writer.close()


async def test_chunked_body_over_the_limit_is_refused(server: Serving) -> None:
    chunk = b"x" * 600
    data = (
        b"POST /v1/callback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2
        + b"0\r\n\r\n"
    )
    reader, writer = await _raw(server.port, data)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 413")
    writer.close()


async def test_body_within_the_limit_is_read(server: Serving) -> None:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        url = f"http://127.0.0.1:{server.port}/v1/callback"
        async with session.post(url, data=b"y" * 1000) as response:
            assert (response.status, await response.text()) == (200, "1000\n")


async def test_body_that_does_not_arrive_in_time_is_408(server: Serving) -> None:
    reader, writer = await _raw(
        server.port, b"POST /v1/callback HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 408")
    writer.close()


async def test_address_in_use_is_one_line(server: Serving) -> None:
    in_use = r"^cannot listen on 127\.0\.0\.1:\d+: the address is already in use$"
    with pytest.raises(ListenError, match=in_use):
        await serve("127.0.0.1", server.port, _ok, LIMITS)
