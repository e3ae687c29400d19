"""The pure health state machine: examples at the boundaries, then properties over random
outcome sequences (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kidp_ops.cluster.patching import merge_patch
from kidp_ops.health.states import (
    HEARTBEAT_REFRESH,
    CannotProbe,
    HealthState,
    ProbeFailure,
    ProbeOutcome,
    ProbeSuccess,
    advance,
    offline_after,
    ready_condition,
    status_patch,
    visible_status,
)
from kidp_ops.model.convert import from_json
from kidp_ops.model.resources import BrokerStatus, HealthCheck
from kidp_ops.times import parse_time

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
HC = HealthCheck()  # interval 30, timeout 5, failureThreshold 3, successThreshold 1
OK = ProbeSuccess(version="1.2.3", active_deployments=4, latency_ms=3.5)
FAIL = ProbeFailure("timeout after 5s", latency_ms=5000.0)


def run(
    outcomes: list[ProbeOutcome],
    *,
    health_check: HealthCheck = HC,
    step: timedelta = timedelta(seconds=30),
    state: HealthState | None = None,
) -> HealthState:
    now = T0
    state = state or HealthState.new(now=T0)
    for outcome in outcomes:
        now += step
        state = advance(state, outcome, health_check=health_check, now=now)
    return state


# --- phases --------------------------------------------------------------------------


def test_new_broker_is_pending_with_unknown_condition() -> None:
    state = HealthState.new(now=T0)
    assert state.phase == "Pending"
    cond = ready_condition(state, health_check=HC, generation=2)
    assert (cond.type, cond.status, cond.reason) == ("Ready", "Unknown", "HealthCheckPending")
    assert cond.last_transition_time == T0 and cond.observed_generation == 2


def test_first_success_makes_pending_ready_and_takes_body_values() -> None:
    state = run([OK], health_check=HealthCheck(success_threshold=3))
    assert state.phase == "Ready"
    assert (state.version, state.active_deployments, state.last_probe_latency_ms) == (
        "1.2.3",
        4,
        3.5,
    )
    cond = ready_condition(state, health_check=HC)
    assert (cond.status, cond.reason) == ("True", "HealthCheckPassed")
    assert state.message is None


def test_success_without_values_keeps_the_previous_ones() -> None:
    state = run([OK, ProbeSuccess(latency_ms=1.0)])
    assert (state.version, state.active_deployments) == ("1.2.3", 4)


def test_one_failure_is_not_enough_when_threshold_is_three() -> None:
    state = run([OK, FAIL, FAIL])
    assert state.phase == "Ready"
    assert state.consecutive_failures == 2
    assert state.message == "timeout after 5s"
    assert run([OK, FAIL, FAIL, FAIL]).phase == "Unhealthy"


def test_threshold_one_flips_on_the_first_failure() -> None:
    state = run([OK, FAIL], health_check=HealthCheck(failure_threshold=1))
    assert state.phase == "Unhealthy"
    cond = ready_condition(state, health_check=HC)
    assert (cond.status, cond.reason, cond.message) == (
        "False",
        "HealthCheckFailed",
        "timeout after 5s",
    )


def test_a_success_resets_the_failure_count() -> None:
    state = run([OK, FAIL, FAIL, OK, FAIL, FAIL])
    assert state.phase == "Ready"
    assert state.consecutive_failures == 2


def test_unhealthy_needs_success_threshold_successes() -> None:
    hc = HealthCheck(failure_threshold=1, success_threshold=2)
    assert run([OK, FAIL, OK], health_check=hc).phase == "Unhealthy"
    assert run([OK, FAIL, OK, FAIL, OK], health_check=hc).phase == "Unhealthy"
    assert run([OK, FAIL, OK, OK], health_check=hc).phase == "Ready"


def test_pending_failures_stay_pending_with_false_condition() -> None:
    state = run([FAIL, FAIL, FAIL, FAIL])
    assert state.phase == "Pending"
    cond = ready_condition(state, health_check=HC)
    assert (cond.status, cond.reason, cond.message) == (
        "False",
        "HealthCheckFailed",
        "timeout after 5s",
    )
    assert cond.last_transition_time == T0 + timedelta(seconds=30)  # Unknown -> False


def test_offline_window_is_ten_intervals_or_five_minutes() -> None:
    assert offline_after(HealthCheck(interval_seconds=5)) == timedelta(minutes=5)
    assert offline_after(HealthCheck(interval_seconds=30)) == timedelta(minutes=5)
    assert offline_after(HealthCheck(interval_seconds=60)) == timedelta(minutes=10)


def test_offline_boundary_from_first_seen_when_never_successful() -> None:
    start = HealthState.new(now=T0)
    just_before = advance(start, FAIL, health_check=HC, now=T0 + timedelta(seconds=299))
    assert just_before.phase == "Pending"
    at = advance(just_before, FAIL, health_check=HC, now=T0 + timedelta(seconds=300))
    assert at.phase == "Offline"
    cond = ready_condition(at, health_check=HC)
    assert (cond.status, cond.reason) == ("False", "BrokerOffline")
    assert cond.message == "no successful health check for over 5m0s: timeout after 5s"
    assert cond.last_transition_time == T0 + timedelta(seconds=299)  # False already


def test_offline_boundary_from_last_success() -> None:
    hc = HealthCheck(interval_seconds=60, failure_threshold=1)
    ok = advance(HealthState.new(now=T0), OK, health_check=hc, now=T0)
    unhealthy = advance(ok, FAIL, health_check=hc, now=T0 + timedelta(seconds=60))
    assert unhealthy.phase == "Unhealthy"
    before = advance(unhealthy, FAIL, health_check=hc, now=T0 + timedelta(seconds=599))
    assert before.phase == "Unhealthy"
    assert advance(before, FAIL, health_check=hc, now=T0 + timedelta(seconds=600)).phase == (
        "Offline"
    )


def test_ready_never_goes_offline_before_failure_threshold() -> None:
    hc = HealthCheck(failure_threshold=5)
    ok = advance(HealthState.new(now=T0), OK, health_check=hc, now=T0)
    late = advance(ok, FAIL, health_check=hc, now=T0 + timedelta(hours=1))
    assert late.phase == "Ready"


def test_offline_recovers_after_success_threshold() -> None:
    hc = HealthCheck(success_threshold=2)
    offline = advance(HealthState.new(now=T0), FAIL, health_check=hc, now=T0 + timedelta(hours=1))
    assert offline.phase == "Offline"
    once = advance(offline, OK, health_check=hc, now=T0 + timedelta(hours=1, seconds=30))
    assert once.phase == "Offline"
    twice = advance(once, OK, health_check=hc, now=T0 + timedelta(hours=1, seconds=60))
    assert twice.phase == "Ready"


def test_cannot_probe_is_unknown_and_keeps_the_counters() -> None:
    ready = run([OK, FAIL, FAIL])
    unknown = advance(ready, CannotProbe("secret ns/s not found"), health_check=HC, now=T0)
    assert unknown.phase == "Unknown"
    assert unknown.message == "secret ns/s not found"
    assert unknown.consecutive_failures == 2
    cond = ready_condition(unknown, health_check=HC)
    assert (cond.status, cond.reason, cond.message) == (
        "Unknown",
        "CannotProbe",
        "secret ns/s not found",
    )
    back = advance(unknown, FAIL, health_check=HC, now=T0)
    assert back.phase == "Unhealthy"  # the third consecutive probe failure


def test_unknown_returns_to_normal_flow_on_success() -> None:
    unknown = advance(HealthState.new(now=T0), CannotProbe("invalid spec"), health_check=HC, now=T0)
    assert run([OK], state=unknown).phase == "Ready"


def test_transition_time_moves_only_when_status_flips() -> None:
    hc = HealthCheck(failure_threshold=1)
    t1, t2, t3 = (T0 + timedelta(seconds=s) for s in (10, 20, 30))
    ready = advance(HealthState.new(now=T0), OK, health_check=hc, now=t1)
    assert ready.ready_transition_time == t1
    failed = advance(ready, FAIL, health_check=hc, now=t2)
    refused = advance(failed, ProbeFailure("connection refused"), health_check=hc, now=t3)
    assert failed.ready_transition_time == refused.ready_transition_time == t2
    assert ready_condition(refused, health_check=hc).message == "connection refused"


# --- status patches ------------------------------------------------------------------


def test_first_patch_writes_everything() -> None:
    state = run([OK])
    patch = status_patch(None, state, health_check=HC, generation=3)
    assert patch == {
        "phase": "Ready",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "HealthCheckPassed",
                "message": "the broker answers its health check",
                "lastTransitionTime": "2026-01-01T12:00:30Z",
                "observedGeneration": 3,
            }
        ],
        "version": "1.2.3",
        "activeDeployments": 4,
        "observedGeneration": 3,
        "lastHeartbeat": "2026-01-01T12:00:30Z",
        "lastProbeLatencyMs": 3.5,
    }


def _written(state: HealthState, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    patch = status_patch(previous, state, health_check=HC, generation=1)
    written: dict[str, Any] = merge_patch(previous or {}, patch or {})
    return written


def test_heartbeat_refreshes_at_most_every_30_seconds() -> None:
    ok = advance(HealthState.new(now=T0), OK, health_check=HC, now=T0)
    written = _written(ok)
    steady = ProbeSuccess(version="1.2.3", active_deployments=4, latency_ms=9.0)
    soon = advance(ok, steady, health_check=HC, now=T0 + timedelta(seconds=29))
    assert status_patch(written, soon, health_check=HC, generation=1) is None
    later = advance(soon, steady, health_check=HC, now=T0 + HEARTBEAT_REFRESH)
    assert status_patch(written, later, health_check=HC, generation=1) == {
        "lastHeartbeat": "2026-01-01T12:00:30Z",
        "lastProbeLatencyMs": 9.0,
    }


def test_failures_write_only_when_crossing_a_bucket() -> None:
    state = run([OK])
    written = _written(state)
    patches = []
    for _ in range(5):
        state = advance(state, FAIL, health_check=HC, now=T0 + timedelta(seconds=40))
        patch = status_patch(written, state, health_check=HC, generation=1)
        patches.append(patch)
        written = merge_patch(written, patch or {})
    assert patches[0] == {
        "message": "timeout after 5s",
        "consecutiveFailures": 1,
        "lastProbeLatencyMs": 5000.0,
    }
    assert patches[1] is None  # 2 of 3: same message, same bucket
    assert patches[2] is not None and patches[2]["phase"] == "Unhealthy"
    assert patches[2]["consecutiveFailures"] == 3
    assert patches[3] is None and patches[4] is None


def test_active_deployments_and_version_changes_are_written() -> None:
    state = run([OK])
    written = _written(state)
    at = T0 + timedelta(seconds=30)  # the same instant as the written heartbeat
    busier = advance(
        state, ProbeSuccess(active_deployments=5, latency_ms=3.5), health_check=HC, now=at
    )
    assert status_patch(written, busier, health_check=HC, generation=1) == {"activeDeployments": 5}
    upgraded = advance(
        state, ProbeSuccess(version="2.0.0", latency_ms=3.5), health_check=HC, now=at
    )
    assert status_patch(written, upgraded, health_check=HC, generation=1) == {"version": "2.0.0"}


def test_a_write_carries_the_fresh_heartbeat_for_free() -> None:
    state = run([OK])
    written = _written(state)
    busier = advance(
        state,
        ProbeSuccess(active_deployments=5, latency_ms=3.5),
        health_check=HC,
        now=T0 + timedelta(seconds=40),
    )
    assert status_patch(written, busier, health_check=HC, generation=1) == {
        "activeDeployments": 5,
        "lastHeartbeat": "2026-01-01T12:00:40Z",
    }


def test_recovery_clears_message_and_keeps_other_conditions() -> None:
    hc = HealthCheck(failure_threshold=1)
    state = run([OK, FAIL], health_check=hc)
    base = {"conditions": [{"type": "Cordoned", "status": "False"}]}
    previous = merge_patch(base, status_patch(base, state, health_check=hc, generation=1) or {})
    assert [c["type"] for c in previous["conditions"]] == ["Cordoned", "Ready"]
    recovered = advance(state, OK, health_check=hc, now=T0 + timedelta(minutes=2))
    patch = status_patch(previous, recovered, health_check=hc, generation=1)
    assert patch is not None
    assert patch["message"] is None and patch["phase"] == "Ready"
    assert patch["consecutiveFailures"] == 0
    assert [c["type"] for c in patch["conditions"]] == ["Cordoned", "Ready"]


def test_generation_change_is_written() -> None:
    state = run([OK])
    written = _written(state)
    patch = status_patch(written, state, health_check=HC, generation=2)
    assert patch is not None and patch["observedGeneration"] == 2
    assert patch["conditions"][0]["observedGeneration"] == 2


def test_patch_accepts_broker_status() -> None:
    state = run([OK])
    written = from_json(BrokerStatus, _written(state))
    assert status_patch(written, state, health_check=HC, generation=1) is None


def test_restored_state_writes_nothing() -> None:
    state = run([OK, FAIL, FAIL, FAIL])
    written = _written(state)
    restored = HealthState.from_status(
        from_json(BrokerStatus, written), now=T0 + timedelta(hours=1)
    )
    assert restored.phase == "Unhealthy"
    assert status_patch(written, restored, health_check=HC, generation=1) is None


# --- properties ----------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    kind: str  # ok | fail | cannot
    seconds: int
    variant: int
    bump_generation: bool


REASONS = ("timeout after 5s", "connection refused", "HTTP 503")
steps = st.builds(
    Step,
    kind=st.sampled_from(("ok", "ok", "fail", "fail", "cannot")),
    seconds=st.integers(min_value=0, max_value=150),
    variant=st.integers(min_value=0, max_value=2),
    bump_generation=st.sampled_from((False,) * 9 + (True,)),
)
health_checks = st.builds(
    HealthCheck,
    interval_seconds=st.integers(min_value=5, max_value=60),
    failure_threshold=st.integers(min_value=1, max_value=5),
    success_threshold=st.integers(min_value=1, max_value=4),
)


def outcome_for(step: Step) -> ProbeOutcome:
    if step.kind == "ok":
        return ProbeSuccess(
            version=(None, "1.0", "1.1")[step.variant],
            active_deployments=(None, 0, 7)[step.variant],
            latency_ms=float(step.seconds),
        )
    if step.kind == "fail":
        return ProbeFailure(REASONS[step.variant], latency_ms=float(step.seconds))
    return CannotProbe(("secret ns/s not found", "invalid spec: endpoint")[step.variant % 2])


def bucket(failures: int, threshold: int) -> int:
    """The test's own copy of the write rule: none / below the threshold / at or over it."""
    return 0 if failures == 0 else (1 if failures < threshold else 2)


def visible(written: dict[str, Any]) -> dict[str, Any]:
    status = from_json(BrokerStatus, written)
    return {
        "phase": status.phase,
        "conditions": written.get("conditions"),
        "version": status.version,
        "activeDeployments": status.active_deployments,
        "message": status.message,
        "observedGeneration": status.observed_generation,
    }


def expected(state: HealthState, hc: HealthCheck, generation: int) -> dict[str, Any]:
    return visible_status(state, health_check=hc, generation=generation)


@settings(max_examples=300, deadline=None)
@given(hc=health_checks, sequence=st.lists(steps, max_size=60))
def test_properties_over_random_outcome_sequences(hc: HealthCheck, sequence: list[Step]) -> None:
    now, generation = T0, 1
    state = HealthState.new(now=T0)
    written: dict[str, Any] = {}
    probes: list[str] = []  # "ok"/"fail" of real probes, oldest first
    for step in sequence:
        now += timedelta(seconds=step.seconds)
        generation += step.bump_generation
        outcome = outcome_for(step)
        old = state
        state = advance(old, outcome, health_check=hc, now=now)
        if step.kind != "cannot":
            probes.append(step.kind)

        _check_thresholds(old, state, probes, hc)
        _check_offline(old, state, step, hc, now)
        _check_transition_time(old, state, hc, now)
        written = _check_patch(written, state, hc, generation)


def _check_thresholds(
    old: HealthState, new: HealthState, probes: list[str], hc: HealthCheck
) -> None:
    if old.probe_phase == "Ready" and new.probe_phase in ("Unhealthy", "Offline"):
        assert new.consecutive_failures >= hc.failure_threshold
        assert probes[-hc.failure_threshold :] == ["fail"] * hc.failure_threshold
    if old.probe_phase in ("Unhealthy", "Offline") and new.probe_phase == "Ready":
        assert probes[-hc.success_threshold :] == ["ok"] * hc.success_threshold
    if new.probe_phase == "Ready" and old.probe_phase != "Ready":
        assert probes[-1] == "ok"


def _check_offline(
    old: HealthState, new: HealthState, step: Step, hc: HealthCheck, now: datetime
) -> None:
    window = offline_after(hc)
    if new.probe_phase == "Offline" and old.probe_phase != "Offline":
        assert step.kind == "fail"
        assert now - old.since >= window
    if step.kind == "fail" and new.probe_phase in ("Pending", "Unhealthy"):
        assert now - new.since < window


def _check_transition_time(
    old: HealthState, new: HealthState, hc: HealthCheck, now: datetime
) -> None:
    before = ready_condition(old, health_check=hc)
    after = ready_condition(new, health_check=hc)
    if before.status != after.status:
        assert after.last_transition_time == now
    else:
        assert after.last_transition_time == before.last_transition_time


def _check_patch(
    written: dict[str, Any], new: HealthState, hc: HealthCheck, generation: int
) -> dict[str, Any]:
    patch = status_patch(written, new, health_check=hc, generation=generation)
    threshold = hc.failure_threshold
    written_failures = written.get("consecutiveFailures", 0)
    written_beat = parse_time(written.get("lastHeartbeat"))
    beat_due = new.last_success is not None and (
        written_beat is None or new.last_success - written_beat >= HEARTBEAT_REFRESH
    )
    unchanged = (
        visible(written) == expected(new, hc, generation)
        and bucket(written_failures, threshold) == bucket(new.consecutive_failures, threshold)
        and not beat_due
    )
    assert (patch is None) == unchanged
    after: dict[str, Any] = merge_patch(written, patch or {})
    # Applying the patch reproduces the visible state; the count is exact up to its bucket.
    assert visible(after) == expected(new, hc, generation)
    assert bucket(after.get("consecutiveFailures", 0), threshold) == bucket(
        new.consecutive_failures, threshold
    )
    beat = parse_time(after.get("lastHeartbeat"))
    if new.last_success is None:
        assert beat is None
    else:
        assert beat is not None and timedelta(0) <= new.last_success - beat < HEARTBEAT_REFRESH
    # Writing again changes nothing, and neither does a restart from what was written.
    assert status_patch(after, new, health_check=hc, generation=generation) is None
    restored = HealthState.from_status(from_json(BrokerStatus, after), now=new.first_seen)
    assert status_patch(after, restored, health_check=hc, generation=generation) is None
    return after
