"""A real HTTP API server on 127.0.0.1 for tests: any Cluster behind `apiserver.serve`.

The server runs in its own thread with its own event loop, so it works from sync tests
and from async tests alike (the test's loop may block on the `kubernetes` client, or on
this module's `call`, without starving the server).

    with running_apiserver(lambda: EmbeddedCluster.open(tmp_path)) as server:
        kube = await KubeCluster.connect(kubeconfig=str(server.kubeconfig))
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from kidp_ops.cluster.apiserver import serve
from kidp_ops.cluster.base import Cluster

C = TypeVar("C", bound=Cluster)
T = TypeVar("T")

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class RunningApiServer(Generic[C]):
    url: str
    kubeconfig: Path
    cluster: C  # lives on the server's loop: touch it only through `call`
    loop: asyncio.AbstractEventLoop

    def call(self, action: Callable[[C], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run `action(cluster)` on the server's loop and wait for its result."""

        async def run() -> T:
            return await action(self.cluster)

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        return future.result(timeout)


def write_kubeconfig(path: Path, url: str, *, namespace: str = "default") -> Path:
    """A kubeconfig with one context, `kidp-test`, pointing at `url` (JSON is YAML)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kidp-test", "cluster": {"server": url}}],
        "users": [{"name": "kidp-test", "user": {"token": "kidp-test-token"}}],
        "contexts": [
            {
                "name": "kidp-test",
                "context": {"cluster": "kidp-test", "user": "kidp-test", "namespace": namespace},
            }
        ],
        "current-context": "kidp-test",
    }
    path.write_text(json.dumps(config, indent=2))
    return path


class _ServerThread(threading.Thread, Generic[C]):
    """Opens the cluster, serves it until told to stop, closes it."""

    def __init__(self, cluster_factory: Callable[[], Awaitable[C]]) -> None:
        super().__init__(name="kidp-test-apiserver", daemon=True)
        self._factory = cluster_factory
        self.started: concurrent.futures.Future[tuple[str, C, asyncio.AbstractEventLoop]] = (
            concurrent.futures.Future()
        )
        self._stop_requested: asyncio.Event | None = None
        self.failure: BaseException | None = None  # raised while stopping

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if self.started.done():
                self.failure = exc
            else:
                self.started.set_exception(exc)

    async def _main(self) -> None:
        self._stop_requested = asyncio.Event()
        cluster = await self._factory()
        try:
            async with serve(cluster) as url:
                self.started.set_result((url, cluster, asyncio.get_running_loop()))
                await self._stop_requested.wait()
        finally:
            await cluster.close()

    def request_stop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._stop_requested is not None:
            loop.call_soon_threadsafe(self._stop_requested.set)


@contextmanager
def running_apiserver(
    cluster_factory: Callable[[], Awaitable[C]],
) -> Iterator[RunningApiServer[C]]:
    """Serve `await cluster_factory()` on 127.0.0.1 (free port) from a background thread.

    Yields the URL and a kubeconfig pointing at it; on exit the server stops, the cluster
    is closed and the thread is joined (failing to stop, in time or at all, fails the test).
    """
    thread: _ServerThread[C] = _ServerThread(cluster_factory)
    thread.start()
    url, cluster, loop = thread.started.result(START_TIMEOUT_SECONDS)
    try:
        with tempfile.TemporaryDirectory(prefix="kidp-kubeconfig-") as directory:
            kubeconfig = write_kubeconfig(Path(directory) / "kubeconfig", url)
            yield RunningApiServer(url=url, kubeconfig=kubeconfig, cluster=cluster, loop=loop)
    finally:
        thread.request_stop(loop)
        thread.join(STOP_TIMEOUT_SECONDS)
        if thread.is_alive():
            raise RuntimeError(f"the test API server at {url} did not stop in time")
    if thread.failure is not None:
        raise RuntimeError(f"the test API server at {url} failed") from thread.failure
