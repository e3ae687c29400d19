"""BrokerReconciler against reference brokers running as real processes on 127.0.0.1."""

from __future__ import annotations

import base64
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
from kidp_ops.controller.queue import QueueEmpty, WorkQueue
from kidp_ops.health.probing import Prober
from kidp_ops.history import MemorySink
from kidp_ops.metrics import Metrics
from kidp_ops.reconcilers.broker import PROBE_NOW, BrokerReconciler
from kidp_ops.trust import BrokerTrust
from tests.conftest import broker_manifest
from tests.support.brokers import BrokerProcess
from tests.support.clocks import ManualClock
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
        """One probe, then the stored status once the informer has seen it."""
        before = self.reconciler.status_writes
        await self.reconciler.probe_once(key)
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
        try:
            yield Rig(cluster, informer, reconciler, history)
        finally:
            await reconciler.stop_probes()
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


async def _turn(rig: Rig, queue: WorkQueue[str]) -> None:
    """Hand every due key to the reconciler (which starts probes and returns)."""
    while True:
        try:
            key = queue.get_nowait()
        except QueueEmpty:
            return
        try:
            await rig.reconciler.reconcile(key)
        finally:
            queue.done(key)


async def test_the_schedule_counts_from_each_probes_start_and_a_hang_holds_no_worker(
    rig: Rig, processes: Callable[..., BrokerProcess]
) -> None:
    """Time is driven by hand (the queue's clock): no waiting for intervals to pass."""
    good = processes("good")
    hung = processes("hung", "--health-mode", "hang")
    good_key = await rig.add("good", good.url)
    hung_key = await rig.add("hung", hung.url)
    clock = ManualClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    rig.reconciler.attach(queue)  # queues both at once
    try:
        await _turn(rig, queue)
        assert rig.reconciler.in_flight == {good_key, hung_key}  # probes are tasks
        await until(lambda: not rig.reconciler.in_flight, timeout=5)
        # Interval 5 s +-10%, counted from the probe's start: the hung broker's 1 s timeout
        # is already part of it.
        good_due, hung_due = queue.due_in(good_key), queue.due_in(hung_key)
        assert good_due is not None and 4.4 <= good_due <= 5.6, good_due
        assert hung_due is not None and 3.3 <= hung_due <= 4.6, hung_due
        clock.advance(good_due)
        await _turn(rig, queue)
        await until(lambda: not rig.reconciler.in_flight, timeout=5)
        assert [p.ok for p in rig.history.probes(broker=good_key)] == [True, True]
        assert [p.ok for p in rig.history.probes(broker=hung_key)] == [False, False]
        # A spec change (new endpoint) is probed at once, not at the next interval.
        await rig.cluster.patch(BROKERS, "hung", {"spec": {"endpoint": good.url}}, namespace=NS)
        await until(lambda: queue.depth == 1)
        await _turn(rig, queue)
        await until(lambda: len(rig.history.probes(broker=hung_key)) == 3, timeout=5)
        assert rig.history.probes(broker=hung_key)[-1].ok
        # A deleted broker is not probed again, whenever it was due.
        await rig.cluster.delete(BROKERS, "good", namespace=NS)
        await until(lambda: rig.informer.get(good_key) is None)
        clock.advance(10)
        await _turn(rig, queue)
        await until(lambda: not rig.reconciler.in_flight, timeout=5)
        assert len(rig.history.probes(broker=good_key)) == 2
    finally:
        rig.reconciler.detach()
        await rig.reconciler.stop_probes()


async def test_a_deleted_brokers_probe_is_cancelled_at_once_and_its_series_dropped(
    rig: Rig, processes: Callable[..., BrokerProcess]
) -> None:
    hung = processes("hung", "--health-mode", "hang")
    metrics = Metrics()
    rig.reconciler.metrics = metrics
    key = await rig.add(
        "hung", hung.url, healthCheck={"intervalSeconds": 120, "timeoutSeconds": 60}
    )
    queue: WorkQueue[str] = WorkQueue()
    rig.reconciler.attach(queue)
    try:
        await _turn(rig, queue)
        assert rig.reconciler.in_flight == {key}  # hanging for up to 60 s
        metrics.set_phase(NS, "hung", "Pending")  # a series, as an earlier probe left it
        await rig.cluster.delete(BROKERS, "hung", namespace=NS)
        await until(lambda: not rig.reconciler.in_flight, timeout=2)  # not 60 s
        body = metrics.render()[0].decode()
        assert 'broker="hung"' not in body
        assert rig.history.probes(broker=key) == []  # nothing recorded for it afterwards
    finally:
        rig.reconciler.detach()
        await rig.reconciler.stop_probes()


async def test_an_untrusted_broker_is_not_probed_and_says_why(
    rig: Rig, processes: Callable[..., BrokerProcess]
) -> None:
    broker = processes("tenant")
    rig.reconciler.trust = BrokerTrust.of(["kidp-system"])
    await rig.cluster.create(broker_manifest("tenant", "team-x", endpoint=broker.url))
    key = "team-x/tenant"
    await until(lambda: rig.informer.get(key) is not None)
    await rig.reconciler.reconcile(key)
    stored = await rig.cluster.get(BROKERS, "tenant", namespace="team-x")
    status = stored["status"]
    assert status["phase"] == "Unknown"
    assert "team-x is not a broker namespace of this daemon" in status["message"]
    accepted = next(c for c in status["conditions"] if c["type"] == "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "NamespaceNotTrusted")
    assert rig.reconciler.in_flight == frozenset() and rig.reconciler.probes == 0
    writes = rig.reconciler.status_writes
    version = stored["metadata"]["resourceVersion"]
    await until(lambda: (rig.informer.get(key) or {})["metadata"]["resourceVersion"] == version)
    await rig.reconciler.reconcile(key)  # said once: no second write
    assert rig.reconciler.status_writes == writes


async def test_the_probe_now_annotation_probes_at_once(
    rig: Rig, processes: Callable[..., BrokerProcess]
) -> None:
    broker = processes("b1")
    key = await rig.add("b1", broker.url)
    queue: WorkQueue[str] = WorkQueue(clock=ManualClock())
    rig.reconciler.attach(queue)
    try:
        await _turn(rig, queue)
        await until(lambda: len(rig.history.probes(broker=key)) == 1, timeout=5)
        assert queue.depth == 0  # the next one is due in 5 s on a clock that stands still
        patch = {"metadata": {"annotations": {PROBE_NOW: "2026-11-29T10:00:00Z"}}}
        await rig.cluster.patch(BROKERS, "b1", patch, namespace=NS)
        await until(lambda: queue.depth == 1)
        await _turn(rig, queue)
        await until(lambda: len(rig.history.probes(broker=key)) == 2, timeout=5)
    finally:
        rig.reconciler.detach()
        await rig.reconciler.stop_probes()
