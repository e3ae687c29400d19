"""Database -> selection criteria: target parsing against the regions the registry knows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kidp_ops.model.resources import CLOUD_PROVIDERS, Database
from kidp_ops.placement import Placement, PlacementError, criteria_for, parse_target
from kidp_ops.selection import SelectionCriteria

KNOWN = ["eastus", "us-west-2", "us-west", "europe-west1", "local", "westeurope"]


class Regions:
    def __init__(self, regions: Iterable[str]) -> None:
        self._regions = frozenset(regions)

    def regions(self) -> frozenset[str]:
        return self._regions


NS = "team-payments"


def database(**spec: Any) -> Database:
    return Database.from_manifest(
        {
            "apiVersion": "platform.company.com/v1",
            "kind": "Database",
            "metadata": {"name": "orders", "namespace": "team-payments"},
            "spec": {"engine": "postgresql", **spec},
        }
    )


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("azure-eastus", Placement("azure", "eastus", None)),
        ("aws-us-west-2-prod", Placement("aws", "us-west-2", "prod")),
        ("aws-us-west-2", Placement("aws", "us-west-2", None)),
        ("aws-us-west-staging", Placement("aws", "us-west", "staging")),
        ("gcp-europe-west1", Placement("gcp", "europe-west1", None)),
        ("on-prem-local", Placement("on-prem", "local", None)),
        ("on-prem-local-dev", Placement("on-prem", "local", "dev")),
        ("azure", Placement("azure", None, None)),
        # Unknown regions still parse, minus a well-known environment word.
        ("azure-northpole-prod", Placement("azure", "northpole", "prod")),
        ("azure-north-pole", Placement("azure", "north-pole", None)),
    ],
)
def test_parse_target(target: str, expected: Placement) -> None:
    assert parse_target(target, KNOWN) == expected


@pytest.mark.parametrize("target", ["", "ibm-us-south", "awsus-west-2", "AWS-us-west-2", "prem-x"])
def test_unknown_provider_prefix_is_an_error_naming_the_field(target: str) -> None:
    with pytest.raises(PlacementError) as caught:
        parse_target(target, KNOWN)
    assert caught.value.field == ".spec.target"
    assert "allowed: azure, aws, gcp, on-prem" in str(caught.value)


def test_longest_known_region_wins_regardless_of_order() -> None:
    assert parse_target("aws-us-west-2-prod", ["us", "us-west", "us-west-2"]).region == "us-west-2"
    assert parse_target("aws-us-west-2-prod", ["us-west-2", "us-west", "us"]).region == "us-west-2"


@given(
    cloud=st.sampled_from(CLOUD_PROVIDERS),
    region=st.sampled_from(KNOWN),
    env=st.none() | st.sampled_from(["prod", "dev", "blue", "x1"]),
)
def test_parse_round_trips_known_regions(cloud: str, region: str, env: str | None) -> None:
    target = f"{cloud}-{region}" + (f"-{env}" if env else "")
    placed = parse_target(target, KNOWN)
    assert placed.cloud_provider == cloud
    # The longest known region that the rest starts with: `us-west` never hides `us-west-2`.
    rest = target[len(cloud) + 1 :]
    assert placed.region == max(
        (r for r in KNOWN if rest == r or rest.startswith(r + "-")), key=len
    )


def test_criteria_from_target_and_engine() -> None:
    criteria = criteria_for(database(target="aws-us-west-2-prod"), Regions(KNOWN))
    assert criteria == SelectionCriteria("Database", "postgresql", "aws", "us-west-2", NS)


def test_explicit_fields_win_over_the_target() -> None:
    db = database(target="aws-us-west-2-prod", provider="aurora", cloudProvider="gcp")
    assert criteria_for(db, Regions(KNOWN)) == SelectionCriteria(
        "Database", "aurora", "gcp", "us-west-2", NS
    )
    both = database(target="nonsense", cloudProvider="azure", region="eastus")
    assert criteria_for(both, Regions(KNOWN)) == SelectionCriteria(
        "Database", "postgresql", "azure", "eastus", NS
    )


def test_no_target_means_anywhere() -> None:
    expected = SelectionCriteria("Database", "postgresql", namespace=NS)  # allowedNamespaces
    assert criteria_for(database(), Regions([])) == expected


def test_unreadable_target_is_an_error() -> None:
    with pytest.raises(PlacementError, match="'mars-base' does not start with"):
        criteria_for(database(target="mars-base"), Regions(KNOWN))
