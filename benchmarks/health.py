"""Health prober throughput and sweep time, on loopback only.

(a) 1,000 brokers on 1,000 distinct loopback origins (127.0.1.0 ...: one listening socket
    per address, in a separate server process): the Prober's sweep against raw request
    loops measured in the same run at the same concurrency (aiohttp without and with
    connection reuse; httpx's shared AsyncClient for the record, time-capped). Target:
    Prober >= 70% of the raw aiohttp loop doing the same work (a new connection per
    request, as the Prober does by default).
(b) 10,000 brokers of which 10% accept connections and never answer, timeoutSeconds=5:
    one complete sweep with the default concurrency must fit in one 30 s interval.
(c) Status writes per steady-state sweep when nothing changed: target 0 (apart from the
    30 s heartbeat refresh). 300 Brokers in an embedded store (temp dir), each pointing at
    its own path of an in-process aiohttp health server; the real BrokerReconciler with an
    Informer and a Prober. Sweep 1 (every key reconciled once: Pending -> Ready, one write
    each), then sweeps 2 and 3 a second apart (0 writes expected), then one broker's
    reported activeDeployments changes (exactly 1 write expected), then the reconciler's
    clock is moved 31 s on (the heartbeat refresh: one write each). Writes are counted
    by `reconciler.status_writes` and, independently, by the store's revision counter.

Run:
    .venv/bin/python benchmarks/health.py            # (a), (b) and (c)
    .venv/bin/python benchmarks/health.py --quick    # (a) only, fewer repetitions
    .venv/bin/python benchmarks/health.py --only c   # one part (a, b or c) alone

CPU% columns: user+system time of this (client) process / wall time, and of the server
process; a client near 100% is what is being measured, a server near 100% would cap both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.health_servers import address  # noqa: E402
from kidp_ops.health.probing import DEFAULT_CONCURRENCY, Prober  # noqa: E402
from kidp_ops.health.states import ProbeFailure, ProbeSuccess  # noqa: E402
from kidp_ops.model.resources import (  # noqa: E402
    Broker,
    BrokerSpec,
    HealthCheck,
    ObjectMeta,
)

ORIGINS = 1_000
SWEEPS = 4  # sweeps per measurement in (a)
REPS = 5  # measurements per variant in (a), interleaved; the median is reported
HTTPX_SECONDS = 15.0
FLEET = 10_000
HANG_SHARE = 10  # every 10th broker hangs
TIMEOUT_SECONDS = 5
INTERVAL_SECONDS = 30.0
TARGET_RATIO = 0.70
TICKS = os.sysconf("SC_CLK_TCK")


# --- environment ---------------------------------------------------------------------


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print(f"open files limit: soft {soft} (hard {hard})")
    return soft


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def fleet(healthy: int, hang: int) -> Iterator[tuple[int, int]]:
    """A server process for the fleet; yields (port, pid)."""
    port = free_port()
    args = (port, healthy, hang)
    server = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "health_servers.py"), *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"fleet server did not start (said {line!r})")
        yield port, server.pid
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def brokers(port: int, indices: list[int]) -> list[Broker]:
    check = HealthCheck(timeout_seconds=TIMEOUT_SECONDS, interval_seconds=int(INTERVAL_SECONDS))
    return [
        Broker(
            metadata=ObjectMeta(name=f"b{i}", namespace="bench"),
            spec=BrokerSpec(
                endpoint=f"http://{address(i)}:{port}",
                cloud_provider="aws",
                health_check=check,
            ),
        )
        for i in indices
    ]


# --- (a) throughput ------------------------------------------------------------------


async def worker_pool(
    urls: list[str], concurrency: int, get: Callable[[str], Awaitable[None]]
) -> int:
    """Run `get` over `urls` with `concurrency` workers sharing one iterator; count done."""
    queue = iter(urls)
    done = 0

    async def worker() -> None:
        nonlocal done
        for url in queue:
            await get(url)
            done += 1

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, len(urls))):
            group.create_task(worker())
    return done


async def raw_aiohttp(urls: list[str], *, reuse: bool) -> int:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=DEFAULT_CONCURRENCY, force_close=not reuse)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get(url: str) -> None:
            async with session.get(url) as response:
                await response.read()

        return sum([await worker_pool(urls, DEFAULT_CONCURRENCY, get) for _ in range(SWEEPS)])


async def prober_sweeps(targets: list[Broker], *, keepalive: float | None) -> int:
    async with Prober(keepalive_seconds=keepalive) as prober:
        ok = 0
        for _ in range(SWEEPS):
            outcomes = await prober.sweep(targets)
            ok += sum(isinstance(o, ProbeSuccess) for o in outcomes.values())
    if ok != SWEEPS * len(targets):
        raise RuntimeError(f"only {ok} of {SWEEPS * len(targets)} probes succeeded")
    return ok


async def httpx_capped(urls: list[str]) -> int:
    """SWEEPS sweeps through httpx's shared pool, stopped after HTTPX_SECONDS."""
    import httpx

    limits = httpx.Limits(
        max_connections=DEFAULT_CONCURRENCY, max_keepalive_connections=DEFAULT_CONCURRENCY
    )
    done = 0
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def get(url: str) -> None:
            nonlocal done
            (await client.get(url)).read()
            done += 1

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HTTPX_SECONDS):
                for _ in range(SWEEPS):
                    await worker_pool(urls, DEFAULT_CONCURRENCY, get)
    return done


def measure(
    run: Callable[[], Coroutine[Any, Any, int]], server_pid: int
) -> tuple[float, float, float]:
    """(requests/s, client CPU%, server CPU%) of one run in a fresh event loop."""
    server_before = process_cpu(server_pid)
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    count = asyncio.run(run())
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    client = usage.ru_utime - usage_before.ru_utime + usage.ru_stime - usage_before.ru_stime
    server = process_cpu(server_pid) - server_before
    return count / wall, 100 * client / wall, 100 * server / wall


def throughput(reps: int) -> bool:
    print(
        f"\n(a) {ORIGINS} brokers on {ORIGINS} distinct loopback origins, concurrency "
        f"{DEFAULT_CONCURRENCY}, {SWEEPS} sweeps per run, median of {reps} runs"
    )
    with fleet(ORIGINS, 0) as (port, pid):
        targets = brokers(port, list(range(ORIGINS)))
        urls = [f"{b.spec.endpoint}/health" for b in targets]
        variants: dict[str, Callable[[], Coroutine[Any, Any, int]]] = {
            "raw aiohttp, new connection per request": lambda: raw_aiohttp(urls, reuse=False),
            "Prober (default: new connection per probe)": lambda: prober_sweeps(
                targets, keepalive=None
            ),
            "raw aiohttp, keep-alive pool": lambda: raw_aiohttp(urls, reuse=True),
            "Prober, keepalive_seconds=60": lambda: prober_sweeps(targets, keepalive=60.0),
        }
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
        for _ in range(reps):  # interleaved, so a noisy neighbour hits every variant alike
            for name, run in variants.items():
                results[name].append(measure(run, pid))
        httpx_result = measure(lambda: httpx_capped(urls), pid)
    print(f"{'client':46s} {'req/s':>8s} {'client CPU':>11s} {'server CPU':>11s}")
    medians = {}
    for name, runs in results.items():
        rate = statistics.median(r[0] for r in runs)
        medians[name] = rate
        client = statistics.median(r[1] for r in runs)
        server = statistics.median(r[2] for r in runs)
        spread = ", ".join(f"{r[0]:.0f}" for r in runs)
        print(f"{name:46s} {rate:8.0f} {client:10.0f}% {server:10.0f}%   runs: {spread}")
    print(
        f"{'httpx AsyncClient, shared pool (capped)':46s} {httpx_result[0]:8.1f} "
        f"{httpx_result[1]:10.0f}% {httpx_result[2]:10.0f}%"
    )
    ratio = (
        medians["Prober (default: new connection per probe)"]
        / medians["raw aiohttp, new connection per request"]
    )
    reuse_ratio = medians["Prober, keepalive_seconds=60"] / medians["raw aiohttp, keep-alive pool"]
    print(f"Prober / raw aiohttp (same connection policy): {ratio:.0%}")
    print(f"Prober keep-alive / raw aiohttp keep-alive:    {reuse_ratio:.0%}")
    ok = ratio >= TARGET_RATIO
    print(f"target Prober >= {TARGET_RATIO:.0%} of raw: {'PASS' if ok else 'FAIL'}")
    return ok


# --- (b) one sweep of a large fleet with hanging brokers -----------------------------


def interleaved(healthy: int, hang: int) -> list[int]:
    """Server indices in probe order: after every HANG_SHARE - 1 healthy brokers, one hangs."""
    hanging = list(range(healthy, healthy + hang))
    order: list[int] = []
    for i in range(healthy):
        order.append(i)
        if (i + 1) % (HANG_SHARE - 1) == 0 and hanging:
            order.append(hanging.pop())
    return order + hanging


async def one_sweep(targets: list[Broker], concurrency: int) -> tuple[float, int, int]:
    async with Prober(concurrency=concurrency) as prober:
        started = time.perf_counter()
        outcomes = await prober.sweep(targets)
        elapsed = time.perf_counter() - started
    ok = sum(isinstance(o, ProbeSuccess) for o in outcomes.values())
    timeouts = sum(
        isinstance(o, ProbeFailure) and o.reason == f"timeout after {TIMEOUT_SECONDS}s"
        for o in outcomes.values()
    )
    return elapsed, ok, timeouts


def sweep_time(concurrencies: list[int], fd_limit: int) -> bool:
    hang = FLEET // HANG_SHARE
    healthy = FLEET - hang
    need = FLEET + max(concurrencies) + 100
    print(
        f"\n(b) {FLEET} brokers, {hang} never answer, timeoutSeconds={TIMEOUT_SECONDS}: "
        f"one sweep within {INTERVAL_SECONDS:.0f} s"
    )
    if fd_limit < need:
        print(f"cannot run: the server needs about {need} open files, the limit is {fd_limit}")
        return False
    passed = True
    with fleet(healthy, hang) as (port, _pid):
        targets = brokers(port, interleaved(healthy, hang))
        for concurrency in concurrencies:
            elapsed, ok, timeouts = asyncio.run(one_sweep(targets, concurrency))
            floor = hang * TIMEOUT_SECONDS / concurrency
            correct = ok == healthy and timeouts == hang
            verdict = "PASS" if correct and elapsed <= INTERVAL_SECONDS else "FAIL"
            if concurrency == DEFAULT_CONCURRENCY:
                passed = verdict == "PASS"
            label = " (default)" if concurrency == DEFAULT_CONCURRENCY else ""
            print(
                f"concurrency {concurrency:4d}{label:10s} sweep {elapsed:5.1f} s  "
                f"(floor {floor:4.1f} s = hangs x timeout / slots)  "
                f"healthy {ok}/{healthy}  timeouts {timeouts}/{hang}  {verdict}"
            )
    return passed


# --- (c) status writes per steady-state sweep ---------------------------------------

STEADY_BROKERS = 300
STEADY_DEADLINE = 60.0  # hard limit for (c), seconds


class HealthApp:
    """One aiohttp server; `/health/<name>` answers healthy with that broker's load."""

    def __init__(self) -> None:
        self.active: dict[str, int] = {}
        self.requests = 0
        self.url = ""
        self._runner: Any = None

    async def __aenter__(self) -> HealthApp:
        from aiohttp import web

        async def health(request: web.Request) -> web.Response:
            self.requests += 1
            name = request.match_info["name"]
            return web.json_response(
                {
                    "status": "healthy",
                    "version": "1.4.2",
                    "activeDeployments": self.active.get(name, 0),
                    "uptime": "2h15m30s",
                }
            )

        app = web.Application()
        app.router.add_get("/health/{name}", health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


def steady_broker(name: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "platform.company.com/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {
            "endpoint": url,
            "cloudProvider": "aws",
            "region": "us-east-1",
            "capabilities": [{"resourceType": "Database", "providers": ["postgresql"]}],
            "healthCheck": {
                "endpoint": f"/health/{name}",
                "intervalSeconds": int(INTERVAL_SECONDS),
                "timeoutSeconds": TIMEOUT_SECONDS,
            },
        },
    }


async def caught_up(cluster: Any, informer: Any, timeout: float = 10.0) -> None:
    """Wait until the informer holds what the store holds (our own writes included), as
    between two real sweeps."""
    from kidp_ops.cluster.base import BROKERS
    from kidp_ops.kinds import object_key

    stored = {
        object_key(item): item["metadata"]["resourceVersion"]
        for item in (await cluster.list(BROKERS)).items
    }
    deadline = time.monotonic() + timeout
    while any(
        (informer.get(key) or {}).get("metadata", {}).get("resourceVersion") != version
        for key, version in stored.items()
    ):
        if time.monotonic() > deadline:
            raise RuntimeError("the informer did not catch up with the store")
        await asyncio.sleep(0.02)


async def steady_state(count: int) -> bool:
    import tempfile
    from datetime import UTC, datetime, timedelta

    from kidp_ops.cluster.base import BROKERS
    from kidp_ops.cluster.embedded import EmbeddedCluster
    from kidp_ops.controller.informer import Informer
    from kidp_ops.reconcilers.broker import BrokerReconciler

    offset = timedelta(0)

    def clock() -> datetime:
        return datetime.now(UTC) + offset

    with tempfile.TemporaryDirectory(prefix="kidp-health-c-") as folder:
        cluster = await EmbeddedCluster.open(Path(folder) / "state")
        try:
            async with HealthApp() as app:
                names = [f"b{i:04d}" for i in range(count)]
                for name in names:
                    await cluster.create(steady_broker(name, app.url))
                informer = Informer(cluster, BROKERS)
                async with Prober(cluster=cluster) as prober, informer.running():
                    await informer.wait_synced(10)
                    reconciler = BrokerReconciler(
                        cluster=cluster, informer=informer, prober=prober, clock=clock
                    )
                    informer.add_handler(reconciler.handle)  # no queue: nothing is queued
                    keys = [f"bench/{name}" for name in names]

                    async def sweep(label: str) -> tuple[int, int, float]:
                        """(status writes, store revisions, seconds) of one sweep."""
                        writes = reconciler.status_writes
                        revision = await cluster.current_revision()
                        started = time.perf_counter()
                        await asyncio.gather(*(reconciler.reconcile(k) for k in keys))
                        elapsed = time.perf_counter() - started
                        head = await cluster.current_revision()
                        await caught_up(cluster, informer)
                        done = reconciler.status_writes - writes
                        print(
                            f"  {label:58s} {done:4d} writes  ({head - revision} store "
                            f"revisions, {elapsed * 1000:.0f} ms)"
                        )
                        return done, head - revision, elapsed

                    first = time.monotonic()
                    w1, _, _ = await sweep("sweep 1 (new brokers: Pending -> Ready)")
                    await asyncio.sleep(1.0)
                    w2, r2, _ = await sweep("sweep 2 (nothing changed)")
                    await asyncio.sleep(1.0)
                    w3, r3, _ = await sweep("sweep 3 (nothing changed)")
                    within = time.monotonic() - first
                    app.active[names[7]] = 4
                    w4, r4, _ = await sweep(f"sweep 4 ({names[7]} reports activeDeployments 4)")
                    w5, r5, _ = await sweep("sweep 5 (nothing changed)")
                    offset = timedelta(seconds=31)
                    w6, _, _ = await sweep("sweep 6 (clock +31 s: the heartbeat refresh)")
                    w7, r7, _ = await sweep("sweep 7 (nothing changed)")
                    stored = await cluster.get(BROKERS, names[7], namespace="bench")
                    phases = {(informer.get(k) or {}).get("status", {}).get("phase") for k in keys}
        finally:
            await cluster.close()
    steady = [w2 + r2, w3 + r3, w5 + r5, w7 + r7]
    per_sweep = statistics.mean([w2, w3, w5, w7])
    print(
        f"  sweeps 1-3 within {within:.1f} s; {app.requests} probes answered; phases {phases}; "
        f"{names[7]} stored activeDeployments {stored['status'].get('activeDeployments')}"
    )
    checks = {
        f"sweep 1 writes every broker once ({w1}/{count})": w1 == count,
        "steady-state sweeps write nothing (status writes and store revisions)": not any(steady),
        f"one changed activeDeployments is exactly one write ({w4}, {r4} revisions)": w4 == 1
        and r4 == 1,
        f"the 30 s heartbeat refresh writes each broker once ({w6}/{count})": w6 == count,
        "every broker Ready": phases == {"Ready"},
    }
    for text, passed in checks.items():
        print(f"  {'ok  ' if passed else 'FAIL'} {text}")
    ok = all(checks.values())
    print(
        f"status writes per steady-state sweep: {per_sweep:.0f} (target 0, apart from the 30 s "
        f"heartbeat refresh): {'PASS' if ok else 'FAIL'}"
    )
    return ok


def status_writes(count: int) -> bool:
    print(
        f"\n(c) {count} healthy brokers, the real BrokerReconciler on an embedded store: "
        "status writes per sweep"
    )

    async def bounded() -> bool:
        async with asyncio.timeout(STEADY_DEADLINE):
            return await steady_state(count)

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        print(f"(c) did not finish within {STEADY_DEADLINE:.0f} s: FAIL")
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="(a) only, one run per variant")
    parser.add_argument("--only", choices=("a", "b", "c"), help="run one part alone")
    args = parser.parse_args()
    fd_limit = raise_fd_limit()
    print(f"CPUs: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    parts = {args.only} if args.only else ({"a"} if args.quick else {"a", "b", "c"})
    ok = True
    if "a" in parts:
        ok = throughput(1 if args.quick else REPS) and ok
    if "b" in parts:
        ok = sweep_time([DEFAULT_CONCURRENCY, 2 * DEFAULT_CONCURRENCY], fd_limit) and ok
    if "c" in parts:
        ok = status_writes(STEADY_BROKERS) and ok
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
