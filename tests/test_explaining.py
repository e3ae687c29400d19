"""Selection decisions as text and JSON, on candidates built by hand (the scores are given,
not computed: `tests/test_selection.py` covers how they are made)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from kidp_ops.explaining import (
    decision_json,
    describe_criteria,
    describe_parts,
    summary,
    table,
)
from kidp_ops.model.resources import Broker, BrokerPhase, BrokerSpec, BrokerStatus, ObjectMeta
from kidp_ops.selection import Candidate, ScoreParts, SelectionCriteria

NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
PG_AWS = SelectionCriteria("Database", "postgresql", "aws", "us-east-1")


def broker(
    name: str,
    *,
    cloud: str = "aws",
    region: str = "us-east-1",
    phase: BrokerPhase | None = "Ready",
    active: int = 0,
    limit: int = 10,
    heartbeat_age: float | None = 30,
) -> Broker:
    heartbeat = None if heartbeat_age is None else NOW - timedelta(seconds=heartbeat_age)
    return Broker(
        metadata=ObjectMeta(name=name, namespace="kidp-system"),
        spec=BrokerSpec(
            endpoint=f"http://{name}:8080",
            cloud_provider=cloud,
            region=region,
            max_concurrent_deployments=limit,
        ),
        status=BrokerStatus(
            phase=phase,
            last_heartbeat=heartbeat,
            active_deployments=active,
        ),
    )


def accepted(b: Broker, priority: float, load: float, heartbeat: float) -> Candidate:
    parts = ScoreParts(priority, load, heartbeat)
    return Candidate(b, parts.total, parts, None)


def rejected(b: Broker, reason: str) -> Candidate:
    return Candidate(b, None, None, reason)


FLEET = [
    accepted(broker("best", active=3), 150, 70, 50),
    accepted(broker("second", region="", limit=0, heartbeat_age=200), 100, 100, 12.5),
    rejected(broker("down", phase="Unhealthy", heartbeat_age=None), "phase is Unhealthy"),
    rejected(broker("gcp", cloud="gcp", phase=None), "cloud gcp, not aws"),
]


# --- criteria and score parts ---------------------------------------------------------


def test_describe_criteria_names_what_was_asked_and_leaves_out_any() -> None:
    assert describe_criteria(PG_AWS) == (
        "Database (provider postgresql, cloud aws, region us-east-1)"
    )
    assert describe_criteria(SelectionCriteria("Cache", cloud_provider="gcp")) == (
        "Cache (cloud gcp)"
    )
    assert describe_criteria(SelectionCriteria("Topic")) == "Topic (any provider)"


def test_describe_parts_drops_a_zero_fraction_and_keeps_one_decimal() -> None:
    assert describe_parts(ScoreParts(150, 70, 50)) == "priority 150 + load 70 + heartbeat 50"
    assert describe_parts(ScoreParts(100, 33.333, 12.5)) == (
        "priority 100 + load 33.3 + heartbeat 12.5"
    )


# --- summary --------------------------------------------------------------------------


def test_summary_names_the_winner_its_score_and_how_many_were_eligible() -> None:
    assert summary(PG_AWS, FLEET) == (
        "Database (provider postgresql, cloud aws, region us-east-1): selected "
        "kidp-system/best, score 270.0 (priority 150 + load 70 + heartbeat 50); "
        "2 of 4 brokers eligible"
    )


def test_summary_when_nothing_matches_or_nothing_is_registered() -> None:
    assert summary(PG_AWS, FLEET[2:]) == (
        "Database (provider postgresql, cloud aws, region us-east-1): "
        "no broker matches (2 rejected)"
    )
    assert summary(SelectionCriteria("Database"), []) == (
        "Database (any provider): no brokers registered"
    )


# --- the table ------------------------------------------------------------------------


def cells(text: str) -> list[list[str]]:
    """Each line cut where the header's columns start: the cells, when they are aligned."""
    lines = text.splitlines()
    starts = [lines[0].index(name) for name in lines[0].split()]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [[line[a:b].strip() for a, b in bounds] for line in lines]


def test_table_has_one_aligned_row_per_candidate_best_first() -> None:
    header, best, second, down, gcp = cells(table(FLEET, now=NOW))
    assert header == ["BROKER", "CLOUD", "REGION", "PHASE", "LOAD", "HEARTBEAT", "SCORE", "RESULT"]
    assert best == [
        "kidp-system/best", "aws", "us-east-1", "Ready", "3/10", "30s ago",
        "270.0 = priority 150 + load 70 + heartbeat 50", "selected",
    ]  # fmt: skip
    assert second == [
        "kidp-system/second", "aws", "*", "Ready", "0/-", "3m20s ago",
        "212.5 = priority 100 + load 100 + heartbeat 12.5", "eligible",
    ]  # fmt: skip
    assert down == [
        "kidp-system/down", "aws", "us-east-1", "Unhealthy", "0/10", "never", "-",
        "rejected: phase is Unhealthy",
    ]  # fmt: skip
    assert gcp[1:4] == ["gcp", "us-east-1", "<none>"]
    assert gcp[6:] == ["-", "rejected: cloud gcp, not aws"]


def test_table_counts_reservations_in_the_load() -> None:
    assert cells(table(FLEET[:1], now=NOW, reserved={"kidp-system/best": 2}))[1][4] == "5/10"


def test_table_of_no_candidates_is_the_header() -> None:
    assert table([], now=NOW).split() == [
        "BROKER", "CLOUD", "REGION", "PHASE", "LOAD", "HEARTBEAT", "SCORE", "RESULT",
    ]  # fmt: skip


# --- JSON -----------------------------------------------------------------------------


def test_decision_json_names_the_winner_and_every_candidate() -> None:
    decision = decision_json(FLEET)
    assert json.loads(json.dumps(decision)) == decision  # plain JSON values only
    assert decision["selected"] == {"namespace": "kidp-system", "name": "best", "score": 270.0}
    assert decision["candidates"][0] == {
        "namespace": "kidp-system",
        "name": "best",
        "score": 270.0,
        "parts": {"priority": 150, "load": 70, "heartbeat": 50},
        "rejected": None,
    }
    assert decision["candidates"][2] == {
        "namespace": "kidp-system",
        "name": "down",
        "score": None,
        "parts": None,
        "rejected": "phase is Unhealthy",
    }
    assert [c["name"] for c in decision["candidates"]] == ["best", "second", "down", "gcp"]


def test_decision_json_selects_nothing_when_the_first_is_rejected_or_none_exist() -> None:
    assert decision_json(FLEET[2:])["selected"] is None
    assert decision_json([]) == {"selected": None, "candidates": []}
