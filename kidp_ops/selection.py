"""Pure broker selection: criteria, filters, score, ranking (ARCHITECTURE.md section 4).

Nothing here does I/O, reads a clock or keeps state: `now` and the registry's in-flight
reservations are passed in, so the same inputs always give the same answer. The registry's
index reuses `failed_filter`, `rejection` and `score` so that it decides exactly as the
linear scan in `select` does.

Filters, in order; the first one that fails is the rejection a person sees:

1. phase Ready;
2. not cordoned (`spec.unschedulable`);
3. the broker serves the request's namespace (`spec.allowedNamespaces`; absent: every
   namespace), when the request names one;
4. `cloudProvider` equal, when one is asked;
5. region equal, when one is asked; a broker with an empty region serves any region;
6. a capability with the asked `resourceType` (exact, case-sensitive match);
7. that capability's `providers` contain the asked provider, when one is asked. An empty
   `providers` list means "no providers declared", so such a capability is rejected
   whenever a provider is asked (and accepted when none is);
8. when a region is asked and that capability lists `regions`, the region is in them
   (an empty `regions` list means every region the broker serves);
9. not at capacity: with `maxConcurrentDeployments > 0`, active >= max is excluded;
   max 0 (or less) means unlimited. "active" is `status.activeDeployments` plus the
   registry's reservations for the broker (counts >= 0, keyed by `namespace/name`).

A broker that lists one resource type twice passes 6-8 when any of those entries does (as
the seed system reads it); a rejection then names what the first entry lacks.

Score = priority + load term + heartbeat bonus:

- load term: `(1 - active/max) * 100` when max > 0. An unlimited broker (max 0) has no
  load fraction to measure, so it counts as empty: load term 100, load fraction 0.
- heartbeat bonus by age (`now - lastHeartbeat`): under 60 s 50, under 300 s 25, else 0
  (exactly 60 s gets 25, exactly 300 s gets 0); no heartbeat 0; a heartbeat in the future
  (clock skew) counts as age 0.

Ties break deterministically: higher score, then lower load fraction, then `namespace/name`
ascending. Broker keys are assumed unique within one call (the registry's cache is keyed
by them).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from kidp_ops.model.resources import Broker, Capability

LOAD_WEIGHT = 100.0
FRESH_HEARTBEAT = timedelta(seconds=60)
RECENT_HEARTBEAT = timedelta(seconds=300)
FRESH_BONUS = 50.0
RECENT_BONUS = 25.0
NO_RESERVATIONS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SelectionCriteria:
    """What a request needs; None means "any"."""

    resource_type: str
    provider: str | None = None
    cloud_provider: str | None = None
    region: str | None = None
    namespace: str | None = None  # of the requesting object: brokers' allowedNamespaces


@dataclass(frozen=True, slots=True)
class ScoreParts:
    """The three terms of a broker's score, kept apart so `explain` can show them."""

    priority: float
    load: float
    heartbeat: float

    @property
    def total(self) -> float:
        return self.priority + self.load + self.heartbeat


@dataclass(frozen=True, slots=True)
class Candidate:
    """One broker's outcome: a score (accepted) or the first reason it was rejected."""

    broker: Broker
    score: float | None
    parts: ScoreParts | None
    rejected: str | None

    @property
    def accepted(self) -> bool:
        return self.rejected is None


class Filter(enum.StrEnum):
    """The filters in evaluation order; values are stable labels (metrics, history)."""

    PHASE = "phase"
    CORDONED = "cordoned"
    NAMESPACE = "namespace"
    CLOUD_PROVIDER = "cloud_provider"
    REGION = "region"
    CAPABILITY = "capability"
    PROVIDER = "provider"
    CAPABILITY_REGION = "capability_region"
    CAPACITY = "capacity"


def failed_filter(
    broker: Broker, criteria: SelectionCriteria, *, reserved_count: int = 0
) -> Filter | None:
    """The first filter `broker` fails for `criteria`, or None when it is a candidate.

    The cheap form of `rejection` (no string is built), for scans and indexes.
    """
    spec, status = broker.spec, broker.status
    if status.phase != "Ready":
        return Filter.PHASE
    if spec.unschedulable:
        return Filter.CORDONED
    if criteria.namespace is not None and not spec.serves_namespace(criteria.namespace):
        return Filter.NAMESPACE
    if criteria.cloud_provider is not None and spec.cloud_provider != criteria.cloud_provider:
        return Filter.CLOUD_PROVIDER
    asked_region = criteria.region
    if asked_region is not None and spec.region and spec.region != asked_region:
        return Filter.REGION
    capabilities = spec.capabilities_of(criteria.resource_type)
    if not capabilities:
        return Filter.CAPABILITY
    failed = [_capability_filter(c, criteria) for c in capabilities]
    if None not in failed:
        return failed[0]
    limit = spec.max_concurrent_deployments
    if limit > 0 and status.active_deployments + reserved_count >= limit:
        return Filter.CAPACITY
    return None


def _capability_filter(capability: Capability, criteria: SelectionCriteria) -> Filter | None:
    if criteria.provider is not None and criteria.provider not in capability.providers:
        return Filter.PROVIDER
    region = criteria.region
    if region is not None and capability.regions and region not in capability.regions:
        return Filter.CAPABILITY_REGION
    return None


def rejection(
    broker: Broker, criteria: SelectionCriteria, *, reserved_count: int = 0
) -> str | None:
    """Why `broker` is not a candidate for `criteria`, in words for on-call; None if it is."""
    failed = failed_filter(broker, criteria, reserved_count=reserved_count)
    if failed is None:
        return None
    return describe(failed, broker, criteria, reserved_count=reserved_count)


def describe(
    failed: Filter, broker: Broker, criteria: SelectionCriteria, *, reserved_count: int = 0
) -> str:
    """The human sentence for a filter `broker` failed (see `failed_filter`)."""
    spec, status = broker.spec, broker.status
    capability = spec.capability(criteria.resource_type)
    providers = capability.providers if capability else ()
    regions = capability.regions if capability else ()
    match failed:
        case Filter.PHASE:
            return f"phase {status.phase or 'not reported'} (not Ready)"
        case Filter.CORDONED:
            return "cordoned (unschedulable)"
        case Filter.NAMESPACE:
            return f"namespace {criteria.namespace} not allowed"
        case Filter.CLOUD_PROVIDER:
            return f"cloud provider {spec.cloud_provider}, asked {criteria.cloud_provider}"
        case Filter.REGION:
            return f"region {spec.region}, asked {criteria.region}"
        case Filter.CAPABILITY:
            return f"no {criteria.resource_type} capability"
        case Filter.PROVIDER:
            has = ", ".join(providers) or "none declared"
            lacks = f"{criteria.resource_type} capability lacks provider {criteria.provider}"
            return f"{lacks} (has: {has})"
        case Filter.CAPABILITY_REGION:
            return f"region {criteria.region} not in capability regions ({', '.join(regions)})"
        case Filter.CAPACITY:
            return _capacity_text(broker, reserved_count)


def _capacity_text(broker: Broker, reserved_count: int) -> str:
    active = broker.status.active_deployments + reserved_count
    text = f"at capacity ({active}/{broker.spec.max_concurrent_deployments} active"
    if reserved_count:
        text += f", {reserved_count} reserved"
    return text + ")"


def load_fraction(broker: Broker, *, reserved_count: int = 0) -> float:
    """active/max, counting reservations; 0 for an unlimited broker (max 0)."""
    limit = broker.spec.max_concurrent_deployments
    if limit <= 0:
        return 0.0
    return (broker.status.active_deployments + reserved_count) / limit


def score(broker: Broker, *, now: datetime, reserved_count: int = 0) -> ScoreParts:
    """The score terms of `broker` at `now` (an aware datetime).

    The load term is computed as `100 * (max - active) / max` (one rounding, equal to
    `(1 - active/max) * 100`), so equal load fractions always give equal floats. It is not
    clamped: score only brokers that passed the capacity filter.
    """
    limit = broker.spec.max_concurrent_deployments
    active = broker.status.active_deployments + reserved_count
    load = LOAD_WEIGHT * (limit - active) / limit if limit > 0 else LOAD_WEIGHT
    return ScoreParts(
        priority=float(broker.spec.priority),
        load=load,
        heartbeat=heartbeat_bonus(broker.status.last_heartbeat, now=now),
    )


def heartbeat_bonus(last_heartbeat: datetime | None, *, now: datetime) -> float:
    """50 under 60 s old, 25 under 300 s, else 0; none is 0; a future one is age 0."""
    if last_heartbeat is None:
        return 0.0
    age = max(now - last_heartbeat, timedelta(0))
    if age < FRESH_HEARTBEAT:
        return FRESH_BONUS
    if age < RECENT_HEARTBEAT:
        return RECENT_BONUS
    return 0.0


def order_key(
    broker: Broker, parts: ScoreParts, *, reserved_count: int = 0
) -> tuple[float, float, str]:
    """Sort key of an accepted broker: best first (higher score, lower load, key)."""
    return (-parts.total, load_fraction(broker, reserved_count=reserved_count), broker.key)


def rank(
    brokers: Iterable[Broker],
    criteria: SelectionCriteria,
    *,
    now: datetime,
    reserved: Mapping[str, int] = NO_RESERVATIONS,
) -> list[Candidate]:
    """Every broker: accepted ones best first, then rejected ones by `namespace/name`."""
    accepted: list[tuple[tuple[float, float, str], Candidate]] = []
    rejected: list[Candidate] = []
    for broker in brokers:
        count = reserved.get(broker.key, 0)
        reason = rejection(broker, criteria, reserved_count=count)
        if reason is not None:
            rejected.append(Candidate(broker, None, None, reason))
            continue
        parts = score(broker, now=now, reserved_count=count)
        candidate = Candidate(broker, parts.total, parts, None)
        accepted.append((order_key(broker, parts, reserved_count=count), candidate))
    accepted.sort(key=lambda pair: pair[0])
    rejected.sort(key=lambda candidate: candidate.broker.key)
    return [candidate for _, candidate in accepted] + rejected


def select(
    brokers: Iterable[Broker],
    criteria: SelectionCriteria,
    *,
    now: datetime,
    reserved: Mapping[str, int] = NO_RESERVATIONS,
) -> Candidate | None:
    """The best accepted broker, or None: one pass keeping the best, no full ranking.

    This is the linear-scan baseline the registry's index is measured against; it agrees
    with `rank(...)[0]` whenever something is accepted.
    """
    best: tuple[tuple[float, float, str], Broker, ScoreParts] | None = None
    for broker in brokers:
        # Reservations only add load, so a broker rejected without them stays rejected:
        # filter first and build the key (a string) only for the few that pass.
        if failed_filter(broker, criteria) is not None:
            continue
        count = reserved.get(broker.key, 0) if reserved else 0
        if count and failed_filter(broker, criteria, reserved_count=count) is not None:
            continue
        parts = score(broker, now=now, reserved_count=count)
        key = order_key(broker, parts, reserved_count=count)
        if best is None or key < best[0]:
            best = (key, broker, parts)
    if best is None:
        return None
    _, broker, parts = best
    return Candidate(broker, parts.total, parts, None)
