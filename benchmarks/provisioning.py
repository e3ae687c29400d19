"""Provisioning throughput and daemon memory, on the embedded default, loopback only.

(a) 1,000 Databases applied at once against 5 reference brokers. A state directory in a
    temp folder; 5 Brokers (capacity unlimited, intervalSeconds 5) each served by a
    reference broker process (`python -m kidp_ops.simbroker serve ... --delay 0.5`, which
    registers its callback key); the daemon as a process (`python -m kidp_ops.cli daemon
    --state DIR --http-addr 127.0.0.1:0`, with and without leader election). Once every
    broker is Ready with its key, this process creates the Databases as fast as it can (one
    EmbeddedCluster, a few concurrent creates) and lists them every 0.5 s. Target: every
    Database has status.deploymentId within 20 s of the first create. Also reported: time
    until all are Ready, throughput, per-Database latency, the daemon's CPU, and its
    counters from /metrics. Baseline, same run: the same creates into a fresh store with
    nothing else running (what the store alone costs).
(b) Daemon RSS with 10,000 Brokers and 10,000 Databases. Brokers start without status
    and point at 10,000 distinct loopback origins served by one cheap server process
    (benchmarks/health_servers.py), so the daemon really probes every one and writes every
    Pending -> Ready. Databases are already provisioned (finalizer, status Ready with
    deploymentId, brokerRef, endpoint, conditions, as the reconciler writes them), so the
    daemon caches and indexes them and reconciles each once to Idle. Once both informers
    synced (/readyz) and the first probe sweep is written (every Broker Ready), /metrics is
    scraped once (as Prometheus would), then VmRSS and VmHWM are read from /proc every 2 s
    for 30 s (the second sweep falls in that window). Target: <= 250 MB. Baselines, same run:
    the RSS of importing the daemon's libraries, the daemon on an empty store, and the
    daemon with the brokers only, which give bytes per broker and per database.

Run:
    .venv/bin/python benchmarks/provisioning.py            # (a) both modes, then (b); ~3.5 min
    .venv/bin/python benchmarks/provisioning.py --quick    # small sizes, ~1 min
    .venv/bin/python benchmarks/provisioning.py --only a --leader-elect off

Every process started here is killed at the end (and dies with this one); a hard
deadline (--deadline, default 300 s) ends the run whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.health_servers import address  # noqa: E402
from kidp_ops.cluster.base import BROKERS, DATABASES  # noqa: E402
from kidp_ops.cluster.embedded import EmbeddedCluster  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
NS = "kidp-system"
TEAM = "team-bench"
FINALIZER = "platform.company.com/database-cleanup"
TARGET_IDS_SECONDS = 20.0
TARGET_RSS_MB = 250.0
# The five reference brokers of (a): (name, cloudProvider, region, Database target).
REFERENCE = [
    ("bench-azure-eastus", "azure", "eastus", "azure-eastus"),
    ("bench-azure-westeurope", "azure", "westeurope", "azure-westeurope"),
    ("bench-aws-us-west-2", "aws", "us-west-2", "aws-us-west-2"),
    ("bench-gcp-europe-west1", "gcp", "europe-west1", "gcp-europe-west1"),
    ("bench-onprem-local", "on-prem", "local", "on-prem-local"),
]
SERVING = re.compile(r"serving (http://127\.0\.0\.1:\d+)")


# --- processes ---------------------------------------------------------------------------


def _die_with_parent() -> None:  # in the child, between fork and exec
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Processes:
    """Every child this benchmark starts; `kill_all` in a finally (and on the deadline)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self, args: list[str], log: Path, *, stdin: Any = subprocess.DEVNULL
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as sink:
            process = subprocess.Popen(
                args,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=stdin,
                preexec_fn=_die_with_parent,  # noqa: PLW1509
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                cwd=REPO,
            )
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        with contextlib.suppress(ValueError):
            self.started.remove(process)

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
        for process in self.started:
            with contextlib.suppress(Exception):
                process.wait(5)
        self.started.clear()


PROCESSES = Processes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB from /proc/PID/status."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


async def wait_for_log(
    process: subprocess.Popen[bytes], log: Path, pattern: re.Pattern[str], timeout: float
) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if match := pattern.search(text):
            return match
        if process.poll() is not None:
            raise RuntimeError(f"{log.name}: exited {process.returncode}: {text[-800:]}")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{log.name}: no {pattern.pattern!r} within {timeout:.0f} s")


def start_daemon(state: Path, log: Path, *, leader_elect: bool) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        *("-m", "kidp_ops.cli", "daemon", "--state", str(state)),
        *("--http-addr", "127.0.0.1:0"),
        "--leader-elect" if leader_elect else "--no-leader-elect",
    ]
    return PROCESSES.start(args, log)


def http_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def counters(metrics_text: str) -> dict[str, float]:
    """`name{labels}` -> value for the kidp_* samples of a /metrics page."""
    found = {}
    for line in metrics_text.splitlines():
        if line.startswith("kidp_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


# --- (a) provisioning -----------------------------------------------------------------------


def reference_broker(name: str, cloud: str, region: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "platform.company.com/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "endpoint": f"http://127.0.0.1:{port}",
            "cloudProvider": cloud,
            "region": region,
            "priority": 100,
            "maxConcurrentDeployments": 0,  # unlimited
            "capabilities": [
                {"resourceType": "Database", "providers": ["postgresql", "mysql", "redis"]}
            ],
            "healthCheck": {"endpoint": "/health", "intervalSeconds": 5, "timeoutSeconds": 2},
        },
    }


def bench_database(index: int) -> dict[str, Any]:
    target = REFERENCE[index % len(REFERENCE)][3]
    return {
        "apiVersion": "platform.company.com/v1",
        "kind": "Database",
        "metadata": {"name": f"bench-db-{index:05d}", "namespace": TEAM},
        "spec": {
            "owner": {"kind": "Team", "name": "bench"},
            "engine": ("postgresql", "mysql", "redis")[index % 3],
            "size": "small",
            "target": target,
        },
    }


async def create_all(
    cluster: EmbeddedCluster, count: int, concurrency: int
) -> tuple[float, dict[str, float]]:
    """Create `count` Databases with `concurrency` tasks; (seconds, name -> created at)."""
    created: dict[str, float] = {}
    numbers = iter(range(count))

    async def worker() -> None:
        for index in numbers:
            manifest = bench_database(index)
            await cluster.create(manifest)
            created[manifest["metadata"]["name"]] = time.monotonic()

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return time.monotonic() - started, created


async def baseline_creates(count: int, concurrency: int, tmp: Path) -> float:
    """The same creates into a fresh store with nothing else running."""
    cluster = await EmbeddedCluster.open(tmp / "baseline")
    try:
        seconds, _ = await create_all(cluster, count, concurrency)
    finally:
        await cluster.close()
    return seconds


@dataclass
class ProvisionRun:
    leader_elect: bool
    count: int
    create_seconds: float = float("nan")
    ids_seconds: float | None = None
    ready_seconds: float | None = None
    with_id: int = 0
    ready: int = 0
    failed: int = 0
    id_latencies: list[float] = field(default_factory=list)
    ready_latencies: list[float] = field(default_factory=list)
    daemon_cpu: float = float("nan")
    brokers_cpu: float = float("nan")
    wall: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)
    progress: list[tuple[float, int, int]] = field(default_factory=list)


def start_reference_brokers(
    state: Path, logs: Path, ports: list[int], delay: float
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    brokers = []
    for (name, *_), port in zip(REFERENCE, ports, strict=True):
        log = logs / f"{name}.log"
        ref = f"{NS}/{name}"
        process = PROCESSES.start(
            [
                sys.executable,
                *("-m", "kidp_ops.simbroker", "serve", "--host", "127.0.0.1"),
                *("--port", str(port), "--name", ref, "--register", ref),
                *("--state", str(state), "--delay", str(delay), "--seed", "1"),
            ],
            log,
        )
        brokers.append((process, log))
    return brokers


async def wait_brokers_ready(
    cluster: EmbeddedCluster, daemon: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    """Every reference broker Ready (the daemon leads and probes) with its callback key."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = [b.get("status") or {} for b in (await cluster.list(BROKERS)).items]
        ready = [s for s in statuses if s.get("phase") == "Ready" and s.get("callbackPublicKey")]
        if len(ready) == len(REFERENCE):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"brokers not Ready with keys after {timeout:.0f} s")
        if daemon.poll() is not None:
            raise RuntimeError(f"daemon exited: {log.read_text()[-800:]}")
        await asyncio.sleep(0.1)


async def follow(
    cluster: EmbeddedCluster,
    run: ProvisionRun,
    *,
    t0: float,
    poll: float,
    timeout: float,
    daemon: subprocess.Popen[bytes],
) -> tuple[dict[str, float], dict[str, float]]:
    """List the Databases every `poll` s until all are Ready (or Failed) or `timeout`;
    when each was first seen with a deploymentId and Ready (seconds after t0)."""
    first_id: dict[str, float] = {}
    first_ready: dict[str, float] = {}
    while time.monotonic() < t0 + timeout:
        await asyncio.sleep(poll)
        items = (await cluster.list(DATABASES, namespace=TEAM)).items
        now = time.monotonic() - t0
        failed = 0
        for item in items:
            status = item.get("status") or {}
            name = item["metadata"]["name"]
            if status.get("deploymentId") and name not in first_id:
                first_id[name] = now
            if status.get("phase") == "Ready" and name not in first_ready:
                first_ready[name] = now
            failed += status.get("phase") == "Failed"
        run.failed = failed
        run.progress.append((now, len(first_id), len(first_ready)))
        if run.ids_seconds is None and len(first_id) == run.count:
            run.ids_seconds = now
        if len(first_ready) == run.count:
            run.ready_seconds = now
            break
        if len(first_ready) + failed == run.count or daemon.poll() is not None:
            break
    return first_id, first_ready


async def provisioning_run(
    count: int,
    *,
    leader_elect: bool,
    concurrency: int,
    delay: float,
    poll: float,
    timeout: float,
    tmp: Path,
) -> ProvisionRun:
    label = "leader election on" if leader_elect else "leader election off"
    state = tmp / f"state-{'le' if leader_elect else 'nole'}"
    logs = tmp / f"logs-{'le' if leader_elect else 'nole'}"
    logs.mkdir(parents=True)
    run = ProvisionRun(leader_elect, count)
    cluster = await EmbeddedCluster.open(state)
    started: list[subprocess.Popen[bytes]] = []
    try:
        ports = [free_port() for _ in REFERENCE]
        for (name, cloud, region, _target), port in zip(REFERENCE, ports, strict=True):
            await cluster.apply(reference_broker(name, cloud, region, port))
        brokers = start_reference_brokers(state, logs, ports, delay)
        started += [process for process, _ in brokers]
        for process, log in brokers:
            await wait_for_log(process, log, re.compile("listening on"), 30)
        daemon_log = logs / "daemon.log"
        daemon = start_daemon(state, daemon_log, leader_elect=leader_elect)
        started.append(daemon)
        url = (await wait_for_log(daemon, daemon_log, SERVING, 30)).group(1)
        await wait_brokers_ready(cluster, daemon, daemon_log)

        cpu_daemon = process_cpu(daemon.pid)
        cpu_brokers = sum(process_cpu(p.pid) for p, _ in brokers)
        print(f"  {label}: brokers Ready, creating {count} Databases", flush=True)
        t0 = time.monotonic()
        creator = asyncio.create_task(create_all(cluster, count, concurrency))
        first_id, first_ready = await follow(
            cluster, run, t0=t0, poll=poll, timeout=timeout, daemon=daemon
        )
        if daemon.poll() is not None:
            raise RuntimeError(f"daemon exited: {daemon_log.read_text()[-800:]}")
        run.wall = time.monotonic() - t0
        run.daemon_cpu = process_cpu(daemon.pid) - cpu_daemon
        run.brokers_cpu = sum(process_cpu(p.pid) for p, _ in brokers) - cpu_brokers
        created: dict[str, float] = {}
        if creator.done():
            run.create_seconds, created = creator.result()
        else:
            creator.cancel()
        run.with_id, run.ready = len(first_id), len(first_ready)
        run.id_latencies = [first_id[n] - (created[n] - t0) for n in first_id if n in created]
        run.ready_latencies = [
            first_ready[n] - (created[n] - t0) for n in first_ready if n in created
        ]
        status, text = await asyncio.to_thread(http_get, f"{url}/metrics")
        if status == 200:
            run.metrics = counters(text)
    finally:
        for process in started:
            PROCESSES.stop(process)
        await cluster.close()
    return run


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report_run(run: ProvisionRun, baseline: float) -> bool:
    label = "on " if run.leader_elect else "off"
    ids = f"{run.ids_seconds:.1f} s" if run.ids_seconds is not None else "not reached"
    ready = f"{run.ready_seconds:.1f} s" if run.ready_seconds is not None else "not reached"
    ok = run.ids_seconds is not None and run.ids_seconds <= TARGET_IDS_SECONDS
    rate_ids = run.count / run.ids_seconds if run.ids_seconds else float("nan")
    rate_ready = run.count / run.ready_seconds if run.ready_seconds else float("nan")
    print(f"\nleader election {label}: {run.count} Databases")
    print(f"  creates done in {run.create_seconds:.2f} s (baseline, store alone: {baseline:.2f} s)")
    print(
        f"  all with deploymentId: {ids}  ({rate_ids:.0f}/s; {run.with_id}/{run.count})  "
        f"ratio to the store alone: {(run.ids_seconds or float('nan')) / baseline:.0f}x"
    )
    print(
        f"  all Ready:             {ready}  ({rate_ready:.0f}/s; {run.ready}/{run.count}, "
        f"failed {run.failed})"
    )
    print(
        f"  per Database, create -> deploymentId p50 / p99: {pct(run.id_latencies, 0.5):.1f} / "
        f"{pct(run.id_latencies, 0.99):.1f} s; -> Ready p50 / p99: "
        f"{pct(run.ready_latencies, 0.5):.1f} / {pct(run.ready_latencies, 0.99):.1f} s "
        f"(listing every ~0.5 s)"
    )
    print(
        f"  CPU over {run.wall:.1f} s: daemon {run.daemon_cpu:.1f} s "
        f"({100 * run.daemon_cpu / run.wall:.0f}%), 5 brokers {run.brokers_cpu:.1f} s "
        f"({100 * run.brokers_cpu / run.wall:.0f}%)"
    )
    wanted = (
        'kidp_reconciles_total{controller="database"}',
        'kidp_status_writes_total{kind="database"}',
        'kidp_callbacks_total{result="accepted"}',
        'kidp_reconcile_errors_total{controller="database"}',
    )
    shown = ", ".join(
        f"{k.split('_total')[0][5:]}{k[k.index('{') :]} {run.metrics[k]:.0f}"
        for k in wanted
        if k in run.metrics
    )
    if shown:
        print(f"  daemon counters: {shown}")
    marks = [p for p in run.progress if p[0] >= 0]
    step = max(1, len(marks) // 12)
    print(
        "  progress (s: with id / Ready): "
        + ", ".join(f"{t:.1f}: {i}/{r}" for t, i, r in marks[::step])
    )
    print(f"  target all deploymentIds <= {TARGET_IDS_SECONDS:.0f} s: {'PASS' if ok else 'FAIL'}")
    return ok


async def part_a(args: argparse.Namespace, tmp: Path) -> bool:
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.leader_elect]
    print(
        f"\n(a) {args.databases} Databases at once, 5 reference brokers (delay "
        f"{args.delay:g} s), {args.create_concurrency} concurrent creates"
    )
    baseline = await baseline_creates(args.databases, args.create_concurrency, tmp)
    print(
        f"  baseline: {args.databases} creates into an idle store: {baseline:.2f} s "
        f"({args.databases / baseline:.0f}/s)"
    )
    ok = True
    for leader_elect in modes:
        run = await provisioning_run(
            args.databases,
            leader_elect=leader_elect,
            concurrency=args.create_concurrency,
            delay=args.delay,
            poll=args.poll,
            timeout=args.run_timeout,
            tmp=tmp,
        )
        ok = report_run(run, baseline) and ok
    return ok


# --- (b) memory ------------------------------------------------------------------------------

CLOUDS = {
    "azure": ("eastus", "westus", "westeurope"),
    "aws": ("us-east-1", "us-west-2", "eu-west-1"),
    "gcp": ("us-central1", "europe-west1", "asia-east1"),
    "on-prem": ("dc-east", "dc-west", "local"),
}
ENGINES = ("postgresql", "mysql", "mongodb", "redis", "sqlserver")


def fleet_broker(index: int, port: int, rng: random.Random) -> dict[str, Any]:
    cloud = rng.choice(tuple(CLOUDS))
    region = rng.choice(CLOUDS[cloud])
    capabilities = [
        {"resourceType": "Database", "providers": rng.sample(ENGINES, k=rng.randint(1, 4))}
    ]
    if rng.random() < 0.5:
        capabilities.append(
            {"resourceType": "Cache", "providers": rng.sample(("redis", "memcached"), k=1)}
        )
    return {
        "apiVersion": "platform.company.com/v1",
        "kind": "Broker",
        "metadata": {
            "name": f"broker-{index:05d}",
            "namespace": ("kidp-system", "platform-eu", "platform-us", "team-data")[index % 4],
            "labels": {"kidp.platform.company.com/environment": "bench"},
        },
        "spec": {
            "endpoint": f"http://{address(index)}:{port}",
            "cloudProvider": cloud,
            "region": region,
            "priority": rng.choice((50, 100, 150)),
            "maxConcurrentDeployments": rng.choice((0, 10, 20, 50)),
            "capabilities": capabilities,
            "healthCheck": {"endpoint": "/health", "intervalSeconds": 30, "timeoutSeconds": 5},
        },
    }


def provisioned_database(
    index: int, broker: dict[str, Any], rng: random.Random
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest with the finalizer, its status as the reconciler leaves a Ready one)."""
    name = f"db-{index:05d}"
    namespace = f"team-{index % 50:02d}"
    engine = rng.choice(ENGINES)
    spec = broker["spec"]
    ref = {"name": broker["metadata"]["name"], "namespace": broker["metadata"]["namespace"]}
    deployment = f"dep-{rng.getrandbits(64):016x}"
    when = "2026-11-26T09:00:00Z"
    manifest = {
        "apiVersion": "platform.company.com/v1",
        "kind": "Database",
        "metadata": {"name": name, "namespace": namespace, "finalizers": [FINALIZER]},
        "spec": {
            "owner": {"kind": "Team", "name": f"team-{index % 50:02d}"},
            "engine": engine,
            "version": "16",
            "size": rng.choice(("small", "medium", "large")),
            "target": f"{spec['cloudProvider']}-{spec['region']}",
        },
    }
    endpoint = f"{name}.{namespace}.{deployment}.db.internal"
    selected = f"Selected broker {ref['namespace']}/{ref['name']} (score 231.4 of 12 candidates)"
    status = {
        "phase": "Ready",
        "deploymentId": deployment,
        "brokerRef": ref,
        "endpoint": endpoint,
        "port": 5432,
        "message": f"provisioned: {endpoint}:5432",
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Scheduled",
                "status": "True",
                "reason": "BrokerSelected",
                "message": selected,
                "lastTransitionTime": when,
                "observedGeneration": 1,
            },
            {
                "type": "Ready",
                "status": "True",
                "reason": "Provisioned",
                "message": f"provisioned: {endpoint}:5432",
                "lastTransitionTime": when,
                "observedGeneration": 1,
            },
        ],
    }
    return manifest, status


async def fill(state: Path, brokers: list[dict[str, Any]]) -> float:
    """A store with the CRDs and `brokers` (no status: the daemon probes them)."""
    started = time.monotonic()
    cluster = await EmbeddedCluster.open(state)
    try:
        for manifest in brokers:
            await cluster.create(manifest)
    finally:
        await cluster.close()
    return time.monotonic() - started


async def add_databases(state: Path, fleet: list[dict[str, Any]], count: int) -> float:
    """`count` provisioned Databases (create, then their status), each on a fleet broker."""
    started = time.monotonic()
    cluster = await EmbeddedCluster.open(state, install_crds=False)
    try:
        rng = random.Random(7)
        for index in range(count):
            manifest, status = provisioned_database(index, rng.choice(fleet), rng)
            await cluster.create(manifest)
            meta = manifest["metadata"]
            await cluster.patch_status(
                DATABASES, meta["name"], {"status": status}, namespace=meta["namespace"]
            )
    finally:
        await cluster.close()
    return time.monotonic() - started


@dataclass
class Memory:
    label: str
    brokers: int
    databases: int
    rss: list[float] = field(default_factory=list)
    hwm: float = float("nan")
    sweep_seconds: float = float("nan")
    probes: float = float("nan")
    broker_writes: float = float("nan")
    scrape_seconds: float = float("nan")
    scrape_bytes: int = 0
    hwm_before_scrape: float = float("nan")


async def measure_daemon(
    state: Path, logs: Path, label: str, brokers: int, databases: int, sample_seconds: float
) -> Memory:
    log = logs / f"daemon-{label}.log"
    daemon = start_daemon(state, log, leader_elect=True)
    result = Memory(label, brokers, databases)
    cluster = await EmbeddedCluster.open(state, install_crds=False)
    try:
        started = time.monotonic()
        url = (await wait_for_log(daemon, log, SERVING, 60)).group(1)
        deadline = started + 120
        while (await asyncio.to_thread(http_get, f"{url}/readyz"))[0] != 200:
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError(f"{label}: daemon not ready: {log.read_text()[-800:]}")
            await asyncio.sleep(0.5)
        # The first probe sweep written: every Broker Ready.
        while brokers:
            items = (await cluster.list(BROKERS)).items
            ready = sum((b.get("status") or {}).get("phase") == "Ready" for b in items)
            if ready == brokers:
                break
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError(
                    f"{label}: only {ready}/{brokers} Ready: {log.read_text()[-800:]}"
                )
            await asyncio.sleep(1.0)
        result.sweep_seconds = time.monotonic() - started
        # One scrape first, as Prometheus would do every 15-30 s, so its cost is in VmHWM.
        result.hwm_before_scrape = memory(daemon.pid)[1]
        scraped = time.monotonic()
        _status, text = await asyncio.to_thread(http_get, f"{url}/metrics", 30)
        result.scrape_seconds = time.monotonic() - scraped
        result.scrape_bytes = len(text)
        end = time.monotonic() + sample_seconds
        while True:
            rss, hwm = memory(daemon.pid)
            result.rss.append(rss)
            result.hwm = hwm
            if time.monotonic() >= end:
                break
            await asyncio.sleep(2.0)
        status, text = await asyncio.to_thread(http_get, f"{url}/metrics", 30)
        if status == 200:
            found = counters(text)
            result.probes = sum(
                v for k, v in found.items() if k.startswith("kidp_broker_probes_total")
            )
            result.broker_writes = found.get('kidp_status_writes_total{kind="broker"}', 0.0)
    finally:
        PROCESSES.stop(daemon)
        await cluster.close()
    return result


def import_baseline() -> float:
    code = (
        "import kidp_ops.daemon, kidp_ops.registry, aiohttp, httpx, prometheus_client\n"
        "for line in open('/proc/self/status'):\n"
        "    if line.startswith('VmRSS:'): print(int(line.split()[1]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    return int(out.stdout.strip()) / 1024


@contextlib.contextmanager
def health_fleet(count: int) -> Iterator[int]:
    """benchmarks/health_servers.py with `count` healthy origins; yields the port."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "benchmarks" / "health_servers.py"),
            str(port),
            str(count),
            "0",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509
    )
    PROCESSES.started.append(server)  # type: ignore[arg-type]
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"health servers did not start (said {line!r})")
        yield port
    finally:
        assert server.stdin is not None
        with contextlib.suppress(OSError):
            server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


async def part_b(args: argparse.Namespace, tmp: Path) -> bool:
    n_brokers, n_databases = args.brokers, args.rss_databases
    print(
        f"\n(b) daemon RSS: {n_brokers} Brokers (probed, on {n_brokers} loopback origins) and "
        f"{n_databases} provisioned Databases; sampled every 2 s for {args.sample:.0f} s"
    )
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < n_brokers + 512:
        print(f"  cannot run: needs about {n_brokers + 512} open files, the limit is {hard}")
        return False
    imports = import_baseline()
    print(f"  import baseline (daemon's libraries imported, nothing running): {imports:.1f} MB")
    logs = tmp / "logs-rss"
    logs.mkdir(parents=True)
    results = []
    with health_fleet(n_brokers) as port:
        rng = random.Random(11)
        fleet = [fleet_broker(i, port, rng) for i in range(n_brokers)]
        empty, only_brokers, both = tmp / "rss-empty", tmp / "rss-brokers", tmp / "rss-both"
        await fill(empty, [])
        seconds = await fill(only_brokers, fleet)
        print(f"  store filled with {n_brokers} Brokers in {seconds:.1f} s", flush=True)
        shutil.copytree(only_brokers, both)
        seconds = await add_databases(both, fleet, n_databases)
        print(f"  copy + {n_databases} Databases (create + status) in {seconds:.1f} s", flush=True)
        for label, state, b, d, sample in (
            ("empty", empty, 0, 0, min(args.sample, 10.0)),
            ("brokers", only_brokers, n_brokers, 0, args.sample),
            ("brokers+databases", both, n_brokers, n_databases, args.sample),
        ):
            result = await measure_daemon(state, logs, label, b, d, sample)
            results.append(result)
            print(
                f"  {label:18s} RSS median {statistics.median(result.rss):6.1f} MB, "
                f"max {max(result.rss):6.1f} MB, VmHWM {result.hwm:6.1f} MB "
                f"(ready + first sweep written in {result.sweep_seconds:.1f} s; "
                f"probes {result.probes:.0f}, broker status writes {result.broker_writes:.0f}; "
                f"/metrics {result.scrape_bytes / 1e6:.1f} MB in {result.scrape_seconds:.2f} s; "
                f"VmHWM before that scrape {result.hwm_before_scrape:.1f} MB)",
                flush=True,
            )
    both_r = results[-1]
    e, b, bd = (statistics.median(r.rss) for r in results)
    per_broker = (b - e) * 1024 * 1024 / n_brokers if n_brokers else float("nan")
    per_db = (bd - b) * 1024 * 1024 / n_databases if n_databases else float("nan")
    print(
        f"  per Broker: {per_broker / 1024:.1f} KiB, per Database: {per_db / 1024:.1f} KiB "
        f"(median RSS differences); empty daemon over imports: {e - imports:.1f} MB"
    )
    ok = max(both_r.rss) <= TARGET_RSS_MB and both_r.hwm <= TARGET_RSS_MB
    print(
        f"  target RSS <= {TARGET_RSS_MB:.0f} MB at {n_brokers} Brokers + {n_databases} "
        f"Databases (max sampled VmRSS {max(both_r.rss):.1f} MB, VmHWM {both_r.hwm:.1f} MB): "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return ok


# --- main ------------------------------------------------------------------------------------


TEMP: list[Path] = []  # the run's temp folder, removed on the deadline too


def on_deadline(signum: int, frame: Any) -> None:
    print("\nhard deadline reached: killing every process started here", file=sys.stderr)
    PROCESSES.kill_all()
    for folder in TEMP:
        shutil.rmtree(folder, ignore_errors=True)
    os._exit(3)


async def run(args: argparse.Namespace) -> bool:
    ok = True
    with tempfile.TemporaryDirectory(prefix="kidp-bench-") as folder:
        tmp = Path(folder)
        TEMP.append(tmp)
        try:
            if args.only in (None, "a"):
                ok = await part_a(args, tmp) and ok
            if args.only in (None, "b"):
                ok = await part_b(args, tmp) and ok
        finally:
            PROCESSES.kill_all()
            if args.keep:
                kept = Path(tempfile.mkdtemp(prefix="kidp-bench-kept-"))
                shutil.copytree(
                    tmp, kept, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.db*")
                )
                print(f"logs kept in {kept}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("a", "b"))
    parser.add_argument("--quick", action="store_true", help="small sizes: 200 / 1,000 / 1,000")
    parser.add_argument("--databases", type=int, default=1000, help="(a) Databases created")
    parser.add_argument("--leader-elect", choices=("on", "off", "both"), default="both")
    parser.add_argument("--create-concurrency", type=int, default=4)
    parser.add_argument("--delay", type=float, default=0.5, help="brokers' provisioning delay")
    parser.add_argument("--poll", type=float, default=0.5, help="(a) list every S seconds")
    parser.add_argument("--run-timeout", type=float, default=75.0, help="(a) per mode")
    parser.add_argument("--brokers", type=int, default=10_000, help="(b) Brokers")
    parser.add_argument("--rss-databases", type=int, default=10_000, help="(b) Databases")
    parser.add_argument("--sample", type=float, default=30.0, help="(b) seconds of RSS samples")
    parser.add_argument("--deadline", type=float, default=300.0, help="hard limit, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the logs")
    args = parser.parse_args()
    if args.quick:
        args.databases, args.brokers, args.rss_databases = 200, 1000, 1000
        args.leader_elect = "off" if args.leader_elect == "both" else args.leader_elect
        args.sample = 10.0
    signal.signal(signal.SIGALRM, on_deadline)
    signal.alarm(int(args.deadline))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"CPUs: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    started = time.monotonic()
    try:
        ok = asyncio.run(run(args))
    finally:
        PROCESSES.kill_all()
        signal.alarm(0)
    print(
        f"\nfinished in {time.monotonic() - started:.0f} s, load average {os.getloadavg()[0]:.2f}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
