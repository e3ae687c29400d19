"""From a Database to selection criteria (ARCHITECTURE.md §4), pure.

resourceType is "Database"; provider is `spec.provider` or else `spec.engine`;
`spec.cloudProvider` and `spec.region` win when given, and otherwise come from
`spec.target`, read as `<cloudProvider>-<region>[-<environment>]`:

1. a known cloud provider prefix (`on-prem` before anything shorter);
2. then the longest region the registry knows that the rest starts with (regions contain
   dashes, so `us-west-2-prod` needs the list to find `us-west-2`);
3. then an optional environment suffix, ignored.

When no known region fits, the rest minus a well-known environment word is taken as the
region, so selection can say "no broker in region X" instead of failing the parse. A
target with no known provider prefix is a `PlacementError` naming the field and what is
allowed; the reconciler turns it into a condition on the Database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from kidp_ops.model.resources import CLOUD_PROVIDERS, Broker, Database
from kidp_ops.selection import SelectionCriteria

DATABASE = "Database"
ENVIRONMENTS = frozenset(
    {"prod", "production", "staging", "stage", "dev", "development", "test", "qa", "uat", "sandbox"}
)
_PREFIXES = sorted(CLOUD_PROVIDERS, key=len, reverse=True)


class PlacementError(ValueError):
    """A Database whose placement cannot be understood; the message is for its owner."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class KnowsRegions(Protocol):
    def regions(self) -> Iterable[str]: ...


@dataclass(frozen=True, slots=True)
class Placement:
    cloud_provider: str
    region: str | None
    environment: str | None


def parse_target(target: str, known_regions: Iterable[str]) -> Placement:
    """`aws-us-west-2-prod` -> aws / us-west-2 / prod (given `us-west-2` is known)."""
    text = target.strip()
    cloud = next((p for p in _PREFIXES if text == p or text.startswith(p + "-")), None)
    if cloud is None:
        raise PlacementError(
            ".spec.target",
            f"{target!r} does not start with a known cloud provider "
            f"(allowed: {', '.join(CLOUD_PROVIDERS)}; form <cloud>-<region>[-<environment>])",
        )
    rest = text[len(cloud) + 1 :]
    if not rest:
        return Placement(cloud, None, None)
    region = _longest_known(rest, known_regions)
    if region is not None:
        return Placement(cloud, region, rest[len(region) + 1 :] or None)
    head, _, last = rest.rpartition("-")
    if head and last in ENVIRONMENTS:
        return Placement(cloud, head, last)
    return Placement(cloud, rest, None)


def _longest_known(rest: str, known_regions: Iterable[str]) -> str | None:
    fitting = [r for r in known_regions if r and (rest == r or rest.startswith(r + "-"))]
    return max(fitting, key=len, default=None)


def criteria_for(database: Database, registry: KnowsRegions) -> SelectionCriteria:
    """The selection criteria for `database`; PlacementError when its target is unreadable."""
    spec = database.spec
    cloud, region = spec.cloud_provider, spec.region
    if spec.target and (cloud is None or region is None):
        placement = parse_target(spec.target, registry.regions())
        cloud = cloud or placement.cloud_provider
        region = region or placement.region
    return SelectionCriteria(
        resource_type=DATABASE,
        provider=spec.provider or spec.engine,
        cloud_provider=cloud,
        region=region,
        namespace=database.metadata.namespace,
    )


class _Regions:
    def __init__(self, regions: frozenset[str]) -> None:
        self._regions = regions

    def regions(self) -> frozenset[str]:
        return self._regions


def known_regions(brokers: Iterable[Broker]) -> KnowsRegions:
    """The regions `brokers` declare (their own and their capabilities'), as a registry would."""
    return _Regions(frozenset().union(*(broker.spec.named_regions() for broker in brokers)))
