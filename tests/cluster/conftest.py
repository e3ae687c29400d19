"""The Cluster contract suite runs against every adapter (see tests/support/targets.py)."""

from __future__ import annotations

import pytest

from kidp_ops.cluster.base import Cluster
from tests.support.targets import Target, target

__all__ = ["Target", "target"]


@pytest.fixture
def cluster(target: Target) -> Cluster:
    return target.cluster
