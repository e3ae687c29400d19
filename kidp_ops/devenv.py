"""`kidp-ops dev`: the whole system on one machine, no cluster (ARCHITECTURE.md §8).

1. open (or create) the embedded store in --state; the CRDs are installed on open;
2. apply `samples/dev/` (brokers, their Secret, five Databases);
3. start the five reference brokers of `samples/dev/` as processes on 127.0.0.1 (their
   ports come from the Brokers' endpoints). One flaps on a schedule, one has room for three
   deployments only, one needs the api-key from the dev Secret. Each registers its callback
   key into its Broker's status;
4. run the daemon in this process (leader election on, so a second `kidp-ops dev` or
   `kidp-ops daemon` on the same state waits instead of acting twice), and serve the store
   as a Kubernetes API for kubectl (`cluster.serving`: 127.0.0.1:--api-port, TLS, a
   token, STATE/kubeconfig);
5. create a Database every few seconds (and delete the oldest once there are many), and
   show a live view: brokers, databases, recent decisions. `--headless` logs a line now and
   then instead, and `--duration` stops by itself with a summary.

Ctrl-C or SIGTERM stops the creator, the daemon (gracefully) and every broker process.
Broker processes also die with this one (PR_SET_PDEATHSIG), so none is left behind.
"""

# size: the embedded default composes everything it runs; each part is small

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from kidp_ops import frontends, logs
from kidp_ops.cluster.base import BROKERS, DATABASES, LEASES, Cluster, ClusterError, NotFound
from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.cluster.serving import DEFAULT_PORT, ServeError, serve_store
from kidp_ops.cluster.target import Target
from kidp_ops.controller.shutdown import stop_on_signals
from kidp_ops.daemon import LEASE_NAME, Daemon, DaemonConfig, DaemonError
from kidp_ops.history import HistoryError, HistorySink, MemorySink, Tee
from kidp_ops.history.store import open_writer
from kidp_ops.model import manifests
from kidp_ops.model.bundled import bundled_dir
from kidp_ops.output import table

log = logging.getLogger("kidp_ops.dev")

# What makes the dev fleet worth watching (by Broker name; see samples/dev/brokers.yaml).
BROKER_KNOBS: dict[str, tuple[str, ...]] = {
    "dev-azure-eastus": ("--delay", "3"),
    "dev-azure-westeurope": ("--delay", "4", "--capacity", "3"),  # fills up
    "dev-aws-us-west-2": ("--delay", "2"),
    "dev-gcp-europe-west1": ("--delay", "3", "--health-mode", "flap:45"),  # flaps
    "dev-onprem-local": ("--delay", "5", "--failure-rate", "0.1"),  # fails now and then
}
API_KEY_SECRETS = {"dev-aws-us-west-2": ("dev-aws-us-west-2-credentials", "api-key")}
PLACEMENTS = [
    ("postgresql", "azure-eastus"),
    ("mysql", "aws-us-west-2-prod"),
    ("postgresql", "gcp-europe-west1"),
    ("redis", "azure-westeurope"),
    ("mongodb", "on-prem-local"),
    ("postgresql", "aws-us-west-2-dev"),
    ("sqlserver", "azure-eastus"),
]
TEAM_NAMESPACE = "team-dev"
MAX_LIVE_DATABASES = 20
VIEW_EVERY = 2.0
HEADLESS_EVERY = 10.0


@dataclass(frozen=True)
class DevOptions:
    headless: bool = False
    duration: float | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 18080
    create_every: float = 4.0
    seed: int | None = None
    api_port: int = DEFAULT_PORT
    readonly: bool = False  # the dashboard offers no actions
    history: Path | None = None  # the history store's directory; None: keep none


class DevError(Exception):
    """Something that stops `kidp-ops dev` from starting; one line for the user."""


# --- broker processes ---------------------------------------------------------------------


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        import ctypes  # lazy: runs in the child between fork and exec, Linux only

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class BrokerProcesses:
    processes: dict[str, subprocess.Popen[bytes]]
    logs: dict[str, Path]

    def alive(self) -> dict[str, bool]:
        return {name: p.poll() is None for name, p in self.processes.items()}

    def stop(self, timeout: float = 5.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


# size: one process per broker: arguments, credentials, log, then the wait
async def start_brokers(
    cluster: Cluster, brokers: Sequence[Mapping[str, Any]], state: Path
) -> BrokerProcesses:
    """One reference broker process per Broker, on its endpoint's port; waits until all
    listen (or one fails, with its last log line)."""
    folder = state / "brokers"
    folder.mkdir(parents=True, exist_ok=True)
    started = BrokerProcesses({}, {})
    try:
        for broker in brokers:
            meta = broker["metadata"]
            name, namespace = meta["name"], meta["namespace"]
            port = urlsplit(broker["spec"]["endpoint"]).port or 80
            args = [
                *("--host", "127.0.0.1", "--port", str(port)),
                *("--name", f"{namespace}/{name}", "--register", f"{namespace}/{name}"),
                *("--state", str(state), "--key-file", str(folder / f"{name}.key")),
                *BROKER_KNOBS.get(name, ()),
            ]
            if name in API_KEY_SECRETS:
                secret, key = API_KEY_SECRETS[name]
                data = await cluster.get_secret_data(secret, namespace=namespace)
                key_file = folder / f"{name}.api-key"
                key_file.write_bytes(data[key])
                key_file.chmod(0o600)
                args += ["--api-key-file", str(key_file)]
            log_path = folder / f"{name}.log"
            with log_path.open("ab") as sink:
                started.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "kidp_ops.simbroker", "serve", *args],
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            started.logs[name] = log_path
        await _wait_listening(started)
    except BaseException:
        started.stop()
        raise
    return started


async def _wait_listening(started: BrokerProcesses, timeout: float = 30.0) -> None:
    offsets = {name: path.stat().st_size for name, path in started.logs.items()}
    waiting = set(started.processes)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for name in list(waiting):
            text = started.logs[name].read_bytes()[offsets[name] :].decode(errors="replace")
            if "listening on" in text:
                waiting.discard(name)
            elif started.processes[name].poll() is not None:
                last = text.strip().splitlines()[-1] if text.strip() else "no output"
                raise DevError(f"reference broker {name} did not start: {last}")
        await asyncio.sleep(0.05)
    if waiting:
        raise DevError(f"reference brokers did not start in {timeout:.0f}s: {sorted(waiting)}")


# --- the store ---------------------------------------------------------------------------


async def apply_dev_samples(cluster: Cluster, out: TextIO) -> list[dict[str, Any]]:
    """Apply samples/dev; return the Broker manifests."""

    loaded = manifests.load([str(bundled_dir("samples") / "dev")])
    problems = manifests.validate(loaded)
    if problems:
        raise DevError(f"the bundled dev samples are invalid: {problems[0]}")
    brokers = []
    counts: Counter[str] = Counter()
    for doc in loaded.in_apply_order():
        outcome, _ = await cluster.apply(doc.manifest)
        counts[outcome] += 1
        if doc.manifest.get("kind") == "Broker":
            brokers.append(doc.manifest)
    summary = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
    print(f"applied samples/dev: {summary}", file=out)
    return brokers


async def clear_dead_lease(cluster: Cluster, name: str, namespace: str) -> bool:
    """A lease held by a process of this host that no longer exists is freed at once
    (a `kidp-ops dev` that was killed), instead of waiting out its duration."""
    try:
        lease = await cluster.get(LEASES, name, namespace=namespace)
    except NotFound:
        return False
    holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
    host, _, rest = holder.partition("_")
    pid_text = rest.partition("_")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        spec = {"holderIdentity": "", "leaseDurationSeconds": 1}
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        with contextlib.suppress(ClusterError):
            await cluster.replace(lease)
            log.info("freed the lease of exited process %s", holder)
            return True
    except PermissionError:
        pass
    return False


# --- Databases over time ----------------------------------------------------------------


def dev_database(index: int, rng: random.Random) -> dict[str, Any]:
    engine, target = rng.choice(PLACEMENTS)
    return {
        "apiVersion": "platform.company.com/v1",
        "kind": "Database",
        "metadata": {
            "name": f"dev-db-{index:04d}",
            "namespace": TEAM_NAMESPACE,
            "labels": {"kidp.platform.company.com/environment": "dev"},
        },
        "spec": {
            "owner": {"kind": "Team", "name": "dev"},
            "engine": engine,
            "size": rng.choice(["small", "medium", "large"]),
            "target": target,
        },
    }


async def create_over_time(cluster: Cluster, every: float, rng: random.Random) -> None:
    """Create a Database every `every` seconds; keep at most MAX_LIVE_DATABASES of ours."""
    listed = await cluster.list(DATABASES, namespace=TEAM_NAMESPACE)
    names = sorted(i["metadata"]["name"] for i in listed.items)
    index = max((int(n.rsplit("-", 1)[1]) for n in names if n[-4:].isdigit()), default=0)
    while True:
        await asyncio.sleep(every)
        index += 1
        try:
            await cluster.create(dev_database(index, rng))
            names.append(f"dev-db-{index:04d}")
            if len(names) > MAX_LIVE_DATABASES:
                await cluster.delete(DATABASES, names.pop(0), namespace=TEAM_NAMESPACE)
        except ClusterError as exc:
            log.warning("dev: cannot create or delete a Database: %s", exc)


# --- the view ------------------------------------------------------------------------------


def render(
    daemon: Daemon, sink: MemorySink, *, now: datetime, started: float, kubectl: str = ""
) -> str:

    brokers = sorted(daemon.brokers.items(), key=lambda o: o["metadata"]["name"])
    databases = sorted(
        daemon.databases.items(),
        key=lambda o: o["metadata"].get("creationTimestamp", ""),
        reverse=True,
    )
    phases = Counter((d.get("status") or {}).get("phase") or "New" for d in databases)
    role = "leading" if daemon.leading.is_set() else "standby (another process holds the lease)"
    lines = [
        f"kidp-ops dev: up {time.monotonic() - started:.0f}s, {role}, "
        f"metrics {daemon.http_url}/metrics   (Ctrl-C to stop)",
        f"kubectl: {kubectl}" if kubectl else "",
        "",
        table(brokers, BROKERS, now=now, wide=False),
        "",
        "databases: " + (", ".join(f"{n} {p}" for p, n in sorted(phases.items())) or "none yet"),
        table(databases[:12], DATABASES, now=now, wide=False, show_namespace=True)
        if databases
        else "",
        "",
        "recent decisions:",
    ]
    latest: dict[str, Any] = {}  # the last decision per request: retries are not news
    for record in sink.selections():
        latest.pop(record.request, None)
        latest[record.request] = record
    for record in list(latest.values())[-6:]:
        chosen = (
            f"-> {record.broker} (score {record.score:.1f})"
            if record.broker
            else "-> none: " + record.reason.partition("): ")[2]
        )
        lines.append(f"  {record.time:%H:%M:%S} {record.request} {chosen}")
    width = shutil.get_terminal_size((160, 50)).columns
    text = "\n".join(lines).splitlines()
    return "\n".join(line if len(line) <= width else line[: width - 1] + "…" for line in text)


def one_line(daemon: Daemon) -> str:
    brokers = Counter((b.get("status") or {}).get("phase") or "New" for b in daemon.brokers.items())
    dbs = Counter((d.get("status") or {}).get("phase") or "New" for d in daemon.databases.items())

    def fmt(counts: Counter[str]) -> str:
        return ", ".join(f"{n} {p}" for p, n in sorted(counts.items())) or "none"

    return f"brokers: {fmt(brokers)}; databases: {fmt(dbs)}"


async def show(
    daemon: Daemon,
    sink: MemorySink,
    out: TextIO,
    *,
    headless: bool,
    started: float,
    kubectl: str = "",
) -> None:
    clear = "\x1b[H\x1b[2J" if out.isatty() else ""
    while True:
        if headless:
            await asyncio.sleep(HEADLESS_EVERY)
            print(f"{datetime.now(UTC):%H:%M:%S} {one_line(daemon)}", file=out, flush=True)
        else:
            text = render(daemon, sink, now=datetime.now(UTC), started=started, kubectl=kubectl)
            print(clear + text + ("\n" if not clear else ""), file=out, flush=True)
            await asyncio.sleep(VIEW_EVERY)


# --- the command ---------------------------------------------------------------------------


# size: the composition of dev: store, samples, brokers, daemon, view, in start order
async def run(target: Target, options: DevOptions, *, out: TextIO, err: TextIO) -> int:
    if target.is_kube:
        print(
            "error: kidp-ops dev runs on the embedded store (--state); "
            "against a cluster, run `kidp-ops daemon --kubeconfig ...`",
            file=err,
        )
        return 2
    state = Path(target.state)
    dashboard = _dashboard(options, out)
    if dashboard is None:
        logs.configure("text", level=logging.INFO if options.headless else logging.WARNING)
    else:  # nothing the daemon logs may draw over the dashboard: a file, and its log pane
        logs.to_file(state / "dev.log")
    started = time.monotonic()
    stop = asyncio.Event()
    sink = MemorySink()
    async with await EmbeddedCluster.open(state) as cluster, AsyncExitStack() as stack:
        try:
            api = await stack.enter_async_context(
                serve_store(cluster, state, port=options.api_port)
            )
            brokers = await apply_dev_samples(cluster, out)
            await clear_dead_lease(cluster, LEASE_NAME, "kidp-system")
            processes = await start_brokers(cluster, brokers, state)
        except (DevError, ServeError) as exc:
            print(f"error: {exc}", file=err)
            return 1
        print(
            f"started {len(processes.processes)} reference brokers (logs in {state}/brokers/)",
            file=out,
        )
        print(f"kubectl: the store is served on {api.url}; in another shell:", file=out)
        print(api.export_line(), file=out, flush=True)
        config = DaemonConfig(
            http_host=options.http_host,
            http_port=options.http_port,
            lease_namespace="kidp-system",
            broker_namespaces=("kidp-system",),
            identity=None,
            poll_after=15.0,
            grace=5.0,
        )
        history: HistorySink = sink
        if options.history is not None:
            try:
                writer = open_writer(options.history)
            except HistoryError as exc:
                print(f"error: {exc}", file=err)
                return 1
            stack.push_async_callback(asyncio.to_thread, writer.close)
            history = Tee(sink, writer)
            print(f"history: {writer.path} (kidp-ops history report --out FILE.html)", file=out)
        daemon = Daemon(cluster, config, history=history)
        failure: Exception | None = None
        try:
            # SIGHUP too: closing the terminal stops dev as gracefully as Ctrl-C.
            with stop_on_signals(stop, signals=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)):
                failure = await _run_all(
                    daemon, cluster, sink, options, out, stop, started, api.export_line(), dashboard
                )
        finally:
            processes.stop()
        if failure is not None:
            print(f"error: {failure}", file=err)
            return 1
        print(file=out)
        print(summary(daemon, sink, started=started), file=out)
    return 0


async def _run_all(
    daemon: Daemon,
    cluster: Cluster,
    sink: MemorySink,
    options: DevOptions,
    out: TextIO,
    stop: asyncio.Event,
    started: float,
    kubectl: str = "",
    dashboard: Any = None,
) -> Exception | None:
    """The daemon, the creator, the view and the timer; the daemon's start-up error, if any."""

    rng = random.Random(options.seed)
    running = asyncio.create_task(daemon.run(stop), name="daemon")
    helpers: list[asyncio.Task[Any]] = [
        asyncio.create_task(create_over_time(cluster, options.create_every, rng)),
        asyncio.create_task(
            show(daemon, sink, out, headless=options.headless, started=started, kubectl=kubectl)
            if dashboard is None
            else _dashboard_view(dashboard, daemon, cluster, sink, stop, options, kubectl)
        ),
        asyncio.create_task(_stop_after(stop, options.duration)),
    ]
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, waiter}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        try:
            await running
        except DaemonError as exc:
            return exc
        return None
    finally:
        for task in (*helpers, waiter, running):
            task.cancel()
        await asyncio.gather(*helpers, waiter, running, return_exceptions=True)


def _dashboard(options: DevOptions, out: TextIO) -> Any:
    """The dashboard front-end (`tui/`, by entry point), unless --headless or the output
    is no terminal (then the plain view)."""
    if options.headless or not out.isatty():
        return None
    try:
        return frontends.load("tui")
    except frontends.FrontendMissing as exc:
        print(f"warning: {exc}; showing the plain view", file=out)
        return None


async def _dashboard_view(
    dashboard: Any,
    daemon: Daemon,
    cluster: Cluster,
    sink: MemorySink,
    stop: asyncio.Event,
    options: DevOptions,
    kubectl: str,
) -> None:
    """The dashboard on this process's daemon, until the user quits it (which stops dev)
    or `stop` is set (Ctrl-C, SIGTERM, --duration)."""
    await dashboard.run_in_dev(
        cluster=cluster,
        daemon=daemon,
        history=sink,
        stop=stop,
        readonly=options.readonly,
        kubectl=kubectl,
    )
    stop.set()


async def _stop_after(stop: asyncio.Event, duration: float | None) -> None:
    if duration is None:
        return
    await asyncio.sleep(duration)
    stop.set()


def summary(daemon: Daemon, sink: MemorySink, *, started: float) -> str:

    now = datetime.now(UTC)
    brokers = sorted(daemon.brokers.items(), key=lambda o: o["metadata"]["name"])
    chosen = Counter(r.broker for r in sink.selections() if r.broker)
    unplaced = sum(1 for r in sink.selections() if not r.broker)
    lines = [
        f"kidp-ops dev ran {time.monotonic() - started:.0f}s: {one_line(daemon)}",
        f"probes: {len(sink.probes())} ({sum(1 for p in sink.probes() if not p.ok)} failed); "
        f"selection decisions: {len(sink.selections())}; placed on "
        + ", ".join(f"{b} {n}" for b, n in chosen.most_common())
        + f"; no broker fitted {unplaced} time(s)",
        "",
        table(brokers, BROKERS, now=now, wide=False),
    ]
    return "\n".join(lines)
