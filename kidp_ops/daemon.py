"""The composition root: cluster + informers + registry + reconcilers + one HTTP server.

    daemon = Daemon(cluster, DaemonConfig(...))
    await daemon.run(stop)     # until `stop` is set (SIGTERM/SIGINT in the CLI)

Informers run on every replica (the callback endpoint and /readyz need their caches); the
reconcilers run only on the leader of the Lease (when leader election is on). Losing the
lease stops the reconcilers at once and campaigns again. Stopping finishes in-flight
reconciles within the grace period, then releases the lease.

HTTP (aiohttp, one port): `/metrics` (Prometheus), `/healthz` (the process answers),
`/readyz` (informers synced and their watches not stale; a standby replica is ready too),
`/v1/callback` (signed broker callbacks, on any replica).
"""

# size: the composition root wires every part (reconcilers, HTTP, leases, history)

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from kidp_ops import guarded_http, logs
from kidp_ops.callbacks import CallbackGate, DeploymentIndex, callback_gate, handle_callback
from kidp_ops.clock import utc_now
from kidp_ops.cluster.base import BROKERS, DATABASES, Cluster
from kidp_ops.cluster.target import Target, connect
from kidp_ops.controller.informer import ChangeType, Handler, Informer, Manifest
from kidp_ops.controller.leader import LeaderElector, LeadershipLost
from kidp_ops.controller.queue import Result, WorkerPool, WorkQueue
from kidp_ops.controller.shutdown import run_until_stopped, stop_on_signals
from kidp_ops.health.credentials import SecretCache
from kidp_ops.health.probing import Prober
from kidp_ops.history import HistoryError, HistorySink, NullSink
from kidp_ops.history.brokers import spec_recorder
from kidp_ops.history.series import MeteredHistory, counted_in
from kidp_ops.history.store import open_writer
from kidp_ops.metrics import Metrics, gauge
from kidp_ops.reconcilers.broker import BrokerReconciler
from kidp_ops.reconcilers.clients import BrokerClients
from kidp_ops.reconcilers.database import DatabaseReconciler
from kidp_ops.registry import BrokerRegistry
from kidp_ops.trust import DEFAULT_BROKER_NAMESPACES, BrokerTrust

log = logging.getLogger("kidp_ops.daemon")

LEASE_NAME = "kidp-ops-daemon"
DEFAULT_HTTP = ("127.0.0.1", 8080)


class DaemonError(Exception):
    """A start-up problem a person fixes (port taken, bad address); one line."""


@dataclass
class DaemonConfig:
    http_host: str = DEFAULT_HTTP[0]
    http_port: int = DEFAULT_HTTP[1]
    callback_url: str | None = None  # default: this server's own /v1/callback
    leader_elect: bool = True
    lease_name: str = LEASE_NAME
    lease_namespace: str = field(
        default_factory=lambda: os.environ.get("POD_NAMESPACE", "kidp-system")
    )
    identity: str | None = field(default_factory=lambda: os.environ.get("POD_NAME") or None)
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    broker_namespaces: tuple[str, ...] = DEFAULT_BROKER_NAMESPACES  # the trusted ones
    broker_workers: int = 32  # they only start probes (tasks of the reconciler)
    database_workers: int = 16
    poll_after: float = 30.0
    grace: float = 25.0
    stale_after: float = 120.0  # /readyz fails when a watch has been silent this long
    http_limits: guarded_http.Limits = field(default_factory=guarded_http.Limits)


class Daemon:
    def __init__(
        self, cluster: Cluster, config: DaemonConfig, *, history: HistorySink | None = None
    ) -> None:
        self.cluster = cluster
        self.config = config
        self.metrics = Metrics()
        # Every record also feeds the series Prometheus keeps (history/series.py).
        self.history = MeteredHistory(history or NullSink(), counted=counted_in(history))
        self.metrics.add_sampler(self.history.families)
        self.brokers = Informer(cluster, BROKERS)
        self.databases = Informer(cluster, DATABASES)
        self.trust = BrokerTrust.of(config.broker_namespaces)
        self.registry = BrokerRegistry()
        self.index = DeploymentIndex()
        self.secrets = SecretCache(cluster)
        self.clients = BrokerClients(self.secrets)
        self.gate: CallbackGate | None = None
        self.elector: LeaderElector | None = None
        self.leading = asyncio.Event()
        self.callback_url = config.callback_url or ""
        self._http: guarded_http.Serving | None = None
        self._refusals = logs.Throttle(log, per_minute=30)
        self.http_url = ""
        self.serving = asyncio.Event()  # set once http_url is known
        self._prober: Prober | None = None
        self.broker_reconciler: BrokerReconciler | None = None
        self.database_reconciler: DatabaseReconciler | None = None
        self._queues: dict[str, WorkQueue[str]] = {}

    # --- running ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve HTTP, keep the caches, reconcile while leading; return once `stop` is set
        and everything is shut down."""
        await self._start_http()
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self._stop_http)
            stack.push_async_callback(self.clients.aclose)
            prober = await stack.enter_async_context(Prober(cluster=self.cluster))
            self._build_reconcilers(prober)
            await stack.enter_async_context(self.brokers.running())
            await stack.enter_async_context(self.databases.running())
            await self._reconcile_until(stop)

    def _build_reconcilers(self, prober: Prober) -> None:
        self._prober = prober
        self.broker_reconciler = BrokerReconciler(
            trust=self.trust,
            cluster=self.cluster,
            informer=self.brokers,
            prober=prober,
            history=self.history,
            metrics=self.metrics,
        )
        self.database_reconciler = DatabaseReconciler(
            cluster=self.cluster,
            informer=self.databases,
            registry=self.registry,
            clients=self.clients,
            callback_url=self.callback_url,
            history=self.history,
            metrics=self.metrics,
            poll_after=self.config.poll_after,
        )
        self.gate = callback_gate(
            brokers=self.registry, databases=self.database_reconciler, index=self.index
        )
        # Every Broker is watched (one outside the broker namespaces gets Accepted=False),
        # but only trusted ones reach the registry (selection, callbacks) and retries.
        self.brokers.add_handler(self._trusted(self.registry.handle))
        self.brokers.add_handler(self._trusted(spec_recorder(self.history)))
        self.brokers.add_handler(self.broker_reconciler.handle)
        self.brokers.add_handler(self._trusted(self.database_reconciler.on_broker))
        self.databases.add_handler(self.index.handle)
        self.databases.add_handler(self.database_reconciler.handle)
        self.metrics.add_sampler(self._samples)

    async def _reconcile_until(self, stop: asyncio.Event) -> None:
        """Reconcile while leading (always, without leader election) until `stop`; a lost
        lease stops the reconcilers at once and this replica campaigns again."""
        await self.brokers.wait_synced()
        await self.databases.wait_synced()
        while not stop.is_set():
            self.elector = None
            if self.config.leader_elect:
                self.elector = LeaderElector(
                    self.cluster,
                    name=self.config.lease_name,
                    namespace=self.config.lease_namespace,
                    identity=self.config.identity,
                    lease_duration=self.config.lease_duration,
                    renew_deadline=self.config.renew_deadline,
                    retry_period=self.config.retry_period,
                )
            try:
                await run_until_stopped(
                    self._term, stop=stop, elector=self.elector, grace=self.config.grace
                )
            except LeadershipLost as exc:
                log.error("lost the lease (%s); campaigning again", exc)
            if self.elector is None:
                return

    @contextlib.asynccontextmanager
    async def _term(self) -> AsyncIterator[Sequence[WorkerPool[str]]]:
        """One term as leader: both reconcilers' worker pools, fed while it lasts."""
        log.info("leading: reconciling brokers and databases")
        brokers, databases = reconcilers = self._reconcilers()
        pools = []
        sized: tuple[tuple[BrokerReconciler | DatabaseReconciler, int], ...] = (
            (brokers, self.config.broker_workers),
            (databases, self.config.database_workers),
        )
        for reconciler, workers in sized:
            queue: WorkQueue[str] = WorkQueue()
            self._queues[reconciler.name] = queue
            pools.append(
                WorkerPool(queue, self._counted(reconciler), workers=workers, name=reconciler.name)
            )
            reconciler.attach(queue)
        self.leading.set()
        try:
            yield pools
        finally:
            self.leading.clear()
            for reconciler in reconcilers:
                reconciler.detach()
            self._queues.clear()
            await brokers.stop_probes()

    def _reconcilers(self) -> tuple[BrokerReconciler, DatabaseReconciler]:
        if self.broker_reconciler is None or self.database_reconciler is None:
            raise RuntimeError("the reconcilers are built when the daemon runs")
        return self.broker_reconciler, self.database_reconciler

    def _counted(
        self, reconciler: BrokerReconciler | DatabaseReconciler
    ) -> Callable[[str], Awaitable[Result | None]]:
        metrics, name = self.metrics, reconciler.name

        async def reconcile(key: str) -> Result | None:
            metrics.reconciles.labels(name).inc()
            try:
                return await reconciler.reconcile(key)
            except Exception:
                metrics.reconcile_errors.labels(name).inc()
                raise

        return reconcile

    # --- metrics sampled at scrape time -------------------------------------------------

    def _trusted(self, handler: Handler) -> Handler:
        """`handler`, called only for Brokers in the broker namespaces."""

        def call(change: ChangeType, obj: Manifest) -> None:
            if self.trust.trusts((obj.get("metadata") or {}).get("namespace")):
                handler(change, obj)

        return call

    def untrusted_brokers(self) -> int:
        return sum(
            not self.trust.trusts((obj.get("metadata") or {}).get("namespace"))
            for obj in self.brokers.items()
        )

    def _samples(self) -> Iterable[Any]:
        yield gauge(
            "kidp_workqueue_depth",
            "Keys waiting in each controller's work queue.",
            {(name,): float(len(queue)) for name, queue in self._queues.items()},
            ["controller"],
        )
        ages: dict[tuple[str, ...], float] = {}
        for informer in (self.brokers, self.databases):
            age = informer.seconds_since_contact()
            if age is not None:
                ages[(informer.kind.resource,)] = age
        yield gauge(
            "kidp_watch_last_event_age_seconds",
            "Seconds since each informer's watch last showed a sign of life.",
            ages,
            ["resource"],
        )
        yield gauge(
            "kidp_leader",
            "1 while this replica reconciles.",
            {(): float(self.leading.is_set())},
            [],
        )
        yield gauge(
            "kidp_brokers_known", "Brokers in the registry.", {(): float(len(self.registry))}, []
        )
        yield gauge(
            "kidp_brokers_untrusted",
            "Brokers outside the daemon's broker namespaces: neither probed nor selected.",
            {(): float(self.untrusted_brokers())},
            [],
        )

    # --- HTTP ---------------------------------------------------------------------------

    async def _start_http(self) -> None:
        routes: dict[tuple[str, str], guarded_http.Handler] = {
            ("GET", "/metrics"): self._metrics_handler,
            ("GET", "/healthz"): self._healthz,
            ("GET", "/readyz"): self._readyz,
            ("POST", "/v1/callback"): self._callback,
        }
        try:
            self._http = await guarded_http.serve(
                self.config.http_host,
                self.config.http_port,
                guarded_http.router(routes),
                self.config.http_limits,
            )
        except guarded_http.ListenError as exc:
            raise DaemonError(str(exc)) from None
        host = self.config.http_host
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        if ":" in shown:  # an IPv6 address goes in brackets in a URL
            shown = f"[{shown}]"
        self.http_url = f"http://{shown}:{self._http.port}"
        if not self.callback_url:
            self.callback_url = f"{self.http_url}/v1/callback"
        self.serving.set()

    async def _stop_http(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _metrics_handler(self, request: web.BaseRequest) -> web.Response:
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _healthz(self, request: web.BaseRequest) -> web.Response:
        return web.Response(text="ok\n")

    def readiness_problems(self) -> list[str]:
        problems = []
        for informer in (self.brokers, self.databases):
            name = informer.kind.resource
            if not informer.has_synced:
                problems.append(f"{name} informer has not synced")
                continue
            age = informer.seconds_since_contact()
            if age is not None and age > self.config.stale_after:
                problems.append(f"{name} watch silent for {age:.0f}s")
        return problems

    async def _readyz(self, request: web.BaseRequest) -> web.Response:
        problems = self.readiness_problems()
        if problems:
            return web.Response(status=503, text="not ready: " + "; ".join(problems) + "\n")
        return web.Response(text="ok\n")

    async def _callback(self, request: web.BaseRequest) -> web.Response:
        body = await guarded_http.read_body(request, self.config.http_limits)
        if self.gate is None or self.database_reconciler is None:
            return web.json_response({"accepted": False, "reason": "starting"}, status=503)
        verdict = await handle_callback(
            self.gate, self.database_reconciler, request.headers, body, now=utc_now()
        )
        self.metrics.callbacks.labels("accepted" if verdict.accepted else str(verdict.status)).inc()
        if not verdict.accepted:  # attacker-controlled text: escaped, cut, rate-limited
            self._refusals.warning(
                "callback refused (%d): %s", verdict.status, logs.shown(verdict.reason)
            )
        return web.json_response(
            {"accepted": verdict.accepted, "reason": verdict.reason}, status=verdict.status
        )


async def _announce(daemon: Daemon, run: asyncio.Task[None], history: Path | None) -> None:
    """Once the daemon serves HTTP (or `run` ended first), say where."""
    serving = asyncio.create_task(daemon.serving.wait())
    await asyncio.wait({run, serving}, return_when=asyncio.FIRST_COMPLETED)
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)
    if daemon.http_url:
        log.info(
            "serving %s (/metrics /healthz /readyz /v1/callback); callbacks go to %s",
            daemon.http_url,
            daemon.callback_url,
        )
        log.info("history: %s", history or "off")


async def serve(
    target: Target, config: DaemonConfig, *, err: TextIO, history: Path | None = None
) -> int:
    """`kidp-ops daemon`: run until SIGTERM/SIGINT; 0 after a graceful stop, 1 on a
    start-up problem (printed as one line). `history`: the directory of the history store
    (None: keep none)."""
    stop = asyncio.Event()
    async with await connect(target) as cluster, contextlib.AsyncExitStack() as stack:
        try:
            writer = open_writer(history) if history is not None else None
        except HistoryError as exc:
            print(f"error: {exc}", file=err)
            return 1
        if writer is not None:  # closed off the loop: it writes what is still queued
            stack.push_async_callback(asyncio.to_thread, writer.close)
        daemon = Daemon(cluster, config, history=writer)
        with stop_on_signals(stop):
            run = asyncio.create_task(daemon.run(stop), name="daemon")
            await _announce(daemon, run, writer.path if writer else None)
            try:
                await run
            except DaemonError as exc:
                print(f"error: {exc}", file=err)
                return 1
            except asyncio.CancelledError:  # a second signal: stop now
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)
                log.warning("stopped without finishing in-flight work")
                return 130
    log.info("stopped")
    return 0
