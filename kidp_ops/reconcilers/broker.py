"""BrokerReconciler: probe each broker on its schedule, fold the result into the health state
machine, write status only when a reader would notice (ARCHITECTURE.md §5, §7).

Scheduling goes through the work queue, probing does not: a reconcile starts the broker's
probe as a task this reconciler owns and returns at once, and the probe, when it ends,
asks the queue for the next one after the broker's `intervalSeconds` +-10% jitter. So a
hanging broker costs a socket and a small task, never a worker (issue 10: 300 hung brokers
with a one-minute timeout must not delay a healthy broker's probe); the prober's fair
lanes bound the sockets. A new broker, a changed spec (generation) or the annotation
`platform.company.com/probe-now` (the dashboard's "probe now") starts a probe at once,
cancelling one still running for an older spec; the status-only events our own writes
cause are ignored, so writing status never triggers an extra probe. A deleted broker's
probe is cancelled at once and its metric series dropped.

Only Brokers in the daemon's broker namespaces are probed (`trust`); any other gets
`Accepted=False` (NamespaceNotTrusted) and nothing else.

The decisions are `kidp_ops.health.states` (pure); this module only carries them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kidp_ops.clock import utc_now
from kidp_ops.cluster.base import BROKERS, Cluster, ClusterError, NotFound
from kidp_ops.controller.informer import ChangeType, Informer
from kidp_ops.controller.queue import QueueFed, Result, WorkQueue
from kidp_ops.health.states import (
    CannotProbe,
    HealthState,
    ProbeFailure,
    ProbeOutcome,
    ProbeSuccess,
    advance,
    status_patch,
)
from kidp_ops.health.untrusted import untrusted_patch
from kidp_ops.history import HistorySink, NullSink, ProbeRecord
from kidp_ops.kinds import object_key
from kidp_ops.model.resources import Broker, HealthCheck
from kidp_ops.trust import BrokerTrust

if TYPE_CHECKING:
    from kidp_ops.health.probing import Prober
    from kidp_ops.metrics import Metrics

log = logging.getLogger("kidp_ops.brokers")
JITTER = 0.1
PROBE_NOW = "platform.company.com/probe-now"
FAILED_PROBE_RETRY = 5.0  # a probe that raised (a bug, not a broker problem): try again


def jittered(interval: float, rng: random.Random) -> float:
    """`interval` +-10%, so brokers added together do not stay probed in lockstep."""
    return interval * (1 + rng.uniform(-JITTER, JITTER))


@dataclass(frozen=True, slots=True)
class _Probe:
    """A probe in flight: for which spec and which probe-now request."""

    generation: int
    asked: str
    task: asyncio.Task[None]


def _wanted(obj: Mapping[str, Any]) -> tuple[int, str]:
    meta = obj.get("metadata") or {}
    asked = str((meta.get("annotations") or {}).get(PROBE_NOW) or "")
    return int(meta.get("generation") or 0), asked


class BrokerReconciler(QueueFed):
    """Health-checks every trusted broker the informer knows; one instance per daemon."""

    name = "broker"

    def __init__(
        self,
        *,
        cluster: Cluster,
        informer: Informer,
        prober: Prober,
        history: HistorySink | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        trust: BrokerTrust | None = None,
    ) -> None:
        self.cluster = cluster
        self.informer = informer
        self.prober = prober
        self.history: HistorySink = history or NullSink()
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()
        self.trust = trust or BrokerTrust.everywhere()
        self.queue: WorkQueue[str] | None = None
        self._states: dict[str, HealthState] = {}
        self._written: dict[str, dict[str, Any]] = {}
        self._done: dict[str, tuple[int, str]] = {}  # (generation, probe-now) last probed
        self._probing: dict[str, _Probe] = {}
        self.status_writes = 0
        self.probes = 0

    # --- events -----------------------------------------------------------------------

    def handle(self, change: ChangeType, obj: Mapping[str, Any]) -> None:
        """Informer handler: queue new brokers, spec changes and probe-now requests;
        forget deleted ones (cancelling their probe)."""
        key = object_key(obj)
        if change == "DELETED":
            self._forget(key, obj)
            return
        if self._done.get(key) != _wanted(obj) and self.queue is not None:
            self.queue.add(key)

    def _forget(self, key: str, obj: Mapping[str, Any]) -> None:
        running = self._probing.pop(key, None)
        if running is not None:
            running.task.cancel()
        self._states.pop(key, None)
        self._written.pop(key, None)
        self._done.pop(key, None)
        if self.queue is not None:
            self.queue.forget(key)
        if self.metrics is not None:
            meta = obj.get("metadata") or {}
            self.metrics.forget_broker(str(meta.get("namespace")), str(meta.get("name")))

    def detach(self) -> None:
        """Stop feeding the queue and cancel every probe in flight (another replica leads
        now, or the daemon stops); `stop_probes` waits for them."""
        super().detach()
        for running in self._probing.values():
            running.task.cancel()

    async def stop_probes(self) -> None:
        """Cancel every probe in flight and wait until they are gone."""
        tasks = [running.task for running in self._probing.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def in_flight(self) -> frozenset[str]:
        return frozenset(key for key, p in self._probing.items() if not p.task.done())

    # --- reconcile --------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        """Start the broker's probe (unless one for this very spec runs); returns at once."""
        obj = self.informer.get(key)
        if obj is None:
            return None  # deleted: stop probing
        namespace = str((obj.get("metadata") or {}).get("namespace") or "default")
        if not self.trust.trusts(namespace):
            await self._refuse(obj, namespace)
            return None
        wanted = _wanted(obj)
        running = self._probing.get(key)
        if running is not None and not running.task.done():
            if (running.generation, running.asked) == wanted:
                return None
            running.task.cancel()  # an older spec, or a new probe-now: start over
        task = asyncio.create_task(self._probe_task(key, wanted), name=f"probe {key}")
        self._probing[key] = _Probe(wanted[0], wanted[1], task)
        task.add_done_callback(lambda done: self._finished(key, done))
        return None

    def _finished(self, key: str, task: asyncio.Task[None]) -> None:
        running = self._probing.get(key)
        if running is not None and running.task is task:
            del self._probing[key]

    async def _probe_task(self, key: str, wanted: tuple[int, str]) -> None:
        try:
            delay = await self.probe_once(key)
        except Exception:  # a bug, not a broker problem: log it, keep probing
            log.exception("probing broker %s failed", key)
            delay = FAILED_PROBE_RETRY
        self._done[key] = wanted
        if delay is not None and self.queue is not None and self.informer.get(key) is not None:
            self.queue.add_after(key, delay)

    async def probe_once(self, key: str) -> float | None:
        """Probe the broker now, fold the result, write what changed; seconds until the
        next probe is due (None: the broker is gone)."""
        obj = self.informer.get(key)
        if obj is None:
            return None
        now = self.clock()
        try:
            broker = Broker.from_manifest(obj)
        except (ValueError, TypeError, KeyError) as exc:
            return await self._unprobeable(key, obj, f"invalid spec: {exc}", now)
        health_check = broker.spec.health_check
        generation = broker.metadata.generation
        previous = self._written.get(key) or dict(obj.get("status") or {})
        state = self._states.get(key) or HealthState.from_status(
            broker.status, now=now, first_seen=broker.metadata.creation_timestamp
        )
        started = time.monotonic()
        suspect = state.consecutive_failures > 0 or state.last_success is None
        outcome = await self.prober.probe(broker, suspect=suspect)
        self.probes += 1
        now = self.clock()
        state = advance(state, outcome, health_check=health_check, now=now)
        self._states[key] = state
        patch = status_patch(previous, state, health_check=health_check, generation=generation)
        if patch is not None:
            await self._write(broker, patch)
        self._record(broker, outcome, state, now)
        # The schedule counts from the start of this probe: a slow broker is not probed
        # less often than its interval says.
        elapsed = time.monotonic() - started
        return max(0.0, jittered(health_check.interval_seconds, self.rng) - elapsed)

    async def _refuse(self, obj: Mapping[str, Any], namespace: str) -> None:
        """A Broker outside the broker namespaces: say so once in its status."""
        meta = obj.get("metadata") or {}
        generation = meta.get("generation")
        patch = untrusted_patch(
            obj.get("status") or {},
            refusal=self.trust.refusal(namespace),
            now=self.clock(),
            generation=int(generation) if generation is not None else None,
        )
        self._done[object_key(obj)] = _wanted(obj)
        if patch is None:
            return
        with contextlib.suppress(NotFound):
            await self.cluster.patch_status(
                BROKERS, str(meta.get("name")), {"status": patch}, namespace=namespace
            )
            self.status_writes += 1

    async def _write(self, broker: Broker, patch: dict[str, Any]) -> None:
        meta = broker.metadata
        try:
            stored = await self.cluster.patch_status(
                BROKERS, meta.name, {"status": patch}, namespace=meta.namespace
            )
        except NotFound:
            return  # deleted while we probed
        self._written[broker.key] = dict(stored.get("status") or {})
        self.status_writes += 1
        if self.metrics is not None:
            self.metrics.status_writes.labels("broker").inc()

    async def _unprobeable(
        self, key: str, obj: Mapping[str, Any], reason: str, now: datetime
    ) -> float:
        """A stored broker we cannot even read: phase Unknown with the reason."""
        meta = obj.get("metadata") or {}
        state = advance(
            self._states.get(key) or HealthState.new(now=now),
            CannotProbe(reason),
            health_check=HealthCheck(),
            now=now,
        )
        self._states[key] = state
        patch = status_patch(
            obj.get("status") or {}, state, health_check=HealthCheck(), generation=None
        )
        if patch is not None:
            try:
                await self.cluster.patch_status(
                    BROKERS,
                    str(meta.get("name")),
                    {"status": patch},
                    namespace=meta.get("namespace"),
                )
            except ClusterError as exc:
                log.warning("cannot write status of broker %s: %s", key, exc)
        return float(HealthCheck().interval_seconds)

    def _record(
        self, broker: Broker, outcome: ProbeOutcome, state: HealthState, now: datetime
    ) -> None:
        if self.informer.get(broker.key) is None:
            return  # deleted while it was probed: no history, no metric series
        ok = isinstance(outcome, ProbeSuccess)
        latency = None if isinstance(outcome, CannotProbe) else outcome.latency_ms
        reason = "" if ok else getattr(outcome, "reason", "")
        self.history.record_probe(
            ProbeRecord(
                time=now,
                broker=broker.key,
                ok=ok,
                phase=state.phase,
                latency_ms=latency,
                active_deployments=state.active_deployments,
                reason=reason,
                max_concurrent_deployments=broker.spec.max_concurrent_deployments,
                version=state.version,
            )
        )
        if self.metrics is not None:
            meta = broker.metadata
            self.metrics.probes.labels(
                meta.namespace, meta.name, "success" if ok else "failure"
            ).inc()
            if latency is not None and isinstance(outcome, ProbeSuccess | ProbeFailure):
                self.metrics.probe_latency.observe(latency / 1000)
            self.metrics.set_phase(meta.namespace, meta.name, state.phase)

    def state(self, key: str) -> HealthState | None:
        return self._states.get(key)
