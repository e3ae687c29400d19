"""Fixtures of the end-to-end tests: the rig (daemons and brokers as processes on one
state directory) and a broker built to the seed's contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.rig import Rig
from tests.support.seedbroker import SeedBroker, running_seed_broker


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with Rig.open(tmp_path) as rig:
        yield rig


@pytest.fixture
async def seed() -> AsyncIterator[tuple[SeedBroker, str]]:
    async with running_seed_broker() as running:
        yield running
