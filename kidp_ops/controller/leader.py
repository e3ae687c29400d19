"""Leader election on a `coordination.k8s.io/v1` Lease (client-go's leaderelection, small).

Several daemons may run; only the one holding the Lease reconciles. Through the Cluster
port, so it works on a real API server and on the embedded store alike.

- Acquire: get the Lease; create it when missing (AlreadyExists: someone raced us, try
  again later). It is free when its holder is empty, when it is ours, or when it expired.
  Take it with `replace` and the read `resourceVersion` as precondition (Conflict: lost
  the race). A takeover sets `acquireTime` and counts `leaseTransitions`.
- Expiry is judged like client-go, by the *local* monotonic time at which this process
  last saw the lease record change, plus `leaseDurationSeconds`, never by comparing the
  holder's `renewTime` with our wall clock: clock skew between machines cannot make a
  live leader look dead. The price (as in client-go): a process that starts while an old
  lease is still held waits one full lease duration before taking over.
- Renew: every `retry_period`; one renew round retries until `renew_deadline`. When the
  round fails the leadership is lost: the leading work is cancelled and `run()` raises
  LeadershipLost (the process should exit and start again, as client-go daemons do).
  Unlike client-go, a renew that finds another holder gives up at once instead of
  retrying until the deadline. `lease_duration > renew_deadline + retry_period` makes
  sure a leader that cannot renew stops before anyone else may start.
- Release: when the leading work ends (or `run()` is cancelled, with release_on_cancel),
  the lease is read and, when this process still holds it, the holder is set to "" and
  the duration to 1 s, so another candidate takes over at its next retry instead of
  waiting for the lease to expire.

`clock` (monotonic seconds) measures expiry and renew deadlines and must advance like
real time (sleeps are real); `wall_clock` stamps acquireTime / renewTime, which are
informative only (for people and `kubectl`), never compared across machines.
"""

# size: client-go's acquire/renew/release loop, kept whole so its timing rules read together

from __future__ import annotations

import asyncio
import copy
import enum
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kidp_ops.aio import cancel_and_wait
from kidp_ops.cluster.base import (
    LEASES,
    AlreadyExists,
    Cluster,
    ClusterError,
    Conflict,
    Manifest,
    NotFound,
)

log = logging.getLogger(__name__)

LEASE_DURATION_SECONDS = 15.0
RENEW_DEADLINE_SECONDS = 10.0
RETRY_PERIOD_SECONDS = 2.0
RELEASE_ATTEMPTS = 3
JITTER_FACTOR = 1.2  # acquire retries wait retry_period * uniform(1, 1.2)


class LeadershipLost(Exception):
    """The lease could not be renewed in time (or another process holds it now)."""


def default_identity() -> str:
    """`hostname_pid_suffix`: unique per process, readable in `kubectl get lease -o yaml`."""
    return f"{socket.gethostname()}_{os.getpid()}_{secrets.token_hex(3)}"


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds, `...T10:00:00.123456Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- the lease record and the pure decisions ------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The fields of a Lease's spec that leader election reads and writes."""

    holder: str = ""
    duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def from_spec(cls, spec: Manifest | None) -> LeaseRecord:
        spec = spec or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> Manifest:
        spec: Manifest = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_seconds,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time is not None:
            spec["renewTime"] = self.renew_time
        return spec


def observed_since(
    previous: LeaseRecord | None, previous_at: float, current: LeaseRecord, now: float
) -> float:
    """When (local monotonic time) the record `current` was first seen: a changed record
    starts a new observation, an unchanged one keeps the old time."""
    return previous_at if current == previous else now


def is_free(
    record: LeaseRecord, *, identity: str, observed_at: float, now: float, default_duration: float
) -> bool:
    """May `identity` take (or keep) the lease? Empty holder, our own, or expired by the
    local time since the record last changed."""
    if not record.holder or record.holder == identity:
        return True
    duration = record.duration_seconds or default_duration
    return now >= observed_at + duration


def next_record(
    current: LeaseRecord | None, *, identity: str, duration_seconds: int, stamp: str
) -> LeaseRecord:
    """The record to write: a renewal keeps acquireTime and transitions, a takeover
    sets acquireTime and counts a transition, a new lease starts at zero."""
    if current is None:
        return LeaseRecord(identity, duration_seconds, stamp, stamp, 0)
    if current.holder == identity:
        return replace(current, duration_seconds=duration_seconds, renew_time=stamp)
    return LeaseRecord(identity, duration_seconds, stamp, stamp, current.transitions + 1)


def released_record(current: LeaseRecord, *, stamp: str) -> LeaseRecord:
    """What a graceful release writes (as client-go): no holder, 1 s, transitions kept."""
    return LeaseRecord("", 1, stamp, stamp, current.transitions)


class Attempt(enum.Enum):
    HELD = "held"  # the lease is ours now
    TAKEN = "taken"  # another live holder has it
    RACED = "raced"  # a concurrent write won (Conflict / AlreadyExists)


# --- the elector ------------------------------------------------------------------------

Lead = Callable[[], Coroutine[Any, Any, object]]
StoppedLeading = Callable[[], Awaitable[None] | None]


class LeaderElector:
    """Campaign for the Lease `namespace/name` and run work only while holding it.

        elector = LeaderElector(cluster, name="kidp-ops", namespace="kidp-system")
        await elector.run(work)   # returns after `work` ends and the lease is released

    `run()` waits until it holds the lease, then runs `on_started_leading()` as a task
    while renewing. When that work returns, the lease is released and `run()` returns
    (an exception from the work is re-raised after the release). When renewing fails the
    work is cancelled and `run()` raises LeadershipLost. Cancelling `run()` cancels the
    work and releases the lease (unless `release_on_cancel=False`, which behaves like a
    crash: the others take over when the lease expires).
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        name: str,
        namespace: str,
        identity: str | None = None,
        lease_duration: float = LEASE_DURATION_SECONDS,
        renew_deadline: float = RENEW_DEADLINE_SECONDS,
        retry_period: float = RETRY_PERIOD_SECONDS,
        release_on_cancel: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not lease_duration > renew_deadline > retry_period * JITTER_FACTOR > 0:
            raise ValueError(
                "need lease_duration > renew_deadline > retry_period * 1.2 > 0, got "
                f"{lease_duration}, {renew_deadline}, {retry_period}"
            )
        self._cluster = cluster
        self.name = name
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self._clock = clock
        self._wall_clock = wall_clock
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._leading = asyncio.Event()
        self._running = False

    # --- state ------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    @property
    def leader(self) -> str:
        """The holder this process last saw ("" for none or not yet looked)."""
        return self._observed.holder if self._observed else ""

    async def wait_leader(self) -> None:
        """Return once this process leads."""
        await self._leading.wait()

    # --- running ----------------------------------------------------------------------

    async def run(
        self, on_started_leading: Lead, on_stopped_leading: StoppedLeading | None = None
    ) -> None:
        if self._running:
            raise RuntimeError(f"leader elector {self.identity} is already running")
        self._running = True
        try:
            try:
                await self._acquire()
            except asyncio.CancelledError:
                if self.release_on_cancel:  # a takeover may have landed as we were cancelled
                    await self._release_in_time()
                raise
            try:
                await self._lead(on_started_leading)
            finally:
                if on_stopped_leading is not None:
                    await _call(on_stopped_leading)
        finally:
            self._running = False

    async def _acquire(self) -> None:
        while True:
            try:
                attempt = await self._try_acquire_or_renew()
            except ClusterError as exc:
                log.warning("lease %s: cannot acquire: %s", self._lease_name, exc)
            else:
                if attempt is Attempt.HELD:
                    log.info("lease %s: %s is the leader", self._lease_name, self.identity)
                    self._leading.set()
                    return
            await asyncio.sleep(self.retry_period * random.uniform(1.0, JITTER_FACTOR))

    async def _lead(self, on_started_leading: Lead) -> None:
        work = asyncio.create_task(on_started_leading(), name=f"leading-{self.identity}")
        renewing = asyncio.create_task(self._renew_loop(), name=f"renewing-{self.identity}")
        release = False
        try:
            await asyncio.wait({work, renewing}, return_when=asyncio.FIRST_COMPLETED)
            release = not renewing.done()
        except asyncio.CancelledError:
            release = self.release_on_cancel
            raise
        finally:
            self._leading.clear()
            await cancel_and_wait(work, renewing)
            if release:
                await self._release_in_time()
        if not renewing.cancelled():
            renewing.result()  # a bug in renewing surfaces here
            log.error("lease %s: %s lost the leadership", self._lease_name, self.identity)
            raise LeadershipLost(f"lease {self._lease_name}: could not renew in time")
        if not work.cancelled():
            work.result()

    async def _renew_loop(self) -> None:
        """Renew every retry period; return when a renew round fails (leadership lost)."""
        while True:
            await asyncio.sleep(self.retry_period)
            if not await self._renew_round():
                return

    async def _renew_round(self) -> bool:
        deadline = self._clock() + self.renew_deadline
        while (remaining := deadline - self._clock()) > 0:
            try:
                async with asyncio.timeout(remaining):
                    attempt = await self._try_acquire_or_renew()
            except TimeoutError:
                break
            except ClusterError as exc:
                log.warning("lease %s: cannot renew: %s", self._lease_name, exc)
            else:
                if attempt is Attempt.HELD:
                    return True
                if attempt is Attempt.TAKEN:
                    log.warning("lease %s: now held by %s", self._lease_name, self.leader)
                    return False
            await asyncio.sleep(min(self.retry_period, max(0.0, deadline - self._clock())))
        return False

    # --- one attempt ------------------------------------------------------------------

    async def _try_acquire_or_renew(self) -> Attempt:
        stamp = micro_time(self._wall_clock())
        duration = max(1, math.ceil(self.lease_duration))
        try:
            lease = await self._cluster.get(LEASES, self.name, namespace=self.namespace)
        except NotFound:
            return await self._create(
                next_record(None, identity=self.identity, duration_seconds=duration, stamp=stamp)
            )
        current = LeaseRecord.from_spec(lease.get("spec"))
        now = self._clock()
        self._observed_at = observed_since(self._observed, self._observed_at, current, now)
        self._observed = current
        free = is_free(
            current,
            identity=self.identity,
            observed_at=self._observed_at,
            now=now,
            default_duration=self.lease_duration,
        )
        if not free:
            return Attempt.TAKEN
        record = next_record(
            current, identity=self.identity, duration_seconds=duration, stamp=stamp
        )
        try:
            self._remember(await self._cluster.replace(_with_spec(lease, record)))
        except Conflict:
            return Attempt.RACED
        return Attempt.HELD

    async def _create(self, record: LeaseRecord) -> Attempt:
        lease = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": record.to_spec(),
        }
        try:
            self._remember(await self._cluster.create(lease))
        except AlreadyExists:
            return Attempt.RACED
        return Attempt.HELD

    async def release(self) -> bool:
        """Give the lease up now if this process holds it (a no-op otherwise).

        Reads the lease first rather than trusting the one remembered: a write cancelled on
        its way (a renewal, or a takeover while the campaign was cancelled) may still have
        landed, and the lease is ours then. A Conflict means it changed meanwhile: read it
        again."""
        for _attempt in range(RELEASE_ATTEMPTS):
            try:
                lease = await self._cluster.get(LEASES, self.name, namespace=self.namespace)
            except NotFound:
                return False
            current = LeaseRecord.from_spec(lease.get("spec"))
            if current.holder != self.identity:
                return False
            record = released_record(current, stamp=micro_time(self._wall_clock()))
            try:
                self._remember(await self._cluster.replace(_with_spec(lease, record)))
            except Conflict:
                continue
            log.info("lease %s: %s released it", self._lease_name, self.identity)
            return True
        return False

    async def _release_in_time(self) -> None:
        try:
            async with asyncio.timeout(self.renew_deadline):
                await self.release()
        except (ClusterError, TimeoutError) as exc:
            log.warning(
                "lease %s: cannot release (it expires on its own): %s", self._lease_name, exc
            )

    # --- helpers ----------------------------------------------------------------------

    @property
    def _lease_name(self) -> str:
        return f"{self.namespace}/{self.name}"

    def _remember(self, lease: Manifest) -> None:
        self._observed = LeaseRecord.from_spec(lease.get("spec"))
        self._observed_at = self._clock()


def _with_spec(lease: Manifest, record: LeaseRecord) -> Manifest:
    updated = copy.deepcopy(lease)
    updated["spec"] = {**(lease.get("spec") or {}), **record.to_spec()}
    return updated


async def _call(callback: StoppedLeading) -> None:
    result: Any = callback()
    if result is not None:
        await result
