"""A real callback receiver on 127.0.0.1 (aiohttp), for tests that need brokers to call back.

    async with callback_server(receive) as server:
        server.url        # http://127.0.0.1:<port>/callbacks: give it to the reconciler
        server.verdicts   # every answer, in order

`receive(headers, body)` returns a `Verdict` (e.g. `kidp_ops.callbacks.handle_callback`
bound to a gate and a reconciler); its status and reason become the HTTP answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from kidp_ops.callbacks import Verdict

Receive = Callable[[Mapping[str, str], bytes], Awaitable[Verdict]]
PATH = "/callbacks"


@dataclass
class CallbackServer:
    url: str
    verdicts: list[Verdict] = field(default_factory=list)

    def accepted(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.accepted]


@contextlib.asynccontextmanager
async def callback_server(receive: Receive) -> AsyncIterator[CallbackServer]:
    server = CallbackServer(url="")

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        verdict = await receive(request.headers, body)
        server.verdicts.append(verdict)
        return web.json_response({"reason": verdict.reason}, status=verdict.status)

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post(PATH, handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        server.url = f"http://{host}:{port}{PATH}"
        yield server
    finally:
        await runner.cleanup()
