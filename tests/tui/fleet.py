"""Fixed data for the dashboard's tests: five brokers as `kidp-ops dev` runs them, 26
Databases, Events and a probe history, at a fixed time (NOW). `FixedSource` plays an
informer's part for the snapshot tests (the Pilot tests use real informers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kidp_ops.controller.informer import ChangeType, Handler
from kidp_ops.history import LifecycleRecord, MemorySink, ProbeRecord, SelectionRecord
from kidp_ops.kinds import object_key
from kidp_ops.times import format_time
from tests.conftest import REPO, load_yaml

NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
Manifest = dict[str, Any]


def at(seconds_ago: float) -> str:
    return format_time(NOW - timedelta(seconds=seconds_ago))


def dev_brokers() -> list[Manifest]:
    return [d for d in load_yaml(REPO / "samples/dev/brokers.yaml") if d["kind"] == "Broker"]


STATUSES = {  # name: (phase, heartbeat age, active, since, latency)
    "dev-azure-eastus": ("Ready", 4, 5, 3600, 3.2),
    "dev-azure-westeurope": ("Ready", 8, 3, 1800, 4.1),
    "dev-aws-us-west-2": ("Ready", 2, 2, 3600, 2.5),
    "dev-gcp-europe-west1": ("Unhealthy", 95, 1, 95, 2002.0),
    "dev-onprem-local": ("Offline", 480, 0, 470, None),
}


def with_status(broker: Manifest, created_ago: float = 7200) -> Manifest:
    name = broker["metadata"]["name"]
    phase, beat, active, since, latency = STATUSES[name]
    broker = {**broker, "metadata": {**broker["metadata"], "creationTimestamp": at(created_ago),
                                     "uid": f"uid-{name}", "resourceVersion": "1"}}  # fmt: skip
    broker["status"] = {
        "phase": phase,
        "lastHeartbeat": at(beat),
        "activeDeployments": active,
        "version": "1.0.0-sim",
        "lastProbeLatencyMs": latency,
        "consecutiveFailures": 0 if phase == "Ready" else 5,
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if phase == "Ready" else "False",
                "reason": "HealthCheckPassed" if phase == "Ready" else "HealthCheckFailed",
                "message": "" if phase == "Ready" else "HTTP 503",
                "lastTransitionTime": at(since),
            }
        ],
    }
    return broker


PHASES = ["Ready"] * 20 + ["Failed", "Pending", "Pending", "Provisioning", "Provisioning", "Ready"]
ENGINES = [("postgresql", "azure-eastus", "dev-azure-eastus"),
           ("mysql", "aws-us-west-2-prod", "dev-aws-us-west-2"),
           ("redis", "azure-westeurope", "dev-azure-westeurope")]  # fmt: skip


def databases() -> list[Manifest]:
    made = []
    for index, phase in enumerate(PHASES):
        engine, target, broker = ENGINES[index % len(ENGINES)]
        status: Manifest = {"phase": phase}
        if phase in ("Ready", "Provisioning"):
            status["brokerRef"] = {"name": broker, "namespace": "kidp-system"}
            status["deploymentId"] = f"dep-{index:04d}"
        if phase == "Failed":
            status["message"] = "broker said: quota exceeded"
        made.append({
            "apiVersion": "platform.company.com/v1", "kind": "Database",
            "metadata": {"name": f"dev-db-{index:04d}", "namespace": "team-dev",
                         "creationTimestamp": at(4000 - index * 120), "uid": f"db-{index}",
                         "labels": {"env": "dev" if index % 2 else "prod"}},
            "spec": {"engine": engine, "target": target, "size": "small",
                     "owner": {"kind": "Team", "name": "dev"}},
            "status": status,
        })  # fmt: skip
    return made


def events() -> list[Manifest]:
    return [
        {"apiVersion": "v1", "kind": "Event",
         "metadata": {"name": f"ev-{i}", "namespace": "team-dev", "creationTimestamp": at(60 * i)},
         "involvedObject": {"kind": "Database", "name": f"dev-db-{i:04d}", "namespace": "team-dev"},
         "type": "Warning" if i == 20 else "Normal",
         "reason": "ProvisionFailed" if i == 20 else "BrokerSelected",
         "message": "quota exceeded" if i == 20 else f"selected dev-azure-eastus (score {200 - i})",
         "lastTimestamp": at(60 * i)}
        for i in range(0, 26, 4)
    ]  # fmt: skip


def history() -> MemorySink:
    """Probes every 10 s for 15 minutes: westeurope flapped 6 minutes ago, gcp is failing
    now, onprem has been Offline for 8 minutes; one recorded decision per Database."""
    sink = MemorySink()
    for step in range(90, 0, -1):
        when = NOW - timedelta(seconds=10 * step)
        for name, (_phase_now, *_rest) in STATUSES.items():
            phase, ok = "Ready", True
            if name == "dev-azure-westeurope" and 34 <= step <= 38:
                phase, ok = "Unhealthy", False
            if name == "dev-gcp-europe-west1" and step <= 9:
                phase, ok = ("Unhealthy" if step <= 7 else "Ready"), False
            if name == "dev-onprem-local" and step <= 60:
                phase, ok = ("Offline" if step <= 47 else "Unhealthy"), False
            sink.record_probe(ProbeRecord(
                time=when, broker=f"kidp-system/{name}", ok=ok, phase=phase,
                latency_ms=3.0 if ok else None, active_deployments=1,
                reason="" if ok else "HTTP 503", max_concurrent_deployments=10))  # fmt: skip
    for index, _phase in enumerate(PHASES):
        engine, target, broker = ENGINES[index % len(ENGINES)]
        request = f"team-dev/dev-db-{index:04d}"
        sink.record_selection(SelectionRecord(
            time=NOW - timedelta(seconds=4000 - index * 120), request=request,
            resource_type="Database", provider=engine, cloud_provider=target.split("-")[0],
            region=None, broker=f"kidp-system/{broker}", score=250.0, candidates=5, eligible=2,
            namespace="team-dev", parts=(100.0, 100.0, 50.0),
            rejections={"cloud_provider": 2, "phase": 1}))  # fmt: skip
        sink.record_lifecycle(
            LifecycleRecord(
                time=NOW - timedelta(seconds=4000 - index * 120), request=request, step="created"
            )
        )
    return sink


class FixedSource:
    """An informer's face over a fixed list; `emit` plays a watch event."""

    def __init__(self, items: list[Manifest]) -> None:
        self._items = {object_key(i): i for i in items}
        self._handlers: list[Handler] = []
        self.errors = 0
        self.last_error = ""
        self.has_synced = True

    def items(self) -> list[Manifest]:
        return list(self._items.values())

    def get(self, key: str) -> Manifest | None:
        return self._items.get(key)

    def add_handler(self, handler: Handler, *, replay: bool = True) -> None:
        self._handlers.append(handler)
        for obj in list(self._items.values()) if replay else []:
            handler("ADDED", obj)

    def emit(self, change: ChangeType, obj: Manifest) -> None:
        key = object_key(obj)
        if change == "DELETED":
            self._items.pop(key, None)
        else:
            self._items[key] = obj
        for handler in self._handlers:
            handler(change, obj)

    def seconds_since_contact(self) -> float | None:
        return 0.0


def fixed_feed(*, readonly: bool = False) -> Any:
    from kidp_ops.registry import BrokerRegistry
    from tui.feed import Feed

    brokers = FixedSource([with_status(b) for b in dev_brokers()])
    registry = BrokerRegistry(clock=lambda: NOW)
    brokers.add_handler(registry.handle)
    return Feed(
        brokers=brokers,
        databases=FixedSource(databases()),
        events=FixedSource(events()),
        registry=registry,
        history=history(),
        target="fixed data",
        readonly=readonly,
    )
