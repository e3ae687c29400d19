"""How soon a watch in one process sees a write made by another process (embedded store).

Target: p99 <= 200 ms across processes (issue 2). Baseline, same run: a watch in the
writing process itself (woken at once, no polling). Run:
    .venv/bin/python benchmarks/store_watch_latency.py
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITES = 100
TARGET_MS = 200.0
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WRITER = """
import asyncio, sys, time
sys.path.insert(0, sys.argv[3])
from kidp_ops.cluster.embedded import EmbeddedCluster
from tests.conftest import broker_manifest

async def main(state, count):
    cluster = await EmbeddedCluster.open(state)
    for i in range(count):
        manifest = broker_manifest(f"b{i}")
        manifest["metadata"]["annotations"] = {"sent": repr(time.time())}
        await cluster.create(manifest)
        await asyncio.sleep(0.02)
    await cluster.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def watch_latencies(cluster: object, start: str, count: int) -> list[float]:
    from kidp_ops.cluster.base import BROKERS

    latencies: list[float] = []
    async for event in cluster.watch(BROKERS, resource_version=start):  # type: ignore[attr-defined]
        if event.type == "ADDED":
            sent = float(event.object["metadata"]["annotations"]["sent"])
            latencies.append((time.time() - sent) * 1000)
            if len(latencies) == count:
                return latencies
    return latencies


async def same_process(state: Path) -> list[float]:
    from kidp_ops.cluster.embedded import EmbeddedCluster
    from tests.conftest import broker_manifest

    cluster = await EmbeddedCluster.open(state)
    from kidp_ops.cluster.base import BROKERS

    start = (await cluster.list(BROKERS)).resource_version
    watcher = asyncio.create_task(watch_latencies(cluster, start, WRITES))
    for i in range(WRITES):
        manifest = broker_manifest(f"s{i}")
        manifest["metadata"]["annotations"] = {"sent": repr(time.time())}
        await cluster.create(manifest)
        await asyncio.sleep(0.02)
    result = await asyncio.wait_for(watcher, 60)
    await cluster.close()
    return result


async def cross_process(state: Path) -> list[float]:
    from kidp_ops.cluster.base import BROKERS
    from kidp_ops.cluster.embedded import EmbeddedCluster

    cluster = await EmbeddedCluster.open(state)
    start = (await cluster.list(BROKERS)).resource_version
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(state), str(WRITES), str(REPO)])
    result = await asyncio.wait_for(watch_latencies(cluster, start, WRITES), 120)
    writer.wait(30)
    await cluster.close()
    return result


def summary(name: str, values: list[float]) -> float:
    values = sorted(values)
    p50, p99 = statistics.median(values), values[int(len(values) * 0.99) - 1]
    print(f"{name:32s} p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   max {values[-1]:6.1f} ms")
    return p99


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        base = summary("same process (baseline)", asyncio.run(same_process(Path(tmp) / "a")))
        cross = summary("another process", asyncio.run(cross_process(Path(tmp) / "b")))
    print(f"cross-process p99 / same-process p99: {cross / max(base, 0.001):.1f}x")
    ok = cross <= TARGET_MS
    print(f"target p99 <= {TARGET_MS:.0f} ms: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
