"""Pure selection (ARCHITECTURE.md section 4): every filter, every score term, the tie-break,
and hypothesis properties over small random fleets."""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kidp_ops import selection
from kidp_ops.model.resources import (
    Broker,
    BrokerPhase,
    BrokerSpec,
    BrokerStatus,
    Capability,
    ObjectMeta,
)
from kidp_ops.selection import (
    Candidate,
    Filter,
    SelectionCriteria,
    failed_filter,
    load_fraction,
    rank,
    rejection,
    score,
    select,
)
from tests.conftest import broker_manifest

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
DB = SelectionCriteria("Database")


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_broker(
    name: str = "b1",
    namespace: str = "kidp-system",
    *,
    phase: str | None = "Ready",
    active: int = 0,
    heartbeat_age: float | None = 10.0,
    **spec: Any,
) -> Broker:
    """A Broker built the way the cluster sees it: manifest (CRD-defaulted) plus a status."""
    manifest = broker_manifest(name, namespace, **spec)
    status: dict[str, Any] = {"activeDeployments": active}
    if phase is not None:
        status["phase"] = phase
    if heartbeat_age is not None:
        status["lastHeartbeat"] = rfc3339(NOW - timedelta(seconds=heartbeat_age))
    manifest["status"] = status
    return Broker.from_manifest(manifest)


def capabilities(
    resource_type: str = "Database", providers: list[str] | None = None, **extra: Any
) -> list[dict[str, Any]]:
    return [{"resourceType": resource_type, "providers": providers or [], **extra}]


def only(broker: Broker, criteria: SelectionCriteria = DB, **kwargs: Any) -> Candidate:
    [candidate] = rank([broker], criteria, now=NOW, **kwargs)
    return candidate


# --- the manifest helper reads the status it is given ------------------------------------


def test_helper_builds_status_from_rfc3339() -> None:
    broker = make_broker(active=3, heartbeat_age=59.999, phase="Unhealthy")
    assert broker.status.phase == "Unhealthy"
    assert broker.status.active_deployments == 3
    assert broker.status.last_heartbeat == NOW - timedelta(seconds=59.999)
    assert broker.spec.max_concurrent_deployments == 10  # CRD default applied
    assert broker.spec.priority == 100


# --- filters -------------------------------------------------------------------------------


def test_ready_broker_is_accepted_with_its_score() -> None:
    candidate = only(make_broker())
    assert candidate.accepted
    assert candidate.rejected is None
    assert candidate.parts == selection.ScoreParts(priority=100.0, load=100.0, heartbeat=50.0)
    assert candidate.score == 250.0


@pytest.mark.parametrize("phase", ["Pending", "Unhealthy", "Offline", "Unknown"])
def test_only_ready_phase_is_selectable(phase: str) -> None:
    candidate = only(make_broker(phase=phase))
    assert candidate.rejected == f"phase {phase} (not Ready)"
    assert candidate.score is None
    assert candidate.parts is None


def test_broker_without_phase_is_not_ready() -> None:
    broker = make_broker(phase=None)
    assert rejection(broker, DB) == "phase not reported (not Ready)"
    assert failed_filter(broker, DB) is Filter.PHASE


def test_cordoned_broker_is_rejected() -> None:
    broker = make_broker(unschedulable=True)
    assert rejection(broker, DB) == "cordoned (unschedulable)"
    assert rejection(make_broker(unschedulable=False), DB) is None


def test_cloud_provider_must_match_when_asked() -> None:
    broker = make_broker(cloudProvider="aws")
    assert rejection(broker, SelectionCriteria("Database", cloud_provider="azure")) == (
        "cloud provider aws, asked azure"
    )
    assert rejection(broker, SelectionCriteria("Database", cloud_provider="aws")) is None
    assert rejection(broker, DB) is None


def test_region_must_match_when_asked() -> None:
    broker = make_broker(region="us-east-1")
    assert rejection(broker, SelectionCriteria("Database", region="eastus")) == (
        "region us-east-1, asked eastus"
    )
    assert rejection(broker, SelectionCriteria("Database", region="us-east-1")) is None
    assert rejection(broker, DB) is None


def test_broker_with_empty_region_serves_any_region() -> None:
    broker = make_broker(region="")
    assert broker.spec.region == ""
    assert rejection(broker, SelectionCriteria("Database", region="eastus")) is None
    assert rejection(broker, SelectionCriteria("Database", region="anywhere-1")) is None


def test_broker_needs_a_capability_for_the_resource_type() -> None:
    broker = make_broker(capabilities=capabilities("Cache", ["redis"]))
    assert rejection(broker, DB) == "no Database capability"
    assert rejection(broker, SelectionCriteria("Cache")) is None


def test_resource_type_match_is_exact() -> None:
    assert rejection(make_broker(), SelectionCriteria("database")) == "no database capability"


def test_broker_without_capabilities_is_never_selected() -> None:
    broker = make_broker(capabilities=[])
    assert rejection(broker, DB) == "no Database capability"


def test_capability_must_offer_the_asked_provider() -> None:
    broker = make_broker(capabilities=capabilities("Database", ["postgresql", "redis"]))
    asked = SelectionCriteria("Database", provider="mysql")
    assert rejection(broker, asked) == (
        "Database capability lacks provider mysql (has: postgresql, redis)"
    )
    assert rejection(broker, SelectionCriteria("Database", provider="redis")) is None
    assert rejection(broker, DB) is None


def test_empty_providers_means_none_declared() -> None:
    """An empty providers list declares no provider: rejected whenever one is asked."""
    broker = make_broker(capabilities=capabilities("Database", []))
    asked = SelectionCriteria("Database", provider="postgresql")
    assert rejection(broker, asked) == (
        "Database capability lacks provider postgresql (has: none declared)"
    )
    assert failed_filter(broker, asked) is Filter.PROVIDER
    assert rejection(broker, DB) is None


def test_capability_regions_restrict_the_asked_region() -> None:
    caps = capabilities("Database", ["postgresql"], regions=["westus", "centralus"])
    broker = make_broker(region="", capabilities=caps)
    assert rejection(broker, SelectionCriteria("Database", region="eastus")) == (
        "region eastus not in capability regions (westus, centralus)"
    )
    assert rejection(broker, SelectionCriteria("Database", region="centralus")) is None
    assert rejection(broker, DB) is None


def test_empty_capability_regions_mean_every_region_the_broker_serves() -> None:
    broker = make_broker(region="", capabilities=capabilities("Database", ["pg"], regions=[]))
    assert rejection(broker, SelectionCriteria("Database", region="eastus")) is None


def test_only_the_asked_resource_types_capability_restricts_regions() -> None:
    caps = [
        {"resourceType": "Cache", "providers": ["redis"], "regions": ["westus"]},
        {"resourceType": "Database", "providers": ["postgresql"]},
    ]
    broker = make_broker(region="", capabilities=caps)
    assert rejection(broker, SelectionCriteria("Database", region="eastus")) is None
    assert rejection(broker, SelectionCriteria("Cache", region="eastus")) == (
        "region eastus not in capability regions (westus)"
    )


@pytest.mark.parametrize(("active", "accepted"), [(0, True), (9, True), (10, False), (11, False)])
def test_capacity_boundary(active: int, accepted: bool) -> None:
    broker = make_broker(active=active, maxConcurrentDeployments=10)
    reason = rejection(broker, DB)
    assert (reason is None) is accepted
    if not accepted:
        assert reason == f"at capacity ({active}/10 active)"


def test_max_zero_means_unlimited() -> None:
    candidate = only(make_broker(active=10_000, maxConcurrentDeployments=0))
    assert candidate.accepted
    assert candidate.parts is not None
    assert candidate.parts.load == 100.0


def test_reservations_count_towards_capacity() -> None:
    broker = make_broker(active=8, maxConcurrentDeployments=10)
    assert rejection(broker, DB, reserved_count=1) is None
    assert rejection(broker, DB, reserved_count=2) == "at capacity (10/10 active, 2 reserved)"
    assert only(broker, reserved={broker.key: 2}).rejected == (
        "at capacity (10/10 active, 2 reserved)"
    )
    assert only(broker, reserved={"other/b1": 2}).accepted


@pytest.mark.parametrize(
    ("spec", "status", "criteria", "expected"),
    [
        # every filter from the failing one on fails too; the first one is reported
        ({"unschedulable": True}, {"phase": "Offline"}, DB, Filter.PHASE),
        ({"unschedulable": True, "cloudProvider": "gcp"}, {}, "aws", Filter.CORDONED),
        ({"cloudProvider": "gcp", "region": "x"}, {}, "aws", Filter.CLOUD_PROVIDER),
        ({"region": "x", "capabilities": []}, {}, "aws", Filter.REGION),
        ({"capabilities": []}, {"active": 10}, "aws", Filter.CAPABILITY),
        ({"capabilities": capabilities("Database", [], regions=["y"])}, {"active": 10}, "aws",
         Filter.PROVIDER),
        ({"capabilities": capabilities("Database", ["pg"], regions=["y"])}, {"active": 10}, "aws",
         Filter.CAPABILITY_REGION),
        ({}, {"active": 10}, "aws", Filter.CAPACITY),
    ],
)  # fmt: skip
def test_first_failing_filter_is_reported(
    spec: dict[str, Any], status: dict[str, Any], criteria: Any, expected: Filter
) -> None:
    if criteria == "aws":
        criteria = SelectionCriteria("Database", "pg", cloud_provider="aws", region="us-east-1")
    base = {"region": "", "capabilities": capabilities("Database", ["pg"])}
    broker = make_broker(**status, **{**base, **spec})
    assert failed_filter(broker, criteria) is expected
    reason = rejection(broker, criteria)
    assert reason is not None
    assert reason == selection.describe(expected, broker, criteria)


# --- score terms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "bonus"),
    [
        (0.0, 50.0),
        (59.999, 50.0),
        (60.0, 25.0),
        (299.999, 25.0),
        (300.0, 0.0),
        (86_400.0, 0.0),
        (-30.0, 50.0),  # in the future (clock skew): age 0
        (-3_600.0, 50.0),
        (None, 0.0),
    ],
)
def test_heartbeat_bonus_boundaries(age: float | None, bonus: float) -> None:
    parts = score(make_broker(heartbeat_age=age), now=NOW)
    assert parts.heartbeat == bonus


@pytest.mark.parametrize(
    ("active", "limit", "load"),
    [(0, 10, 100.0), (5, 10, 50.0), (9, 10, 10.0), (10, 10, 0.0), (1, 3, 200 / 3), (7, 0, 100.0)],
)
def test_load_term(active: int, limit: int, load: float) -> None:
    broker = make_broker(active=active, maxConcurrentDeployments=limit)
    assert score(broker, now=NOW).load == pytest.approx(load, abs=1e-12)


def test_reservation_lowers_load_term() -> None:
    broker = make_broker(active=2, maxConcurrentDeployments=10)
    assert score(broker, now=NOW, reserved_count=3).load == 50.0
    assert load_fraction(broker, reserved_count=3) == 0.5
    unlimited = make_broker(active=2, maxConcurrentDeployments=0)
    assert score(unlimited, now=NOW, reserved_count=3).load == 100.0
    assert load_fraction(unlimited, reserved_count=3) == 0.0


@pytest.mark.parametrize("priority", [0, 1, 100, 1_000_000])
def test_priority_term_and_total(priority: int) -> None:
    broker = make_broker(priority=priority, active=4, maxConcurrentDeployments=8)
    parts = score(broker, now=NOW)
    assert parts.priority == float(priority)
    assert parts.total == priority + 50.0 + 50.0
    assert only(broker).score == parts.total


# --- ranking and tie-break -----------------------------------------------------------------


def test_higher_score_wins_over_name() -> None:
    low = make_broker("a", priority=100)
    high = make_broker("z", priority=101)
    assert [c.broker.key for c in rank([low, high], DB, now=NOW)] == [high.key, low.key]
    chosen = select([low, high], DB, now=NOW)
    assert chosen is not None
    assert chosen.broker == high


def test_equal_score_prefers_lower_load() -> None:
    # a: 100 + 50 + 50 = 200 at load 0.5; z: 50 + 100 + 50 = 200 at load 0
    busy = make_broker("a", priority=100, active=5, maxConcurrentDeployments=10)
    idle = make_broker("z", priority=50, active=0, maxConcurrentDeployments=10)
    ranked = rank([busy, idle], DB, now=NOW)
    assert ranked[0].score == ranked[1].score == 200.0
    assert [c.broker.metadata.name for c in ranked] == ["z", "a"]
    chosen = select([busy, idle], DB, now=NOW)
    assert chosen is not None
    assert chosen.broker == idle


def test_equal_score_and_load_prefers_namespace_then_name() -> None:
    brokers = [
        make_broker("aa", "ns-b"),
        make_broker("zz", "ns-a"),
        make_broker("bb", "ns-b"),
        make_broker("unlimited", "ns-b", maxConcurrentDeployments=0),  # load 0 as well
    ]
    keys = [c.broker.key for c in rank(brokers, DB, now=NOW)]
    assert keys == ["ns-a/zz", "ns-b/aa", "ns-b/bb", "ns-b/unlimited"]
    chosen = select(reversed(brokers), DB, now=NOW)
    assert chosen is not None
    assert chosen.broker.key == "ns-a/zz"


def test_rank_lists_accepted_first_then_rejected_by_key() -> None:
    brokers = [
        make_broker("d", phase="Offline"),
        make_broker("c", priority=10),
        make_broker("a", unschedulable=True),
        make_broker("b", priority=20),
    ]
    ranked = rank(brokers, DB, now=NOW)
    assert [c.broker.metadata.name for c in ranked] == ["b", "c", "a", "d"]
    assert [c.accepted for c in ranked] == [True, True, False, False]
    assert [c.rejected for c in ranked[2:]] == [
        "cordoned (unschedulable)",
        "phase Offline (not Ready)",
    ]


def test_nothing_accepted_selects_none() -> None:
    assert select([], DB, now=NOW) is None
    assert rank([], DB, now=NOW) == []
    offline = [make_broker("a", phase="Offline"), make_broker("b", active=10)]
    assert select(offline, DB, now=NOW) is None
    assert all(not c.accepted for c in rank(offline, DB, now=NOW))


def test_select_and_rank_take_a_one_shot_iterator() -> None:
    brokers = [make_broker("a", priority=1), make_broker("b", priority=2)]
    chosen = select(iter(brokers), DB, now=NOW)
    assert chosen is not None
    assert chosen.broker.metadata.name == "b"
    assert [c.broker.metadata.name for c in rank(iter(brokers), DB, now=NOW)] == ["b", "a"]


def test_reservations_spread_a_burst() -> None:
    """A reservation on the broker that looked emptiest sends the next request elsewhere."""
    first = make_broker("a", maxConcurrentDeployments=10)
    second = make_broker("b", maxConcurrentDeployments=10)
    chosen = select([first, second], DB, now=NOW)
    assert chosen is not None
    assert chosen.broker == first
    after = select([first, second], DB, now=NOW, reserved={first.key: 1})
    assert after is not None
    assert after.broker == second
    assert after.parts is not None
    assert after.parts.load == 100.0


def test_candidate_score_matches_parts_total() -> None:
    candidate = select([make_broker(priority=7, active=3, heartbeat_age=120)], DB, now=NOW)
    assert candidate is not None
    assert candidate.parts == selection.ScoreParts(priority=7.0, load=70.0, heartbeat=25.0)
    assert candidate.score == candidate.parts.total == 102.0


# --- purity ----------------------------------------------------------------------------------


def test_selection_module_is_pure() -> None:
    """No I/O or clock modules imported, no clock read, no global rebinding."""
    tree = ast.parse(Path(selection.__file__).read_text())
    imported = {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    } | {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    allowed = {"__future__", "collections", "dataclasses", "datetime", "enum", "types", "kidp_ops"}
    assert imported <= allowed
    clock_reads = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not attributes & clock_reads
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Global | ast.Nonlocal)]


# --- properties ------------------------------------------------------------------------------

# biased towards brokers that pass, so that ties and orderings get exercised
PHASES: list[BrokerPhase | None] = ["Ready"] * 12 + ["Pending", "Unhealthy", "Offline", None]
TYPES = ["Database", "Cache"]
PROVIDERS = ["p1", "p2", "p3"]
REGIONS = ["r1", "r2"]
ENDPOINT = "http://127.0.0.1:1"

heartbeats = st.one_of(
    st.none(),
    st.sampled_from([-5.0, 0.0, 30.0, 59.999, 60.0, 299.999, 300.0]),  # ties and boundaries
    st.floats(-100, 1_000, allow_nan=False),
).map(lambda age: None if age is None else NOW - timedelta(seconds=age))

capability_strategy = st.builds(
    Capability,
    resource_type=st.sampled_from(TYPES),
    providers=st.lists(st.sampled_from(PROVIDERS), unique=True, max_size=3).map(tuple),
    regions=st.one_of(st.just(()), st.lists(st.sampled_from(REGIONS), unique=True).map(tuple)),
)


@st.composite
def brokers_strategy(draw: st.DrawFn, index: int) -> Broker:
    spec = BrokerSpec(
        endpoint=ENDPOINT,
        cloud_provider=draw(st.sampled_from(["aws", "gcp"])),
        region=draw(st.sampled_from(["", *REGIONS])),
        priority=draw(st.sampled_from([0, 50, 100, 150])),
        max_concurrent_deployments=draw(st.sampled_from([0, 1, 2, 4, 10])),
        capabilities=tuple(draw(st.lists(capability_strategy, min_size=1, max_size=3))),
        unschedulable=draw(st.sampled_from([False] * 7 + [True])),
    )
    status = BrokerStatus(
        phase=draw(st.sampled_from(PHASES)),
        last_heartbeat=draw(heartbeats),
        active_deployments=draw(st.integers(0, 4) | st.integers(0, 12)),
    )
    namespace = draw(st.sampled_from(["ns-a", "ns-b"]))
    return Broker(
        metadata=ObjectMeta(name=f"b{index}", namespace=namespace), spec=spec, status=status
    )


@st.composite
def fleets(draw: st.DrawFn) -> list[Broker]:
    size = draw(st.integers(0, 8))
    return [draw(brokers_strategy(i)) for i in range(size)]


criteria_strategy = st.builds(
    SelectionCriteria,
    resource_type=st.sampled_from(TYPES),
    provider=st.sampled_from([None, None, *PROVIDERS]),
    cloud_provider=st.sampled_from([None, None, "aws", "gcp"]),
    region=st.sampled_from([None, None, *REGIONS]),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Broker], SelectionCriteria, dict[str, int]]:
    fleet = draw(fleets())
    keys = [b.key for b in fleet]
    reserved = draw(st.dictionaries(st.sampled_from(keys), st.integers(0, 4))) if keys else {}
    return fleet, draw(criteria_strategy), reserved


def accepted_brokers(
    fleet: list[Broker], criteria: SelectionCriteria, reserved: Mapping[str, int]
) -> list[Broker]:
    return [
        b for b in fleet if rejection(b, criteria, reserved_count=reserved.get(b.key, 0)) is None
    ]


@settings(max_examples=300)
@given(scenarios())
def test_property_selected_passes_filters_and_scores_highest(
    scenario: tuple[list[Broker], SelectionCriteria, dict[str, int]],
) -> None:
    fleet, criteria, reserved = scenario
    chosen = select(fleet, criteria, now=NOW, reserved=reserved)
    accepted = accepted_brokers(fleet, criteria, reserved)
    if not accepted:
        assert chosen is None
        return
    assert chosen is not None
    count = reserved.get(chosen.broker.key, 0)
    assert chosen.rejected is None
    assert rejection(chosen.broker, criteria, reserved_count=count) is None
    totals = {
        b.key: score(b, now=NOW, reserved_count=reserved.get(b.key, 0)).total for b in accepted
    }
    assert chosen.score == max(totals.values())
    # among the equally best: the lowest load, then the smallest key
    best = [b for b in accepted if totals[b.key] == chosen.score]
    loads = {b.key: load_fraction(b, reserved_count=reserved.get(b.key, 0)) for b in best}
    least = min(loads.values())
    assert loads[chosen.broker.key] == least
    assert chosen.broker.key == min(k for k, load in loads.items() if load == least)


@settings(max_examples=300)
@given(scenarios(), st.data())
def test_property_input_order_never_changes_the_answer(
    scenario: tuple[list[Broker], SelectionCriteria, dict[str, int]], data: st.DataObject
) -> None:
    fleet, criteria, reserved = scenario
    shuffled = data.draw(st.permutations(fleet))
    assert select(shuffled, criteria, now=NOW, reserved=reserved) == select(
        fleet, criteria, now=NOW, reserved=reserved
    )
    assert rank(shuffled, criteria, now=NOW, reserved=reserved) == rank(
        fleet, criteria, now=NOW, reserved=reserved
    )


@given(scenarios())
def test_property_select_agrees_with_rank(
    scenario: tuple[list[Broker], SelectionCriteria, dict[str, int]],
) -> None:
    fleet, criteria, reserved = scenario
    ranked = rank(fleet, criteria, now=NOW, reserved=reserved)
    chosen = select(fleet, criteria, now=NOW, reserved=reserved)
    assert len(ranked) == len(fleet)
    if ranked and ranked[0].accepted:
        assert chosen == ranked[0]
    else:
        assert chosen is None
    # accepted ones form a prefix, rejected ones follow sorted by key
    flags = [c.accepted for c in ranked]
    assert flags == sorted(flags, reverse=True)
    rejected_keys = [c.broker.key for c in ranked if not c.accepted]
    assert rejected_keys == sorted(rejected_keys)


@given(fleets(), criteria_strategy, st.integers(1, 6))
def test_property_reservation_lowers_load_term_by_its_share(
    fleet: list[Broker], criteria: SelectionCriteria, extra: int
) -> None:
    for broker in fleet:
        limit = broker.spec.max_concurrent_deployments
        drop = extra / limit * 100 if limit > 0 else 0.0
        free, held = score(broker, now=NOW), score(broker, now=NOW, reserved_count=extra)
        assert math.isclose(free.load - held.load, drop, abs_tol=1e-9)
    # the same through rank(): the reservation map reaches each candidate's parts
    plain = {c.broker.key: c for c in rank(fleet, criteria, now=NOW)}
    reserved = {b.key: extra for b in fleet}
    for candidate in rank(fleet, criteria, now=NOW, reserved=reserved):
        before = plain[candidate.broker.key]
        if candidate.parts is None:
            continue
        assert before.parts is not None, "a reservation never admits a rejected broker"
        held = candidate.parts
        limit = candidate.broker.spec.max_concurrent_deployments
        drop = extra / limit * 100 if limit > 0 else 0.0
        assert math.isclose(before.parts.load - held.load, drop, abs_tol=1e-9)
        assert held.priority == before.parts.priority
        assert held.heartbeat == before.parts.heartbeat
