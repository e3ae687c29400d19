"""DatabaseReconciler against reference brokers running as real processes on 127.0.0.1.

The rig is the daemon in small: an embedded cluster, Broker and Database informers, the
BrokerRegistry and the reconciler fed by them, a work queue with workers, and a real
aiohttp callback endpoint that runs `kidp_ops.callbacks.handle_callback`. Brokers are
`python -m kidp_ops.simbroker serve` processes with known Ed25519 keys; their status is set
directly (playing the prober) except where the BrokerReconciler runs for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kidp_ops.brokerapi.client import BrokerClient
from kidp_ops.brokerapi.signing import (
    callback_headers,
    generate_private_key,
    public_key_b64,
    save_private_key,
)
from kidp_ops.callbacks import (
    CallbackGate,
    DeploymentIndex,
    Verdict,
    callback_gate,
    handle_callback,
)
from kidp_ops.cluster.base import BROKERS, DATABASES, EVENTS, NotFound, Unavailable
from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.conditions import find
from kidp_ops.controller.informer import Informer
from kidp_ops.controller.queue import WorkerPool, WorkQueue
from kidp_ops.health.credentials import SecretCache
from kidp_ops.health.probing import Prober
from kidp_ops.history import MemorySink
from kidp_ops.model.resources import Broker
from kidp_ops.reconcilers import patches
from kidp_ops.reconcilers import provisioning as p
from kidp_ops.reconcilers.broker import BrokerReconciler
from kidp_ops.reconcilers.clients import BrokerClients
from kidp_ops.reconcilers.database import DatabaseReconciler
from kidp_ops.reconcilers.outcomes import Applied, CallbackStamp, DeploymentResult
from kidp_ops.registry import BrokerRegistry
from kidp_ops.simbroker.registration import register_callback_key
from kidp_ops.times import format_time
from tests.conftest import broker_manifest
from tests.support import waiting
from tests.support.brokers import BrokerProcess
from tests.support.callback_server import CallbackServer, callback_server
from tests.support.clocks import ManualClock

NS = "kidp-system"
TEAM = "team-a"
WAIT = 20.0
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


# --- brokers as processes ------------------------------------------------------------------


@dataclass
class SimBroker:
    """One reference broker process and the private key it signs callbacks with."""

    name: str
    process: BrokerProcess
    key: Ed25519PrivateKey

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def ref(self) -> str:
        return f"{NS}/{self.name}"

    @property
    def public_key(self) -> str:
        return public_key_b64(self.key)

    async def knobs(self, **changes: Any) -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            (await http.patch(f"{self.url}/admin/knobs", json=changes)).raise_for_status()

    async def inventory(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"{self.url}/v1/resources")
            response.raise_for_status()
            resources: list[dict[str, Any]] = response.json()["resources"]
            return resources

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers."""
        assert self.process.process is not None
        self.process.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process.process is not None
        self.process.process.send_signal(signal.SIGCONT)


Spawn = Callable[..., Awaitable[SimBroker]]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    started: list[BrokerProcess] = []

    async def start(name: str, *args: str, delay: float = 0.2) -> SimBroker:
        key = generate_private_key()
        key_file = tmp_path / f"{name}.key"
        save_private_key(key, key_file)
        process = await asyncio.to_thread(
            BrokerProcess.start,
            f"{NS}/{name}",
            "--key-file",
            str(key_file),
            "--delay",
            str(delay),
            *args,
        )
        started.append(process)
        return SimBroker(name, process, key)

    yield start
    for process in started:
        process.kill()  # SIGKILL ends a stopped process too


# --- the rig -------------------------------------------------------------------------------


@dataclass
class Rig:
    cluster: EmbeddedCluster
    brokers: Informer
    databases: Informer
    registry: BrokerRegistry
    reconciler: DatabaseReconciler
    queue: WorkQueue[str]
    server: CallbackServer
    history: MemorySink
    broker_queue: WorkQueue[str] | None = None
    created: dict[str, str] = field(default_factory=dict)  # Database name -> uid

    async def add_broker(
        self, sim: SimBroker, *, ready: bool = True, active: int = 0, **spec: Any
    ) -> str:
        health = {"intervalSeconds": 5, "timeoutSeconds": 1, **spec.pop("healthCheck", {})}
        manifest = broker_manifest(sim.name, NS, endpoint=sim.url, healthCheck=health, **spec)
        await self.cluster.create(manifest)
        await register_callback_key(
            self.cluster, namespace=NS, name=sim.name, public_key=sim.public_key
        )
        if ready:
            await self.set_broker(sim.name, active=active)
        else:
            await until(lambda: self.registry.get(sim.ref) is not None)
        return sim.ref

    async def set_broker(self, name: str, *, phase: str = "Ready", active: int = 0) -> None:
        """Play the prober: write the status a probe would, and wait for the registry.
        (A write that changes nothing, same second included, is no event.)"""
        status: dict[str, Any] = {
            "phase": phase,
            "lastHeartbeat": format_time(utc_now()),
            "activeDeployments": active,
        }
        stored = await self.cluster.patch_status(BROKERS, name, {"status": status}, namespace=NS)
        version = stored["metadata"]["resourceVersion"]
        await until(
            lambda: (
                (self.brokers.get(f"{NS}/{name}") or {})["metadata"]["resourceVersion"] == version
            )
        )

    async def add_database(self, name: str, **spec: Any) -> str:
        manifest = {
            "apiVersion": "platform.company.com/v1",
            "kind": "Database",
            "metadata": {"name": name, "namespace": TEAM},
            "spec": {
                "engine": "postgresql",
                "target": "aws-us-east-1",
                "owner": {"kind": "Team", "name": "payments"},
                **spec,
            },
        }
        stored = await self.cluster.create(manifest)
        self.created[name] = stored["metadata"]["uid"]
        return f"{TEAM}/{name}"

    async def get(self, name: str) -> dict[str, Any]:
        return await self.cluster.get(DATABASES, name, namespace=TEAM)

    async def wait(
        self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = WAIT
    ) -> dict[str, Any]:
        return await eventually(lambda: self.get(name), predicate, timeout=timeout)

    async def wait_ready(self, name: str, timeout: float = WAIT) -> dict[str, Any]:
        return await self.wait(name, lambda db: status(db).get("phase") == "Ready", timeout)

    async def wait_gone(self, name: str, timeout: float = WAIT) -> None:
        async def gone() -> bool:
            try:
                await self.get(name)
            except NotFound:
                return True
            return False

        await eventually(gone, bool, timeout=timeout)

    async def events(self, name: str) -> list[tuple[str, str]]:
        listed = await self.cluster.list(EVENTS, namespace=TEAM)
        mine = [e for e in listed.items if e["involvedObject"]["name"] == name]
        mine.sort(key=lambda e: int(e["metadata"]["resourceVersion"]))
        return [(e["reason"], e["message"]) for e in mine]


async def eventually(
    fetch: Callable[[], Awaitable[T]], predicate: Callable[[T], bool], *, timeout: float = WAIT
) -> T:
    """Poll `fetch` until `predicate` holds; fail with the last value after `timeout`."""
    return await waiting.eventually(fetch, predicate, timeout=timeout, every=0.05)


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    await waiting.until(predicate, timeout, 0.05)


def status(db: Mapping[str, Any]) -> dict[str, Any]:
    return dict(db.get("status") or {})


def condition(db: Mapping[str, Any], type_: str) -> dict[str, Any]:
    found = find(status(db).get("conditions") or [], type_)
    assert found is not None, f"no {type_} condition in {status(db)}"
    return dict(found)


async def _stop(pool: WorkerPool[str], task: asyncio.Task[None]) -> None:
    await pool.stop(grace=2)
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path,
    *,
    poll_after: float = 60.0,
    callback_url: str | None = None,
    probe: bool = False,
    client_timeout: float = 2.0,
    workers: int = 4,
    backoff_base: float = 0.05,
    retry_first: float = 5.0,
) -> AsyncIterator[Rig]:
    """The daemon in small, torn down in reverse order (workers, informers, servers, store)."""
    async with contextlib.AsyncExitStack() as stack:
        cluster = await EmbeddedCluster.open(tmp_path / "state")
        stack.push_async_callback(cluster.close)
        clients = BrokerClients(SecretCache(cluster, ttl=0), timeout=client_timeout)
        stack.push_async_callback(clients.aclose)
        brokers, databases = Informer(cluster, BROKERS), Informer(cluster, DATABASES)
        registry, index, history = BrokerRegistry(), DeploymentIndex(), MemorySink()

        async def receive(headers: Mapping[str, str], body: bytes) -> Verdict:
            # `gate` and `reconciler` are bound below, before any broker knows the URL
            return await handle_callback(gate, reconciler, headers, body, now=utc_now())

        server = await stack.enter_async_context(callback_server(receive))
        reconciler = DatabaseReconciler(
            cluster=cluster,
            informer=databases,
            registry=registry,
            clients=clients,
            callback_url=callback_url or server.url,
            history=history,
            poll_after=poll_after,
            retry_first=retry_first,
        )
        gate = callback_gate(brokers=registry, databases=reconciler, index=index)
        brokers.add_handler(registry.handle)
        brokers.add_handler(reconciler.on_broker)
        databases.add_handler(index.handle)
        databases.add_handler(reconciler.handle)
        await stack.enter_async_context(brokers.running())
        await stack.enter_async_context(databases.running())
        await brokers.wait_synced(5)
        await databases.wait_synced(5)
        queue: WorkQueue[str] = WorkQueue(
            backoff_base=backoff_base, backoff_cap=max(1.0, backoff_base)
        )
        rig = Rig(cluster, brokers, databases, registry, reconciler, queue, server, history)
        pool = WorkerPool(queue, reconciler.reconcile, workers=workers, name="database")
        reconciler.attach(queue)
        stack.push_async_callback(_stop, pool, asyncio.create_task(pool.run()))
        if probe:
            prober = await stack.enter_async_context(Prober(cluster=cluster, secret_ttl=0))
            prober_reconciler = BrokerReconciler(cluster=cluster, informer=brokers, prober=prober)
            brokers.add_handler(prober_reconciler.handle)
            rig.broker_queue = WorkQueue()
            broker_pool = WorkerPool(rig.broker_queue, prober_reconciler.reconcile, workers=2)
            prober_reconciler.attach(rig.broker_queue)
            stack.push_async_callback(_stop, broker_pool, asyncio.create_task(broker_pool.run()))
        yield rig


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/callbacks"


def holders(inventories: Mapping[str, list[dict[str, Any]]], uid: str) -> list[str]:
    """Which brokers hold a deployment for requestId `uid` (one entry per deployment)."""
    return [ref for ref, items in inventories.items() for item in items if item["requestId"] == uid]


# --- 1. the whole story ----------------------------------------------------------------------


async def test_databases_go_ready_through_signed_callbacks(tmp_path: Path, spawn: Spawn) -> None:
    east1, east2, west = await asyncio.gather(
        spawn("aws-east-1"), spawn("aws-east-2"), spawn("aws-west")
    )
    async with running(tmp_path, poll_after=120) as rig:
        await rig.add_broker(east1)
        await rig.add_broker(east2)
        await rig.add_broker(west, region="us-west-2")
        names = ["orders", "ledger", "billing", "analytics"]
        for name in names[:3]:
            await rig.add_database(name)
        await rig.add_database("analytics", target="aws-us-west-2-prod")
        ready = {name: await rig.wait_ready(name) for name in names}
        inventories = {b.ref: await b.inventory() for b in (east1, east2, west)}

        assert status(ready["analytics"])["brokerRef"] == {"name": "aws-west", "namespace": NS}
        east_refs = {status(ready[n])["brokerRef"]["name"] for n in names[:3]}
        assert east_refs == {"aws-east-1", "aws-east-2"}  # the reservations spread them
        for name in names:
            db = ready[name]
            st = status(db)
            ref = f"{st['brokerRef']['namespace']}/{st['brokerRef']['name']}"
            [held] = [i for i in inventories[ref] if i["requestId"] == rig.created[name]]
            assert st["deploymentId"] == held["deploymentId"]
            assert holders(inventories, rig.created[name]) == [ref]
            short = st["brokerRef"]["name"]
            assert st["endpoint"] == held["endpoint"] == f"{name}.{TEAM}.{short}.sim.kidp.internal"
            assert st["port"] == 5432
            assert st["connectionSecretRef"] == {"name": f"{name}-connection", "namespace": TEAM}
            assert condition(db, "Ready")["status"] == "True"
            assert condition(db, "Ready")["reason"] == "Provisioned"
            assert condition(db, "Scheduled")["status"] == "True"
            assert db["metadata"]["finalizers"] == [p.FINALIZER]
            reasons = [reason for reason, _ in await rig.events(name)]
            assert reasons == ["Selected", "ProvisioningAccepted", "Provisioned"], reasons
            selected = (await rig.events(name))[0][1]
            assert selected.startswith(f"Selected broker {ref} (score ")
        # Ready came from the signed callbacks, well before the first poll (120 s).
        accepted = {v.deployment_id for v in rig.server.accepted()}
        assert {status(db)["deploymentId"] for db in ready.values()} <= accepted
        assert {s.request for s in rig.history.selections()} == {f"{TEAM}/{n}" for n in names}
        for record in rig.history.selections():
            assert record.namespace == TEAM and record.parts is not None
            assert record.score == sum(record.parts) and record.eligible >= 1


# --- 2. intent first ---------------------------------------------------------------------------


async def test_the_intent_is_written_before_the_provision_call(
    tmp_path: Path, spawn: Spawn
) -> None:
    broker = await spawn("stalled")
    async with running(tmp_path, client_timeout=2.0) as rig:
        await rig.add_broker(broker)
        broker.pause()  # connections are accepted, nothing is answered
        try:
            key = await rig.add_database("orders")
            # While the provision call is still in flight (the worker holds the key and
            # the broker cannot answer), the choice is already on record.
            db = await rig.wait("orders", lambda d: "brokerRef" in status(d))
            assert key in rig.queue.processing
            st = status(db)
            assert st["phase"] == "Provisioning"
            assert st["brokerRef"] == {"name": "stalled", "namespace": NS}
            assert "deploymentId" not in st
            assert [r for r, _ in await rig.events("orders")] == ["Selected"]
            # The call times out; the intent stays, and says why it waits.
            db = await rig.wait(
                "orders", lambda d: condition_reason(d, "Ready") == "BrokerUnreachable"
            )
            st = status(db)
            assert (st["phase"], st["brokerRef"]["name"]) == ("Provisioning", "stalled")
            assert "deploymentId" not in st
            assert "no answer within 2s" in st["message"]
        finally:
            broker.resume()
        # The timed-out request was queued in the socket and is served now; the retry
        # carries the same requestId, so the broker holds one deployment, not two.
        db = await rig.wait_ready("orders")
        inventory = await broker.inventory()
        assert [i["deploymentId"] for i in inventory] == [status(db)["deploymentId"]]
        assert inventory[0]["requestId"] == rig.created["orders"]


def condition_reason(db: Mapping[str, Any], type_: str) -> str | None:
    found = find(status(db).get("conditions") or [], type_)
    return None if found is None else str(found.get("reason"))


# --- 3. health and capacity feed selection -------------------------------------------------


async def test_an_unhealthy_broker_gets_no_new_databases(tmp_path: Path, spawn: Spawn) -> None:
    """The BrokerReconciler probes for real: its health verdicts steer selection."""
    primary, secondary = await asyncio.gather(spawn("primary"), spawn("secondary"))
    checks = {"failureThreshold": 1, "successThreshold": 1}
    async with running(tmp_path, probe=True) as rig:
        assert rig.broker_queue is not None
        key = await rig.add_broker(primary, ready=False, priority=300, healthCheck=checks)
        await rig.add_broker(
            secondary, ready=False, priority=100, maxConcurrentDeployments=1, healthCheck=checks
        )
        await until(lambda: all(phase_of(rig, b) == "Ready" for b in (primary, secondary)))
        await rig.add_database("first")
        assert status(await rig.wait_ready("first"))["brokerRef"]["name"] == "primary"

        await primary.knobs(health_mode="fail")
        rig.broker_queue.add(key)  # probe now rather than at the next interval
        await until(lambda: phase_of(rig, primary) == "Unhealthy")
        await rig.add_database("second")
        assert status(await rig.wait_ready("second"))["brokerRef"]["name"] == "secondary"
        # the history says why not the other: one broker rejected by its phase
        [second] = [s for s in rig.history.selections() if s.request == f"{TEAM}/second"]
        assert (second.broker, dict(second.rejections)) == (secondary.ref, {"phase": 1})

        # Nothing fits now: primary unhealthy, secondary full. The Database waits...
        await rig.add_database("third")
        db = await rig.wait("third", lambda d: condition_reason(d, "Scheduled") is not None)
        assert status(db)["phase"] == "Pending"
        message = condition(db, "Scheduled")["message"]
        assert f"{NS}/primary: phase Unhealthy (not Ready)" in message
        assert f"{NS}/secondary: at capacity (1/1 active" in message
        # ... and goes to primary as soon as a probe finds it healthy again.
        await primary.knobs(health_mode="healthy")
        rig.broker_queue.add(key)
        assert status(await rig.wait_ready("third"))["brokerRef"]["name"] == "primary"
        assert status(await rig.get("first"))["phase"] == "Ready"


def phase_of(rig: Rig, sim: SimBroker) -> str | None:
    broker = rig.registry.get(sim.ref)
    return None if broker is None else broker.status.phase


async def test_a_full_broker_answering_429_is_left_for_another(
    tmp_path: Path, spawn: Spawn
) -> None:
    """The registry's view is stale (the broker is full of someone else's work): the 429
    drops the intent, and once the broker reports its load the Database goes elsewhere."""
    full, spare = await asyncio.gather(spawn("full", "--capacity", "1"), spawn("spare"))
    async with httpx.AsyncClient(timeout=5) as http:
        foreign = {"resourceType": "Database", "resourceName": "x", "namespace": "other"}
        answer = await http.post(f"{full.url}/v1/provision", json={**foreign, "requestId": "x"})
        assert answer.status_code == 202
    async with running(tmp_path) as rig:
        await rig.add_broker(full, priority=300, maxConcurrentDeployments=1)
        await rig.add_broker(spare)
        await rig.add_database("orders")
        db = await rig.wait(
            "orders", lambda d: condition_reason(d, "Scheduled") == "BrokerAtCapacity"
        )
        assert "brokerRef" not in status(db)
        assert "HTTP 429" in condition(db, "Scheduled")["message"]
        await rig.set_broker("full", active=1)  # what the next probe would report
        db = await rig.wait_ready("orders")
        assert status(db)["brokerRef"]["name"] == "spare"
        assert holders({full.ref: await full.inventory()}, rig.created["orders"]) == []
        assert (
            "BrokerAtCapacity",
            f"broker {full.ref}: HTTP 429: at capacity: 1 of 1 deployments active",
        ) in await rig.events("orders")


# --- 4. waiting without a timer ----------------------------------------------------------------


async def test_no_fitting_broker_waits_and_a_new_ready_broker_picks_it_up(
    tmp_path: Path, spawn: Spawn
) -> None:
    east, europe = await asyncio.gather(spawn("aws-east"), spawn("aws-europe"))
    async with running(tmp_path, poll_after=600) as rig:
        await rig.add_broker(east)
        key = await rig.add_database("orders", target="aws-eu-west-1")
        db = await rig.wait("orders", lambda d: condition_reason(d, "Scheduled") is not None)
        scheduled = condition(db, "Scheduled")
        assert (status(db)["phase"], scheduled["status"]) == ("Pending", "False")
        assert scheduled["reason"] == "NoBrokerAvailable"
        assert scheduled["message"] == (
            "no broker matches Database (provider postgresql, cloud aws, region eu-west-1): "
            f"{NS}/aws-east: region us-east-1, asked eu-west-1"
        )
        assert ("NoBrokerAvailable", scheduled["message"]) in await rig.events("orders")
        # Parked on broker events, not on a timer.
        await until(lambda: key in rig.reconciler.waiting and not rig.queue.processing)
        assert rig.queue.delayed == 0
        started = time.monotonic()
        await rig.add_broker(europe, ready=False, region="eu-west-1")
        assert status(await rig.get("orders"))["phase"] == "Pending"  # not Ready: no use
        await rig.set_broker("aws-europe")
        db = await rig.wait_ready("orders", timeout=10)
        assert time.monotonic() - started < 10  # poll_after is 600 s
        assert status(db)["brokerRef"]["name"] == "aws-europe"
        assert condition(db, "Scheduled")["status"] == "True"
        assert key not in rig.reconciler.waiting


async def test_a_broker_not_yet_probed_is_awaited_not_reported_as_a_fault(
    tmp_path: Path, spawn: Spawn
) -> None:
    # As at every start of the daemon or kidp-ops dev: the Database comes before any probe.
    east = await spawn("aws-east")
    async with running(tmp_path, poll_after=600) as rig:
        await rig.add_broker(east, ready=False)
        key = await rig.add_database("orders")
        db = await rig.wait("orders", lambda d: condition_reason(d, "Scheduled") is not None)
        scheduled = condition(db, "Scheduled")
        assert (status(db)["phase"], scheduled["status"]) == ("Pending", "False")
        assert scheduled["reason"] == "AwaitingHealthCheck"
        assert scheduled["message"] == (
            f"waiting for the first health check of {NS}/aws-east, which would fit "
            "Database (provider postgresql, cloud aws, region us-east-1)"
        )
        listed = await rig.cluster.list(EVENTS, namespace=TEAM)
        [event] = [e for e in listed.items if e["involvedObject"]["name"] == "orders"]
        assert (event["type"], event["reason"]) == ("Normal", "AwaitingHealthCheck")
        await until(lambda: key in rig.reconciler.waiting and not rig.queue.processing)
        await rig.set_broker("aws-east")  # its first probe: the Ready event places it
        db = await rig.wait_ready("orders", timeout=10)
        assert status(db)["brokerRef"]["name"] == "aws-east"
        assert "NoBrokerAvailable" not in [r for r, _ in await rig.events("orders")]


# --- 5. polling when callbacks never come ----------------------------------------------------


async def test_without_callbacks_the_status_is_polled(tmp_path: Path, spawn: Spawn) -> None:
    broker = await spawn("quiet")
    async with running(tmp_path, poll_after=1.0, callback_url=closed_port_url()) as rig:
        await rig.add_broker(broker)
        started = time.monotonic()
        await rig.add_database("orders")
        db = await rig.wait_ready("orders")
        assert time.monotonic() - started >= 1.0  # not before poll_after
        [held] = await broker.inventory()
        st = status(db)
        assert (st["deploymentId"], st["endpoint"]) == (held["deploymentId"], held["endpoint"])
        assert condition(db, "Ready")["status"] == "True"
        assert rig.server.verdicts == []
        assert [r for r, _ in await rig.events("orders")][-1] == "Provisioned"


# --- 6. deletion -----------------------------------------------------------------------------


async def test_deletion_ends_only_when_the_broker_confirms(tmp_path: Path, spawn: Spawn) -> None:
    """The 202 is not the end: the Database stays (Deleting, AwaitingBroker) while the
    broker still holds the deployment, and goes with the broker's deprovisioned callback."""
    broker = await spawn("b1", delay=1.5)
    async with running(tmp_path) as rig:
        await rig.add_broker(broker)
        await rig.add_database("orders")
        deployment = status(await rig.wait_ready("orders"))["deploymentId"]
        await rig.cluster.delete(DATABASES, "orders", namespace=TEAM)
        db = await rig.wait(
            "orders", lambda d: condition_reason(d, "DeprovisionPending") is not None
        )
        pending = condition(db, "DeprovisionPending")
        assert (status(db)["phase"], pending["reason"]) == ("Deleting", "AwaitingBroker")
        assert db["metadata"]["finalizers"] == [p.FINALIZER]
        [held] = await broker.inventory()  # still there, being removed
        assert (held["deploymentId"], held["phase"]) == (deployment, "Deleting")
        await rig.wait_gone("orders")
        assert await broker.inventory() == []
        steps = [r.step for r in rig.history.lifecycle(request=f"{TEAM}/orders")]
        assert steps == ["created", "scheduled", "accepted", "ready", "deleting", "deleted"]
        events = await rig.events("orders")
        reasons = [reason for reason, _ in events]
        assert reasons[-2:] == ["DeprovisionAccepted", "Deprovisioned"], events
        assert events[-1][1] == "the broker confirmed it deleted the deployment"
        deleted = [v for v in rig.server.verdicts if v.accepted and v.deployment_id == deployment]
        assert deleted[-1].result is not None and deleted[-1].result.phase == "Deleted"


async def test_a_failed_deprovision_keeps_the_finalizer_and_is_retried(
    tmp_path: Path, spawn: Spawn
) -> None:
    broker = await spawn("b1", "--deprovision-failure-rate", "1", delay=0.2)
    async with running(tmp_path, retry_first=1.0) as rig:
        await rig.add_broker(broker)
        await rig.add_database("orders")
        deployment = status(await rig.wait_ready("orders"))["deploymentId"]
        await rig.cluster.delete(DATABASES, "orders", namespace=TEAM)
        db = await rig.wait(
            "orders", lambda d: condition_reason(d, "DeprovisionPending") == "DeprovisionFailed"
        )
        pending = condition(db, "DeprovisionPending")
        assert "simulated failure (deprovision failure rate knob)" in pending["message"]
        assert db["metadata"]["finalizers"] == [p.FINALIZER]
        [held] = await broker.inventory()
        assert held["deploymentId"] == deployment  # it is still there: nothing is dropped
        assert ("DeprovisionFailed", pending["message"]) in await rig.events("orders")
        await broker.knobs(deprovisionFailureRate=0.0)  # the broker recovers
        await rig.wait_gone("orders")  # the retry (after the backoff) goes through
        assert await broker.inventory() == []


async def test_the_abandon_annotation_lets_go_and_says_what_was_left(
    tmp_path: Path, spawn: Spawn
) -> None:
    broker = await spawn("b1")
    async with running(tmp_path) as rig:
        await rig.add_broker(broker)
        await rig.add_database("orders")
        deployment = status(await rig.wait_ready("orders"))["deploymentId"]
        broker.process.kill()  # the broker is gone for good
        await rig.cluster.delete(DATABASES, "orders", namespace=TEAM)
        db = await rig.wait(
            "orders", lambda d: condition_reason(d, "DeprovisionPending") == "BrokerUnreachable"
        )
        assert f'annotate {p.ABANDON}="true"' in status(db)["message"]
        patch = {"metadata": {"annotations": {p.ABANDON: "true"}}}
        await rig.cluster.patch(DATABASES, "orders", patch, namespace=TEAM)
        await rig.wait_gone("orders")
        reason, message = (await rig.events("orders"))[-1]
        assert reason == "Abandoned"
        assert f"left behind: deployment {deployment} on broker {broker.ref}" in message
        warnings = await rig.cluster.list(EVENTS, namespace=TEAM)
        [abandoned] = [e for e in warnings.items if e["reason"] == "Abandoned"]
        assert abandoned["type"] == "Warning"


async def test_deletion_waits_for_a_broker_that_is_down(tmp_path: Path, spawn: Spawn) -> None:
    """Retries back off (5 s, 10 s, ... here), but the broker turning Ready again retries
    at once."""
    broker = await spawn("b1")
    async with running(tmp_path, backoff_base=5.0) as rig:
        await rig.add_broker(broker)
        await rig.add_database("orders")
        deployment = status(await rig.wait_ready("orders"))["deploymentId"]
        broker.process.kill()
        await rig.set_broker("b1", phase="Unhealthy")  # what the prober would see
        await rig.cluster.delete(DATABASES, "orders", namespace=TEAM)
        db = await rig.wait("orders", lambda d: status(d).get("phase") == "Deleting")
        pending = condition(db, "DeprovisionPending")
        assert (pending["status"], pending["reason"]) == ("True", "BrokerUnreachable")
        assert pending["message"].startswith(f"waiting to deprovision: broker {broker.ref}: ")
        assert "ConnectError" in pending["message"], pending["message"]
        assert db["metadata"]["finalizers"] == [p.FINALIZER]
        assert db["metadata"]["deletionTimestamp"]
        pending_since = time.monotonic()
        await asyncio.to_thread(broker.process.restart)  # same port; it lost its memory
        await rig.set_broker("b1")  # and then Ready again
        await rig.wait_gone("orders")
        assert time.monotonic() - pending_since < 4.5  # before the first retry was due
        assert (
            "Deprovisioned",
            f"broker {broker.ref} does not know {deployment}",
        ) in await rig.events("orders")
        assert await broker.inventory() == []


# --- 7. a burst --------------------------------------------------------------------------------


async def test_a_burst_spreads_by_capacity_without_duplicates(tmp_path: Path, spawn: Spawn) -> None:
    capacities = {"large": 15, "medium": 10, "small": 5}
    # delay 0: the brokers call back while their 202 is still being recorded, so
    # callbacks overtake the deploymentId they name (the gate asks them to retry)
    sims = await asyncio.gather(
        *(spawn(name, "--capacity", str(cap), delay=0) for name, cap in capacities.items())
    )
    async with running(tmp_path, poll_after=30, workers=8) as rig:
        for sim in sims:
            await rig.add_broker(sim, maxConcurrentDeployments=capacities[sim.name])
        names = [f"db-{i:02d}" for i in range(sum(capacities.values()))]
        await asyncio.gather(*(rig.add_database(name) for name in names))
        for name in names:
            await rig.wait_ready(name)
        accepted = {v.deployment_id for v in rig.server.accepted()}
        assert len(accepted) == len(names)  # every one through its callback, none lost
        # One selection each: the reservations placed them, no 429 made anyone move.
        assert sorted(s.request for s in rig.history.selections()) == [f"{TEAM}/{n}" for n in names]
        # A crash between the provision call and recording its answer, for a few of them:
        # they are provisioned again with the same requestId.
        for name in names[::6]:
            patch = {"status": {"deploymentId": None, "phase": "Provisioning"}}
            await rig.cluster.patch_status(DATABASES, name, patch, namespace=TEAM)
        for name in names[::6]:
            await rig.wait(
                name, lambda d: status(d).get("phase") == "Ready" and "deploymentId" in status(d)
            )
        inventories = {sim.ref: await sim.inventory() for sim in sims}
        per_broker = {ref: len(items) for ref, items in inventories.items()}
        assert per_broker == {f"{NS}/{n}": c for n, c in capacities.items()}
        for name in names:
            db = await rig.get(name)
            st = status(db)
            ref = f"{NS}/{st['brokerRef']['name']}"
            assert holders(inventories, rig.created[name]) == [ref], name
            [held] = [i for i in inventories[ref] if i["requestId"] == rig.created[name]]
            assert st["deploymentId"] == held["deploymentId"]


# --- 8. forged callbacks ---------------------------------------------------------------------


async def test_callbacks_from_the_wrong_broker_or_badly_signed_change_nothing(
    tmp_path: Path, spawn: Spawn
) -> None:
    owner, other = await asyncio.gather(spawn("owner", delay=600), spawn("other"))
    async with running(tmp_path) as rig:
        await rig.add_broker(owner, priority=300)
        await rig.add_broker(other)
        await rig.add_database("orders")
        db = await rig.wait("orders", lambda d: "deploymentId" in status(d))
        assert status(db)["brokerRef"]["name"] == "owner"
        await until(lambda: rig.queue.depth == 0 and not rig.queue.processing)
        db = await rig.get("orders")
        version, events = db["metadata"]["resourceVersion"], await rig.events("orders")
        deployment = status(db)["deploymentId"]
        body = json.dumps(
            {
                "deploymentId": deployment,
                "resourceType": "Database",
                "resourceName": "orders",
                "namespace": TEAM,
                "status": "success",
                "phase": "Ready",
                "time": format_time(utc_now()),
                "endpoint": "orders.example",
                "port": 5432,
            }
        ).encode()
        stamp = format_time(utc_now())
        stale = format_time(utc_now() - timedelta(minutes=10))

        def headers(key: Ed25519PrivateKey, name: str, at: str = stamp) -> dict[str, str]:
            return callback_headers(key, broker_name=name, timestamp=at, body=body)

        forged = [
            (headers(other.key, owner.ref), body, 401, "does not verify"),
            (headers(other.key, other.ref), body, 403, "not provisioned by broker"),
            (headers(owner.key, owner.ref), body.replace(b"orders.", b"attack."), 401, "verify"),
            (headers(owner.key, f"{NS}/stranger"), body, 403, "unknown broker"),
            (headers(owner.key, owner.ref, stale), body, 401, "outside +-5 minutes"),
            ({}, body, 400, "missing header"),
        ]
        async with httpx.AsyncClient(timeout=5) as http:
            for sent, content, code, words in forged:
                answer = await http.post(rig.server.url, content=content, headers=sent)
                assert answer.status_code == code, answer.text
                assert words in answer.json()["reason"]
            db = await rig.get("orders")
            assert db["metadata"]["resourceVersion"] == version
            assert status(db)["phase"] == "Provisioning"
            assert await rig.events("orders") == events
            # The owner's own, correctly signed callback is taken, once.
            good = headers(owner.key, owner.ref)
            answer = await http.post(rig.server.url, content=body, headers=good)
            assert answer.status_code == 202, answer.text
            assert status(await rig.get("orders"))["endpoint"] == "orders.example"
            replay = await http.post(rig.server.url, content=body, headers=good)
            assert replay.status_code == 409


# --- the decisions changed with these tests (pure) ----------------------------------------


class FakeDatabases:
    """A ResultWriter whose first write fails like an unavailable API server."""

    def __init__(self) -> None:
        self.applied: list[DeploymentResult] = []
        self.failures = 1

    def current(self, key: str) -> Mapping[str, Any] | None:
        namespace, name = key.split("/")
        return {"metadata": {"name": name, "namespace": namespace}}

    async def apply_callback(
        self, key: str, result: DeploymentResult, stamp: CallbackStamp
    ) -> Applied:
        if self.failures:
            self.failures -= 1
            raise Unavailable("the API server is down")
        self.applied.append(result)
        return Applied.APPLIED


def _gate(refs: dict[str, str], index: DeploymentIndex, key: Ed25519PrivateKey) -> CallbackGate:
    registry = BrokerRegistry()
    manifest = broker_manifest("b1", NS)
    manifest["status"] = {"callbackPublicKey": public_key_b64(key)}
    registry.handle("ADDED", manifest)
    return CallbackGate(brokers=registry, broker_ref_of=refs.get, index=index)


async def test_a_callback_that_could_not_be_written_is_taken_when_retried() -> None:
    key, index, now = generate_private_key(), DeploymentIndex(), utc_now()
    index.handle(
        "ADDED",
        {"metadata": {"name": "orders", "namespace": TEAM}, "status": {"deploymentId": "d-1"}},
    )
    gate = _gate({f"{TEAM}/orders": "kidp-system/b1"}, index, key)
    body = json.dumps({"deploymentId": "d-1", "status": "success", "phase": "Ready"}).encode()
    sent = callback_headers(
        key, broker_name="kidp-system/b1", timestamp=format_time(now), body=body
    )
    databases = FakeDatabases()
    first = await handle_callback(gate, databases, sent, body, now=now)
    assert (first.status, databases.applied) == (503, [])
    # The retry may carry the very same signature (same second): not a replay.
    second = await handle_callback(gate, databases, sent, body, now=now)
    assert second.status == 202, second.reason
    assert [r.phase for r in databases.applied if r] == ["Ready"]
    assert (await handle_callback(gate, databases, sent, body, now=now)).status == 409


def test_a_callback_overtaking_its_deployment_id_is_asked_to_retry() -> None:
    key, index, now = generate_private_key(), DeploymentIndex(), utc_now()
    refs = {f"{TEAM}/orders": "kidp-system/b1"}  # intent written, deploymentId not yet
    gate = _gate(refs, index, key)
    payload = {
        "deploymentId": "d-1",
        "status": "success",
        "phase": "Ready",
        "namespace": TEAM,
        "resourceName": "orders",
    }
    body = json.dumps(payload).encode()
    sent = callback_headers(
        key, broker_name="kidp-system/b1", timestamp=format_time(now), body=body
    )
    assert gate.check(sent, body, now=now).status == 503
    other = json.dumps({**payload, "resourceName": "unknown"}).encode()
    sent = callback_headers(
        key, broker_name="kidp-system/b1", timestamp=format_time(now), body=other
    )
    assert gate.check(sent, other, now=now).status == 404


def test_rejected_databases_stay_failed_and_stale_results_are_ignored() -> None:
    now = utc_now()
    ref = {"name": "b1", "namespace": NS}
    base = {
        "metadata": {"name": "orders", "namespace": TEAM, "uid": "u", "finalizers": [p.FINALIZER]}
    }
    rejected = {**base, "status": {"brokerRef": ref, "phase": "Failed"}}
    assert isinstance(p.next_step(rejected, now=now, last_contact=None, poll_after=1), p.Idle)
    waiting = {**base, "status": {"brokerRef": ref, "deploymentId": "d-2", "phase": "Provisioning"}}
    stale = DeploymentResult("Ready", endpoint="x", deployment_id="d-1")
    assert patches.result_patch(waiting, result=stale, now=now) is None
    deleting = {
        **waiting,
        "metadata": {**base["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"},
    }
    fresh = DeploymentResult("Ready", endpoint="x", deployment_id="d-2")
    assert patches.result_patch(deleting, result=fresh, now=now) is None
    patch = patches.result_patch(waiting, result=fresh, now=now)
    assert patch is not None and patch["status"]["message"] == "ready"
    assert find(patch["status"]["conditions"], "Ready")["message"] == "provisioned: x"  # type: ignore[index]
    again = patches.rescheduled_patch(
        waiting, broker=p.BrokerKey(NS, "b1"), error="HTTP 429", now=now
    )
    assert again["status"]["brokerRef"] is None and again["status"]["phase"] == "Pending"


def _closed(client: BrokerClient) -> bool:
    return client._http.is_closed


async def test_a_replaced_broker_client_is_not_closed_under_its_requests() -> None:
    clients = BrokerClients(SecretCache(None), timeout=5)
    before = Broker.from_manifest(broker_manifest("b1", NS, endpoint="http://127.0.0.1:1"))
    after = Broker.from_manifest(broker_manifest("b1", NS, endpoint="http://127.0.0.1:2"))
    old = await clients.client_for(before)
    assert await clients.client_for(before) is old
    new = await clients.client_for(after)
    assert new is not old and new.endpoint == "http://127.0.0.1:2"
    assert not _closed(old)  # another reconcile may still be using it
    await clients.aclose()
    assert _closed(old) and _closed(new)


async def test_a_deleted_brokers_client_is_retired_then_closed() -> None:
    clock = ManualClock()
    clients = BrokerClients(SecretCache(None), timeout=10, clock=clock)
    gone = Broker.from_manifest(broker_manifest("gone", NS, endpoint="http://127.0.0.1:1"))
    other = Broker.from_manifest(broker_manifest("other", NS, endpoint="http://127.0.0.1:2"))
    old = await clients.client_for(gone)
    clients.retire(gone.key)
    assert not _closed(old)  # a request may still be in flight
    clock.advance(19)
    await clients.client_for(other)
    assert not _closed(old)  # within twice the timeout: still open
    clock.advance(1)
    kept = await clients.client_for(other)  # twice the timeout: closed now
    assert _closed(old) and not _closed(kept)
    fresh = await clients.client_for(gone)  # a broker re-created under the same name
    assert fresh is not old
    await clients.aclose()
    assert _closed(kept) and _closed(fresh)
