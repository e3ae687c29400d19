"""`kidp-ops daemon` end to end, as an operator runs it: real daemon processes, reference
brokers as processes that register their callback keys, one embedded state directory
shared with the test (which applies Brokers and Databases through it), and signals.

Health checks run every 5 s (the CRD minimum) with a 1 s timeout; the daemons use
--lease-duration 3 and --poll-after 5 so takeovers and fallbacks show within seconds.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from kidp_ops.cluster.base import EVENTS
from kidp_ops.history.store import open_reader
from tests.e2e.rig import (
    LEASE_DURATION,
    POLL_AFTER,
    TEAM,
    DaemonProcess,
    Rig,
    holder_pid,
)

pytestmark = pytest.mark.slow

METRICS = {  # the families the issue names, as `# TYPE` lines declare them
    "kidp_broker_probes_total": "counter",
    "kidp_broker_probe_duration_seconds": "histogram",
    "kidp_broker_phase": "gauge",
    "kidp_selections_total": "counter",
    "kidp_reconcile_errors_total": "counter",
    "kidp_workqueue_depth": "gauge",
    "kidp_watch_last_event_age_seconds": "gauge",
    "kidp_leader": "gauge",
}


def run_daemon(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A daemon that is expected to stop by itself (a start-up problem)."""
    return subprocess.run(
        [sys.executable, "-m", "kidp_ops.cli", "daemon", "--state", str(state), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def held_by(rig: Rig, daemon: DaemonProcess) -> bool:
    holder = await rig.lease_holder()
    return holder is not None and holder_pid(holder) == daemon.pid


# --- 1 + 2: the HTTP surface, several brokers, signed callbacks, JSON logs ------------------


async def test_provisions_through_several_brokers_and_serves_health_and_metrics(
    rig: Rig,
) -> None:
    daemon = await rig.daemon("--log-format", "json", lead=True)
    assert (await daemon.get("/healthz")).status_code == 200
    assert (await daemon.get("/readyz")).status_code == 200
    await asyncio.gather(
        rig.broker("aws-east", region="us-east-1"),
        rig.broker("aws-west", region="us-west-2"),
        rig.broker("gcp-eu", cloud="gcp", region="europe-west1"),
    )
    placements = {
        "orders": ("aws-us-east-1", "aws-east"),
        "ledger": ("aws-us-east-1", "aws-east"),
        "events": ("aws-us-west-2", "aws-west"),
        "sessions": ("aws-us-west-2", "aws-west"),
        "metrics": ("gcp-europe-west1", "gcp-eu"),
        "audit": ("gcp-europe-west1", "gcp-eu"),
    }
    started = time.monotonic()
    uids = {name: await rig.create_database(name, target=t) for name, (t, _) in placements.items()}
    for name, (_, chosen) in placements.items():
        db = await rig.eventually(partial(rig.database_ready, name), f"{name} Ready")
        status = db["status"]
        assert status["brokerRef"] == {"name": chosen, "namespace": "kidp-system"}, status
        assert status["deploymentId"], status
        assert status["endpoint"].startswith(f"{name}.{TEAM}.{chosen}."), status
        assert status["port"] == 5432, status
    # Ready by callbacks, not by the polling fallback (which waits --poll-after).
    assert time.monotonic() - started < POLL_AFTER
    scrape = await daemon.scrape()
    assert scrape.total("kidp_callbacks_total", result="accepted") >= len(placements)

    # Each broker holds exactly its Databases, with requestId = the Database's uid.
    for broker in rig.brokers:
        inventory = await broker.inventory()
        mine = {n for n, (_, b) in placements.items() if b == broker.name}
        assert {r["resourceName"] for r in inventory} == mine
        assert {r["requestId"] for r in inventory} == {uids[n] for n in mine}
        assert all(r["phase"] == "Ready" for r in inventory), inventory

    # One Selected and one Provisioned event per Database.
    events = (await rig.cluster.list(EVENTS, namespace=TEAM)).items
    reasons = Counter((e["involvedObject"]["name"], e["reason"]) for e in events)
    for name in placements:
        assert reasons[(name, "Selected")] == 1, reasons
        assert reasons[(name, "Provisioned")] == 1, reasons

    # /metrics: Prometheus text format, every family the issue names, sensible values.
    assert scrape.content_type.startswith("text/plain"), scrape.content_type
    for family, kind in METRICS.items():
        assert scrape.types.get(family) == kind, (family, scrape.types.get(family))
    for broker in rig.brokers:
        labels = {"namespace": "kidp-system", "broker": broker.name}
        assert scrape.total("kidp_broker_probes_total", result="success", **labels) >= 1
        assert scrape.value("kidp_broker_phase", phase="Ready", **labels) == 1.0
        for other in ("Pending", "Unhealthy", "Offline", "Unknown"):
            assert scrape.value("kidp_broker_phase", phase=other, **labels) == 0.0
        expected = sum(1 for _, b in placements.values() if b == broker.name)
        selected = scrape.total("kidp_selections_total", **labels)
        assert selected == expected, (broker.name, selected)
        # The history's series (history/series.py), for the Prometheus reader.
        assert scrape.value("kidp_broker_info", **labels) == 1.0
        assert scrape.value("kidp_broker_max_concurrent_deployments", **labels) is not None
    assert scrape.total("kidp_provision_duration_seconds_count") == len(placements)
    assert (scrape.value("kidp_broker_probe_duration_seconds_count") or 0) >= 3
    assert scrape.value("kidp_broker_probe_duration_seconds_bucket", le="+Inf") == scrape.value(
        "kidp_broker_probe_duration_seconds_count"
    )
    # No error in this run: prometheus_client renders a labelled counter nothing counted
    # yet as its HELP and TYPE lines only (the TYPE was checked above), no sample at all.
    assert scrape.total("kidp_reconcile_errors_total") == 0
    assert scrape.total("kidp_reconciles_total", controller="database") >= len(placements)
    depth = {labels["controller"]: v for labels, v in scrape.select("kidp_workqueue_depth")}
    assert set(depth) == {"broker", "database"}, depth
    assert all(v >= 0 for v in depth.values())
    ages = {
        labels["resource"]: v for labels, v in scrape.select("kidp_watch_last_event_age_seconds")
    }
    assert set(ages) == {"brokers.platform.company.com", "databases.platform.company.com"}, ages
    assert all(0 <= v < 60 for v in ages.values()), ages
    assert scrape.value("kidp_leader") == 1.0

    # Graceful stop; the log was JSON all along, one object per line.
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(15) == 0, daemon.tail()
    lines = daemon.output().splitlines()
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= set(entry), line
    assert json.loads(lines[-1])["message"] == "stopped"
    assert daemon.stdout_path.read_text() == ""
    # History on by default with a state directory: every placement, as it happened.
    reader = open_reader(rig.state)
    assert reader is not None and reader.probes()
    chosen = {s.request: s.broker for s in reader.selections() if s.broker}
    assert chosen == {f"{TEAM}/{n}": f"kidp-system/{b}" for n, (_, b) in placements.items()}
    ready = {r.request for r in reader.lifecycle() if r.step == "ready"}
    assert ready == {f"{TEAM}/{n}" for n in placements}


async def test_a_taken_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_daemon(tmp_path / "state", "--http-addr", f"127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the address is already in use"
    ], result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:99999", "127.0.0.1:http"])
def test_a_bad_http_addr_is_a_usage_error(tmp_path: Path, address: str) -> None:
    result = run_daemon(tmp_path / "state", "--http-addr", address)
    assert result.returncode == 2, result.stderr
    assert "is not HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists()


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_an_ipv6_address_gets_a_callback_url_brokers_can_use(rig: Rig) -> None:
    daemon = await rig.daemon("--no-leader-elect", host="[::1]")
    assert (await daemon.get("/healthz")).status_code == 200
    assert f"callbacks go to http://[::1]:{daemon.port}/v1/callback" in daemon.output()
    await rig.broker("aws")
    started = time.monotonic()
    await rig.create_database("v6")
    await rig.eventually(lambda: rig.database_ready("v6"), "v6 Ready")
    assert time.monotonic() - started < POLL_AFTER, "Ready only by the polling fallback"
    assert (await daemon.scrape()).total("kidp_callbacks_total", result="accepted") == 1


# --- 3 + 4: broker health drives selection ---------------------------------------------------


async def test_a_dead_broker_is_marked_unhealthy_and_new_databases_go_elsewhere(rig: Rig) -> None:
    daemon = await rig.daemon(lead=True)
    primary, backup = await asyncio.gather(
        rig.broker("primary", priority=200), rig.broker("backup", priority=100)
    )
    await rig.create_database("before")
    before = await rig.eventually(lambda: rig.database_ready("before"), "before Ready")
    assert before["status"]["brokerRef"]["name"] == "primary"

    primary.process.kill()
    killed = time.monotonic()

    async def unhealthy() -> bool:
        return (await rig.broker_status("primary")).get("phase") == "Unhealthy"

    # failureThreshold 1: the next probe (every 5 s +-10%, 1 s timeout) marks it.
    await rig.eventually(unhealthy, "primary Unhealthy", timeout=10)
    assert time.monotonic() - killed < 5 * 1.1 + 1 + 2
    scrape = await daemon.scrape()
    labels = {"namespace": "kidp-system", "broker": "primary"}
    assert scrape.value("kidp_broker_phase", phase="Unhealthy", **labels) == 1.0
    assert scrape.value("kidp_broker_phase", phase="Ready", **labels) == 0.0
    assert scrape.total("kidp_broker_probes_total", result="failure", **labels) >= 1

    for name in ("after-1", "after-2"):
        await rig.create_database(name)
    for name in ("after-1", "after-2"):
        db = await rig.eventually(partial(rig.database_ready, name), f"{name} Ready")
        assert db["status"]["brokerRef"]["name"] == "backup", db["status"]
    assert {r["resourceName"] for r in await backup.inventory()} == {"after-1", "after-2"}


async def test_a_newly_applied_broker_serves_a_waiting_database_once_ready(rig: Rig) -> None:
    await rig.daemon(lead=True)
    await rig.broker("aws", cloud="aws", region="us-east-1")
    await rig.create_database("waits", target="gcp-europe-west1")

    async def pending() -> bool:
        status = (await rig.database("waits")).get("status") or {}
        reasons = {c.get("reason") for c in status.get("conditions") or []}
        return status.get("phase") == "Pending" and "NoBrokerAvailable" in reasons

    await rig.eventually(pending, "waits Pending with NoBrokerAvailable")

    gcp = await rig.broker("gcp", cloud="gcp", region="europe-west1", wait_ready=False)

    async def gcp_ready() -> bool:
        return (await rig.broker_status("gcp")).get("phase") == "Ready"

    await rig.eventually(gcp_ready, "gcp Ready", interval=0.05)
    ready_at = time.monotonic()

    async def selected() -> bool:
        status = (await rig.database("waits")).get("status") or {}
        return (status.get("brokerRef") or {}).get("name") == "gcp"

    # Selected on the broker's Ready event, not on some timer.
    await rig.eventually(selected, "waits selects gcp", timeout=5, interval=0.05)
    assert time.monotonic() - ready_at < 2.0
    db = await rig.eventually(lambda: rig.database_ready("waits"), "waits Ready")
    assert db["status"]["brokerRef"]["name"] == "gcp"
    # The Broker was applied after the daemon started: its key came from its status, and
    # the callback (not the poll after --poll-after) made the Database Ready.
    assert time.monotonic() - ready_at < POLL_AFTER, "Ready only by the polling fallback"
    assert [r["resourceName"] for r in await gcp.inventory()] == ["waits"]


# --- 5: a crash during a burst -------------------------------------------------------------


async def test_sigkill_during_a_burst_then_restart_provisions_each_database_once(
    rig: Rig,
) -> None:
    daemon = await rig.daemon(lead=True)
    await asyncio.gather(
        rig.broker("aws", cloud="aws", region="us-east-1"),
        rig.broker("gcp", cloud="gcp", region="europe-west1"),
    )
    total = 50
    uids: dict[str, str] = {}
    killed = asyncio.Event()

    async def burst() -> None:
        for i in range(total):
            if i == 40:
                await killed.wait()  # the kill lands within the burst, whatever the load
            name = f"burst-{i:02d}"
            target = "aws-us-east-1" if i % 2 else "gcp-europe-west1"
            uids[name] = await rig.create_database(name, target=target)
            await asyncio.sleep(0.02)

    creating = asyncio.create_task(burst())
    try:

        async def some_in_flight() -> bool:
            refs = [d for d in await rig.databases() if (d.get("status") or {}).get("brokerRef")]
            return len(refs) >= 8

        await rig.eventually(some_in_flight, "8 Databases selected")
        daemon.kill()
        created_at_kill = len(uids)
    finally:
        killed.set()
        await creating
    assert 8 <= created_at_kill < total

    await rig.restart(daemon)  # same state, same port (the brokers' callbackUrl)

    async def all_ready() -> bool:
        items = await rig.databases()
        return len(items) == total and all(
            (d.get("status") or {}).get("phase") == "Ready" for d in items
        )

    await rig.eventually(all_ready, f"all {total} Databases Ready", timeout=45, interval=0.25)

    by_uid = {d["metadata"]["uid"]: d for d in await rig.databases()}
    assert set(by_uid) == set(uids.values())
    seen: list[str] = []
    for broker in rig.brokers:
        inventory = await broker.inventory()
        for resource in inventory:
            db = by_uid[resource["requestId"]]  # nothing a Database did not ask for
            assert db["status"]["brokerRef"]["name"] == broker.name
            assert db["status"]["deploymentId"] == resource["deploymentId"]
            seen.append(resource["requestId"])
    assert len(seen) == total, Counter(seen).most_common(3)  # no duplicate deployment
    assert set(seen) == set(uids.values())
    assert "Traceback" not in daemon.output()


# --- 6 + 7: leader election and signals -------------------------------------------------------


async def test_only_the_leader_reconciles_and_a_standby_takes_over(rig: Rig) -> None:
    first = await rig.daemon(lead=True)
    await rig.broker("aws")
    second = await rig.daemon(lead=False)  # /readyz 200: a standby is ready too
    assert (await second.get("/healthz")).status_code == 200
    assert await held_by(rig, first)
    assert not await second.leading()
    await rig.create_database("one")
    one = await rig.eventually(lambda: rig.database_ready("one"), "one Ready")
    assert one["status"]["brokerRef"]["name"] == "aws"

    standby = await second.scrape()
    assert standby.value("kidp_leader") == 0.0
    assert standby.total("kidp_reconciles_total") == 0
    assert standby.total("kidp_status_writes_total") == 0
    assert standby.total("kidp_broker_probes_total") == 0
    assert standby.total("kidp_selections_total") == 0
    leader = await first.scrape()
    assert leader.value("kidp_leader") == 1.0
    assert leader.total("kidp_reconciles_total", controller="database") >= 1
    assert leader.total("kidp_status_writes_total", kind="database") >= 1
    events = (await rig.cluster.list(EVENTS, namespace=TEAM)).items
    selected = [e for e in events if e["reason"] == "Selected"]
    assert len(selected) == 1, selected  # one daemon decided, once

    # The leader crashes: the standby waits out the lease (3 s), then takes over.
    first.kill()
    killed = time.monotonic()
    await rig.eventually(lambda: held_by(rig, second), "second holds the lease", interval=0.05)
    takeover = time.monotonic() - killed
    assert LEASE_DURATION - 1 <= takeover <= 2 * LEASE_DURATION, takeover
    await rig.eventually(second.leading, "second leads")
    await rig.create_database("two")
    two = await rig.eventually(lambda: rig.database_ready("two"), "two Ready")
    assert two["status"]["brokerRef"]["name"] == "aws"
    assert (await second.scrape()).total("kidp_reconciles_total", controller="database") >= 1

    # A graceful stop hands over at once: released, not waited out.
    third = await rig.daemon(lead=False)
    assert await held_by(rig, second)
    second.signal(signal.SIGTERM)
    termed = time.monotonic()
    await rig.eventually(lambda: held_by(rig, third), "third holds the lease", interval=0.05)
    handover = time.monotonic() - termed
    assert handover < LEASE_DURATION / 2, handover
    assert await second.wait_exit(10) == 0, second.tail()
    assert "released it" in second.output()
    await rig.eventually(third.leading, "third leads")
    await rig.create_database("three")
    await rig.eventually(lambda: rig.database_ready("three"), "three Ready")


async def test_sigterm_stops_gracefully_and_frees_the_lease(rig: Rig) -> None:
    daemon = await rig.daemon(lead=True)
    assert await held_by(rig, daemon)
    # A standby stops at once and leaves the leader's lease alone.
    standby = await rig.daemon(lead=False)
    standby.signal(signal.SIGTERM)
    assert await standby.wait_exit(5) == 0, standby.tail()
    assert standby.output().rstrip().endswith("kidp_ops.daemon: stopped"), standby.output()
    assert await held_by(rig, daemon)

    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(15) == 0, daemon.tail()
    output = daemon.output()
    assert "SIGTERM received" in output
    assert output.rstrip().endswith("kidp_ops.daemon: stopped"), output
    assert "Traceback" not in output
    assert await rig.lease_holder() == ""


async def test_a_second_sigterm_stops_at_once_and_still_frees_the_lease(rig: Rig) -> None:
    daemon = await rig.daemon(lead=True)
    broker = await rig.broker("stuck")
    assert broker.process.process is not None
    broker.process.process.send_signal(signal.SIGSTOP)  # accepts connections, never answers
    await rig.create_database("in-flight")

    async def provisioning() -> bool:
        status = (await rig.database("in-flight")).get("status") or {}
        return (status.get("brokerRef") or {}).get("name") == "stuck"

    await rig.eventually(provisioning, "in-flight selected (the provision call hangs)")
    daemon.signal(signal.SIGTERM)

    async def first_signal_handled() -> bool:
        return "SIGTERM received: finishing in-flight work" in daemon.output()

    await rig.eventually(first_signal_handled, "the first SIGTERM handled")
    assert daemon.running, "the first SIGTERM waits for the reconcile in flight"
    daemon.signal(signal.SIGTERM)
    assert await daemon.wait_exit(5) == 130, daemon.tail()
    output = daemon.output()
    assert "stopped without finishing in-flight work" in output
    assert "Traceback" not in output
    assert "released it" in output, output
    assert await rig.lease_holder() == ""
