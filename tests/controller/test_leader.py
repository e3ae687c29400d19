"""Leader election on a Lease, against every Cluster adapter (`target`), plus its pure core.

The retry period is a small real one (0.15 s: the elector sleeps it between attempts); the
lease duration (1 s) and renew deadline (0.5 s) are judged on a `ManualClock` wherever a test
is about them, so "not yet" is asserted after an attempt that was seen to happen at a known
time, and "now" follows a move of the clock. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from kidp_ops.cluster.base import (
    LEASES,
    Cluster,
    Manifest,
    ObjectList,
    ResourceKind,
    Unavailable,
    WatchEvent,
)
from kidp_ops.controller.leader import (
    LeaderElector,
    LeadershipLost,
    LeaseRecord,
    default_identity,
    is_free,
    micro_time,
    next_record,
    observed_since,
    released_record,
)
from tests.support.clocks import ManualClock
from tests.support.targets import Target, target
from tests.support.waiting import until

__all__ = ["target"]

NAME, NS = "kidp-ops", "kidp-system"
LEASE, RENEW, RETRY = 1.0, 0.5, 0.15
DEADLINE = 10.0
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def lease_spec(cluster: Cluster) -> dict[str, Any]:
    return dict((await cluster.get(LEASES, NAME, namespace=NS))["spec"])


class Candidate:
    """One elector running `run()` in a task, recording when it led."""

    def __init__(self, cluster: Cluster, identity: str, **options: Any) -> None:
        self.elector = LeaderElector(
            cluster,
            name=NAME,
            namespace=NS,
            identity=identity,
            lease_duration=LEASE,
            renew_deadline=RENEW,
            retry_period=RETRY,
            **options,
        )
        self.identity = identity
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.stopped_leading_calls = 0
        self.finish = asyncio.Event()  # set: the leading work returns
        self.fail_with: Exception | None = None
        self.task: asyncio.Task[None] | None = None

    async def _lead(self) -> None:
        self.started_at = time.monotonic()
        try:
            await self.finish.wait()
            if self.fail_with is not None:
                raise self.fail_with
        finally:
            self.stopped_at = time.monotonic()

    def _stopped_leading(self) -> None:
        self.stopped_leading_calls += 1

    def start(self) -> Candidate:
        self.task = asyncio.create_task(self.elector.run(self._lead, self._stopped_leading))
        return self

    @property
    def leading(self) -> bool:
        return self.started_at is not None and self.stopped_at is None

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
                await self.task


@pytest.fixture
async def candidates() -> AsyncIterator[Callable[..., Candidate]]:
    made: list[Candidate] = []

    def make(cluster: Cluster, identity: str, **options: Any) -> Candidate:
        made.append(Candidate(cluster, identity, **options))
        return made[-1]

    yield make
    for candidate in made:
        await candidate.stop()


class Wrapped(Cluster):
    """A real cluster behind hooks: it can be `down` (counting the calls it `refused`), or
    run `before_create` / `before_replace` once (to let a rival write first). `reads` are
    the lease records its elector got, in order; `writes` counts its creates and replaces,
    counted on entry: an elector that finds the lease free writes in the same step as the
    read, so a read followed by no write is a decision to leave the lease alone."""

    def __init__(self, inner: Cluster) -> None:
        self.inner = inner
        self.down = False
        self.refused = 0
        self.reads: list[LeaseRecord] = []
        self.writes = 0
        self.before_create: Callable[[], Any] | None = None
        self.before_replace: Callable[[], Any] | None = None

    def _check(self) -> None:
        if self.down:
            self.refused += 1
            raise Unavailable("the API server is down (test)")

    async def get(self, kind: ResourceKind, name: str, *, namespace: str | None = None) -> Manifest:
        self._check()
        got = await self.inner.get(kind, name, namespace=namespace)
        self.reads.append(LeaseRecord.from_spec(got.get("spec")))
        return got

    async def list(self, kind: ResourceKind, **kw: Any) -> ObjectList:
        self._check()
        return await self.inner.list(kind, **kw)

    def watch(self, kind: ResourceKind, **kw: Any) -> AsyncIterator[WatchEvent]:
        return self.inner.watch(kind, **kw)

    async def create(self, manifest: Manifest) -> Manifest:
        self.writes += 1
        self._check()
        hook, self.before_create = self.before_create, None
        if hook is not None:
            await hook()
        return await self.inner.create(manifest)

    async def replace(self, manifest: Manifest) -> Manifest:
        self.writes += 1
        self._check()
        hook, self.before_replace = self.before_replace, None
        if hook is not None:
            await hook()
        return await self.inner.replace(manifest)

    async def patch(self, *a: Any, **kw: Any) -> Manifest:
        self._check()
        return await self.inner.patch(*a, **kw)

    async def patch_status(self, *a: Any, **kw: Any) -> Manifest:
        self._check()
        return await self.inner.patch_status(*a, **kw)

    async def delete(self, *a: Any, **kw: Any) -> Manifest | None:
        self._check()
        return await self.inner.delete(*a, **kw)


def renewals(reads: Sequence[LeaseRecord], holder: str) -> int:
    """How many different records of `holder` were read (each renewal is one)."""
    return len({read.renew_time for read in reads if read.holder == holder})


async def a_new_renewal(seen: Wrapped, holder: str) -> None:
    """Wait until the elector behind `seen` reads a renewal by `holder` it had not seen."""
    count = renewals(seen.reads, holder)
    await until(lambda: renewals(seen.reads, holder) > count)


async def settled(seen: Wrapped) -> LeaseRecord:
    """Wait until the elector behind `seen` reads one record twice in a row, both reads
    from now on, and leaves it alone: no write is on its way any more, and that record is
    the one it observes (since the clock's present time, when the clock has not moved)."""
    start, writes = len(seen.reads), seen.writes
    await until(lambda: len(seen.reads) >= start + 2 and seen.reads[-1] == seen.reads[-2])
    assert seen.writes == writes, "the elector tried to take the lease"
    return seen.reads[-1]


async def left_alone(seen: Wrapped) -> None:
    """Wait until the elector behind `seen` reads the lease once more; it must not try to
    take it (it would write in the same step as the read)."""
    reads, writes = len(seen.reads), seen.writes
    await until(lambda: len(seen.reads) > reads)
    assert seen.writes == writes, "the elector tried to take the lease"


# --- the pure core --------------------------------------------------------------------


def test_micro_time_is_rfc3339_utc_with_microseconds() -> None:
    moment = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
    assert micro_time(moment) == "2026-11-25T10:00:00.123456Z"
    assert MICRO_TIME.match(micro_time(datetime.now(UTC)))


def test_lease_record_round_trips_through_a_spec() -> None:
    record = LeaseRecord("a", 15, "2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:01.000000Z", 3)
    assert LeaseRecord.from_spec(record.to_spec()) == record
    assert LeaseRecord.from_spec(None) == LeaseRecord()
    assert LeaseRecord.from_spec({"holderIdentity": None}).holder == ""


def test_a_lease_is_free_when_empty_ours_or_expired_by_local_time() -> None:
    held = LeaseRecord("other", 10)

    def free(record: LeaseRecord, observed_at: float, now: float) -> bool:
        return is_free(record, identity="me", observed_at=observed_at, now=now, default_duration=5)

    assert free(LeaseRecord(""), observed_at=100, now=100)
    assert free(LeaseRecord("me", 10), observed_at=100, now=100)
    assert not free(held, observed_at=100, now=109.9)
    assert free(held, observed_at=100, now=110)
    assert not free(LeaseRecord("other", 0), observed_at=100, now=104)  # default duration
    assert free(LeaseRecord("other", 0), observed_at=100, now=105)


def test_observation_time_restarts_only_when_the_record_changes() -> None:
    first = LeaseRecord("a", 10, renew_time="t1")
    assert observed_since(None, 0.0, first, 5.0) == 5.0
    assert observed_since(first, 5.0, LeaseRecord("a", 10, renew_time="t1"), 9.0) == 5.0
    assert observed_since(first, 5.0, LeaseRecord("a", 10, renew_time="t2"), 9.0) == 9.0


def test_next_record_renews_takes_over_and_creates() -> None:
    created = next_record(None, identity="a", duration_seconds=15, stamp="t0")
    assert created == LeaseRecord("a", 15, "t0", "t0", 0)
    renewed = next_record(created, identity="a", duration_seconds=15, stamp="t1")
    assert renewed == LeaseRecord("a", 15, "t0", "t1", 0)
    taken = next_record(renewed, identity="b", duration_seconds=20, stamp="t2")
    assert taken == LeaseRecord("b", 20, "t2", "t2", 1)
    released = released_record(taken, stamp="t3")
    assert released == LeaseRecord("", 1, "t3", "t3", 1)
    assert next_record(released, identity="a", duration_seconds=15, stamp="t4").transitions == 2


def test_timing_parameters_are_checked() -> None:
    cluster: Any = object()
    with pytest.raises(ValueError):
        LeaderElector(cluster, name=NAME, namespace=NS, lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError):
        LeaderElector(cluster, name=NAME, namespace=NS, renew_deadline=2, retry_period=2)
    assert LeaderElector(cluster, name=NAME, namespace=NS).identity.count("_") >= 2


def test_default_identities_are_unique() -> None:
    assert default_identity() != default_identity()


# --- against the adapters -------------------------------------------------------------


async def test_exactly_one_of_two_leads(target: Target, candidates: Any) -> None:
    clock = ManualClock()
    views = {name: Wrapped(target.cluster) for name in "ab"}
    a = candidates(views["a"], "a", clock=clock).start()
    b = candidates(views["b"], "b", clock=clock).start()
    await until(lambda: a.leading or b.leading)
    leader, other = (a, b) if a.leading else (b, a)
    assert leader.elector.is_leader and not other.elector.is_leader
    # Each time the other has seen a new renewal, 0.6 of a lease passes: 1.2 leases in all,
    # so only the renewals it saw keep it from taking over.
    seen = views[other.identity]
    await until(lambda: other.elector.leader == leader.identity)  # it read the lease held
    writes = seen.writes
    for _ in range(2):
        await a_new_renewal(seen, leader.identity)
        clock.advance(0.6 * LEASE)
    await left_alone(seen)
    assert seen.writes == writes and other.started_at is None and leader.leading
    spec = await lease_spec(target.cluster)
    assert spec["holderIdentity"] == leader.identity
    assert spec["leaseDurationSeconds"] == 1


async def test_a_new_lease_is_created_with_every_field(target: Target, candidates: Any) -> None:
    a = candidates(target.cluster, "a").start()
    await asyncio.wait_for(a.elector.wait_leader(), DEADLINE)
    spec = await lease_spec(target.cluster)
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 0
    assert MICRO_TIME.match(spec["acquireTime"]) and MICRO_TIME.match(spec["renewTime"])


async def test_renewals_keep_acquire_time(target: Target, candidates: Any) -> None:
    a = candidates(target.cluster, "a").start()
    await asyncio.wait_for(a.elector.wait_leader(), DEADLINE)
    created = await lease_spec(target.cluster)
    renewed: dict[str, Any] = {}

    async def renewal() -> bool:
        renewed.update(await lease_spec(target.cluster))
        return bool(renewed["renewTime"] != created["renewTime"])

    await until(renewal, DEADLINE, every=0.02, what="a renewal")
    assert renewed["acquireTime"] == created["acquireTime"]
    assert renewed["renewTime"] > created["renewTime"]
    assert renewed["leaseTransitions"] == 0


async def test_release_hands_over_promptly_and_counts_transitions(
    target: Target, candidates: Any
) -> None:
    frozen = ManualClock()  # never moves: b and a2 can only take a released lease
    a = candidates(target.cluster, "a").start()
    await asyncio.wait_for(a.elector.wait_leader(), DEADLINE)
    b = candidates(target.cluster, "b", clock=frozen).start()
    await until(lambda: b.elector.leader == "a")  # b watches a hold it

    a.finish.set()  # a's work ends: a releases the lease
    await asyncio.wait_for(a.task, DEADLINE)
    assert not a.elector.is_leader and a.stopped_leading_calls == 1
    await until(lambda: b.leading)
    assert a.stopped_at is not None and b.started_at is not None
    assert b.started_at > a.stopped_at
    spec = await lease_spec(target.cluster)
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1

    a2 = candidates(target.cluster, "a", clock=frozen).start()
    await b.stop()  # cancelled with release_on_cancel: released as well
    await until(lambda: a2.leading)
    spec = await lease_spec(target.cluster)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("a", 2)


async def test_release_writes_an_empty_holder(target: Target, candidates: Any) -> None:
    a = candidates(target.cluster, "a").start()
    await asyncio.wait_for(a.elector.wait_leader(), DEADLINE)
    await a.stop()
    spec = await lease_spec(target.cluster)
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 0
    assert a.stopped_leading_calls == 1


async def test_release_survives_a_late_write_of_its_own_renewal(
    target: Target, candidates: Any
) -> None:
    """A renewal cancelled on its way may still be written after the lease the elector
    remembers; the release then meets a Conflict, re-reads, and still releases."""
    cluster = target.cluster

    class LateRenewal(Wrapped):
        late_writes = 0

        async def replace(self, manifest: Manifest) -> Manifest:
            if manifest["spec"]["holderIdentity"] == "" and not self.late_writes:
                current = await cluster.get(LEASES, NAME, namespace=NS)
                renewed = {**current["spec"], "renewTime": micro_time(datetime.now(UTC))}
                await cluster.replace({**current, "spec": renewed})
                self.late_writes += 1
            return await super().replace(manifest)

    late = LateRenewal(cluster)
    a = candidates(late, "a").start()
    await asyncio.wait_for(a.elector.wait_leader(), DEADLINE)
    await a.stop()
    assert late.late_writes == 1
    assert (await lease_spec(cluster))["holderIdentity"] == ""


async def test_a_killed_leader_is_replaced_after_the_lease_expires(
    target: Target, candidates: Any
) -> None:
    clock = ManualClock()
    a = candidates(target.cluster, "a", release_on_cancel=False).start()
    await asyncio.wait_for(a.elector.wait_leader(), DEADLINE)
    seen = Wrapped(target.cluster)
    b = candidates(seen, "b", clock=clock).start()
    await until(lambda: renewals(seen.reads, "a") >= 2)  # b watches a renew

    await a.stop()  # no release: a simply stops renewing, like a crashed process
    assert (await settled(seen)).holder == "a"  # b observes a's last record at 1000
    clock.advance(LEASE / 2)
    await left_alone(seen)
    assert not b.leading  # half a lease after the last change b saw: not expired
    clock.advance(LEASE / 2)
    await until(lambda: b.leading)  # a whole lease: expired
    spec = await lease_spec(target.cluster)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)


async def test_an_unreachable_cluster_ends_the_leadership_before_another_starts(
    target: Target, candidates: Any
) -> None:
    clock = ManualClock()
    flaky = Wrapped(target.cluster)
    a = candidates(flaky, "a", clock=clock).start()
    await asyncio.wait_for(a.elector.wait_leader(), DEADLINE)
    seen = Wrapped(target.cluster)
    b = candidates(seen, "b", clock=clock).start()
    await until(lambda: b.elector.leader == "a")

    flaky.down = True
    assert (await settled(seen)).holder == "a"  # b observes a's last record at 1000
    await until(lambda: flaky.refused >= 2)
    assert a.leading  # a renew round retries until its deadline, which has not come
    clock.advance(RENEW)
    assert a.task is not None
    with pytest.raises(LeadershipLost):
        await asyncio.wait_for(a.task, DEADLINE)
    assert a.stopped_at is not None and not a.elector.is_leader
    assert a.stopped_leading_calls == 1
    await left_alone(seen)
    assert not b.leading  # the lease b saw last has not expired yet
    clock.advance(LEASE - RENEW)
    await until(lambda: b.leading)
    assert b.started_at is not None and b.started_at > a.stopped_at  # never two leaders


async def test_losing_a_replace_race_is_retried(target: Target, candidates: Any) -> None:
    cluster = target.cluster
    await cluster.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": released_record(
                LeaseRecord(transitions=4), stamp=micro_time(datetime.now(UTC))
            ).to_spec(),
        }
    )

    async def rival_takes_it() -> None:
        current = await cluster.get(LEASES, NAME, namespace=NS)
        rival = next_record(
            LeaseRecord.from_spec(current["spec"]),
            identity="rival",
            duration_seconds=1,
            stamp=micro_time(datetime.now(UTC)),
        )
        await cluster.replace({**current, "spec": rival.to_spec()})

    clock = ManualClock()
    racing = Wrapped(cluster)
    racing.before_replace = rival_takes_it
    a = candidates(racing, "a", clock=clock).start()
    await until(lambda: a.elector.leader == "rival")  # a lost the race and saw why
    assert (await settled(racing)).holder == "rival"
    assert not a.elector.is_leader  # the rival's lease has not expired: a waits
    clock.advance(LEASE)
    await asyncio.wait_for(a.elector.wait_leader(), DEADLINE)  # the rival never renewed
    spec = await lease_spec(cluster)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("a", 6)


async def test_losing_a_create_race_is_retried(target: Target, candidates: Any) -> None:
    cluster = target.cluster

    async def rival_creates_it() -> None:
        record = next_record(
            None, identity="rival", duration_seconds=1, stamp=micro_time(datetime.now(UTC))
        )
        await cluster.create(
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": NAME, "namespace": NS},
                "spec": record.to_spec(),
            }
        )

    clock = ManualClock()
    racing = Wrapped(cluster)
    racing.before_create = rival_creates_it
    a = candidates(racing, "a", clock=clock).start()
    await until(lambda: a.elector.leader == "rival")
    assert (await settled(racing)).holder == "rival"
    assert not a.elector.is_leader
    clock.advance(LEASE)
    await asyncio.wait_for(a.elector.wait_leader(), DEADLINE)
    spec = await lease_spec(cluster)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("a", 1)


async def test_an_error_in_the_work_is_raised_after_the_release(
    target: Target, candidates: Any
) -> None:
    a = candidates(target.cluster, "a").start()
    await asyncio.wait_for(a.elector.wait_leader(), DEADLINE)
    a.fail_with = RuntimeError("work failed")
    a.finish.set()
    with pytest.raises(RuntimeError, match="work failed"):
        await asyncio.wait_for(a.task, DEADLINE)
    assert (await lease_spec(target.cluster))["holderIdentity"] == ""


async def test_cancelling_a_campaign_leaves_the_lease_alone(
    target: Target, candidates: Any
) -> None:
    a = candidates(target.cluster, "a").start()
    await asyncio.wait_for(a.elector.wait_leader(), DEADLINE)
    b = candidates(target.cluster, "b").start()
    await until(lambda: b.elector.leader == "a")
    before = await target.cluster.get(LEASES, NAME, namespace=NS)
    await b.stop()
    assert b.stopped_leading_calls == 0 and b.started_at is None
    after = await target.cluster.get(LEASES, NAME, namespace=NS)
    assert after["spec"]["holderIdentity"] == before["spec"]["holderIdentity"] == "a"
    assert a.leading


async def test_run_is_not_reentrant(target: Target, candidates: Any) -> None:
    a = candidates(target.cluster, "a").start()
    await asyncio.wait_for(a.elector.wait_leader(), DEADLINE)

    async def never() -> None:
        raise AssertionError("must not run")

    with pytest.raises(RuntimeError, match="already running"):
        await a.elector.run(never)
