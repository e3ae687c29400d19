"""A real HTTPS API server on 127.0.0.1 for tests: any Cluster behind `apiserver.serve`.

It serves as `kidp-ops serve` does (`kidp_ops.cluster.serving`): TLS from a CA made for
the run, a bearer token, and a kubeconfig carrying both, so every client in the tests
(the kube adapter, kubectl) goes through the same checks as a user's. The server runs in
its own thread with its own event loop, so it works from sync tests and from async tests
alike (the test's loop may block on the `kubernetes` client, or on this module's `call`,
without starving the server).

    with running_apiserver(lambda: EmbeddedCluster.open(tmp_path)) as server:
        kube = await KubeCluster.connect(kubeconfig=str(server.kubeconfig))
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import ssl
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from kidp_ops.cluster.apiserver import serve
from kidp_ops.cluster.base import Cluster
from kidp_ops.cluster.serving import Credentials, kubeconfig, make_credentials, server_context

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
    credentials: Credentials

    @property
    def headers(self) -> dict[str, str]:
        """What a client must send: the bearer token."""
        return {"Authorization": f"Bearer {self.credentials.token}"}

    def client_context(self) -> ssl.SSLContext:
        """A TLS context trusting this server's CA only."""
        return ssl.create_default_context(cadata=self.credentials.ca_pem.decode())

    def call(self, action: Callable[[C], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run `action(cluster)` on the server's loop and wait for its result."""

        async def run() -> T:
            return await action(self.cluster)

        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        return future.result(timeout)


PLAIN_TOKEN = "kidp-test-token"


def write_kubeconfig(path: Path, url: str, credentials: Credentials | None = None) -> Path:
    """A kubeconfig for `url` (JSON is YAML): with `credentials`, the one `kidp-ops serve`
    writes (context `kidp-dev`, the CA, the token); without, context `kidp-test` with the
    token PLAIN_TOKEN and no CA (for plain-HTTP servers of a test's own)."""
    if credentials is not None:
        config = kubeconfig(url, credentials, namespace="default")
    else:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kidp-test", "cluster": {"server": url}}],
            "users": [{"name": "kidp-test", "user": {"token": PLAIN_TOKEN}}],
            "contexts": [
                {
                    "name": "kidp-test",
                    "context": {
                        "cluster": "kidp-test",
                        "user": "kidp-test",
                        "namespace": "default",
                    },
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
        self.credentials = make_credentials()
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
            context, token = server_context(self.credentials), self.credentials.token
            async with serve(cluster, ssl=context, token=token) as url:
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
    """Serve `await cluster_factory()` on 127.0.0.1 (free port, TLS, a token) from a
    background thread.

    Yields the URL and a kubeconfig pointing at it; on exit the server stops, the cluster
    is closed and the thread is joined (failing to stop, in time or at all, fails the test).
    """
    thread: _ServerThread[C] = _ServerThread(cluster_factory)
    thread.start()
    url, cluster, loop = thread.started.result(START_TIMEOUT_SECONDS)
    try:
        with tempfile.TemporaryDirectory(prefix="kidp-kubeconfig-") as directory:
            credentials = thread.credentials
            path = write_kubeconfig(Path(directory) / "kubeconfig", url, credentials)
            yield RunningApiServer(
                url=url, kubeconfig=path, cluster=cluster, loop=loop, credentials=credentials
            )
    finally:
        thread.request_stop(loop)
        thread.join(STOP_TIMEOUT_SECONDS)
        if thread.is_alive():
            raise RuntimeError(f"the test API server at {url} did not stop in time")
    if thread.failure is not None:
        raise RuntimeError(f"the test API server at {url} failed") from thread.failure
