"""Graceful shutdown: a real controller process gets SIGTERM mid-reconcile (sigterm_child.py),
and the runner's steps in-process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kidp_ops.cluster.base import LEASES, Cluster
from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.controller.leader import LeaderElector
from kidp_ops.controller.queue import WorkerPool, WorkQueue
from kidp_ops.controller.shutdown import run_until_stopped, stop_on_signals, term_of
from tests.conftest import REPO
from tests.support.waiting import until

CHILD = Path(__file__).with_name("sigterm_child.py")
KEY = "kidp-system/db1"
DEADLINE = 30.0


class Child:
    """The controller process and what it printed."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.log: list[str] = []  # stderr lines read so far

    async def wait_for_line(self, wanted: str) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + DEADLINE
        while wanted not in self.lines:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {wanted!r} in {self.lines}"
            line = await asyncio.wait_for(self.process.stdout.readline(), remaining)
            assert line, f"the process ended before {wanted!r}: {self.lines}"
            self.lines.append(line.decode().strip())

    async def wait_for_log(self, wanted: str) -> None:
        """Read the child's log (stderr) until a line contains `wanted`."""
        assert self.process.stderr is not None
        async with asyncio.timeout(DEADLINE):
            while not any(wanted in line for line in self.log):
                line = await self.process.stderr.readline()
                assert line, f"the process ended before {wanted!r}: {self.log}"
                self.log.append(line.decode())

    async def exit_code(self) -> int:
        stdout, stderr = await asyncio.wait_for(self.process.communicate(), DEADLINE)
        self.lines += stdout.decode().split()
        self.stderr = "".join(self.log) + stderr.decode()
        assert self.process.returncode is not None
        return self.process.returncode


@contextlib.asynccontextmanager
async def child(state: Path, *, work: float, grace: float) -> AsyncIterator[Child]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        str(state),
        str(work),
        str(grace),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    try:
        yield Child(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()


async def lease_holder(state: Path) -> str:
    cluster = await EmbeddedCluster.open(state, install_crds=False)
    try:
        lease = await cluster.get(LEASES, "kidp-ops", namespace="kidp-system")
    finally:
        await cluster.close()
    return str(lease["spec"]["holderIdentity"])


# --- a real process and a real signal -------------------------------------------------


async def test_sigterm_lets_the_reconcile_finish_and_releases_the_lease(tmp_path: Path) -> None:
    async with child(tmp_path, work=0.1, grace=20) as proc:
        await proc.wait_for_line(f"started {KEY}")
        assert await lease_holder(tmp_path) == "child"
        proc.process.send_signal(signal.SIGTERM)
        code = await proc.exit_code()
    assert code == 0, proc.stderr
    assert "finished" in proc.lines and "cancelled" not in proc.lines
    assert proc.lines[-1] == "graceful"
    assert await lease_holder(tmp_path) == ""


async def test_sigterm_cancels_a_reconcile_that_outlives_the_grace(tmp_path: Path) -> None:
    async with child(tmp_path, work=600, grace=0.3) as proc:
        await proc.wait_for_line(f"started {KEY}")
        signalled = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        code = await proc.exit_code()
    assert code == 0, proc.stderr
    assert time.monotonic() - signalled < 10
    assert "cancelled" in proc.lines and "finished" not in proc.lines
    assert proc.lines[-1] == "forced"
    assert await lease_holder(tmp_path) == ""


async def test_a_second_signal_stops_at_once_and_still_releases(tmp_path: Path) -> None:
    async with child(tmp_path, work=600, grace=600) as proc:
        await proc.wait_for_line(f"started {KEY}")
        proc.process.send_signal(signal.SIGTERM)
        await proc.wait_for_log("SIGTERM received: finishing in-flight work")
        assert proc.process.returncode is None  # waiting out the grace
        proc.process.send_signal(signal.SIGINT)
        code = await proc.exit_code()
    assert code == 130, proc.stderr
    assert "cancelled" in proc.lines and "stopped" in proc.lines
    assert await lease_holder(tmp_path) == "", proc.stderr


# --- the runner in-process ------------------------------------------------------------


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    store = await EmbeddedCluster.open(tmp_path / "state", install_crds=False)
    try:
        yield store
    finally:
        await store.close()


def elector(cluster: Cluster, identity: str) -> LeaderElector:
    return LeaderElector(
        cluster,
        name="kidp-ops",
        namespace="kidp-system",
        identity=identity,
        lease_duration=1,
        renew_deadline=0.5,
        retry_period=0.1,
    )


async def test_without_an_elector_the_pool_runs_until_stopped() -> None:
    queue: WorkQueue[str] = WorkQueue()
    seen: list[str] = []
    stop = asyncio.Event()

    async def record(key: str) -> None:
        seen.append(key)
        stop.set()

    queue.add("a")
    pool = WorkerPool(queue, record, workers=1)
    assert await asyncio.wait_for(run_until_stopped(term_of(pool), stop=stop, grace=1), DEADLINE)
    assert seen == ["a"]
    assert queue.shutting_down


async def test_work_runs_only_while_leading_and_stop_releases(cluster: Cluster) -> None:
    queue: WorkQueue[str] = WorkQueue()
    leading_during_work: list[bool] = []
    stop = asyncio.Event()
    candidate = elector(cluster, "me")

    async def record(key: str) -> None:
        leading_during_work.append(candidate.is_leader)
        stop.set()

    queue.add("a")
    pool = WorkerPool(queue, record, workers=1)
    assert await asyncio.wait_for(
        run_until_stopped(term_of(pool), stop=stop, elector=candidate, grace=1), DEADLINE
    )
    assert leading_during_work == [True]
    lease = await cluster.get(LEASES, "kidp-ops", namespace="kidp-system")
    assert lease["spec"]["holderIdentity"] == ""


async def test_a_stop_while_campaigning_returns_at_once(cluster: Cluster) -> None:
    holder = elector(cluster, "holder")
    holding = asyncio.create_task(holder.run(asyncio.Event().wait))
    try:
        await asyncio.wait_for(holder.wait_leader(), DEADLINE)
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")

        async def never(key: str) -> None:
            raise AssertionError("a follower must not reconcile")

        stop = asyncio.Event()
        follower = elector(cluster, "follower")
        runner = asyncio.create_task(
            run_until_stopped(
                term_of(WorkerPool(queue, never, workers=1)), stop=stop, elector=follower, grace=1
            )
        )
        await until(lambda: follower.leader == "holder", DEADLINE)  # it campaigns, sees the holder
        stop.set()
        assert await asyncio.wait_for(runner, 2.0)
        lease = await cluster.get(LEASES, "kidp-ops", namespace="kidp-system")
        assert lease["spec"]["holderIdentity"] == "holder"
    finally:
        holding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holding


async def test_stop_on_signals_sets_the_event_then_cancels_the_owner() -> None:
    stop = asyncio.Event()
    entered = asyncio.Event()

    async def owner() -> None:
        with stop_on_signals(stop, signals=(signal.SIGUSR1,)):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(owner())
    await asyncio.wait_for(entered.wait(), DEADLINE)
    os.kill(os.getpid(), signal.SIGUSR1)
    await asyncio.wait_for(stop.wait(), DEADLINE)
    assert not task.done()
    os.kill(os.getpid(), signal.SIGUSR1)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, DEADLINE)
    loop = asyncio.get_running_loop()
    assert not loop.remove_signal_handler(signal.SIGUSR1)  # removed on exit
