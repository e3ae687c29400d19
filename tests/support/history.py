"""A generated history with known answers, written through the store's own write path.

Two hours from START, three brokers probed every 10 s:

- `kidp-system/eu` (gcp, europe-west1, priority 100, max 20): Ready, except Unhealthy
  from +60 min to +90 min: down 25% of the window (availability 0.75, one flap at +60 min);
  probe latency 20 ms; its active deployments grow by one every 10 minutes (0 at START);
- `kidp-system/us` (aws, us-east-1, priority 150, max 20): always Ready, 5 ms, 4 active;
- `kidp-system/az` (azure, eastus, max 0: unlimited): always Ready, 8 ms, 2 active.

A Database is created every 5 minutes, alternating eu and us targets (`europe-west1`,
`us-east-1`). Each is selected 1 s after creation on the only broker of its region (none
while eu is down: rejections phase 1, region 2), accepted, and Ready after 30 s on eu and
10 s on us.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kidp_ops.history import (
    BrokerRecord,
    LifecycleRecord,
    ProbeRecord,
    SelectionRecord,
)
from kidp_ops.history.brokers import broker_record
from kidp_ops.history.sqlite import FILE_NAME, HistoryDB, Record

START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
WINDOW = timedelta(hours=2)
EU, US, AZ = "kidp-system/eu", "kidp-system/us", "kidp-system/az"
DOWN = (START + timedelta(minutes=60), START + timedelta(minutes=90))
PROVISION_SECONDS = {EU: 30.0, US: 10.0}
LATENCY_MS = {EU: 20.0, US: 5.0, AZ: 8.0}


def broker_manifest(key: str, cloud: str, region: str, **spec: Any) -> dict[str, Any]:
    namespace, _, name = key.partition("/")
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "endpoint": f"http://127.0.0.1:1/{name}",
            "cloudProvider": cloud,
            "region": region,
            "capabilities": [{"resourceType": "Database", "providers": ["postgresql"]}],
            **spec,
        },
    }


MANIFESTS = {
    EU: broker_manifest(EU, "gcp", "europe-west1", priority=100, maxConcurrentDeployments=20),
    US: broker_manifest(US, "aws", "us-east-1", priority=150, maxConcurrentDeployments=20),
    AZ: broker_manifest(AZ, "azure", "eastus", maxConcurrentDeployments=0),
}


@dataclass(frozen=True)
class Generated:
    directory: Path
    decisions: dict[str, int]  # broker (or "") -> decisions placed on it
    requests: int


def eu_down(t: datetime) -> bool:
    return DOWN[0] <= t < DOWN[1]


def probes() -> list[ProbeRecord]:
    found = []
    for step in range(int(WINDOW.total_seconds() // 10) + 1):
        t = START + timedelta(seconds=10 * step)
        for key, limit in ((EU, 20), (US, 20), (AZ, 0)):
            down = key == EU and eu_down(t)
            active = {EU: step // 60, US: 4, AZ: 2}[key]
            found.append(
                ProbeRecord(
                    time=t, broker=key, ok=not down, phase="Unhealthy" if down else "Ready",
                    latency_ms=LATENCY_MS[key], active_deployments=active,
                    reason="HTTP 503" if down else "", max_concurrent_deployments=limit,
                    version="1.0.0",
                )
            )  # fmt: skip
    return found


def requests() -> tuple[list[Record], dict[str, int]]:
    records: list[Record] = []
    decisions: dict[str, int] = {}
    for index in range(int(WINDOW.total_seconds() // 300)):
        created = START + timedelta(minutes=5 * index, seconds=2)
        key = EU if index % 2 == 0 else US
        region = "europe-west1" if key == EU else "us-east-1"
        request = f"team-a/db-{index:03d}"
        chosen = None if key == EU and eu_down(created) else key
        decisions[chosen or ""] = decisions.get(chosen or "", 0) + 1
        at = created + timedelta(seconds=1)
        records.append(LifecycleRecord(time=created, request=request, step="created"))
        records.append(
            SelectionRecord(
                time=at, request=request, resource_type="Database", provider="postgresql",
                cloud_provider=None, region=region, broker=chosen,
                score=None if chosen is None else 1.0, candidates=3,
                eligible=0 if chosen is None else 1, namespace="team-a",
                reason="" if chosen else "no broker", parts=None if chosen is None else (
                    (100.0 if key == EU else 150.0), 50.0, 50.0),
                rejections={"phase": 1, "region": 2} if chosen is None else {},
            )
        )  # fmt: skip
        if chosen is not None:
            records.append(LifecycleRecord(time=at, request=request, step="scheduled",
                                           broker=chosen))  # fmt: skip
            ready = created + timedelta(seconds=PROVISION_SECONDS[chosen])
            records.append(
                LifecycleRecord(time=ready, request=request, step="ready", broker=chosen)
            )
    return records, decisions


def generate(directory: Path) -> Generated:
    """Write the generated history into `directory/history.db`."""
    db = HistoryDB(directory / FILE_NAME)
    try:
        specs: list[Record] = [
            broker_record(m, now=START - timedelta(minutes=1)) for m in MANIFESTS.values()
        ]
        db.write(specs)
        all_probes = probes()
        for start in range(0, len(all_probes), 500):  # several blocks, as the writer makes
            db.write(all_probes[start : start + 500])
        records, decisions = requests()
        db.write(records)
    finally:
        db.close()
    return Generated(directory, decisions, len(records))


def linear_history(directory: Path, *, days: int = 5, capacity: int = 240) -> datetime:
    """One broker probed hourly for `days` days, its active deployments one more each
    hour (0 at START): at that trend it reaches `capacity` at START + capacity hours."""
    db = HistoryDB(directory / FILE_NAME)
    try:
        manifest = broker_manifest(US, "aws", "us-east-1", maxConcurrentDeployments=capacity)
        record: BrokerRecord = broker_record(manifest, now=START)
        db.write([record])
        db.write([
            ProbeRecord(time=START + timedelta(hours=h), broker=US, ok=True, phase="Ready",
                        latency_ms=5.0, active_deployments=h,
                        max_concurrent_deployments=capacity)
            for h in range(days * 24 + 1)
        ])  # fmt: skip
    finally:
        db.close()
    return START + timedelta(hours=capacity)
