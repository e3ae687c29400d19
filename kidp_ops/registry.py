"""BrokerRegistry: the informer's brokers, indexed for selection, with reservations.

The registry decides exactly as `selection.select(self.brokers(), criteria, now=now,
reserved=self.reserved())` (a property test holds it to that), but its cost grows with the
few best candidates, not with the fleet.

**Index.** Only selectable brokers are indexed: phase Ready, not cordoned, not at capacity
counting reservations. A broker sits in one bucket per (resourceType, provider, cloud,
region slot, namespace slot) it can serve: the provider slot is None for a capability
declaring no providers; the region slot is None ("no region asked"), a region it serves,
or ANYWHERE (a region-less broker whose capability lists no regions); the namespace slot
is None for a broker serving every namespace, else one of its `allowedNamespaces`. So
every entry of a bucket passes every filter of the requests that read it. A request reads
one bucket, two when it asks a region (that region's and ANYWHERE), times two for its
namespace (None and its own), times each cloud, provider or namespace it leaves open. Buckets
are sorted by `selection.order_key` computed at the *watermark* W, the latest `now` the
index has been brought to. The heartbeat bonus only falls as time passes, so a key at W is
never worse than the key at any now >= W; a heap of each broker's next bonus step
(heartbeat + 60 s, + 300 s) re-keys brokers as W advances, which keeps keys exact and the
head of a bucket the answer. Selection merges the buckets best-first, scores each entry it
pops with `selection.score`, and stops once the next entry's key (a lower bound of its real
key) is not better than the best found. A `now` before W (a clock stepping back) falls
back to the linear scan.

**Reservations.** `select(..., reserve_for=request_id)` counts one more deployment on the
chosen broker, re-keying it, until the broker reports it: each reservation expects the
broker's `activeDeployments` to reach (reported count when reserved) + (its reservations
then, itself included); an update reaching the expectation of the k-th oldest releases the
oldest k. A reservation also ends after `reservation_ttl` seconds (checked lazily against
the clock) or by `release(request_id)`; either way the younger ones of that broker expect
one deployment less. A broker's deletion drops its reservations.

Not thread-safe: one event-loop thread feeds and reads it. No I/O. Longer than our usual
400 lines because the index, the bonus steps and the reservations each change what the
others must keep up to date; split apart, those invariants would be harder to see.
"""

# size: the index, the bonus steps and the reservations keep each other's invariants (above)

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, ValuesView
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from kidp_ops import selection
from kidp_ops.clock import utc_now
from kidp_ops.model.convert import from_json
from kidp_ops.model.resources import Broker, BrokerSpec, ObjectMeta
from kidp_ops.selection import (
    FRESH_HEARTBEAT,
    RECENT_HEARTBEAT,
    Candidate,
    SelectionCriteria,
    failed_filter,
    order_key,
    rank,
    score,
)

log = logging.getLogger("kidp_ops.registry")


class _Anywhere:
    """The region slot of brokers that serve every region (hashed by identity, in C)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ANYWHERE"


ANYWHERE = _Anywhere()
RegionSlot = str | _Anywhere | None
BucketKey = tuple[str, str | None, str, RegionSlot, str | None]
SortKey = tuple[float, float, str]
_NO_REGION: tuple[RegionSlot, ...] = (None,)
_DAWN = datetime.min.replace(tzinfo=UTC)  # the first watermark: every heartbeat is fresh


@dataclass(slots=True)
class _Entry:
    """One broker's place in the index."""

    broker: Broker
    slots: tuple[BucketKey, ...]  # the buckets its spec qualifies it for
    placed: tuple[BucketKey, ...] = ()  # the buckets holding `sort_key` now
    sort_key: SortKey | None = None
    step: datetime | None = None  # when its heartbeat bonus next falls; heap items of
    # other times are stale


@dataclass(slots=True)
class _Reservation:
    broker_key: str
    expected: int  # reported activeDeployments at which it counts as deployed
    expires: datetime


class BrokerRegistry:
    """The current brokers by `namespace/name`, an index over them, and reservations."""

    def __init__(
        self, *, clock: Callable[[], datetime] = utc_now, reservation_ttl: float = 60.0
    ) -> None:
        self._clock = clock
        self._ttl = timedelta(seconds=reservation_ttl)
        self._brokers: dict[str, Broker] = {}
        self._by_name: dict[str, set[str]] = {}  # bare name -> keys (callbacks by name)
        self._entries: dict[str, _Entry] = {}
        self._buckets: dict[BucketKey, Any] = {}  # SortedList[SortKey]
        self._clouds: set[str] = set()  # every cloud, provider and namespace slot ever
        self._providers: dict[str, set[str | None]] = {}  # indexed, for requests leaving
        self._namespaces: set[str | None] = {None}  # them open
        self._region_counts: dict[str, int] = {}
        self._regions: frozenset[str] = frozenset()
        self._watermark = _DAWN
        self._steps: list[tuple[datetime, str]] = []  # heap of heartbeat steps
        self._reservations: OrderedDict[str, _Reservation] = OrderedDict()
        self._held: dict[str, list[str]] = {}  # broker key -> request ids, oldest first
        self._counts: dict[str, int] = {}

    # --- the informer's side --------------------------------------------------------------

    def handle(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """Apply one watch event ("ADDED", "MODIFIED", "DELETED") for a Broker manifest.

        A manifest that cannot be converted is logged and removes its key: a broker the
        registry cannot read is never selected.
        """
        metadata = obj.get("metadata")
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        if not isinstance(name, str) or not name:
            log.warning("ignoring a %s Broker event without metadata.name", event_type)
            return
        # The key a Broker built from this manifest has (ObjectMeta's namespace default).
        key = from_json(ObjectMeta, metadata).key
        if event_type == "DELETED":
            self.remove(key)
            return
        if event_type not in ("ADDED", "MODIFIED"):
            log.warning("ignoring a %s event for Broker %s", event_type, key)
            return
        try:
            broker = Broker.from_manifest(obj)
            problem = _unreadable(broker)
        except Exception as error:  # any malformed input; the handler must keep running
            problem = str(error) or type(error).__name__
        if problem is not None:
            log.warning("Broker %s cannot be read (%s); it is not selectable", key, problem)
            self.remove(key)
            return
        self.upsert(broker)

    def upsert(self, broker: Broker) -> None:
        """Add or replace `broker`; it is selectable (or not) as of this call."""
        key = broker.key
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(broker, _slots(broker.spec))
            self._count_regions(broker.spec, 1)
            self._note_slots(entry.slots)
        else:
            old, entry.broker = entry.broker, broker
            if old.spec != broker.spec:
                self._count_regions(old.spec, -1)
                self._count_regions(broker.spec, 1)
                entry.slots = _slots(broker.spec)
                self._note_slots(entry.slots)
        if key not in self._brokers:
            self._by_name.setdefault(broker.metadata.name, set()).add(key)
        self._brokers[key] = broker
        if key in self._held:
            self._catch_up(key, broker.status.active_deployments)
        self._place(entry)

    def remove(self, key: str) -> bool:
        """Forget the broker `namespace/name` and its reservations; False if unknown."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        del self._brokers[key]
        named = self._by_name[entry.broker.metadata.name]
        named.discard(key)
        if not named:
            del self._by_name[entry.broker.metadata.name]
        self._unplace(entry)
        self._count_regions(entry.broker.spec, -1)
        for request_id in self._held.pop(key, ()):
            del self._reservations[request_id]
        self._counts.pop(key, None)
        return True

    # --- reading --------------------------------------------------------------------------

    def get(self, key: str) -> Broker | None:
        return self._brokers.get(key)

    def named(self, name: str) -> list[Broker]:
        """Every broker called `name`, in any namespace (a bare callback sender name)."""
        return [self._brokers[key] for key in sorted(self._by_name.get(name, ()))]

    def __len__(self) -> int:
        return len(self._brokers)

    def brokers(self) -> ValuesView[Broker]:
        """Every broker, selectable or not (a live view: copy it to keep it)."""
        return self._brokers.values()

    def regions(self) -> frozenset[str]:
        """Every region a broker names, in `spec.region` or in a capability's `regions`."""
        return self._regions

    def reserved(self) -> Mapping[str, int]:
        """Reservations in force, counted by broker key (a snapshot)."""
        self._expire()
        return dict(self._counts)

    def eligible_count(self, criteria: SelectionCriteria) -> int:
        """How many brokers pass every filter for `criteria` now (reservations counted):
        the "of N candidates" of a decision. Reads only the matching buckets."""
        if self._reservations:
            self._expire()
        buckets = self._buckets_for(criteria)
        if len(buckets) == 1:
            return len(buckets[0])
        return len({entry[2] for bucket in buckets for entry in bucket})

    def explain(
        self, criteria: SelectionCriteria, *, now: datetime | None = None
    ) -> list[Candidate]:
        """Every broker with its score or the first reason it is rejected (`selection.rank`)."""
        self._expire()
        moment = self._clock() if now is None else now
        return rank(self._brokers.values(), criteria, now=moment, reserved=self._counts)

    # --- selecting ------------------------------------------------------------------------

    def select(
        self,
        criteria: SelectionCriteria,
        *,
        now: datetime | None = None,
        reserve_for: str | None = None,
    ) -> Candidate | None:
        """The best broker for `criteria` at `now` (default: the clock), or None.

        With `reserve_for`, the chosen broker counts one more deployment until it reports
        it (see the module docstring). Asking again for the same request id returns its
        broker while that is still a candidate, without counting it twice.
        """
        if self._reservations:
            self._expire()
        moment = self._clock() if now is None else now
        if reserve_for is not None and reserve_for in self._reservations:
            kept = self._kept(reserve_for, criteria, moment)
            if kept is not None:
                return kept
            self.release(reserve_for)
        chosen = self._best(criteria, moment, explicit=now is not None)
        if chosen is not None and reserve_for is not None:
            self._reserve(reserve_for, chosen.broker)
        return chosen

    # size: one merge loop: its bound and its best are read together
    def _best(
        self, criteria: SelectionCriteria, now: datetime, *, explicit: bool
    ) -> Candidate | None:
        if now > self._watermark:
            # an explicit `now` ahead of the clock is served, but does not move the index
            # past the clock: keys at an earlier watermark are still lower bounds
            target = min(now, self._clock()) if explicit else now
            if target > self._watermark:
                self._advance(target)
        elif now < self._watermark:  # keys may undervalue brokers at this earlier time
            return selection.select(
                self._brokers.values(), criteria, now=now, reserved=self._counts
            )
        heads: list[tuple[SortKey, int, Iterator[SortKey]]] = []
        for index, bucket in enumerate(self._buckets_for(criteria)):
            entries = iter(bucket)
            heads.append((next(entries), index, entries))
        heapq.heapify(heads)
        brokers, counts = self._brokers, self._counts
        best: tuple[SortKey, Broker, selection.ScoreParts] | None = None
        while heads:
            bound, index, entries = heads[0]
            if best is not None and bound >= best[0]:
                break  # no entry left can beat or tie the best
            # Every entry of these buckets passes every filter (that is what its buckets
            # mean), so only the score is left to evaluate. The load and name parts of
            # `order_key` do not depend on `now`: they are the entry's own.
            broker = brokers[bound[2]]
            parts = score(broker, now=now, reserved_count=counts.get(bound[2], 0))
            key = (-parts.total, bound[1], bound[2])
            if best is None or key < best[0]:
                best = (key, broker, parts)
                if key == bound:  # exact: every other entry's key is above this bound
                    break
            following = next(entries, None)
            if following is None:
                heapq.heappop(heads)
            else:
                heapq.heapreplace(heads, (following, index, entries))
        if best is None:
            return None
        return Candidate(best[1], best[2].total, best[2], None)

    def _buckets_for(self, criteria: SelectionCriteria) -> list[Any]:
        """The buckets holding exactly the brokers that pass every filter for `criteria`."""
        resource_type, provider = criteria.resource_type, criteria.provider
        cloud = criteria.cloud_provider
        regions = _NO_REGION if criteria.region is None else (criteria.region, ANYWHERE)
        asked = criteria.namespace
        namespaces = self._namespaces if asked is None else (None, asked)
        get, found = self._buckets.get, []
        if provider is not None and cloud is not None:  # the usual request, kept short
            for region in regions:
                for namespace in namespaces:
                    bucket = get((resource_type, provider, cloud, region, namespace))
                    if bucket is not None:
                        found.append(bucket)
            return found
        providers = (provider,) if provider is not None else self._providers.get(resource_type, ())
        for provider_slot in providers:
            for cloud_slot in self._clouds if cloud is None else (cloud,):
                for region in regions:
                    for namespace in namespaces:
                        bucket = get((resource_type, provider_slot, cloud_slot, region, namespace))
                        if bucket is not None:
                            found.append(bucket)
        return found

    # --- reservations ---------------------------------------------------------------------

    def release(self, request_id: str) -> bool:
        """End the reservation of `request_id`; False if there is none."""
        reservation = self._reservations.pop(request_id, None)
        if reservation is None:
            return False
        self._drop(request_id, reservation.broker_key)
        return True

    def _kept(
        self, request_id: str, criteria: SelectionCriteria, now: datetime
    ) -> Candidate | None:
        """The broker `request_id` holds, scored without its own reservation, if it still fits."""
        key = self._reservations[request_id].broker_key
        broker = self._brokers[key]
        others = self._counts[key] - 1
        if failed_filter(broker, criteria, reserved_count=others) is not None:
            return None
        parts = score(broker, now=now, reserved_count=others)
        return Candidate(broker, parts.total, parts, None)

    def _reserve(self, request_id: str, broker: Broker) -> None:
        key = broker.key
        held = self._held.setdefault(key, [])
        held.append(request_id)
        self._counts[key] = len(held)
        expected = broker.status.active_deployments + len(held)
        self._reservations[request_id] = _Reservation(key, expected, self._clock() + self._ttl)
        self._place(self._entries[key])

    def _drop(self, request_id: str, broker_key: str) -> None:
        """Forget a reservation that did not show up as a deployment (released, expired)."""
        held = self._held[broker_key]
        position = held.index(request_id)
        del held[position]
        for younger in held[position:]:
            self._reservations[younger].expected -= 1
        self._set_count(broker_key)
        self._place(self._entries[broker_key])

    def _catch_up(self, broker_key: str, active: int) -> None:
        """Release the k oldest reservations when `active` reaches what the k-th expects."""
        held = self._held[broker_key]
        done = 0
        for position, request_id in enumerate(held, start=1):
            if self._reservations[request_id].expected <= active:
                done = position
        if done:
            for request_id in held[:done]:
                del self._reservations[request_id]
            del held[:done]
            self._set_count(broker_key)

    def _set_count(self, broker_key: str) -> None:
        held = self._held[broker_key]
        if held:
            self._counts[broker_key] = len(held)
        else:
            del self._held[broker_key], self._counts[broker_key]

    def _expire(self) -> None:
        if not self._reservations:
            return
        now = self._clock()
        while self._reservations:
            request_id, reservation = next(iter(self._reservations.items()))
            if reservation.expires > now:
                return
            del self._reservations[request_id]
            self._drop(request_id, reservation.broker_key)

    # --- index maintenance ----------------------------------------------------------------

    def _place(self, entry: _Entry) -> None:
        """Put `entry` where its broker, reservations and the watermark say it belongs."""
        broker = entry.broker
        count = self._counts.get(broker.key, 0)
        key: SortKey | None = None
        if _selectable(broker, count):
            parts = score(broker, now=self._watermark, reserved_count=count)
            key = order_key(broker, parts, reserved_count=count)
            self._schedule(entry)
        slots = entry.slots if key is not None else ()
        if key == entry.sort_key and slots == entry.placed:
            return
        self._unplace(entry)
        if key is not None:
            for bucket_key in slots:
                bucket = self._buckets.get(bucket_key)
                if bucket is None:
                    bucket = self._buckets[bucket_key] = SortedList()
                bucket.add(key)
        entry.sort_key, entry.placed = key, slots

    def _unplace(self, entry: _Entry) -> None:
        for bucket_key in entry.placed:
            bucket = self._buckets[bucket_key]
            bucket.remove(entry.sort_key)
            if not bucket:
                del self._buckets[bucket_key]
        entry.sort_key, entry.placed = None, ()

    def _schedule(self, entry: _Entry) -> None:
        """Push the broker's next heartbeat step after the watermark, if it moved."""
        step = _next_step(entry.broker.status.last_heartbeat, self._watermark)
        if step != entry.step:
            entry.step = step
            if step is not None:
                heapq.heappush(self._steps, (step, entry.broker.key))
                if len(self._steps) > 2 * len(self._entries) + 1024:
                    self._compact_steps()

    def _advance(self, moment: datetime) -> None:
        """Move the watermark to `moment`, re-keying brokers whose bonus fell by then."""
        self._watermark = moment
        while self._steps and self._steps[0][0] <= moment:
            step, key = heapq.heappop(self._steps)
            entry = self._entries.get(key)
            if entry is not None and entry.step == step:
                entry.step = None
                self._place(entry)

    def _compact_steps(self) -> None:
        live = {(e.step, k) for k, e in self._entries.items() if e.step}
        self._steps = [item for item in self._steps if item in live]
        heapq.heapify(self._steps)

    def _note_slots(self, slots: tuple[BucketKey, ...]) -> None:
        for resource_type, provider, cloud, _, namespace in slots:
            self._clouds.add(cloud)
            self._providers.setdefault(resource_type, set()).add(provider)
            self._namespaces.add(namespace)

    def _count_regions(self, spec: BrokerSpec, delta: int) -> None:
        counts, changed = self._region_counts, False
        for region in spec.named_regions():
            count = counts.get(region, 0) + delta
            if count > 0:
                counts[region] = count
                changed = changed or count == 1
            else:
                del counts[region]
                changed = True
        if changed:
            self._regions = frozenset(counts)


def _unreadable(broker: Broker) -> str | None:
    """A field selection reads with a type it cannot use, or None.

    The API server's schema check guarantees these types; `from_manifest` does not check
    them, and one bad value must not break the index for every other broker.
    """
    spec, status = broker.spec, broker.status
    fields: tuple[tuple[str, object, type], ...] = (
        ("spec.cloudProvider", spec.cloud_provider, str),
        ("spec.region", spec.region, str),
        ("spec.priority", spec.priority, int),
        ("spec.maxConcurrentDeployments", spec.max_concurrent_deployments, int),
        ("status.activeDeployments", status.active_deployments, int),
    )
    for name, value, expected in fields:
        if not isinstance(value, expected):
            return f"{name} is {value!r}, not {expected.__name__}"
    for capability in spec.capabilities:
        names = (capability.resource_type, *capability.providers, *capability.regions)
        if not all(isinstance(name, str) for name in names):
            return f"spec.capabilities has a non-string name in {names!r}"
    return None


def _selectable(broker: Broker, reserved_count: int) -> bool:
    """The filters that do not depend on the request: Ready, not cordoned, below capacity."""
    spec, status = broker.spec, broker.status
    limit = spec.max_concurrent_deployments
    return (
        status.phase == "Ready"
        and not spec.unschedulable
        and not (limit > 0 and status.active_deployments + reserved_count >= limit)
    )


def _slots(spec: BrokerSpec) -> tuple[BucketKey, ...]:
    """Every bucket a selectable broker with `spec` belongs in (see the module docstring).
    A type listed twice puts the broker in the buckets of both entries."""
    namespaces: tuple[str | None, ...] = (
        (None,)
        if spec.allowed_namespaces is None
        else tuple(dict.fromkeys(spec.allowed_namespaces))
    )
    slots: list[BucketKey] = []
    for capability in spec.capabilities:
        resource_type = capability.resource_type
        regions = _served_regions(spec.region, capability.regions)
        providers: tuple[str | None, ...] = tuple(dict.fromkeys(capability.providers)) or (None,)
        for provider in providers:
            for region in (None, *regions):
                slots.extend(
                    (resource_type, provider, spec.cloud_provider, region, namespace)
                    for namespace in namespaces
                )
    return tuple(dict.fromkeys(slots))


def _served_regions(region: str, listed: tuple[str, ...]) -> tuple[RegionSlot, ...]:
    """The asked regions a broker in `region` with capability regions `listed` accepts."""
    if region:
        return (region,) if not listed or region in listed else ()
    return tuple(dict.fromkeys(listed)) if listed else (ANYWHERE,)


def _next_step(heartbeat: datetime | None, after: datetime) -> datetime | None:
    """When the heartbeat bonus next falls after `after` (it only ever falls), or None."""
    if heartbeat is None:
        return None
    try:
        for age in (FRESH_HEARTBEAT, RECENT_HEARTBEAT):
            if after < heartbeat + age:
                return heartbeat + age
    except OverflowError:  # a heartbeat near datetime.max stays fresh
        return None
    return None
