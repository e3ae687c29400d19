"""Every adapter of the Cluster port, as a parametrized fixture (`target`).

- `embedded`: EmbeddedCluster on a SQLite file in a temporary state directory.
- `kube`: KubeCluster (the official `kubernetes` client) over real HTTP on 127.0.0.1 to the
  Kubernetes-compatible API facade (`kidp_ops.cluster.apiserver`) serving an EmbeddedCluster
  in a background thread. Nothing is patched: the client speaks HTTP to a server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kidp_ops.cluster.base import Cluster
from kidp_ops.cluster.embedded import EmbeddedCluster

BOOKMARK_SECONDS = 0.1  # an idle watch says so quickly (tests wait for it)


@dataclass
class Target:
    """The adapter under test and a handle on the store behind it."""

    name: str
    cluster: Cluster
    compact: Callable[[int], Awaitable[int]]


@pytest.fixture(params=["embedded", "kube"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    state = tmp_path / "state"
    if request.param == "embedded":
        cluster = await EmbeddedCluster.open(state, bookmark_seconds=BOOKMARK_SECONDS)
        try:
            yield Target("embedded", cluster, cluster.compact)
        finally:
            await cluster.close()
        return

    from kidp_ops.cluster.kube import KubeCluster
    from tests.support.kubeserver import running_apiserver

    async def backing() -> EmbeddedCluster:
        return await EmbeddedCluster.open(state, bookmark_seconds=BOOKMARK_SECONDS)

    with running_apiserver(backing) as server:
        kube = await KubeCluster.connect(kubeconfig=str(server.kubeconfig))

        async def compact(retain: int) -> Any:
            return server.call(lambda c: c.compact(retain))

        try:
            yield Target("kube", kube, compact)
        finally:
            await kube.close()
