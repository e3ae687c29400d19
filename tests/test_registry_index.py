"""BrokerRegistry (kidp_ops/registry.py): the index decides exactly as the linear scan, the
informer's events take effect at once, and reservations spread a burst and are released."""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kidp_ops import registry as registry_module
from kidp_ops import selection
from kidp_ops.model.resources import (
    Broker,
    BrokerPhase,
    BrokerSpec,
    BrokerStatus,
    Capability,
    ObjectMeta,
)
from kidp_ops.registry import BrokerRegistry
from kidp_ops.selection import SelectionCriteria, failed_filter
from tests.conftest import broker_manifest

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
DB = SelectionCriteria("Database")
PG = SelectionCriteria("Database", "postgresql")


class FakeClock:
    """Time driven by the test, never by the machine."""

    def __init__(self, moment: datetime = NOW) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


def manifest(
    name: str = "b1",
    namespace: str = "kidp-system",
    *,
    phase: str | None = "Ready",
    active: int = 0,
    heartbeat_age: float | None = 10.0,
    **spec: Any,
) -> dict[str, Any]:
    """A Broker manifest as the API returns it: spec (CRD-defaulted later) and status."""
    body = broker_manifest(name, namespace, **spec)
    status: dict[str, Any] = {"activeDeployments": active}
    if phase is not None:
        status["phase"] = phase
    if heartbeat_age is not None:
        moment = NOW - timedelta(seconds=heartbeat_age)
        status["lastHeartbeat"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body["status"] = status
    return body


def fresh(clock: FakeClock | None = None, **kwargs: Any) -> BrokerRegistry:
    return BrokerRegistry(clock=clock or FakeClock(), **kwargs)


def chosen_key(registry: BrokerRegistry, criteria: SelectionCriteria = DB, **kw: Any) -> str | None:
    candidate = registry.select(criteria, now=kw.pop("now", NOW), **kw)
    return None if candidate is None else candidate.broker.key


# --- the informer's events take effect at once -----------------------------------------------


def test_added_broker_is_selectable_at_once() -> None:
    registry = fresh()
    assert registry.select(DB, now=NOW) is None
    registry.handle("ADDED", manifest("a"))
    assert len(registry) == 1
    assert chosen_key(registry) == "kidp-system/a"
    assert chosen_key(registry, PG) == "kidp-system/a"
    broker = registry.get("kidp-system/a")
    assert broker is not None
    assert broker.spec.max_concurrent_deployments == 10  # CRD defaults applied


def test_broker_turning_unhealthy_is_never_selected() -> None:
    registry = fresh()
    registry.handle("ADDED", manifest("a", priority=200))
    registry.handle("ADDED", manifest("b"))
    assert chosen_key(registry) == "kidp-system/a"
    registry.handle("MODIFIED", manifest("a", priority=200, phase="Unhealthy"))
    for criteria in (DB, PG, SelectionCriteria("Database", "postgresql", "aws", "us-east-1")):
        assert chosen_key(registry, criteria) == "kidp-system/b"
    registry.handle("MODIFIED", manifest("a", priority=200))  # Ready again: back at once
    assert chosen_key(registry) == "kidp-system/a"


def test_deleted_broker_is_gone() -> None:
    registry = fresh()
    registry.handle("ADDED", manifest("a"))
    registry.handle("DELETED", manifest("a"))
    assert len(registry) == 0
    assert registry.get("kidp-system/a") is None
    assert registry.select(DB, now=NOW) is None
    assert list(registry.brokers()) == []
    registry.handle("DELETED", manifest("a"))  # twice is harmless
    assert not registry.remove("kidp-system/a")


def test_cordoned_broker_is_excluded_and_explained() -> None:
    registry = fresh()
    registry.handle("ADDED", manifest("a", unschedulable=True))
    assert registry.select(DB, now=NOW) is None
    [candidate] = registry.explain(DB, now=NOW)
    assert candidate.rejected == "cordoned (unschedulable)"
    registry.handle("MODIFIED", manifest("a", unschedulable=False))
    assert chosen_key(registry) == "kidp-system/a"


@pytest.mark.parametrize(
    "bad",
    [
        {"spec": {"priority": "high"}},  # no endpoint, no cloudProvider
        {"spec": None},
        {"spec": {"endpoint": "http://x", "cloudProvider": "aws", "priority": "high"}},
        {"spec": {"endpoint": "http://x", "cloudProvider": "aws", "region": ["a"]}},
        {"spec": {"endpoint": "http://x", "cloudProvider": "aws",
                  "capabilities": [{"resourceType": "Database", "regions": [{"x": 1}]}]}},
        {"spec": {"endpoint": "http://x", "cloudProvider": "aws", "capabilities": ["Database"]}},
        {"spec": {"endpoint": "http://x", "cloudProvider": "aws"},
         "status": {"lastHeartbeat": "yesterday"}},
        {"spec": {"endpoint": "http://x", "cloudProvider": "aws"},
         "status": {"activeDeployments": "3"}},
    ],
)  # fmt: skip
def test_unreadable_manifest_is_logged_and_removes_the_key(
    bad: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    registry = fresh()
    registry.handle("ADDED", manifest("a"))
    registry.handle("ADDED", manifest("b"))
    with caplog.at_level(logging.WARNING, logger="kidp_ops.registry"):
        registry.handle("MODIFIED", {"metadata": {"name": "a", "namespace": "kidp-system"}, **bad})
    assert registry.get("kidp-system/a") is None
    assert [r.name for r in caplog.records] == ["kidp_ops.registry"]
    assert "kidp-system/a" in caplog.records[0].getMessage()
    assert chosen_key(registry) == "kidp-system/b"  # the rest of the index still works


def test_events_without_a_name_or_of_another_type_are_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = fresh()
    registry.handle("ADDED", manifest("a"))
    with caplog.at_level(logging.WARNING, logger="kidp_ops.registry"):
        registry.handle("ADDED", {"spec": {}})
        registry.handle("ADDED", {"metadata": "nope"})
        registry.handle("BOOKMARK", manifest("a", phase="Offline"))
    assert len(caplog.records) == 3
    assert chosen_key(registry) == "kidp-system/a"


def test_namespace_defaults_like_object_meta() -> None:
    registry = fresh()
    body = manifest("a")
    del body["metadata"]["namespace"]
    registry.handle("ADDED", body)
    assert chosen_key(registry) == "default/a"
    registry.handle("DELETED", {"metadata": {"name": "a"}})
    assert len(registry) == 0
    body["metadata"]["namespace"] = ""  # kept as given, as ObjectMeta keeps it
    registry.handle("ADDED", body)
    assert chosen_key(registry) == "/a"
    registry.handle("DELETED", body)
    assert len(registry) == 0


def test_regions_follow_adds_changes_and_removals() -> None:
    registry = fresh()
    assert registry.regions() == frozenset()
    caps = [{"resourceType": "Database", "providers": ["pg"], "regions": ["westus", "eastus"]}]
    registry.handle("ADDED", manifest("a", region="", capabilities=caps))
    registry.handle("ADDED", manifest("b", region="eastus"))
    registry.handle("ADDED", manifest("c", region="eu-west-1", phase="Offline"))
    assert registry.regions() == {"westus", "eastus", "eu-west-1"}  # not-Ready ones count too
    registry.handle("DELETED", manifest("a"))
    assert registry.regions() == {"eastus", "eu-west-1"}  # b still names eastus
    registry.handle("MODIFIED", manifest("b", region="centralus"))
    assert registry.regions() == {"centralus", "eu-west-1"}
    registry.handle("MODIFIED", {"metadata": {"name": "c", "namespace": "kidp-system"}})
    registry.remove("kidp-system/b")
    assert registry.regions() == frozenset()


def test_heartbeat_bonus_falling_with_time_reorders_the_index() -> None:
    clock = FakeClock()
    registry = fresh(clock)
    registry.handle("ADDED", manifest("a", priority=100, heartbeat_age=50))  # 250 at NOW
    registry.handle("ADDED", manifest("b", priority=90, heartbeat_age=0))  # 240 at NOW
    assert chosen_key(registry, now=None) == "kidp-system/a"
    clock.advance(15)  # a: 225 (65 s old); b: 240
    assert chosen_key(registry, now=None) == "kidp-system/b"
    clock.advance(280)  # a: 100 + 100 + 0; b: 90 + 100 + 25
    assert chosen_key(registry, now=None) == "kidp-system/b"
    # a `now` behind the index (a clock stepping back) is still answered exactly
    assert chosen_key(registry, now=NOW) == "kidp-system/a"
    # and one ahead of the clock as well, without moving the index past the clock
    assert chosen_key(registry, now=NOW + timedelta(days=1)) == "kidp-system/a"
    assert chosen_key(registry, now=NOW) == "kidp-system/a"


def test_explain_lists_every_broker_as_rank_does() -> None:
    registry = fresh()
    registry.handle("ADDED", manifest("a", phase="Offline"))
    registry.handle("ADDED", manifest("b", active=3))
    registry.handle("ADDED", manifest("c"))
    registry.select(DB, now=NOW, reserve_for="r1")
    ranked = registry.explain(DB, now=NOW)
    assert ranked == selection.rank(
        list(registry.brokers()), DB, now=NOW, reserved={"kidp-system/c": 1}
    )
    assert [c.broker.metadata.name for c in ranked] == ["c", "b", "a"]


# --- the index stays small-work ---------------------------------------------------------------


def test_selection_evaluates_a_few_entries_not_the_fleet(monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 brokers in 4 clouds: one select scores a handful, not hundreds."""
    registry = fresh()
    for i in range(2_000):
        cloud = ("aws", "gcp", "azure", "on-prem")[i % 4]
        registry.handle(
            "ADDED",
            manifest(
                f"b{i:04d}",
                cloudProvider=cloud,
                region=f"{cloud}-{i % 3}",
                priority=50 + i % 7 * 25,
                active=i % 9,
                heartbeat_age=float(i % 400),
                phase="Ready" if i % 5 else "Unhealthy",
            ),
        )
    scored: list[str] = []
    real_score = selection.score  # what the registry module imported

    def counting(broker: Broker, **kwargs: Any) -> selection.ScoreParts:
        scored.append(broker.key)
        return real_score(broker, **kwargs)

    requests = [
        SelectionCriteria("Database", "postgresql", cloud, region)
        for cloud in (None, "aws", "gcp")
        for region in (None, f"{cloud}-1")
    ]
    brokers = list(registry.brokers())
    registry.select(DB, now=NOW)  # brings the index to NOW
    monkeypatch.setattr(registry_module, "score", counting)
    for criteria in requests:
        assert registry.select(criteria, now=NOW) == selection.select(brokers, criteria, now=NOW)
    assert len(scored) <= 2 * len(requests)


def test_large_buckets_under_churn_agree_with_linear_scan() -> None:
    """Buckets past the sorted list's split size, under status churn and reservations."""
    rng = random.Random(3)
    clock = FakeClock()
    registry = fresh(clock)

    def random_broker(name: str) -> Broker:
        limit = rng.choice([0, 5, 10, 50])
        spec = BrokerSpec(
            endpoint="http://127.0.0.1:1",
            cloud_provider=rng.choice(["aws", "aws", "gcp"]),
            region=rng.choice(["", "r1", "r2"]),
            priority=rng.choice([50, 100, 150]),
            max_concurrent_deployments=limit,
            capabilities=(Capability("Database", ("p1",) if rng.random() < 0.9 else ()),),
        )
        status = BrokerStatus(
            phase="Ready" if rng.random() < 0.85 else "Unhealthy",
            last_heartbeat=clock.moment - timedelta(seconds=rng.uniform(0, 400)),
            active_deployments=rng.randint(0, limit or 20),
        )
        return Broker(metadata=ObjectMeta(name=name, namespace="ns"), spec=spec, status=status)

    names = [f"b{i:05d}" for i in range(6_000)]
    for name in names:
        registry.upsert(random_broker(name))
    criteria = [
        c
        for c in ALL_CRITERIA
        if c.resource_type == "Database" and c.provider != "p2" and c.namespace is None
    ]
    for round_ in range(8):
        for _ in range(300):
            registry.upsert(random_broker(rng.choice(names)))
        for i in range(20):
            registry.select(rng.choice(criteria), reserve_for=f"r{round_}-{i}")
        clock.advance(rng.choice([1.0, 20.0, 45.0]))
        brokers, reserved = list(registry.brokers()), registry.reserved()
        for c in criteria:
            expected = selection.select(brokers, c, now=clock.moment, reserved=reserved)
            assert registry.select(c, now=clock.moment) == expected


# --- reservations -------------------------------------------------------------------------


def test_a_burst_spreads_over_brokers() -> None:
    registry = fresh()
    for name in "abcd":
        registry.handle("ADDED", manifest(name, maxConcurrentDeployments=10))
    keys = [str(chosen_key(registry, reserve_for=f"req-{i}")) for i in range(8)]
    assert sorted(keys) == sorted(f"kidp-system/{n}" for n in "abcd" for _ in range(2))
    assert registry.reserved() == {f"kidp-system/{n}": 2 for n in "abcd"}


def test_reservation_released_when_active_catches_up() -> None:
    registry = fresh()
    registry.handle("ADDED", manifest("a", active=2))
    for request_id in ("r1", "r2", "r3"):
        assert chosen_key(registry, reserve_for=request_id) == "kidp-system/a"
    assert registry.reserved() == {"kidp-system/a": 3}
    registry.handle("MODIFIED", manifest("a", active=2, heartbeat_age=0))  # nothing new
    assert registry.reserved() == {"kidp-system/a": 3}
    registry.handle("MODIFIED", manifest("a", active=3))
    assert registry.reserved() == {"kidp-system/a": 2}
    registry.handle("MODIFIED", manifest("a", active=5))
    assert registry.reserved() == {}
    assert not any(registry.release(r) for r in ("r1", "r2", "r3"))  # released by the catch-up


def test_catch_up_counts_from_each_reservations_own_baseline() -> None:
    """Deployments finishing between reservations must not hide the new ones."""
    registry = fresh()
    registry.handle("ADDED", manifest("a", active=5))
    registry.select(DB, now=NOW, reserve_for="r1")  # expects 6
    registry.handle("MODIFIED", manifest("a", active=3))  # two others finished
    registry.select(DB, now=NOW, reserve_for="r2")  # expects 3 + 2 = 5
    registry.handle("MODIFIED", manifest("a", active=4))  # r1 started
    assert registry.reserved() == {"kidp-system/a": 2}
    registry.handle("MODIFIED", manifest("a", active=5))  # r2 started: both are in
    assert registry.reserved() == {}


def test_released_older_reservation_lowers_what_younger_ones_wait_for() -> None:
    registry = fresh()
    registry.handle("ADDED", manifest("a", active=0))
    registry.select(DB, now=NOW, reserve_for="r1")
    registry.select(DB, now=NOW, reserve_for="r2")
    assert registry.release("r1")  # r1's request failed: it will never show up
    assert not registry.release("r1")
    assert registry.reserved() == {"kidp-system/a": 1}
    registry.handle("MODIFIED", manifest("a", active=1))  # r2 deployed
    assert registry.reserved() == {}


def test_reservation_expires_after_its_ttl() -> None:
    clock = FakeClock()
    registry = fresh(clock, reservation_ttl=60.0)
    registry.handle("ADDED", manifest("a", maxConcurrentDeployments=1))
    registry.handle("ADDED", manifest("b", maxConcurrentDeployments=1, priority=50))
    assert chosen_key(registry, reserve_for="r1") == "kidp-system/a"
    assert chosen_key(registry, reserve_for="r2") == "kidp-system/b"
    assert registry.select(DB, now=NOW) is None  # both held
    clock.advance(59.999)
    assert registry.reserved() == {"kidp-system/a": 1, "kidp-system/b": 1}
    clock.advance(0.001)
    assert registry.reserved() == {}
    assert chosen_key(registry) == "kidp-system/a"


def test_reserving_the_same_request_twice_is_idempotent() -> None:
    registry = fresh()
    registry.handle("ADDED", manifest("a"))
    registry.handle("ADDED", manifest("b"))
    first = registry.select(DB, now=NOW, reserve_for="r1")
    again = registry.select(DB, now=NOW, reserve_for="r1")
    assert first is not None
    assert again == first  # same broker, same score: its own reservation is not held against it
    assert registry.reserved() == {first.broker.key: 1}
    # the held broker stops being a candidate: the request moves, still counted once
    registry.handle("MODIFIED", manifest(first.broker.metadata.name, phase="Offline"))
    moved = registry.select(DB, now=NOW, reserve_for="r1")
    assert moved is not None
    assert moved.broker.key != first.broker.key
    assert registry.reserved() == {moved.broker.key: 1}


def test_sticky_reservation_survives_a_better_newcomer() -> None:
    registry = fresh()
    registry.handle("ADDED", manifest("a"))
    assert chosen_key(registry, reserve_for="r1") == "kidp-system/a"
    registry.handle("ADDED", manifest("b", priority=500))
    assert chosen_key(registry, reserve_for="r1") == "kidp-system/a"
    assert chosen_key(registry, reserve_for="r2") == "kidp-system/b"


def test_deleting_a_broker_drops_its_reservations() -> None:
    registry = fresh()
    registry.handle("ADDED", manifest("a"))
    registry.select(DB, now=NOW, reserve_for="r1")
    registry.handle("DELETED", manifest("a"))
    assert registry.reserved() == {}
    assert not registry.release("r1")


def test_reservation_can_fill_a_broker_to_capacity_and_release_reopens_it() -> None:
    registry = fresh()
    registry.handle("ADDED", manifest("a", active=1, maxConcurrentDeployments=2))
    assert chosen_key(registry, reserve_for="r1") == "kidp-system/a"
    assert registry.select(DB, now=NOW) is None
    [candidate] = registry.explain(DB, now=NOW)
    assert candidate.rejected == "at capacity (2/2 active, 1 reserved)"
    registry.release("r1")
    assert chosen_key(registry) == "kidp-system/a"


def test_default_clock_is_utc_now() -> None:
    registry = BrokerRegistry()
    registry.handle("ADDED", manifest("a", heartbeat_age=None))
    candidate = registry.select(DB, reserve_for="r1")
    assert candidate is not None
    assert candidate.parts is not None
    assert candidate.parts.heartbeat == 0.0
    assert registry.explain(DB)[0].rejected is None


# --- properties: the index against the linear scan ------------------------------------------

READY: BrokerPhase | None = "Ready"
PHASES: list[BrokerPhase | None] = [READY] * 8 + ["Pending", "Unhealthy", "Offline", None]
TYPES = ["Database", "Cache"]
PROVIDERS = ["p1", "p2", "p3"]
REGIONS = ["r1", "r2", "r3"]
NAMES = [f"b{i}" for i in range(10)]
NAMESPACES = ["t1", "t2", "t3"]
AGES = [None, -5.0, 0.0, 30.0, 59.0, 60.0, 61.0, 200.0, 299.0, 300.0, 301.0, 1_000.0]

capability_strategy = st.builds(
    Capability,
    resource_type=st.sampled_from(TYPES),
    providers=st.lists(st.sampled_from(PROVIDERS), max_size=3).map(tuple),  # duplicates too
    regions=st.one_of(st.just(()), st.lists(st.sampled_from(REGIONS), max_size=3).map(tuple)),
)
criteria_strategy = st.builds(
    SelectionCriteria,
    resource_type=st.sampled_from(TYPES),
    provider=st.sampled_from([None, *PROVIDERS]),
    cloud_provider=st.sampled_from([None, "aws", "gcp"]),
    region=st.sampled_from([None, *REGIONS]),
    namespace=st.sampled_from([None, *NAMESPACES]),
)
ALL_CRITERIA = [
    SelectionCriteria(t, p, c, r, n)
    for t in TYPES
    for p in [None, *PROVIDERS]
    for c in [None, "aws", "gcp"]
    for r in [None, *REGIONS]
    for n in (None, "t1")
]


@st.composite
def brokers(draw: st.DrawFn) -> Broker:
    spec = BrokerSpec(
        endpoint="http://127.0.0.1:1",
        cloud_provider=draw(st.sampled_from(["aws", "gcp"])),
        region=draw(st.sampled_from(["", *REGIONS])),
        priority=draw(st.sampled_from([0, 25, 50, 100])),
        max_concurrent_deployments=draw(st.sampled_from([0, 1, 2, 3, 4, 10])),
        capabilities=tuple(draw(st.lists(capability_strategy, max_size=3))),
        unschedulable=draw(st.sampled_from([False] * 5 + [True])),
        allowed_namespaces=draw(st.sampled_from([None, None, None, (), ("t1",), ("t1", "t2")])),
    )
    age = draw(st.sampled_from(AGES))
    status = BrokerStatus(
        phase=draw(st.sampled_from(PHASES)),
        last_heartbeat=None if age is None else NOW - timedelta(seconds=age),
        active_deployments=draw(st.integers(0, 5)),
    )
    metadata = ObjectMeta(name=draw(st.sampled_from(NAMES)), namespace="ns")
    return Broker(metadata=metadata, spec=spec, status=status)


class IndexAgainstLinearScan(RuleBasedStateMachine):
    """Random informer events, reservations and clock moves; after each step the registry
    must answer every request exactly as `selection.select` over its brokers does."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.registry = BrokerRegistry(clock=self.clock, reservation_ttl=120.0)
        self.request_ids = 0
        self.held: list[str] = []

    @property
    def keys(self) -> list[str]:
        return sorted(broker.key for broker in self.registry.brokers())

    @rule(broker=brokers(), event=st.sampled_from(["ADDED", "MODIFIED"]))
    def add_or_replace(self, broker: Broker, event: str) -> None:
        self.registry.handle(event, broker.to_manifest())

    @precondition(lambda self: len(self.registry) > 0)
    @rule(data=st.data())
    def change_status(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.keys))
        broker = self.registry.get(key)
        assert broker is not None
        status = broker.status
        change = data.draw(st.sampled_from(["phase", "active", "heartbeat", "cordon"]))
        if change == "phase":
            status = replace(status, phase=data.draw(st.sampled_from(PHASES)))
        elif change == "active":
            step = data.draw(st.sampled_from([-2, -1, 1, 1, 2]))
            status = replace(status, active_deployments=max(0, status.active_deployments + step))
        elif change == "heartbeat":
            age = data.draw(st.sampled_from([0.0, 10.0, 70.0, 400.0]))
            status = replace(status, last_heartbeat=self.clock.moment - timedelta(seconds=age))
        spec = broker.spec
        if change == "cordon":
            spec = replace(spec, unschedulable=not spec.unschedulable)
        self.registry.handle("MODIFIED", replace(broker, spec=spec, status=status).to_manifest())

    @precondition(lambda self: len(self.registry) > 0)
    @rule(data=st.data(), readable=st.booleans())
    def delete(self, data: st.DataObject, readable: bool) -> None:
        namespace, name = data.draw(st.sampled_from(self.keys)).split("/")
        if readable:
            self.registry.handle("DELETED", {"metadata": {"name": name, "namespace": namespace}})
        else:  # an unreadable update removes the key as well
            body = {"metadata": {"name": name, "namespace": namespace}, "spec": {"x": 1}}
            self.registry.handle("MODIFIED", body)

    @rule(seconds=st.sampled_from([0.5, 1.0, 30.0, 60.0, 121.0, 250.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(criteria=criteria_strategy, back=st.sampled_from([0.0, 0.0, 0.0, 1.0, 90.0]))
    def reserve(self, criteria: SelectionCriteria, back: float) -> None:
        """A new request: the same broker as the scan, then counted for that broker."""
        now = self.clock.moment - timedelta(seconds=back)  # sometimes behind the index
        before = self.registry.reserved()
        expected = selection.select(self.registry.brokers(), criteria, now=now, reserved=before)
        self.request_ids += 1
        request_id = f"req-{self.request_ids}"
        got = self.registry.select(criteria, now=now, reserve_for=request_id)
        assert got == expected
        if got is not None:
            self.held.append(request_id)
            after = self.registry.reserved()
            assert after[got.broker.key] == before.get(got.broker.key, 0) + 1

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def reserve_again(self, data: st.DataObject) -> None:
        request_id = data.draw(st.sampled_from(self.held))
        criteria = data.draw(criteria_strategy)
        before = dict(self.registry.reserved())
        got = self.registry.select(criteria, now=self.clock.moment, reserve_for=request_id)
        assert sum(self.registry.reserved().values()) <= sum(before.values()) + 1
        if got is not None:
            count = self.registry.reserved()[got.broker.key]
            assert failed_filter(got.broker, criteria, reserved_count=count - 1) is None

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        self.registry.release(data.draw(st.sampled_from(self.held)))

    @invariant()
    def selects_exactly_as_the_linear_scan(self) -> None:
        reserved = self.registry.reserved()
        brokers = list(self.registry.brokers())
        moment = self.clock.moment
        # at the clock (exact keys), ahead of it (keys are bounds) and behind it (fallback)
        for now in (moment, moment + timedelta(seconds=45), moment - timedelta(seconds=70)):
            for criteria in ALL_CRITERIA:
                expected = selection.select(brokers, criteria, now=now, reserved=reserved)
                got = self.registry.select(criteria, now=now)
                assert got == expected, (criteria, now)
        assert self.registry.select(ALL_CRITERIA[0]) == selection.select(
            brokers, ALL_CRITERIA[0], now=self.clock.moment, reserved=reserved
        )  # now=None reads the clock

    @invariant()
    def explains_as_rank(self) -> None:
        reserved = self.registry.reserved()
        for criteria in ALL_CRITERIA[::7]:
            assert self.registry.explain(criteria, now=self.clock.moment) == selection.rank(
                self.registry.brokers(), criteria, now=self.clock.moment, reserved=reserved
            )

    @invariant()
    def regions_and_reservations_are_consistent(self) -> None:
        brokers = list(self.registry.brokers())
        named = {r for b in brokers for c in b.spec.capabilities for r in c.regions}
        named |= {b.spec.region for b in brokers if b.spec.region}
        assert self.registry.regions() == named
        reserved = self.registry.reserved()
        assert set(reserved) <= {b.key for b in brokers}
        assert all(count > 0 for count in reserved.values())


IndexAgainstLinearScan.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_index_against_linear_scan = IndexAgainstLinearScan.TestCase


# --- property: reservations spread a burst in proportion to free capacity -------------------


@st.composite
def equal_brokers(draw: st.DrawFn) -> list[Broker]:
    """Equal priority, fresh heartbeats, limits 1..10 and any load below the limit."""
    count = draw(st.integers(1, 6))
    fleet = []
    for i in range(count):
        limit = draw(st.integers(1, 10))
        spec = BrokerSpec(
            endpoint="http://127.0.0.1:1",
            cloud_provider="aws",
            max_concurrent_deployments=limit,
            capabilities=(Capability("Database", ("postgresql",)),),
        )
        status = BrokerStatus(
            phase="Ready",
            last_heartbeat=NOW - timedelta(seconds=5),
            active_deployments=draw(st.integers(0, limit - 1)),
        )
        fleet.append(Broker(metadata=ObjectMeta(name=f"b{i}"), spec=spec, status=status))
    return fleet


@settings(max_examples=200, deadline=None)
@given(equal_brokers(), st.data())
def test_property_burst_fills_free_capacity_evenly(
    fleet: list[Broker], data: st.DataObject
) -> None:
    """With score = priority + (1 - load) * 100 + bonus and the bonus and priority equal, each
    request goes to a broker of least load (active + reserved) / max. So:

    - a burst of exactly the total free capacity fills every broker to its limit, and the
      next request finds none;
    - after any smaller burst no broker got more than its free capacity, and a broker that
      got a request was, before its last one, at most as loaded as any other broker is now:
      load_i - 1/max_i <= load_j for every broker i that got one and every broker j.
    """
    registry = fresh()
    for broker in fleet:
        registry.upsert(broker)
    free = {b.key: b.spec.max_concurrent_deployments - b.status.active_deployments for b in fleet}
    burst = data.draw(st.integers(0, sum(free.values())))
    for i in range(burst):
        assert registry.select(PG, now=NOW, reserve_for=f"r{i}") is not None
    got = registry.reserved()
    assert all(got.get(key, 0) <= free[key] for key in free)
    assert sum(got.values()) == burst

    def load(broker: Broker) -> Fraction:
        active = broker.status.active_deployments + got.get(broker.key, 0)
        return Fraction(active, broker.spec.max_concurrent_deployments)

    for receiver in (b for b in fleet if got.get(b.key)):
        step = Fraction(1, receiver.spec.max_concurrent_deployments)
        assert all(load(receiver) - step <= load(other) for other in fleet)

    rest = sum(free.values()) - burst
    for i in range(rest):
        assert registry.select(PG, now=NOW, reserve_for=f"rest-{i}") is not None
    assert registry.reserved() == {key: n for key, n in free.items() if n}
    assert registry.select(PG, now=NOW, reserve_for="one-too-many") is None
