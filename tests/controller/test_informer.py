"""The informer on both adapters: list, then watch; relist on Gone; back off on errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from kidp_ops.cluster.base import (
    BROKERS,
    Cluster,
    Gone,
    ObjectList,
    ResourceKind,
    Unavailable,
    WatchEvent,
)
from kidp_ops.controller.informer import (
    ChangeType,
    Informer,
    error_backoff,
    object_key,
    relist_changes,
)
from tests.conftest import broker_manifest
from tests.support.targets import Target, target
from tests.support.waiting import until

__all__ = ["target"]

Seen = list[tuple[ChangeType, str, str]]


def recorder(seen: Seen) -> Callable[[ChangeType, dict[str, Any]], None]:
    def handle(change: ChangeType, obj: dict[str, Any]) -> None:
        seen.append((change, object_key(obj), obj.get("spec", {}).get("region", "")))

    return handle


async def test_list_then_watch_delivers_every_change(target: Target) -> None:
    cluster = target.cluster
    await cluster.create(broker_manifest("before", region="eu-west-1"))
    seen: Seen = []
    informer = Informer(cluster, BROKERS)
    informer.add_handler(recorder(seen))
    async with informer.running():
        await informer.wait_synced(5)
        assert seen == [("ADDED", "kidp-system/before", "eu-west-1")]
        await cluster.create(broker_manifest("after"))
        await cluster.patch(
            BROKERS, "before", {"spec": {"region": "eu-north-1"}}, namespace="kidp-system"
        )
        await cluster.delete(BROKERS, "after", namespace="kidp-system")
        await until(lambda: len(seen) == 4)
    assert seen[1:] == [
        ("ADDED", "kidp-system/after", "us-east-1"),
        ("MODIFIED", "kidp-system/before", "eu-north-1"),
        ("DELETED", "kidp-system/after", "us-east-1"),
    ]
    assert [object_key(o) for o in informer.items()] == ["kidp-system/before"]
    assert informer.get("kidp-system/before")["spec"]["region"] == "eu-north-1"  # type: ignore[index]
    age = informer.seconds_since_event()
    assert age is not None and age < 5


async def test_late_handler_gets_the_cache_replayed(target: Target) -> None:
    await target.cluster.create(broker_manifest("one"))
    informer = Informer(target.cluster, BROKERS)
    async with informer.running():
        await informer.wait_synced(5)
        seen: Seen = []
        informer.add_handler(recorder(seen))
        assert seen == [("ADDED", "kidp-system/one", "us-east-1")]


async def test_a_failing_handler_does_not_starve_the_others(target: Target) -> None:
    def broken(change: ChangeType, obj: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    seen: Seen = []
    informer = Informer(target.cluster, BROKERS)
    informer.add_handler(broken)
    informer.add_handler(recorder(seen))
    async with informer.running():
        await informer.wait_synced(5)
        await target.cluster.create(broker_manifest("x"))
        await until(lambda: len(seen) == 1)


def test_relist_changes_is_the_difference() -> None:
    def obj(name: str, version: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": version}}

    cached = {
        "ns/keep": obj("keep", "1"),
        "ns/change": obj("change", "2"),
        "ns/gone": obj("gone", "3"),
    }
    listed = [obj("keep", "1"), obj("change", "5"), obj("new", "6")]
    changes = [(c, object_key(o)) for c, o in relist_changes(cached, listed)]
    assert changes == [("MODIFIED", "ns/change"), ("ADDED", "ns/new"), ("DELETED", "ns/gone")]


def test_error_backoff_doubles_and_caps() -> None:
    assert error_backoff(0) == 0
    assert [error_backoff(n, base=0.5, cap=3) for n in (1, 2, 3, 4, 50)] == [0.5, 1, 2, 3, 3]


class Faulty(Cluster):
    """A real cluster behind a wrapper that can fail its next list or watch calls."""

    def __init__(self, inner: Cluster) -> None:
        self.inner = inner
        self.fail_lists: list[Exception] = []
        self.fail_watches: list[Exception] = []
        self.lists = 0

    async def list(self, kind: ResourceKind, **kw: Any) -> ObjectList:
        self.lists += 1
        if self.fail_lists:
            raise self.fail_lists.pop(0)
        return await self.inner.list(kind, **kw)

    async def watch(self, kind: ResourceKind, **kw: Any) -> AsyncIterator[WatchEvent]:  # type: ignore[override]
        if self.fail_watches:
            raise self.fail_watches.pop(0)
        async for event in self.inner.watch(kind, **kw):
            yield event

    async def get(self, *a: Any, **kw: Any) -> Any:
        return await self.inner.get(*a, **kw)

    async def create(self, *a: Any, **kw: Any) -> Any:
        return await self.inner.create(*a, **kw)

    async def replace(self, *a: Any, **kw: Any) -> Any:
        return await self.inner.replace(*a, **kw)

    async def patch(self, *a: Any, **kw: Any) -> Any:
        return await self.inner.patch(*a, **kw)

    async def patch_status(self, *a: Any, **kw: Any) -> Any:
        return await self.inner.patch_status(*a, **kw)

    async def delete(self, *a: Any, **kw: Any) -> Any:
        return await self.inner.delete(*a, **kw)


async def test_gone_relists_and_reports_only_the_difference(target: Target) -> None:
    cluster = Faulty(target.cluster)
    await cluster.create(broker_manifest("stays"))
    await cluster.create(broker_manifest("goes"))
    seen: Seen = []
    informer = Informer(cluster, BROKERS, watch_timeout=0.2)
    informer.add_handler(recorder(seen))
    async with informer.running():
        await informer.wait_synced(5)
        # While the informer is between watches, the world moves on and the next watch
        # is told its version is too old.
        cluster.fail_watches.append(Gone("too old"))
        await cluster.delete(BROKERS, "goes", namespace="kidp-system")
        await cluster.create(broker_manifest("new"))
        await until(lambda: informer.relists >= 1 and len(informer) == 2)
        await until(lambda: len(seen) == 4)
    assert sorted(seen[2:]) == [
        ("ADDED", "kidp-system/new", "us-east-1"),
        ("DELETED", "kidp-system/goes", "us-east-1"),
    ]
    assert sorted(object_key(o) for o in informer.items()) == [
        "kidp-system/new",
        "kidp-system/stays",
    ]


async def test_errors_back_off_and_recover(target: Target) -> None:
    cluster = Faulty(target.cluster)
    await cluster.create(broker_manifest("b"))
    cluster.fail_lists.extend(
        [Unavailable("connection refused"), Unavailable("connection refused")]
    )
    informer = Informer(cluster, BROKERS)
    async with informer.running():
        await informer.wait_synced(5)
    assert cluster.lists == 3
    assert informer.errors == 2
    assert informer.last_error == "connection refused"
    assert len(informer) == 1


@pytest.mark.parametrize("namespace", ["kidp-system", "other"])
async def test_namespace_scoped_informer(target: Target, namespace: str) -> None:
    await target.cluster.create(broker_manifest("a", namespace="kidp-system"))
    informer = Informer(target.cluster, BROKERS, namespace=namespace)
    async with informer.running():
        await informer.wait_synced(5)
        assert len(informer) == (1 if namespace == "kidp-system" else 0)
