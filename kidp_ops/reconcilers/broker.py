"""BrokerReconciler: probe each broker on its schedule, fold the result into the health state
machine, write status only when a reader would notice (ARCHITECTURE.md §5, §7).

Scheduling goes through the work queue: a reconcile probes once and asks to be requeued
after the broker's `intervalSeconds` +-10% jitter. A new broker or a changed spec
(generation) is queued at once; the status-only events our own writes cause are ignored,
so writing status never triggers an extra probe. A deleted broker is forgotten: its
reconcile finds nothing in the cache and does not requeue.

The decisions are `kidp_ops.health.states` (pure); this module only carries them out.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
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
from kidp_ops.history import HistorySink, NullSink, ProbeRecord
from kidp_ops.kinds import object_key
from kidp_ops.model.resources import Broker, HealthCheck

if TYPE_CHECKING:
    from kidp_ops.health.probing import Prober
    from kidp_ops.metrics import Metrics

log = logging.getLogger("kidp_ops.brokers")
JITTER = 0.1


def jittered(interval: float, rng: random.Random) -> float:
    """`interval` +-10%, so brokers added together do not stay probed in lockstep."""
    return interval * (1 + rng.uniform(-JITTER, JITTER))


class BrokerReconciler(QueueFed):
    """Health-checks every broker the informer knows; one instance per daemon."""

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
    ) -> None:
        self.cluster = cluster
        self.informer = informer
        self.prober = prober
        self.history: HistorySink = history or NullSink()
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()
        self.queue: WorkQueue[str] | None = None
        self._states: dict[str, HealthState] = {}
        self._written: dict[str, dict[str, Any]] = {}
        self._probed_generation: dict[str, int] = {}
        self.status_writes = 0
        self.probes = 0

    # --- events -----------------------------------------------------------------------

    def handle(self, change: ChangeType, obj: Mapping[str, Any]) -> None:
        """Informer handler: queue new brokers and spec changes; forget deleted ones."""
        key = object_key(obj)
        if change == "DELETED":
            self._forget(key, obj)
            return
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        if self._probed_generation.get(key) != generation and self.queue is not None:
            self.queue.add(key)

    def _forget(self, key: str, obj: Mapping[str, Any]) -> None:
        self._states.pop(key, None)
        self._written.pop(key, None)
        self._probed_generation.pop(key, None)
        if self.queue is not None:
            self.queue.forget(key)
        if self.metrics is not None:
            meta = obj.get("metadata") or {}
            self.metrics.forget_broker(str(meta.get("namespace")), str(meta.get("name")))

    # --- reconcile --------------------------------------------------------------------

    async def reconcile(self, key: str) -> Result | None:
        obj = self.informer.get(key)
        if obj is None:
            return None  # deleted: stop probing
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
        outcome = await self.prober.probe(broker)
        self.probes += 1
        now = self.clock()
        state = advance(state, outcome, health_check=health_check, now=now)
        self._states[key] = state
        self._probed_generation[key] = generation
        patch = status_patch(previous, state, health_check=health_check, generation=generation)
        if patch is not None:
            await self._write(broker, patch)
        self._record(broker, outcome, state, now)
        # The schedule counts from the start of this probe: a slow broker is not probed
        # less often than its interval says.
        elapsed = time.monotonic() - started
        return Result(
            requeue_after=max(0.0, jittered(health_check.interval_seconds, self.rng) - elapsed)
        )

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
    ) -> Result:
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
        return Result(requeue_after=HealthCheck().interval_seconds)

    def _record(
        self, broker: Broker, outcome: ProbeOutcome, state: HealthState, now: datetime
    ) -> None:
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
