"""BrokerReconciler against reference brokers running as real processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kidp_ops.cluster.base import BROKERS
from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.controller.informer import Informer
from kidp_ops.controller.queue import WorkerPool, WorkQueue
from kidp_ops.health.probing import Prober
from kidp_ops.history import MemorySink
from kidp_ops.reconcilers.broker import BrokerReconciler
from tests.conftest import broker_manifest
from tests.support.brokers import BrokerProcess
from tests.support.waiting import until as _until


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    await _until(predicate, timeout)


NS = "kidp-system"


@dataclass
class Rig:
    cluster: EmbeddedCluster
    informer: Informer
    reconciler: BrokerReconciler
    history: MemorySink

    async def add(self, name: str, url: str, **spec: Any) -> str:
        health = {"intervalSeconds": 5, "timeoutSeconds": 1, **spec.pop("healthCheck", {})}
        await self.cluster.create(broker_manifest(name, endpoint=url, healthCheck=health, **spec))
        key = f"{NS}/{name}"
        await until(lambda: self.informer.get(key) is not None)
        return key

    async def probe(self, key: str) -> dict[str, Any]:
        """One reconcile, then the stored status once the informer has seen it."""
        before = self.reconciler.status_writes
        await self.reconciler.reconcile(key)
        stored = await self.cluster.get(BROKERS, key.split("/")[1], namespace=NS)
        if self.reconciler.status_writes != before:
            version = stored["metadata"]["resourceVersion"]
            await until(
                lambda: (self.informer.get(key) or {})["metadata"]["resourceVersion"] == version
            )
        status: dict[str, Any] = stored.get("status") or {}
        return status


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    cluster = await EmbeddedCluster.open(tmp_path / "state")
    informer = Informer(cluster, BROKERS)
    history = MemorySink()
    async with Prober(cluster=cluster, secret_ttl=0) as prober, informer.running():
        reconciler = BrokerReconciler(
            cluster=cluster, informer=informer, prober=prober, history=history
        )
        informer.add_handler(reconciler.handle)
        await informer.wait_synced(5)
        yield Rig(cluster, informer, reconciler, history)
    await cluster.close()


@pytest.fixture
def processes() -> Iterator[Callable[..., BrokerProcess]]:
    started: list[BrokerProcess] = []

    def start(name: str, *args: str) -> BrokerProcess:
        broker = BrokerProcess.start(f"{NS}/{name}", *args)
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.kill()


def knobs(broker: BrokerProcess, **changes: Any) -> None:
    httpx.patch(f"{broker.url}/admin/knobs", json=changes, timeout=5).raise_for_status()


def ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


async def test_healthy_broker_turns_ready_with_what_it_reports(
    rig: Rig, processes: Callable[..., BrokerProcess]
) -> None:
    broker = processes("b1", "--version", "2.4.1")
    key = await rig.add("b1", broker.url)
    status = await rig.probe(key)
    assert status["phase"] == "Ready"
    assert status["version"] == "2.4.1"
    assert status["activeDeployments"] == 0
    assert status["observedGeneration"] == 1
    assert status["lastHeartbeat"]
    assert ready_condition(status)["status"] == "True"
    assert rig.history.probes()[-1].ok and rig.history.probes()[-1].phase == "Ready"


async def test_killed_then_restarted(rig: Rig, processes: Callable[..., BrokerProcess]) -> None:
    broker = processes("b1")
    key = await rig.add(
        "b1", broker.url, healthCheck={"failureThreshold": 3, "successThreshold": 2}
    )
    assert (await rig.probe(key))["phase"] == "Ready"
    broker.kill()
    phases = [(await rig.probe(key))["phase"] for _ in range(3)]
    # One failure is not enough: Unhealthy exactly at the third consecutive failure.
    assert phases == ["Ready", "Ready", "Unhealthy"]
    status = await rig.probe(key)
    assert status["message"] == "connection refused"
    assert status["consecutiveFailures"] == 3  # written when the threshold was crossed
    assert ready_condition(status)["reason"] == "HealthCheckFailed"
    broker.restart()
    phases = [(await rig.probe(key))["phase"] for _ in range(2)]
    assert phases == ["Unhealthy", "Ready"]  # successThreshold 2


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("hang", "timeout after 1s"),
        ("garbage", "invalid JSON"),
        ("huge", "body over 64 KiB"),
        ("fail", "HTTP 503"),
    ],
)
async def test_bad_health_answers_are_failures_with_their_reason(
    rig: Rig, processes: Callable[..., BrokerProcess], mode: str, reason: str
) -> None:
    broker = processes("b1", "--health-mode", mode)
    key = await rig.add("b1", broker.url, healthCheck={"failureThreshold": 1})
    started = time.monotonic()
    status = await rig.probe(key)
    assert time.monotonic() - started < 3
    assert rig.history.probes()[-1].reason == reason
    # Never answered well: still Pending (no Pending -> Unhealthy step), with the reason.
    assert status["phase"] == "Pending"
    assert status["message"] == reason


async def test_degraded_makes_a_ready_broker_unhealthy_with_the_message(
    rig: Rig, processes: Callable[..., BrokerProcess]
) -> None:
    broker = processes("b1")
    key = await rig.add("b1", broker.url, healthCheck={"failureThreshold": 2})
    assert (await rig.probe(key))["phase"] == "Ready"
    knobs(broker, health_mode="degraded")
    assert (await rig.probe(key))["phase"] == "Ready"
    status = await rig.probe(key)
    assert status["phase"] == "Unhealthy"
    assert status["message"] == 'status "degraded"'


async def test_missing_secret_is_unknown_and_credentials_are_sent(
    rig: Rig, processes: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text("s3cret\n")
    broker = processes("b1", "--api-key-file", str(key_file))
    auth = {"type": "api-key", "secretRef": {"name": "b1-creds", "key": "api-key"}}
    key = await rig.add("b1", broker.url, authentication=auth)
    status = await rig.probe(key)
    assert status["phase"] == "Unknown"
    assert "b1-creds" in status["message"]
    assert ready_condition(status)["reason"] == "CannotProbe"
    await rig.cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "b1-creds", "namespace": NS},
            "data": {"api-key": base64.b64encode(b"s3cret").decode()},
        }
    )
    status = await rig.probe(key)
    assert status["phase"] == "Ready", status


async def test_steady_state_writes_nothing(
    rig: Rig, processes: Callable[..., BrokerProcess]
) -> None:
    broker = processes("b1")
    key = await rig.add("b1", broker.url)
    await rig.probe(key)
    writes = rig.reconciler.status_writes
    for _ in range(5):
        await rig.probe(key)
    assert rig.reconciler.status_writes == writes
    assert rig.reconciler.probes == 6


@pytest.mark.slow
async def test_schedule_hang_does_not_delay_others_and_spec_change_probes_at_once(
    rig: Rig, processes: Callable[..., BrokerProcess]
) -> None:
    good = processes("good")
    hung = processes("hung", "--health-mode", "hang")
    good_key = await rig.add("good", good.url)
    hung_key = await rig.add("hung", hung.url)
    queue: WorkQueue[str] = WorkQueue()
    pool = WorkerPool(queue, rig.reconciler.reconcile, workers=4)
    rig.reconciler.attach(queue)
    task = asyncio.create_task(pool.run())
    try:
        await asyncio.sleep(12.5)
        times = {
            k: [p.time for p in rig.history.probes() if p.broker == k] for k in (good_key, hung_key)
        }
        # Interval 5 s +-10%: probes start near 0, 5 and 10 s for both, hung or not (a hung
        # one is recorded when its 1 s timeout ends).
        assert len(times[good_key]) == 3, times
        assert len(times[hung_key]) == 3, times
        assert all(not p.ok for p in rig.history.probes() if p.broker == hung_key)
        gaps = [
            (b - a).total_seconds()
            for a, b in zip(times[good_key], times[good_key][1:], strict=False)
        ]
        assert all(4.4 <= gap <= 5.6 for gap in gaps), gaps
        # A spec change (new endpoint) is probed at once, not at the next interval.
        count = len(rig.history.probes())
        await rig.cluster.patch(BROKERS, "hung", {"spec": {"endpoint": good.url}}, namespace=NS)
        await until(lambda: len(rig.history.probes()) > count, timeout=2)
        assert rig.history.probes()[-1].broker == hung_key and rig.history.probes()[-1].ok
        # A deleted broker is not probed again.
        await rig.cluster.delete(BROKERS, "good", namespace=NS)
        await until(lambda: rig.informer.get(good_key) is None)
        seen = len([p for p in rig.history.probes() if p.broker == good_key])
        await asyncio.sleep(6)
        assert len([p for p in rig.history.probes() if p.broker == good_key]) == seen
    finally:
        rig.reconciler.detach()
        await pool.stop(grace=2)
        with contextlib.suppress(asyncio.CancelledError):
            await task
