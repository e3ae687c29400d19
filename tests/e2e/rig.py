"""End-to-end rig: `kidp-ops daemon` and reference brokers as real processes on loopback,
sharing one embedded state directory with the test, which reads and writes it directly.

    async with Rig.open(tmp_path) as rig:
        daemon = await rig.daemon()                     # python -m kidp_ops.cli daemon ...
        aws = await rig.broker("aws", cloud="aws", region="us-east-1")   # Ready, key registered
        await rig.create_database("db-1", target="aws-us-east-1")
        db = await rig.eventually(lambda: rig.database_ready("db-1"), "db-1 Ready")

Every process writes its output to a file under the test's directory; every wait is a
polling loop with a deadline; leaving the block kills whatever is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kidp_ops.cluster.base import BROKERS, DATABASES, LEASES, NotFound
from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.daemon import LEASE_NAME
from tests.conftest import broker_manifest
from tests.support.brokers import BrokerProcess
from tests.support.waiting import eventually

NS = "kidp-system"
TEAM = "team-e2e"
LEASE_NAMESPACE = "kidp-system"
LEASE_DURATION = 3.0
POLL_AFTER = 5.0
BROKER_DELAY = 0.3
SERVING = re.compile(r"serving (http://(127\.0\.0\.1|\[::1\]):(\d+))")
START_TIMEOUT = 20.0
T = TypeVar("T")


# --- the daemon as a process ---------------------------------------------------------------


def _die_with_parent() -> None:  # in the child, before exec: no daemon outlives the tests
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class DaemonProcess:
    """One `python -m kidp_ops.cli daemon` process; stderr (its log) and stdout in files."""

    state: Path
    log: Path
    args: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def stdout_path(self) -> Path:
        return self.log.with_suffix(".stdout")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self, port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "kidp_ops.cli", "daemon", "--state", str(self.state)),
            *("--http-addr", f"{self.host}:{port}"),
            *("--lease-duration", f"{LEASE_DURATION:g}", "--poll-after", f"{POLL_AFTER:g}"),
            *self.args,
        ]

    def launch(self, port: int = 0) -> int:
        """Start the process; the offset in the log where its output begins."""
        start = self.log.stat().st_size if self.log.exists() else 0
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as err, self.stdout_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(port),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )
        return start

    async def wait_serving(self, start: int = 0) -> None:
        """Until the `serving http://HOST:PORT` line shows; remember PORT."""
        process = self.process
        assert process is not None

        def serving() -> re.Match[str] | bool | None:
            found = SERVING.search(self.output()[start:])
            return found or process.poll() is not None  # an exit ends the wait too

        try:
            match = await eventually(
                serving, timeout=START_TIMEOUT, every=0.05, what="the daemon serving"
            )
        except AssertionError:
            match = None
        if not isinstance(match, re.Match):
            self.kill()
            raise AssertionError(f"the daemon did not start serving:\n{self.output()}")
        assert match.group(2) == self.host, match.group(0)
        self.port = int(match.group(3))

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL and reap: a crash, no goodbye."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait_exit(self, timeout: float) -> int:
        process = self.process
        assert process is not None
        await eventually(
            lambda: process.poll() is not None,
            timeout=timeout,
            every=0.05,
            what="the daemon's exit",
            explain=self.tail,
        )
        return process.returncode

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=5) as http:
            return await http.get(f"{self.url}{path}")

    async def scrape(self) -> Scrape:
        response = await self.get("/metrics")
        assert response.status_code == 200, response.text
        return Scrape(response.text, response.headers.get("content-type", ""))

    async def leading(self) -> bool:
        return (await self.scrape()).value("kidp_leader") == 1.0


@dataclass
class Scrape:
    """One /metrics body, parsed with prometheus_client's own parser (so it is valid
    Prometheus text format: the parser raises on anything else)."""

    text: str
    content_type: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                self.samples.append((sample.name, dict(sample.labels), sample.value))
        for line in self.text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                self.types[name] = kind

    def select(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [
            (have, value)
            for sample, have, value in self.samples
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The sum of the matching samples; None when there is none."""
        found = self.select(name, **labels)
        return sum(value for _, value in found) if found else None

    def total(self, name: str, **labels: str) -> float:
        """Like `value`, 0 when no sample exists (a labelled counter nothing counted yet)."""
        return self.value(name, **labels) or 0.0


# --- brokers ----------------------------------------------------------------------------


@dataclass
class Broker:
    name: str
    process: BrokerProcess

    @property
    def key(self) -> str:
        return f"{NS}/{self.name}"

    @property
    def url(self) -> str:
        return self.process.url

    async def inventory(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"{self.url}/v1/resources")
            response.raise_for_status()
            body = response.json()
            resources: list[dict[str, Any]] = body["resources"]
            assert body["total"] == len(resources), body
            return resources


# --- the rig ----------------------------------------------------------------------------


@dataclass
class Rig:
    folder: Path
    state: Path
    cluster: EmbeddedCluster
    daemons: list[DaemonProcess] = field(default_factory=list)
    brokers: list[Broker] = field(default_factory=list)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, folder: Path) -> AsyncIterator[Rig]:
        state = folder / "state"
        cluster = await EmbeddedCluster.open(state)
        rig = cls(folder, state, cluster)
        try:
            yield rig
        finally:
            for daemon in rig.daemons:
                daemon.kill()
            for broker in rig.brokers:
                broker.process.kill()  # SIGKILL ends a stopped (SIGSTOP) process too
                broker.process.log.unlink(missing_ok=True)
            await cluster.close()

    # --- processes ----------------------------------------------------------------------

    async def daemon(
        self, *args: str, host: str = "127.0.0.1", port: int = 0, lead: bool | None = None
    ) -> DaemonProcess:
        """Start a daemon and wait until it serves; `lead=True` waits until it leads,
        `lead=False` until /readyz answers 200 (a standby is ready too)."""
        log = self.folder / f"daemon-{len(self.daemons)}.log"
        daemon = DaemonProcess(self.state, log, args, host)
        self.daemons.append(daemon)
        await daemon.wait_serving(daemon.launch(port))
        if lead is True:
            await self.eventually(daemon.leading, f"{daemon.log.name} leads", timeout=15)
        elif lead is False:
            await self.eventually(lambda: self.daemon_ready(daemon), f"{daemon.log.name} ready")
        return daemon

    async def restart(self, daemon: DaemonProcess) -> None:
        """Start `daemon` again on the same port with the same arguments (after a kill)."""
        assert not daemon.running
        await daemon.wait_serving(daemon.launch(daemon.port))

    @staticmethod
    async def daemon_ready(daemon: DaemonProcess) -> bool:
        return (await daemon.get("/readyz")).status_code == 200

    async def broker(
        self,
        name: str,
        *,
        cloud: str = "aws",
        region: str = "us-east-1",
        priority: int = 100,
        wait_ready: bool = True,
    ) -> Broker:
        """Start a reference broker (port 0, `--register`), then apply its Broker with
        the endpoint it listens on; it registers its key once the Broker exists."""
        ref = f"{NS}/{name}"
        process = await asyncio.to_thread(
            BrokerProcess.start,
            ref,
            *("--register", ref, "--state", str(self.state)),
            *("--delay", f"{BROKER_DELAY:g}"),
        )
        broker = Broker(name, process)
        self.brokers.append(broker)
        manifest = broker_manifest(
            name,
            NS,
            endpoint=process.url,
            cloudProvider=cloud,
            region=region,
            priority=priority,
            maxConcurrentDeployments=0,
            capabilities=[{"resourceType": "Database", "providers": ["postgresql"]}],
            healthCheck={
                "intervalSeconds": 5,
                "timeoutSeconds": 1,
                "failureThreshold": 1,
                "successThreshold": 1,
            },
        )
        await self.cluster.create(manifest)
        if wait_ready:
            await self.eventually(
                lambda: self.broker_ready(name), f"broker {name} Ready with its key"
            )
        return broker

    async def broker_status(self, name: str) -> dict[str, Any]:
        obj = await self.cluster.get(BROKERS, name, namespace=NS)
        return dict(obj.get("status") or {})

    async def broker_ready(self, name: str) -> bool:
        status = await self.broker_status(name)
        return status.get("phase") == "Ready" and bool(status.get("callbackPublicKey"))

    # --- databases ------------------------------------------------------------------------

    async def create_database(self, name: str, *, target: str = "aws-us-east-1") -> str:
        """Create a Database; its uid."""
        created = await self.cluster.create(
            {
                "apiVersion": "platform.company.com/v1",
                "kind": "Database",
                "metadata": {"name": name, "namespace": TEAM},
                "spec": {
                    "engine": "postgresql",
                    "target": target,
                    "owner": {"kind": "Team", "name": "e2e"},
                },
            }
        )
        return str(created["metadata"]["uid"])

    async def database(self, name: str) -> dict[str, Any]:
        return await self.cluster.get(DATABASES, name, namespace=TEAM)

    async def databases(self) -> list[dict[str, Any]]:
        return (await self.cluster.list(DATABASES, namespace=TEAM)).items

    async def database_ready(self, name: str) -> dict[str, Any] | None:
        obj = await self.database(name)
        return obj if (obj.get("status") or {}).get("phase") == "Ready" else None

    async def lease_holder(self) -> str | None:
        """The Lease's holderIdentity; None when there is no Lease yet."""
        try:
            lease = await self.cluster.get(LEASES, LEASE_NAME, namespace=LEASE_NAMESPACE)
        except NotFound:
            return None
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    # --- waiting --------------------------------------------------------------------------

    async def eventually(
        self,
        check: Callable[[], Awaitable[T | None]],
        what: str,
        *,
        timeout: float = 20.0,
        interval: float = 0.1,
    ) -> T:
        """Poll `check` until it returns something truthy (returned); fail with the
        daemons' last log lines after `timeout` seconds. An HTTP error (a daemon not
        listening yet, or any more) counts as a no."""
        found = await eventually(
            check,
            timeout=timeout,
            every=interval,
            what=what,
            ignore=(httpx.TransportError,),
            explain=lambda: "\n".join(f"--- {d.log.name}\n{d.tail()}" for d in self.daemons),
        )
        assert found is not None
        return found


def holder_pid(identity: str) -> int | None:
    """The pid in a default leader identity `hostname_pid_suffix`."""
    host, _, rest = identity.partition("_")
    pid = rest.partition("_")[0]
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None
