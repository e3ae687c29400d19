"""Selection latency: the registry's index against the linear scan, in the same run.

Fleet and requests come from benchmarks/fleet.py (4 clouds, 12 regions, 6 providers per
type, mixed phases, loads and heartbeat ages), the same on every run. Per fleet size:

- the index (`BrokerRegistry.select`) and the linear scan (`selection.select`) answer the
  same requests at `FLEET_NOW`, one call per sample timed with `time.perf_counter_ns`; the
  two must agree on a sample of requests before anything is timed;
- the index again with a clock that moves 1 ms per request, so the bonus steps of
  heartbeats ageing past 60 s and 300 s are re-keyed as they fall due (production's case);
- at 10k and 100k brokers, the index update for a status change of a selectable broker:
  `activeDeployments` +-1 (re-keys it in every bucket), phase Ready <-> Unhealthy (leaves
  or rejoins every bucket), a heartbeat refresh that keeps its bonus (no bucket moves);
  and, for scale, `handle()` of a manifest, which adds `Broker.from_manifest` (CRD
  defaulting) to the update.

GC stays enabled (collected once before each timed loop). Run:
    .venv/bin/python benchmarks/selection.py
"""

from __future__ import annotations

import gc
import itertools
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kidp_ops.model.resources import Broker
    from kidp_ops.registry import BrokerRegistry
    from kidp_ops.selection import SelectionCriteria

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SIZES = (100, 1_000, 10_000, 100_000)
INDEX_SAMPLES = 20_000
LINEAR_SAMPLES = {100: 3_000, 1_000: 600, 10_000: 150, 100_000: 20}
CHECKED = {100: 1_000, 1_000: 1_000, 10_000: 300, 100_000: 30}  # requests compared
UPDATE_SIZES = (10_000, 100_000)
UPDATE_SAMPLES = 5_000
HANDLE_SAMPLES = 200
FLEET_SEED = 42
REQUEST_SEED = 7
WARMUP = 20
LOAD_CHANGE = "activeDeployments +-1"
PHASE_CHANGE = "phase Ready <-> Unhealthy"
HEARTBEAT = "lastHeartbeat refresh (info: key unchanged)"


def percentile(sorted_ns: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, round(fraction * len(sorted_ns)))
    return sorted_ns[min(rank, len(sorted_ns)) - 1]


def time_calls(call: Callable[[int], object], samples: int) -> list[int]:
    """Sorted durations in ns of `call(i)` for i in range(samples), after a short warm-up."""
    for i in range(min(WARMUP, samples // 5)):
        call(i)
    gc.collect()
    durations = []
    for i in range(samples):
        start = time.perf_counter_ns()
        call(i)
        durations.append(time.perf_counter_ns() - start)
    return sorted(durations)


def us(ns: float) -> str:
    return f"{ns / 1e3:,.1f} µs"


@dataclass
class Sizing:
    """What one fleet size measured; durations are sorted ns."""

    n: int
    built_s: float
    disagree: int
    served: float
    index: list[int]
    linear: list[int]
    moving: list[int]
    updates: dict[str, list[int]] = field(default_factory=dict)


def build(
    fleet: Sequence[Broker], clock: Callable[[], datetime] | None = None
) -> tuple[BrokerRegistry, float]:
    """A registry holding `fleet` (clock: fixed at FLEET_NOW), and the seconds that took."""
    from benchmarks.fleet import FLEET_NOW
    from kidp_ops.registry import BrokerRegistry

    registry = BrokerRegistry(clock=clock or (lambda: FLEET_NOW))
    start = time.perf_counter()
    for broker in fleet:
        registry.upsert(broker)
    return registry, time.perf_counter() - start


def measure(n: int, requests: Sequence[SelectionCriteria]) -> Sizing:
    from benchmarks.fleet import FLEET_NOW, make_brokers
    from kidp_ops.selection import select

    fleet = make_brokers(n, FLEET_SEED)
    registry, built = build(fleet)
    checked = requests[: CHECKED[n]]
    answers = [select(fleet, r, now=FLEET_NOW) for r in checked]
    disagree = sum(
        registry.select(r, now=FLEET_NOW) != a for r, a in zip(checked, answers, strict=True)
    )

    def indexed(i: int) -> object:
        return registry.select(requests[i % len(requests)], now=FLEET_NOW)

    def linear(i: int) -> object:
        return select(fleet, requests[i % len(requests)], now=FLEET_NOW)

    sizing = Sizing(
        n=n,
        built_s=built,
        disagree=disagree,
        served=sum(a is not None for a in answers) / len(answers),
        index=time_calls(indexed, INDEX_SAMPLES),
        linear=time_calls(linear, LINEAR_SAMPLES[n]),
        moving=[],
    )
    if n in UPDATE_SIZES:
        sizing.updates = measure_updates(registry, seed=n)
    ticks = itertools.count()  # 1 ms per call, warm-up included: the clock never goes back
    moment = FLEET_NOW

    def tick() -> datetime:
        return moment

    moving, _ = build(fleet, clock=tick)  # a fresh registry: its watermark follows the clock

    def clocked(i: int) -> object:
        nonlocal moment
        moment = FLEET_NOW + next(ticks) * timedelta(milliseconds=1)
        return moving.select(requests[i % len(requests)])  # now=None: the clock

    sizing.moving = time_calls(clocked, INDEX_SAMPLES)
    return sizing


def status_changes(registry: BrokerRegistry, *, samples: int, seed: int) -> dict[str, list[Broker]]:
    """Updates of selectable brokers, by kind of change.

    Changes come in pairs (the change, then the broker as it was), so each update is a real
    change of the broker's current state and the fleet ends as it started.
    """
    from benchmarks.fleet import FLEET_NOW

    rng = random.Random(seed)
    selectable = [
        b
        for b in registry.brokers()
        if b.status.phase == "Ready"
        and not b.spec.unschedulable
        and (
            b.spec.max_concurrent_deployments == 0
            or b.status.active_deployments + 1 < b.spec.max_concurrent_deployments
        )
    ]
    fresh = [
        b
        for b in selectable
        if b.status.last_heartbeat and FLEET_NOW - b.status.last_heartbeat < timedelta(seconds=50)
    ]
    changes: dict[str, list[Broker]] = {LOAD_CHANGE: [], PHASE_CHANGE: [], HEARTBEAT: []}
    for _ in range(samples // 2):
        broker = rng.choice(selectable)
        active = broker.status.active_deployments
        delta = -1 if active > 0 and rng.random() < 0.5 else 1
        status = replace(broker.status, active_deployments=active + delta)
        changes[LOAD_CHANGE] += [replace(broker, status=status), broker]
        broker = rng.choice(selectable)
        status = replace(broker.status, phase="Unhealthy")
        changes[PHASE_CHANGE] += [replace(broker, status=status), broker]
        broker = rng.choice(fresh)
        status = replace(broker.status, last_heartbeat=FLEET_NOW - timedelta(seconds=1))
        changes[HEARTBEAT] += [replace(broker, status=status), broker]
    return changes


def measure_updates(registry: BrokerRegistry, *, seed: int) -> dict[str, list[int]]:
    changes = status_changes(registry, samples=UPDATE_SAMPLES, seed=seed)

    def upserts(brokers: list[Broker]) -> list[int]:
        return time_calls(lambda i: registry.upsert(brokers[i]), len(brokers))

    timed = {change: upserts(brokers) for change, brokers in changes.items()}
    manifests = [b.to_manifest() for b in changes[LOAD_CHANGE][:HANDLE_SAMPLES]]
    timed["handle() of a manifest (info: + from_manifest)"] = time_calls(
        lambda i: registry.handle("MODIFIED", manifests[i]), len(manifests)
    )
    return timed


def p50_us(durations: Sequence[int]) -> float:
    return percentile(durations, 0.5) / 1e3


def report(sizings: dict[int, Sizing]) -> list[tuple[str, bool]]:
    print("selection: BrokerRegistry index vs linear selection.select(), one call per sample")
    print(
        "| N | build | agree | served | index p50 | index p99 | linear p50 | linear p99 "
        "| linear/index (p50) | index, clock +1 ms/req: p50 / p99 |"
    )
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in sizings.values():
        agree = "yes" if s.disagree == 0 else f"NO ({s.disagree})"
        print(
            f"| {s.n:,} | {s.built_s:.2f} s | {agree} | {s.served:.0%} "
            f"| {us(percentile(s.index, 0.5))} | {us(percentile(s.index, 0.99))} "
            f"| {us(percentile(s.linear, 0.5))} | {us(percentile(s.linear, 0.99))} "
            f"| {p50_us(s.linear) / p50_us(s.index):,.0f}x "
            f"| {us(percentile(s.moving, 0.5))} / {us(percentile(s.moving, 0.99))} |"
        )
    print("\nindex update for a status change of a selectable broker")
    print("| N | change | samples | p50 | p99 |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for s in sizings.values():
        for change, durations in s.updates.items():
            print(
                f"| {s.n:,} | {change} | {len(durations):,} | {us(percentile(durations, 0.5))} "
                f"| {us(percentile(durations, 0.99))} |"
            )
    ten, hundred = sizings[10_000], sizings[100_000]
    ratio = p50_us(ten.linear) / p50_us(ten.index)
    checks = [
        ("index agrees with the linear scan on every checked request",
         all(s.disagree == 0 for s in sizings.values())),
        (f"index p50 <= 5 µs @10k: {p50_us(ten.index):.1f} µs", p50_us(ten.index) <= 5.0),
        (f"index p50 <= 10 µs @100k: {p50_us(hundred.index):.1f} µs",
         p50_us(hundred.index) <= 10.0),
        (f"index >= 200x faster than linear @10k (p50): {ratio:,.0f}x", ratio >= 200.0),
    ]  # fmt: skip
    for s in (ten, hundred):
        for change in (LOAD_CHANGE, PHASE_CHANGE):
            took = p50_us(s.updates[change])
            checks.append((f"update p50 <= 50 µs @{s.n // 1000}k, {change}: {took:.1f} µs",
                           took <= 50.0))  # fmt: skip
    return checks


def main() -> int:
    from benchmarks.fleet import make_requests

    started = time.perf_counter()
    requests = make_requests(1_000, REQUEST_SEED)
    sizings = {n: measure(n, requests) for n in SIZES}
    checks = report(sizings)
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    print(f"\ntotal run time {time.perf_counter() - started:.0f} s")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
