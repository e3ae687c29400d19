"""Latency of the linear-scan `select()` over a realistic fleet (benchmarks/fleet.py).

This is the baseline the registry's index is compared with (in the same run, once it
exists): every request scans every broker. Each sample times one `select()` call with
`time.perf_counter_ns`; requests cycle through a seeded mix, so the fleet and the requests
are the same on every run. Run:
    .venv/bin/python benchmarks/selection_linear.py
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kidp_ops.selection import SelectionCriteria

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SIZES = (100, 1_000, 10_000)
SAMPLES = {100: 5_000, 1_000: 1_000, 10_000: 300}
FLEET_SEED = 42
REQUEST_SEED = 7
WARMUP = 20


def percentile(sorted_ns: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, round(fraction * len(sorted_ns)))
    return sorted_ns[min(rank, len(sorted_ns)) - 1]


def time_calls(call: Callable[[int], object], samples: int) -> list[int]:
    """Durations in ns of `call(i)` for i in range(samples), after a short warm-up."""
    for i in range(WARMUP):
        call(i)
    gc.collect()
    durations = []
    for i in range(samples):
        start = time.perf_counter_ns()
        call(i)
        durations.append(time.perf_counter_ns() - start)
    return sorted(durations)


def measure(n: int, requests: Sequence[SelectionCriteria]) -> tuple[list[int], float]:
    """Sorted `select()` durations over an n-broker fleet, and the share of requests served."""
    from benchmarks.fleet import FLEET_NOW, make_brokers
    from kidp_ops.selection import select

    fleet = make_brokers(n, FLEET_SEED)
    sample = requests[:200]
    served = sum(select(fleet, r, now=FLEET_NOW) is not None for r in sample) / len(sample)

    def call(i: int) -> object:
        return select(fleet, requests[i % len(requests)], now=FLEET_NOW)

    return time_calls(call, SAMPLES[n]), served


def main() -> int:
    from benchmarks.fleet import make_requests

    requests = make_requests(1_000, REQUEST_SEED)
    print("linear select(): one call per sample, GC enabled")
    print(
        f"| {'N':>6} | {'samples':>7} | {'p50':>9} | {'p99':>9} | {'p50 per broker':>14} | served |"
    )
    print(f"| {'-' * 6} | {'-' * 7} | {'-' * 9} | {'-' * 9} | {'-' * 14} | ------ |")
    for n in SIZES:
        durations, served = measure(n, requests)
        p50, p99 = percentile(durations, 0.50), percentile(durations, 0.99)
        print(
            f"| {n:>6} | {len(durations):>7} | {p50 / 1e6:>6.3f} ms | {p99 / 1e6:>6.3f} ms "
            f"| {p50 / n:>11.0f} ns | {served:>5.0%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
