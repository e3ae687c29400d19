"""The broker health state machine: pure functions of (state, probe outcome, spec, now).

No I/O and no clock reads: `now` is always passed in, and every value is a frozen
dataclass, so the reconciler can decide first and act once (kopf's causes/processing).

Phases (ARCHITECTURE.md §5):

- Pending -> Ready on the first success.
- Ready -> Unhealthy after `failureThreshold` consecutive failures.
- Unhealthy (and Offline) -> Ready after `successThreshold` consecutive successes.
- Pending/Unhealthy -> Offline on a failure when there has been no success for
  `max(10 * intervalSeconds, 5 minutes)`, counted from the last success, or from when the
  broker was first seen if it never answered. The boundary itself is Offline.
- Unknown while the broker cannot be probed at all (missing Secret, invalid spec). Unknown
  is an overlay: the probe-driven phase underneath and the consecutive counters stay as
  they were (a probe that was not made is neither a success nor a failure), and the next
  real probe continues from there.

The Ready condition is derived from the phase; its lastTransitionTime changes only when
its status flips (True/False/Unknown), never when only its reason or message change.

Status writes (`status_patch`): a merge patch is written only when a reader sees a
change: phase, the Ready condition, version, activeDeployments, message,
observedGeneration, or `consecutiveFailures` moving between the buckets 0, between 1 and
failureThreshold-1, and failureThreshold or more (so a long outage costs at most three
writes, not one per probe). `lastHeartbeat` alone triggers a write only when the written
one is 30 s or more older than the last success; when a write happens anyway it carries
the fresh heartbeat, the exact failure count and the last probe latency at no extra cost.
`lastProbeLatencyMs` never triggers a write by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from kidp_ops.model.convert import from_json, to_json
from kidp_ops.model.resources import BrokerPhase, BrokerStatus, Condition, HealthCheck
from kidp_ops.times import format_time, go_duration
from kidp_ops.trust import ACCEPTED

ProbePhase = Literal["Pending", "Ready", "Unhealthy", "Offline"]
ConditionStatus = Literal["True", "False", "Unknown"]

READY = "Ready"  # the condition type this module owns
OFFLINE_INTERVALS = 10
OFFLINE_MINIMUM = timedelta(minutes=5)
HEARTBEAT_REFRESH = timedelta(seconds=30)

# Condition reasons (CamelCase, as Kubernetes conditions use them).
HEALTH_CHECK_PASSED = "HealthCheckPassed"
HEALTH_CHECK_PENDING = "HealthCheckPending"
HEALTH_CHECK_FAILED = "HealthCheckFailed"
BROKER_OFFLINE = "BrokerOffline"
CANNOT_PROBE = "CannotProbe"


# --- probe outcomes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeSuccess:
    """2xx with `status: healthy`. None means the broker did not report the value."""

    version: str | None = None
    active_deployments: int | None = None
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class ProbeFailure:
    """The probe was made and failed; `reason` is short: `timeout after 5s`, `HTTP 503`."""

    reason: str
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class CannotProbe:
    """No probe could be made: `secret ns/name not found`, an invalid spec, ..."""

    reason: str


ProbeOutcome = ProbeSuccess | ProbeFailure | CannotProbe


# --- state ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HealthState:
    """Everything the machine remembers about one broker between probes."""

    first_seen: datetime  # the Offline clock when the broker never answered
    ready_transition_time: datetime  # lastTransitionTime of the Ready condition
    probe_phase: ProbePhase = "Pending"
    cannot_probe: str | None = None  # set: the visible phase is Unknown, with this message
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    last_success: datetime | None = None
    last_failure: str | None = None  # reason of the last failure; cleared by a success
    version: str | None = None
    active_deployments: int = 0
    last_probe_latency_ms: float | None = None

    @classmethod
    def new(cls, *, now: datetime) -> HealthState:
        """A broker seen for the first time: Pending, never probed."""
        return cls(first_seen=now, ready_transition_time=now)

    @classmethod
    def from_status(
        cls, status: BrokerStatus, *, now: datetime, first_seen: datetime | None = None
    ) -> HealthState:
        """Rebuild the state from a written status (after a restart or a leader change).

        `first_seen` (e.g. the creation timestamp) starts the Offline clock of a broker that
        never answered; it defaults to `now`, which errs on the side of waiting longer.
        The heartbeat may lag the real last success by up to 30 s: also the patient side.
        """
        written = status.phase or "Pending"
        failing = status.consecutive_failures > 0 and written != "Unknown"
        state = cls(
            first_seen=first_seen or now,
            ready_transition_time=now,
            probe_phase="Pending" if written == "Unknown" else written,
            cannot_probe=(status.message or "cannot probe") if written == "Unknown" else None,
            consecutive_failures=status.consecutive_failures,
            last_success=status.last_heartbeat,
            last_failure=(status.message or "health check failed") if failing else None,
            version=status.version,
            active_deployments=status.active_deployments,
            last_probe_latency_ms=status.last_probe_latency_ms,
        )
        written_ready = status.condition(READY)
        if (
            written_ready is not None
            and written_ready.last_transition_time is not None
            and written_ready.status == _condition_status(state)
        ):
            state = replace(state, ready_transition_time=written_ready.last_transition_time)
        return state

    @property
    def phase(self) -> BrokerPhase:
        return "Unknown" if self.cannot_probe is not None else self.probe_phase

    @property
    def since(self) -> datetime:
        """Start of the current stretch without a success (the Offline clock)."""
        return self.last_success or self.first_seen

    @property
    def message(self) -> str | None:
        """The status message: why it cannot be probed, or the last failure, or nothing."""
        return self.cannot_probe if self.cannot_probe is not None else self.last_failure


def offline_after(health_check: HealthCheck) -> timedelta:
    """How long without a success makes a Pending or Unhealthy broker Offline."""
    return max(
        OFFLINE_MINIMUM, timedelta(seconds=OFFLINE_INTERVALS * health_check.interval_seconds)
    )


# --- transitions ---------------------------------------------------------------------


def advance(
    state: HealthState, outcome: ProbeOutcome, *, health_check: HealthCheck, now: datetime
) -> HealthState:
    """Fold one probe outcome into the state."""
    match outcome:
        case CannotProbe(reason=reason):
            new = replace(state, cannot_probe=reason)
        case ProbeSuccess():
            new = _succeeded(state, outcome, health_check=health_check, now=now)
        case ProbeFailure():
            new = _failed(state, outcome, health_check=health_check, now=now)
    if _condition_status(new) != _condition_status(state):
        new = replace(new, ready_transition_time=now)
    return new


def _succeeded(
    state: HealthState, outcome: ProbeSuccess, *, health_check: HealthCheck, now: datetime
) -> HealthState:
    successes = state.consecutive_successes + 1
    phase = state.probe_phase
    if phase == "Pending" or (
        phase in ("Unhealthy", "Offline") and successes >= health_check.success_threshold
    ):
        phase = "Ready"
    return replace(
        state,
        probe_phase=phase,
        cannot_probe=None,
        consecutive_failures=0,
        consecutive_successes=successes,
        last_success=now,
        last_failure=None,
        version=state.version if outcome.version is None else outcome.version,
        active_deployments=(
            state.active_deployments
            if outcome.active_deployments is None
            else outcome.active_deployments
        ),
        last_probe_latency_ms=outcome.latency_ms,
    )


def _failed(
    state: HealthState, outcome: ProbeFailure, *, health_check: HealthCheck, now: datetime
) -> HealthState:
    failures = state.consecutive_failures + 1
    phase = state.probe_phase
    if phase == "Ready" and failures >= health_check.failure_threshold:
        phase = "Unhealthy"
    if phase in ("Pending", "Unhealthy") and now - state.since >= offline_after(health_check):
        phase = "Offline"
    return replace(
        state,
        probe_phase=phase,
        cannot_probe=None,
        consecutive_failures=failures,
        consecutive_successes=0,
        last_failure=outcome.reason,
        last_probe_latency_ms=(
            state.last_probe_latency_ms if outcome.latency_ms is None else outcome.latency_ms
        ),
    )


# --- the Ready condition -------------------------------------------------------------


def _condition_status(state: HealthState) -> ConditionStatus:
    phase = state.phase
    if phase == "Ready":
        return "True"
    if phase == "Unknown" or (phase == "Pending" and state.last_failure is None):
        return "Unknown"
    return "False"


def ready_condition(
    state: HealthState, *, health_check: HealthCheck, generation: int | None = None
) -> Condition:
    """The Ready condition that matches the state's phase."""
    status = _condition_status(state)
    reason, message = _reason_and_message(state, health_check)
    return Condition(
        type=READY,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=state.ready_transition_time,
        observed_generation=generation,
    )


def _reason_and_message(state: HealthState, health_check: HealthCheck) -> tuple[str, str]:
    failure = state.last_failure or "health check failed"
    match state.phase:
        case "Ready":
            return HEALTH_CHECK_PASSED, "the broker answers its health check"
        case "Unknown":
            return CANNOT_PROBE, state.cannot_probe or "cannot probe"
        case "Offline":
            window = go_duration(offline_after(health_check).total_seconds())
            return BROKER_OFFLINE, f"no successful health check for over {window}: {failure}"
        case "Pending" if state.last_failure is None:
            return HEALTH_CHECK_PENDING, "waiting for the first successful health check"
        case _:
            return HEALTH_CHECK_FAILED, failure


# --- status writes -------------------------------------------------------------------


def failure_bucket(consecutive_failures: int, *, failure_threshold: int) -> int:
    """0: none; 1: some, below the threshold; 2: at or over the threshold."""
    if consecutive_failures <= 0:
        return 0
    return 1 if consecutive_failures < failure_threshold else 2


def visible_status(
    state: HealthState,
    *,
    health_check: HealthCheck,
    generation: int | None,
    conditions: tuple[Condition, ...] = (),
) -> dict[str, Any]:
    """The reader-visible status fields of a state, JSON-shaped (None: absent).

    `conditions` are the written ones: other condition types are kept in order and the
    Ready condition is replaced (or appended). An `Accepted` condition (only ever False, on
    a Broker outside the broker namespaces) is dropped: a probed Broker is accepted."""
    ready = ready_condition(state, health_check=health_check, generation=generation)
    merged = [c for c in conditions if c.type not in (READY, ACCEPTED)]
    at = next((i for i, c in enumerate(conditions) if c.type == READY), len(merged))
    merged.insert(at, ready)
    return {
        "phase": state.phase,
        "conditions": [to_json(c) for c in merged],
        "version": state.version,
        "activeDeployments": state.active_deployments,
        "message": state.message,
        "observedGeneration": generation,
    }


def status_patch(
    previous: BrokerStatus | Mapping[str, Any] | None,
    state: HealthState,
    *,
    health_check: HealthCheck,
    generation: int | None,
) -> dict[str, Any] | None:
    """The merge patch of `.status` that brings the written status to `state`, or None.

    `previous` is the status as last written (a BrokerStatus, or the manifest's status
    dict). None means nothing a reader would notice has changed (see the module doc).
    """
    written = _as_status(previous)
    # Compare with what is really stored when we have it: a field left at its default
    # (activeDeployments 0) but never written is still written once, for readers.
    old = dict(previous) if isinstance(previous, Mapping) else to_json(written)
    desired = visible_status(
        state,
        health_check=health_check,
        generation=generation if generation is not None else written.observed_generation,
        conditions=written.conditions,
    )
    patch: dict[str, Any] = {k: v for k, v in desired.items() if old.get(k) != v}
    threshold = health_check.failure_threshold
    crossed = failure_bucket(
        written.consecutive_failures, failure_threshold=threshold
    ) != failure_bucket(state.consecutive_failures, failure_threshold=threshold)
    if not (patch or crossed or _heartbeat_due(written, state)):
        return None
    if state.consecutive_failures != written.consecutive_failures:
        patch["consecutiveFailures"] = state.consecutive_failures
    if state.last_success is not None and format_time(state.last_success) != old.get(
        "lastHeartbeat"
    ):
        patch["lastHeartbeat"] = format_time(state.last_success)
    latency = state.last_probe_latency_ms
    if latency is not None and latency != written.last_probe_latency_ms:
        patch["lastProbeLatencyMs"] = latency
    return patch


def _heartbeat_due(written: BrokerStatus, state: HealthState) -> bool:
    if state.last_success is None:
        return False
    if written.last_heartbeat is None:
        return True
    return state.last_success - written.last_heartbeat >= HEARTBEAT_REFRESH


def _as_status(previous: BrokerStatus | Mapping[str, Any] | None) -> BrokerStatus:
    if previous is None:
        return BrokerStatus()
    if isinstance(previous, BrokerStatus):
        return previous
    return from_json(BrokerStatus, previous)
