"""The Cluster contract suite runs against every adapter (see tests/support/targets.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kidp_ops.cluster.base import Cluster
from tests.support.facade import Api, open_api
from tests.support.targets import Target, target

__all__ = ["Api", "Target", "target"]


@pytest.fixture
def cluster(target: Target) -> Cluster:
    return target.cluster


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """The API facade over a MemoryCluster, served on 127.0.0.1 (plain HTTP, no token)."""
    async for opened in open_api():
        yield opened
