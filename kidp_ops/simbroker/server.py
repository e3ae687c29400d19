"""Run the reference broker: in-process with `running_broker`, or until a signal with `serve`.

    async with running_broker(BrokerConfig(port=0, knobs=Knobs(delay=0.05))) as broker:
        broker.url             # http://127.0.0.1:<the port actually bound>
        broker.public_key      # base64 Ed25519, for status.callbackPublicKey
        broker.set_knobs(health_mode="fail")

The socket is bound here, before uvicorn starts, so "address already in use" is a clean
`BrokerStartError`, and port 0 reports the real port. uvicorn's own signal handling is
switched off: whoever runs the broker decides when it stops (`serve` on SIGINT/SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kidp_ops.brokerapi import signing
from kidp_ops.cluster.base import ClusterError
from kidp_ops.cluster.target import Target, connect
from kidp_ops.simbroker.app import create_app
from kidp_ops.simbroker.callbacks import CallbackSender
from kidp_ops.simbroker.config import BrokerConfig
from kidp_ops.simbroker.knobs import Knobs
from kidp_ops.simbroker.registration import register_callback_key
from kidp_ops.simbroker.simulation import Simulation

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 10.0
GRACEFUL_SHUTDOWN_SECONDS = 2
DEFAULT_REGISTER_WAIT_SECONDS = 30.0


class BrokerStartError(Exception):
    """The broker could not start (port in use, bad address, unreadable key file)."""


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (they would re-raise the signal on exit)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True, slots=True)
class RunningBroker:
    config: BrokerConfig
    url: str  # http://host:port, with the port actually bound
    port: int
    public_key: str  # base64 of the raw Ed25519 public key
    simulation: Simulation

    @property
    def name(self) -> str:
        return self.config.name

    def set_knobs(self, **changes: Any) -> Knobs:
        """Change knobs at runtime (as PATCH /admin/knobs does); ValueError when bad."""
        return self.simulation.update_knobs(**changes)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; BrokerStartError in one line when impossible."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP (not 0, as socket.create_server leaves it): asyncio sets
    # TCP_NODELAY only on sockets that say they are TCP, and without it every keep-alive
    # response waits ~40 ms for a delayed ACK (uvicorn writes head and body separately).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use (another broker on that port?)"
        else:
            reason = exc.strerror or str(exc)
        raise BrokerStartError(f"cannot listen on {where}: {reason}") from None
    return sock


def _url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _private_key(config: BrokerConfig) -> Ed25519PrivateKey:
    if config.key_file is None:
        return signing.generate_private_key()
    try:
        return signing.load_or_create_private_key(config.key_file)[0]
    except signing.KeyFileError as exc:
        raise BrokerStartError(str(exc)) from None


# size: building the uvicorn server and tearing it down belong to one block
@contextlib.asynccontextmanager
async def running_broker(
    config: BrokerConfig | None = None, *, private_key: Ed25519PrivateKey | None = None
) -> AsyncIterator[RunningBroker]:
    """Serve a reference broker on this event loop for the duration of the block."""
    config = config or BrokerConfig()
    key = private_key or _private_key(config)
    sock = bind(config.host, config.port)
    try:
        sender = CallbackSender(
            broker_name=config.callback_name or config.name,
            private_key=key,
            policy=config.callback_retry,
        )
        sim = Simulation(name=config.name, knobs=config.knobs, seed=config.seed, sender=sender)
        app = create_app(sim, api_key=config.api_key, token=config.token)
        server = _Server(
            uvicorn.Config(
                app,
                lifespan="on",
                http="h11",
                ws="none",
                log_config=None,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            )
        )
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"broker {config.name}")
        try:
            await _until_started(server, task)
            port = int(sock.getsockname()[1])
            yield RunningBroker(
                config, _url(config.host, port), port, signing.public_key_b64(key), sim
            )
        finally:
            sim.stopping.set()  # ends hanging /health requests, so shutdown is quick
            server.should_exit = True
            await _finished(task)
            await sim.close()
    finally:
        sock.close()


async def _until_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_SECONDS
    while not server.started:
        if task.done():
            problem = task.exception() if not task.cancelled() else None
            raise BrokerStartError(f"the broker stopped while starting: {problem!r}")
        if loop.time() > deadline:
            raise BrokerStartError(f"the broker did not start within {START_TIMEOUT_SECONDS:g}s")
        await asyncio.sleep(0.005)


async def _finished(task: asyncio.Task[None]) -> None:
    try:
        await task
    except Exception:
        log.exception("the broker's server failed while stopping")


# --- the command ------------------------------------------------------------------------


async def serve(
    config: BrokerConfig,
    *,
    out: TextIO,
    err: TextIO,
    register: tuple[str, str] | None = None,
    target: Target | None = None,
    register_wait: float = DEFAULT_REGISTER_WAIT_SECONDS,
) -> int:
    """`kidp-ops broker serve`: run until SIGINT/SIGTERM (exit 0); 1 when it cannot start
    or cannot register its key on `register` (namespace, name) in `target`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with running_broker(config) as broker:
            knobs = config.knobs.describe()
            auth = config.auth_description()
            line = f"broker {broker.name} listening on {broker.url} ({knobs}, auth {auth})"
            print(line, file=out, flush=True)
            print(f"callback public key {broker.public_key}", file=out, flush=True)
            if register is not None:
                code = await _register(broker, register, target, register_wait, stop, out, err)
                if code:
                    return code
            await stop.wait()
    except BrokerStartError as exc:
        print(f"error: {exc}", file=err, flush=True)
        return 1
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    print(f"broker {config.name} stopped", file=out, flush=True)
    return 0


# size: registration raced against a stop signal, then its three outcomes
async def _register(
    broker: RunningBroker,
    ref: tuple[str, str],
    target: Target | None,
    wait: float,
    stop: asyncio.Event,
    out: TextIO,
    err: TextIO,
) -> int:
    """Register the key unless a signal comes first; 1 (after one line on `err`) on failure."""
    namespace, name = ref
    where = target or Target()

    async def work() -> None:
        async with await connect(where) as cluster:
            await register_callback_key(
                cluster,
                namespace=namespace,
                name=name,
                public_key=broker.public_key,
                wait_seconds=wait,
                on_waiting=lambda message: print(message, file=err, flush=True),
            )

    registering = asyncio.create_task(work())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({registering, stopping}, return_when=asyncio.FIRST_COMPLETED)
    for task in (registering, stopping):
        task.cancel()
    await asyncio.gather(registering, stopping, return_exceptions=True)
    if registering.cancelled():
        return 0  # stopped by a signal while waiting for the Broker
    problem = registering.exception()
    if isinstance(problem, ClusterError):
        print(f"error: cannot register the callback key: {problem.message}", file=err, flush=True)
        return 1
    if problem is not None:
        raise problem
    print(
        f"registered callback public key on Broker {namespace}/{name} in {where.describe()}",
        file=out,
        flush=True,
    )
    return 0
