"""BrokerRegistry fed by the informer on the embedded store: no timed relist, every change
counts as soon as its event is processed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kidp_ops.cluster.base import BROKERS
from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.controller.informer import Informer
from kidp_ops.registry import BrokerRegistry
from kidp_ops.selection import SelectionCriteria
from kidp_ops.times import format_time
from tests.conftest import broker_manifest
from tests.support.waiting import until

NS = "kidp-system"
DB = SelectionCriteria("Database", "postgresql", "aws")


class Fleet:
    def __init__(self, cluster: EmbeddedCluster, informer: Informer, registry: BrokerRegistry):
        self.cluster, self.informer, self.registry = cluster, informer, registry

    async def changed(self, stored: dict[str, Any]) -> None:
        """Wait until the informer (hence the registry) has processed this write."""
        key = f"{NS}/{stored['metadata']['name']}"
        version = stored["metadata"]["resourceVersion"]
        await until(
            lambda: (
                (self.informer.get(key) or {}).get("metadata", {}).get("resourceVersion") == version
            )
        )

    async def add(self, name: str, *, phase: str = "Ready", active: int = 0, **spec: Any) -> None:
        stored = await self.cluster.create(broker_manifest(name, **spec))
        await self.changed(stored)
        await self.status(name, phase=phase, activeDeployments=active)

    async def status(self, name: str, **status: Any) -> None:
        status.setdefault("lastHeartbeat", format_time(datetime.now(UTC)))
        stored = await self.cluster.patch_status(BROKERS, name, {"status": status}, namespace=NS)
        await self.changed(stored)

    def chosen(self) -> str | None:
        found = self.registry.select(DB)
        return found.broker.metadata.name if found else None


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    cluster = await EmbeddedCluster.open(tmp_path / "state")
    informer = Informer(cluster, BROKERS)
    registry = BrokerRegistry()
    informer.add_handler(registry.handle)
    async with informer.running():
        await informer.wait_synced(5)
        yield Fleet(cluster, informer, registry)
    await cluster.close()


async def test_added_broker_is_selectable_as_soon_as_its_event_is_processed(fleet: Fleet) -> None:
    assert fleet.chosen() is None
    stored = await fleet.cluster.create(broker_manifest("b1", priority=100))
    await fleet.changed(stored)
    assert fleet.chosen() is None  # Pending: not yet
    await fleet.status("b1", phase="Ready")
    assert fleet.chosen() == "b1"  # no relist, no timer: the event did it


async def test_unhealthy_cordoned_and_deleted_brokers_are_never_selected(fleet: Fleet) -> None:
    await fleet.add("best", priority=200)
    await fleet.add("next", priority=100)
    assert fleet.chosen() == "best"
    await fleet.status("best", phase="Unhealthy")
    assert fleet.chosen() == "next"
    await fleet.status("best", phase="Ready")
    assert fleet.chosen() == "best"
    cordoned = await fleet.cluster.patch(
        BROKERS, "best", {"spec": {"unschedulable": True}}, namespace=NS
    )
    await fleet.changed(cordoned)
    assert fleet.chosen() == "next"
    explained = {c.broker.metadata.name: c.rejected for c in fleet.registry.explain(DB)}
    assert explained == {"best": "cordoned (unschedulable)", "next": None}
    await fleet.cluster.delete(BROKERS, "next", namespace=NS)
    await until(lambda: fleet.registry.get(f"{NS}/next") is None)
    assert fleet.chosen() is None
    assert len(fleet.registry) == 1


async def test_regions_follow_the_fleet(fleet: Fleet) -> None:
    await fleet.add("east", region="us-east-1")
    await fleet.add("west", region="us-west-2")
    assert fleet.registry.regions() == {"us-east-1", "us-west-2"}
    await fleet.cluster.delete(BROKERS, "east", namespace=NS)
    await until(lambda: fleet.registry.regions() == {"us-west-2"})


async def test_reservations_released_when_the_broker_reports_the_deployment(fleet: Fleet) -> None:
    await fleet.add("small", maxConcurrentDeployments=2, active=0)
    first = fleet.registry.select(DB, reserve_for="uid-1")
    second = fleet.registry.select(DB, reserve_for="uid-2")
    assert first is not None and second is not None
    assert fleet.registry.select(DB, reserve_for="uid-3") is None  # 2 reserved of 2
    assert fleet.registry.eligible_count(DB) == 0
    await fleet.status("small", activeDeployments=1)  # the broker reports one of them
    assert fleet.registry.reserved() == {f"{NS}/small": 1}
    await fleet.status("small", activeDeployments=2)
    assert fleet.registry.reserved() == {}
    assert fleet.registry.select(DB) is None  # really full now


async def test_eligible_count(fleet: Fleet) -> None:
    await fleet.add("a", region="us-east-1")
    await fleet.add("b", region="us-west-2")
    await fleet.add("c", phase="Unhealthy")
    assert fleet.registry.eligible_count(DB) == 2
    assert fleet.registry.eligible_count(SelectionCriteria("Database", region="us-west-2")) == 1
    assert fleet.registry.eligible_count(SelectionCriteria("Cache")) == 0
