"""The knobs' parsing and pure semantics, and the simulation driven by a fake clock."""

from __future__ import annotations

import pytest

from kidp_ops.brokerapi.models import ProvisionRequest
from kidp_ops.simbroker.config import BrokerConfig, RetryPolicy, parse_broker_ref, worth_retrying
from kidp_ops.simbroker.knobs import (
    HealthMode,
    Knobs,
    parse_capacity,
    parse_delay,
    parse_failure_rate,
    parse_health_mode,
)
from kidp_ops.simbroker.simulation import AtCapacity, Simulation, deployment_id_for
from kidp_ops.times import go_duration
from tests.support.clocks import ManualClock


@pytest.mark.parametrize("text", ["healthy", "degraded", "fail", "hang", "garbage", "huge"])
def test_simple_health_modes_parse(text: str) -> None:
    mode = parse_health_mode(text)
    assert str(mode) == text
    assert mode.at(0) == mode.at(1e6) == text


def test_flap_alternates_every_period() -> None:
    mode = parse_health_mode("flap:10")
    assert mode == HealthMode("flap", 10.0)
    assert str(mode) == "flap:10"
    assert [mode.at(t) for t in (0, 9.9, 10, 19.9, 20, 35)] == [
        "healthy",
        "healthy",
        "fail",
        "fail",
        "healthy",
        "fail",
    ]


@pytest.mark.parametrize("text", ["", "sick", "flap", "flap:", "flap:0", "flap:-1", "flap:x"])
def test_bad_health_modes_name_the_allowed_ones(text: str) -> None:
    with pytest.raises(ValueError, match="allowed: healthy, degraded"):
        parse_health_mode(text)


@pytest.mark.parametrize(
    ("parse", "bad"),
    [
        (parse_delay, "-1"),
        (parse_delay, "nan"),
        (parse_delay, "inf"),
        (parse_delay, "soon"),
        (parse_failure_rate, "1.01"),
        (parse_failure_rate, "-0.1"),
        (parse_capacity, "-1"),
        (parse_capacity, "2.5"),
    ],
)
def test_bad_numbers_are_refused(parse: object, bad: str) -> None:
    with pytest.raises(ValueError):
        parse(bad)  # type: ignore[operator]


def test_knobs_change_with_validation() -> None:
    knobs = Knobs()
    changed = knobs.changed(delay="0.5", capacity=3, health_mode="flap:2")
    assert (changed.delay, changed.capacity, str(changed.health_mode)) == (0.5, 3, "flap:2")
    with pytest.raises(ValueError, match="unknown knob"):
        knobs.changed(speed=1)
    with pytest.raises(ValueError):
        knobs.changed(failure_rate=2)
    assert "capacity unlimited" in knobs.describe()
    assert "capacity 3" in changed.describe()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.9, "59s"), (90, "1m30s"), (3600, "1h0m0s"), (8130, "2h15m30s")],
)
def test_uptime_reads_like_a_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_broker_refs() -> None:
    assert parse_broker_ref("kidp-system/dev-aws.us-1") == ("kidp-system", "dev-aws.us-1")
    for bad in ("noslash", "/x", "x/", "Upper/x", "a/b/c"):
        with pytest.raises(ValueError, match="NAMESPACE/NAME"):
            parse_broker_ref(bad)


def test_retry_policy_is_bounded() -> None:
    policy = RetryPolicy(attempts=5, first_backoff=0.5, factor=2, max_backoff=1.5)
    assert [policy.backoff(a) for a in (2, 3, 4, 5)] == [0.5, 1.0, 1.5, 1.5]
    assert worth_retrying(None)
    assert worth_retrying(503)
    assert worth_retrying(429)
    assert not worth_retrying(401)
    assert not worth_retrying(404)


def test_config_repr_hides_secrets() -> None:
    config = BrokerConfig(api_key="s3cret", token="t0ken")
    assert "s3cret" not in repr(config)
    assert "t0ken" not in repr(config)
    assert config.auth_description() == "api-key or bearer token"


# --- the simulation on a fake clock (no server, no sleeping) -------------------------------


async def test_flap_uses_the_simulations_clock_from_when_it_was_set() -> None:
    clock = ManualClock()
    sim = Simulation(name="ns/b", clock=clock)
    clock.advance(7)
    sim.update_knobs(health_mode="flap:5")
    assert sim.health_mode_now() == "healthy"
    clock.advance(5)
    assert sim.health_mode_now() == "fail"
    clock.advance(5)
    assert sim.health_mode_now() == "healthy"
    assert sim.health().uptime == "17s"
    await sim.close()


async def test_capacity_and_idempotency_in_the_simulation() -> None:
    sim = Simulation(name="ns/b", knobs=Knobs(delay=60, capacity=1))
    request = ProvisionRequest(
        resource_type="Database", resource_name="a", namespace="n", request_id="r1"
    )
    first, created = sim.provision(request)
    again, created_again = sim.provision(request)
    assert (created, created_again) == (True, False)
    assert first is again
    assert first.deployment_id == deployment_id_for("ns/b", "r1")
    with pytest.raises(AtCapacity, match="1 of 1"):
        sim.provision(request.model_copy(update={"request_id": "r2"}))
    assert (sim.total, sim.active) == (1, 1)
    await sim.close()  # cancels the pending timer


def test_deployment_ids_differ_per_broker_and_request() -> None:
    ids = {deployment_id_for(b, r) for b in ("a/x", "a/y") for r in ("1", "2")}
    assert len(ids) == 4
