"""Loopback broker fleet for benchmarks/health.py, run in its own process.

    python benchmarks/health_servers.py PORT HEALTHY HANG [--arrivals]

Listens on PORT at HEALTHY + HANG distinct loopback addresses (127.0.1.0 upward: Linux
routes all of 127.0.0.0/8 to `lo`, so each address is a distinct origin and nothing
listens beyond loopback). The first HEALTHY addresses answer every GET with a canned
healthy body (HTTP/1.1 keep-alive honoured, `Connection: close` too); the HANG ones accept
connections and never answer. A bare asyncio protocol instead of a web framework keeps
the server far cheaper per request than any client it is measured against. Prints
`READY` once every socket listens, and serves until stdin closes. With `--arrivals` it
then prints `ARRIVALS` and a JSON object: for each healthy index, the CLOCK_MONOTONIC
times (`time.monotonic()`) at which a request head arrived (benchmarks/probe_fairness.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import resource
import sys
import time
from collections import defaultdict

BODY = json.dumps(
    {"status": "healthy", "version": "1.4.2", "activeDeployments": 3, "uptime": "2h15m30s"}
).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)
CLOSE_RESPONSE = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)


def address(index: int) -> str:
    """The loopback address of broker `index`: 127.0.1.0, 127.0.1.1, ..."""
    n = 256 + index
    return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


ARRIVALS: defaultdict[int, list[float]] = defaultdict(list)


class Healthy(asyncio.Protocol):
    def __init__(self, index: int = 0, record: bool = False) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.index = index
        self.record = record

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            if self.record:
                ARRIVALS[self.index].append(time.monotonic())
            if b"\nconnection: close" in head.lower():
                self.transport.write(CLOSE_RESPONSE)
                self.transport.close()
                return
            self.transport.write(RESPONSE)


class Hang(asyncio.Protocol):
    """Accepts, reads and never answers; the client's timeout ends the connection."""

    def data_received(self, data: bytes) -> None:
        pass


async def serve(port: int, healthy: int, hang: int, record: bool = False) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for index in range(healthy + hang):
        protocol = functools.partial(Healthy, index, record) if index < healthy else Hang
        servers.append(
            await loop.create_server(
                protocol, address(index), port, backlog=1024, reuse_address=True
            )
        )
    print("READY", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the benchmark closes our stdin
    for server in servers:
        server.close()
    if record:
        print("ARRIVALS", json.dumps(ARRIVALS), flush=True)


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port, healthy, hang = (int(arg) for arg in sys.argv[1:4])
    asyncio.run(serve(port, healthy, hang, record="--arrivals" in sys.argv[4:]))


if __name__ == "__main__":
    main()
