"""Fair probing (issue 10): however many brokers hang, a healthy broker's probe starts
within 10% of its interval.

    .venv/bin/python benchmarks/probe_fairness.py            # about 4 minutes
    .venv/bin/python benchmarks/probe_fairness.py --duration 90 --baseline-duration 40

The daemon's broker side as the daemon wires it (an embedded store, the Broker informer,
BrokerReconciler with its background probes, a 32-worker pool, the Prober's lanes), in
this process, against a fleet served by benchmarks/health_servers.py in another:

- measured: HUNG brokers (default 300) that accept connections and never answer, at the
  schema's maximum `timeoutSeconds: 60` (with `intervalSeconds: 61`, the least the schema
  allows above it), and HEALTHY ones (default 5) with `intervalSeconds: INTERVAL`
  (default 10);
- baseline, in the same run: the same healthy brokers without the hung ones.

The fleet's server records when each healthy broker's request arrives. Jitter is off, so
a healthy broker's probes should arrive exactly INTERVAL apart: lateness = gap - INTERVAL.
Target: the worst lateness within 10% of INTERVAL. Also shown: how long after start each
healthy broker's first probe arrived (every broker starts in the suspect lane, new, and the
hung ones are queued first). `--slow-lane 0` runs the same without the slow lane, to show
what it is for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from health import free_port, raise_fd_limit  # noqa: E402
from health_servers import address  # noqa: E402

from kidp_ops.cluster.base import BROKERS  # noqa: E402
from kidp_ops.cluster.embedded import EmbeddedCluster  # noqa: E402
from kidp_ops.controller.informer import Informer  # noqa: E402
from kidp_ops.controller.queue import WorkerPool, WorkQueue  # noqa: E402
from kidp_ops.health.probing import DEFAULT_SLOW_CONCURRENCY, Prober  # noqa: E402
from kidp_ops.reconcilers.broker import BrokerReconciler  # noqa: E402

NS = "kidp-system"
MAX_TIMEOUT = 60  # the schema's maximum timeoutSeconds
WORKERS = 32  # DaemonConfig.broker_workers


class NoJitter(random.Random):
    """The reconciler's interval jitter off: probes are due exactly INTERVAL apart."""

    def uniform(self, a: float, b: float) -> float:
        return 0.0


@dataclass
class Run:
    label: str
    healthy: int
    hung: int
    seconds: float
    first: list[float]  # seconds from start to each healthy broker's first probe
    lateness: list[float]  # gap - interval, every consecutive pair of a healthy broker
    probes: int


@contextlib.contextmanager
def fleet(healthy: int, hung: int) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, str(REPO / "benchmarks" / "health_servers.py")),
            *(str(port), str(healthy), str(hung), "--arrivals"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "READY":
            raise RuntimeError("the fleet server did not start")
        yield port, server
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def arrivals(server: subprocess.Popen[str]) -> dict[int, list[float]]:
    """Stop the fleet server; the arrival times it recorded per healthy index."""
    assert server.stdin is not None and server.stdout is not None
    server.stdin.close()
    for line in server.stdout:
        if line.startswith("ARRIVALS "):
            server.wait(10)
            return {int(k): v for k, v in json.loads(line[len("ARRIVALS ") :]).items()}
    raise RuntimeError("the fleet server said no ARRIVALS")


def manifest(name: str, index: int, port: int, *, interval: int, timeout: int) -> dict[str, Any]:
    return {
        "apiVersion": "platform.company.com/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "endpoint": f"http://{address(index)}:{port}",
            "cloudProvider": "aws",
            "region": "us-east-1",
            "capabilities": [{"resourceType": "Database", "providers": ["postgresql"]}],
            "healthCheck": {
                "intervalSeconds": interval,
                "timeoutSeconds": timeout,
                "failureThreshold": 3,
            },
        },
    }


async def run(
    label: str, *, healthy: int, hung: int, interval: int, seconds: float, slow_lane: int
) -> Run:
    with (
        tempfile.TemporaryDirectory(prefix="kidp-fair-") as state,
        fleet(healthy, hung) as (port, server),
    ):
        cluster = await EmbeddedCluster.open(Path(state))
        try:
            for index in range(healthy + hung):
                # a hung broker: the maximum timeout, and the shortest interval the schema
                # allows with it, so it holds a probe slot almost all the time
                every, timeout = (
                    (interval, 1) if index < healthy else (MAX_TIMEOUT + 1, MAX_TIMEOUT)
                )
                # the hung ones sort first, so they are queued (and probed) before the
                # healthy ones: the worst order for a healthy broker's first probe
                name = f"z-healthy-{index:04d}" if index < healthy else f"a-hung-{index:04d}"
                await cluster.create(manifest(name, index, port, interval=every, timeout=timeout))
            informer = Informer(cluster, BROKERS)
            async with (
                Prober(cluster=cluster, slow_concurrency=slow_lane) as prober,
                informer.running(),
            ):
                await informer.wait_synced(30)
                reconciler = BrokerReconciler(
                    cluster=cluster, informer=informer, prober=prober, rng=NoJitter()
                )
                informer.add_handler(reconciler.handle)
                queue: WorkQueue[str] = WorkQueue()
                pool = WorkerPool(queue, reconciler.reconcile, workers=WORKERS, name="broker")
                started = time.monotonic()
                reconciler.attach(queue)
                workers = asyncio.create_task(pool.run())
                await asyncio.sleep(seconds)  # the benchmark's run time, not a wait for a state
                reconciler.detach()
                await pool.stop(grace=1)
                await reconciler.stop_probes()
                await asyncio.gather(workers, return_exceptions=True)
                probes = reconciler.probes
        finally:
            await cluster.close()
        seen = arrivals(server)
    first, lateness = [], []
    for index in range(healthy):
        times = seen.get(index, [])
        if not times:
            first.append(float("inf"))
            continue
        first.append(times[0] - started)
        lateness += [b - a - interval for a, b in itertools.pairwise(times)]
    return Run(label, healthy, hung, seconds, first, lateness, probes)


def show(result: Run, interval: int) -> None:
    late = sorted(result.lateness)
    worst = late[-1] if late else float("inf")
    p50 = statistics.median(late) if late else float("inf")
    print(
        f"{result.label}: {result.healthy} healthy + {result.hung} hung, {result.seconds:.0f} s, "
        f"{result.probes} probes; healthy probes {len(late) + result.healthy}, lateness "
        f"p50 {p50 * 1000:.0f} ms, worst {worst * 1000:.0f} ms ({worst / interval:.1%} of "
        f"the interval); first probe after {max(result.first):.2f} s (worst)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hung", type=int, default=300)
    parser.add_argument("--healthy", type=int, default=5)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--duration", type=float, default=150.0, help="measured run, seconds")
    parser.add_argument("--baseline-duration", type=float, default=60.0)
    parser.add_argument(
        "--slow-lane", type=int, default=DEFAULT_SLOW_CONCURRENCY, help="slow slots (0: none)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    raise_fd_limit()
    base = asyncio.run(
        run(
            "baseline",
            healthy=args.healthy,
            hung=0,
            interval=args.interval,
            seconds=args.baseline_duration,
            slow_lane=args.slow_lane,
        )
    )
    show(base, args.interval)
    measured = asyncio.run(
        run(
            "measured",
            healthy=args.healthy,
            hung=args.hung,
            interval=args.interval,
            seconds=args.duration,
            slow_lane=args.slow_lane,
        )
    )
    show(measured, args.interval)
    worst = max(measured.lateness, default=float("inf"))
    base_worst = max(base.lateness, default=float("inf"))
    gap, base_gap = args.interval + worst, args.interval + base_worst
    print(
        f"worst gap between a healthy broker's probes: {gap:.3f} s vs {base_gap:.3f} s "
        f"without hung brokers: ratio {gap / base_gap:.3f}"
    )
    met = worst <= 0.1 * args.interval
    print(f"target (worst lateness <= 10% of the interval): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
