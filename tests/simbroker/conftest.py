"""Real servers on 127.0.0.1 for the broker tests: reference brokers and a callback receiver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from kidp_ops.simbroker.config import BrokerConfig, RetryPolicy
from kidp_ops.simbroker.knobs import Knobs
from kidp_ops.simbroker.server import RunningBroker, running_broker

FAST_RETRY = RetryPolicy(attempts=3, first_backoff=0.01, max_backoff=0.02, timeout=1.0)
StartBroker = Callable[..., Awaitable[RunningBroker]]


def fast_config(**overrides: Any) -> BrokerConfig:
    """A broker that finishes work in 50 ms and retries callbacks quickly."""
    knobs = overrides.pop("knobs", Knobs(delay=0.05))
    base: dict[str, Any] = {
        "name": "kidp-system/sim",
        "knobs": knobs,
        "seed": 7,
        "callback_retry": FAST_RETRY,
    }
    return BrokerConfig(**{**base, **overrides})


@pytest.fixture
async def start_broker() -> AsyncIterator[StartBroker]:
    """`broker = await start_broker(config)`: served until the test ends."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(config: BrokerConfig | None = None, **overrides: Any) -> RunningBroker:
            return await stack.enter_async_context(
                running_broker(config or fast_config(**overrides))
            )

        yield start


@pytest.fixture
async def broker(start_broker: StartBroker) -> RunningBroker:
    return await start_broker()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A callback endpoint: records every POST; answers `statuses` in order, then 200."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    queue: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)

    async def next(self, timeout: float = 2.0) -> Received:
        async with asyncio.timeout(timeout):
            return await self.queue.get()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recorder = Receiver()

    async def handle(request: web.Request) -> web.Response:
        recorder.queue.put_nowait(Received(dict(request.headers), await request.read()))
        status = recorder.statuses.pop(0) if recorder.statuses else 200
        return web.json_response({"ok": status < 300}, status=status)

    app = web.Application()
    app.router.add_post("/callback", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    recorder.url = f"http://{host}:{port}/callback"
    try:
        yield recorder
    finally:
        await runner.cleanup()


def provision_body(request_id: str = "uid-1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "database",
        "resourceName": "orders-db",
        "namespace": "team-payments",
        "team": "Team/payments",
        "owner": "payments",
        "spec": {"engine": "postgresql", "size": "small"},
        "requestId": request_id,
    }
    body.update(overrides)
    return body
