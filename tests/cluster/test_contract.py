"""The Cluster port's contract: every adapter passes the same tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from kidp_ops.cluster.base import (
    BROKERS,
    EVENTS,
    LEASES,
    SECRETS,
    AlreadyExists,
    Cluster,
    Conflict,
    Gone,
    Invalid,
    NotFound,
    WatchEvent,
)
from tests.conftest import broker_manifest
from tests.support.targets import BOOKMARK_SECONDS, Target

NS = "kidp-system"


async def collect(
    cluster: Cluster, rv: str, *, count: int, timeout: float = 5.0, **kw: Any
) -> list[WatchEvent]:
    """The first `count` non-bookmark events after `rv` (fails on timeout)."""
    events: list[WatchEvent] = []

    async def run() -> None:
        async for event in cluster.watch(BROKERS, resource_version=rv, **kw):
            if event.type != "BOOKMARK":
                events.append(event)
            if len(events) >= count:
                return

    await asyncio.wait_for(run(), timeout)
    return events


async def test_create_sets_server_fields_and_defaults(cluster: Cluster) -> None:
    created = await cluster.create(broker_manifest("b1"))
    meta = created["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert created["spec"]["priority"] == 100
    assert created["spec"]["healthCheck"] == {
        "endpoint": "/health",
        "intervalSeconds": 30,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
        "successThreshold": 1,
    }
    assert await cluster.get(BROKERS, "b1", namespace=NS) == created


async def test_status_on_create_is_dropped(cluster: Cluster) -> None:
    manifest = broker_manifest("b1")
    manifest["status"] = {"phase": "Ready"}
    created = await cluster.create(manifest)
    assert "status" not in created


async def test_create_twice_is_already_exists(cluster: Cluster) -> None:
    await cluster.create(broker_manifest("b1"))
    with pytest.raises(AlreadyExists):
        await cluster.create(broker_manifest("b1"))


async def test_generate_name(cluster: Cluster) -> None:
    manifest = broker_manifest("x")
    del manifest["metadata"]["name"]
    manifest["metadata"]["generateName"] = "gen-"
    first = await cluster.create(manifest)
    second = await cluster.create(manifest)
    assert first["metadata"]["name"].startswith("gen-")
    assert first["metadata"]["name"] != second["metadata"]["name"]


async def test_missing_objects_are_not_found(cluster: Cluster) -> None:
    with pytest.raises(NotFound):
        await cluster.get(BROKERS, "nope", namespace=NS)
    with pytest.raises(NotFound):
        await cluster.delete(BROKERS, "nope", namespace=NS)
    with pytest.raises(NotFound):
        await cluster.patch(BROKERS, "nope", {"spec": {"priority": 1}}, namespace=NS)
    with pytest.raises(NotFound):
        await cluster.patch_status(BROKERS, "nope", {"status": {"phase": "Ready"}}, namespace=NS)


async def test_invalid_object_names_the_field(cluster: Cluster) -> None:
    with pytest.raises(Invalid) as caught:
        await cluster.create(broker_manifest("bad", endpoint="ftp://x", priority=2**31))
    fields = {p.field for p in caught.value.problems}
    assert {".spec.endpoint", ".spec.priority"} <= fields
    with pytest.raises(NotFound):
        await cluster.get(BROKERS, "bad", namespace=NS)


async def test_invalid_patch_changes_nothing(cluster: Cluster) -> None:
    created = await cluster.create(broker_manifest("b1"))
    with pytest.raises(Invalid) as caught:
        await cluster.patch(BROKERS, "b1", {"spec": {"cloudProvider": "ibm"}}, namespace=NS)
    assert caught.value.problems[0].field == ".spec.cloudProvider"
    assert await cluster.get(BROKERS, "b1", namespace=NS) == created


async def test_list_namespaces_labels_and_version(cluster: Cluster) -> None:
    a = broker_manifest("a", namespace="ns1")
    a["metadata"]["labels"] = {"tier": "gold"}
    await cluster.create(a)
    await cluster.create(broker_manifest("b", namespace="ns2"))
    last = await cluster.create(broker_manifest("c", namespace="ns2"))
    everything = await cluster.list(BROKERS)
    assert [i["metadata"]["name"] for i in everything.items] == ["a", "b", "c"]
    assert int(everything.resource_version) >= int(last["metadata"]["resourceVersion"])
    in_ns2 = await cluster.list(BROKERS, namespace="ns2")
    assert [i["metadata"]["name"] for i in in_ns2.items] == ["b", "c"]
    gold = await cluster.list(BROKERS, label_selector="tier=gold")
    assert [i["metadata"]["name"] for i in gold.items] == ["a"]
    not_gold = await cluster.list(BROKERS, label_selector="tier!=gold")
    assert [i["metadata"]["name"] for i in not_gold.items] == ["b", "c"]


async def test_replace_needs_current_version(cluster: Cluster) -> None:
    created = await cluster.create(broker_manifest("b1"))
    changed = {**created, "spec": {**created["spec"], "priority": 7}}
    replaced = await cluster.replace(changed)
    assert replaced["spec"]["priority"] == 7
    assert replaced["metadata"]["generation"] == 2
    assert int(replaced["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    with pytest.raises(Conflict):
        await cluster.replace(changed)  # still carries the old resourceVersion


async def test_generation_moves_with_spec_only(cluster: Cluster) -> None:
    await cluster.create(broker_manifest("b1"))
    labelled = await cluster.patch(
        BROKERS, "b1", {"metadata": {"labels": {"a": "b"}}}, namespace=NS
    )
    assert labelled["metadata"]["generation"] == 1
    assert labelled["metadata"]["labels"] == {"a": "b"}
    respec = await cluster.patch(BROKERS, "b1", {"spec": {"region": "eu"}}, namespace=NS)
    assert respec["metadata"]["generation"] == 2


async def test_merge_patch_semantics(cluster: Cluster) -> None:
    created = await cluster.create(broker_manifest("b1", unschedulable=True))
    patched = await cluster.patch(
        BROKERS,
        "b1",
        {"spec": {"healthCheck": {"intervalSeconds": 60}, "region": None}},
        namespace=NS,
    )
    assert patched["spec"]["healthCheck"]["intervalSeconds"] == 60
    assert patched["spec"]["healthCheck"]["timeoutSeconds"] == 5  # untouched sibling
    assert "region" not in patched["spec"]  # null deletes
    assert patched["spec"]["capabilities"] == created["spec"]["capabilities"]


async def test_patch_with_stale_version_conflicts(cluster: Cluster) -> None:
    created = await cluster.create(broker_manifest("b1"))
    await cluster.patch(BROKERS, "b1", {"spec": {"priority": 5}}, namespace=NS)
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}}
    with pytest.raises(Conflict):
        await cluster.patch(BROKERS, "b1", {**stale, "spec": {"priority": 6}}, namespace=NS)
    with pytest.raises(Conflict):
        await cluster.patch_status(
            BROKERS, "b1", {**stale, "status": {"phase": "Ready"}}, namespace=NS
        )


async def test_status_subresource_is_separate(cluster: Cluster) -> None:
    await cluster.create(broker_manifest("b1"))
    updated = await cluster.patch_status(
        BROKERS,
        "b1",
        {"status": {"phase": "Ready", "activeDeployments": 3}, "spec": {"priority": 1}},
        namespace=NS,
    )
    assert updated["status"] == {"phase": "Ready", "activeDeployments": 3}
    assert updated["spec"]["priority"] == 100  # spec untouched by a status write
    assert updated["metadata"]["generation"] == 1
    via_main = await cluster.patch(BROKERS, "b1", {"status": {"phase": "Offline"}}, namespace=NS)
    assert via_main["status"]["phase"] == "Ready"  # status untouched by a main write


async def test_invalid_status_is_rejected(cluster: Cluster) -> None:
    await cluster.create(broker_manifest("b1"))
    with pytest.raises(Invalid) as caught:
        await cluster.patch_status(BROKERS, "b1", {"status": {"phase": "Sleepy"}}, namespace=NS)
    assert caught.value.problems[0].field == ".status.phase"


async def test_unchanged_write_keeps_version(cluster: Cluster) -> None:
    await cluster.create(broker_manifest("b1"))
    first = await cluster.patch_status(BROKERS, "b1", {"status": {"phase": "Ready"}}, namespace=NS)
    again = await cluster.patch_status(BROKERS, "b1", {"status": {"phase": "Ready"}}, namespace=NS)
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_delete_without_finalizers_is_immediate(cluster: Cluster) -> None:
    await cluster.create(broker_manifest("b1"))
    assert await cluster.delete(BROKERS, "b1", namespace=NS) is None
    with pytest.raises(NotFound):
        await cluster.get(BROKERS, "b1", namespace=NS)


async def test_finalizers_hold_deletion_until_removed(cluster: Cluster) -> None:
    manifest = broker_manifest("b1")
    manifest["metadata"]["finalizers"] = ["platform.company.com/test"]
    created = await cluster.create(manifest)
    start = created["metadata"]["resourceVersion"]
    marked = await cluster.delete(BROKERS, "b1", namespace=NS)
    assert marked is not None and marked["metadata"]["deletionTimestamp"]
    still = await cluster.get(BROKERS, "b1", namespace=NS)
    assert still["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    with pytest.raises(Invalid) as caught:
        await cluster.patch(
            BROKERS,
            "b1",
            {"metadata": {"finalizers": ["a", "platform.company.com/test"]}},
            namespace=NS,
        )
    assert caught.value.problems[0].field == ".metadata.finalizers"
    await cluster.patch(BROKERS, "b1", {"metadata": {"finalizers": None}}, namespace=NS)
    with pytest.raises(NotFound):
        await cluster.get(BROKERS, "b1", namespace=NS)
    events = await collect(cluster, start, count=2)
    assert [e.type for e in events] == ["MODIFIED", "DELETED"]


async def test_watch_sees_changes_in_order(cluster: Cluster) -> None:
    start = (await cluster.list(BROKERS)).resource_version
    await cluster.create(broker_manifest("b1"))
    await cluster.patch_status(BROKERS, "b1", {"status": {"phase": "Ready"}}, namespace=NS)
    await cluster.delete(BROKERS, "b1", namespace=NS)
    events = await collect(cluster, start, count=3)
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(e.resource_version) for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert events[1].object["status"]["phase"] == "Ready"


async def test_watch_filters_namespace(cluster: Cluster) -> None:
    start = (await cluster.list(BROKERS)).resource_version
    await cluster.create(broker_manifest("other", namespace="elsewhere"))
    await cluster.create(broker_manifest("mine", namespace=NS))
    events = await collect(cluster, start, count=1, namespace=NS)
    assert events[0].object["metadata"]["name"] == "mine"


async def test_watch_picks_up_later_writes(cluster: Cluster) -> None:
    start = (await cluster.list(BROKERS)).resource_version
    seen: list[str] = []

    async def run() -> WatchEvent:
        async for event in cluster.watch(BROKERS, resource_version=start):
            seen.append(event.type)
            if event.type != "BOOKMARK":
                return event
            if len(seen) == 1:  # a bookmark: the watch went idle, so this tests wake-up
                await cluster.create(broker_manifest("late"))
        raise AssertionError("the watch ended")

    event = await asyncio.wait_for(run(), 5)
    assert seen == ["BOOKMARK", "ADDED"]
    assert event.object["metadata"]["name"] == "late"


async def test_watch_times_out_and_bookmarks(cluster: Cluster) -> None:
    await cluster.create(broker_manifest("b1"))
    head = (await cluster.list(BROKERS)).resource_version
    seen: list[WatchEvent] = []
    started = time.monotonic()
    async for event in cluster.watch(
        BROKERS, resource_version=head, timeout_seconds=BOOKMARK_SECONDS * 3
    ):
        seen.append(event)
    assert time.monotonic() - started < 5
    assert seen and {e.type for e in seen} == {"BOOKMARK"}
    assert int(seen[-1].resource_version) >= int(head)


async def test_watch_from_compacted_version_is_gone(target: Target) -> None:
    cluster = target.cluster
    start = (await cluster.list(BROKERS)).resource_version
    for i in range(5):
        await cluster.create(broker_manifest(f"b{i}"))
    await target.compact(1)
    with pytest.raises(Gone):
        await collect(cluster, start, count=1)


async def test_leases_get_create_replace(cluster: Cluster) -> None:
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "kidp-ops", "namespace": NS},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }
    created = await cluster.create(lease)
    with pytest.raises(AlreadyExists):
        await cluster.create(lease)
    taken = {**created, "spec": {**created["spec"], "holderIdentity": "b"}}
    replaced = await cluster.replace(taken)
    assert (await cluster.get(LEASES, "kidp-ops", namespace=NS))["spec"]["holderIdentity"] == "b"
    assert replaced["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    with pytest.raises(Conflict):
        await cluster.replace({**created, "spec": {**created["spec"], "holderIdentity": "c"}})


async def test_secret_data_is_decoded(cluster: Cluster) -> None:
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": NS},
            "data": {"api-key": "czNjcjN0"},  # base64 of "s3cr3t"
        }
    )
    assert await cluster.get_secret_data("creds", namespace=NS) == {"api-key": b"s3cr3t"}
    with pytest.raises(NotFound):
        await cluster.get_secret_data("missing", namespace=NS)


async def test_events_are_recorded(cluster: Cluster) -> None:
    broker = await cluster.create(broker_manifest("b1"))
    await cluster.create_event(
        involved=broker,
        reason="Selected",
        message="picked",
        now="2026-01-01T00:00:00Z",
    )
    events = await cluster.list(EVENTS, namespace=NS)
    assert len(events.items) == 1
    event = events.items[0]
    assert event["involvedObject"]["uid"] == broker["metadata"]["uid"]
    assert (event["reason"], event["message"], event["type"]) == ("Selected", "picked", "Normal")


async def test_unknown_secret_kind_is_not_a_broker(cluster: Cluster) -> None:
    """Kinds are separate collections: a Secret named like a Broker does not collide."""
    await cluster.create(broker_manifest("same"))
    await cluster.create(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "same", "namespace": NS}}
    )
    assert (await cluster.get(SECRETS, "same", namespace=NS))["kind"] == "Secret"
    assert (await cluster.get(BROKERS, "same", namespace=NS))["kind"] == "Broker"


async def test_field_selectors_find_an_objects_events(cluster: Cluster) -> None:
    """What `kubectl describe` asks: the Events whose involvedObject is the object."""
    one = await cluster.create(broker_manifest("one"))
    two = await cluster.create(broker_manifest("two"))
    for involved, reason in ((one, "Selected"), (two, "Selected"), (one, "Unhealthy")):
        await cluster.create_event(
            involved=involved,
            reason=reason,
            message="m",
            type="Warning",
            now="2026-01-01T00:00:00Z",
        )
    uid = one["metadata"]["uid"]
    selector = (
        f"involvedObject.name=one,involvedObject.namespace={NS},"
        f"involvedObject.kind=Broker,involvedObject.uid={uid}"
    )
    found = await cluster.list(EVENTS, namespace=NS, field_selector=selector)
    assert sorted(e["reason"] for e in found.items) == ["Selected", "Unhealthy"]
    warnings = await cluster.list(EVENTS, field_selector="reason!=Selected,type==Warning")
    assert [e["involvedObject"]["name"] for e in warnings.items] == ["one"]
    by_source = await cluster.list(EVENTS, field_selector="source=kidp-ops")
    assert len(by_source.items) == 3


async def test_field_selectors_on_metadata_and_labels_together(cluster: Cluster) -> None:
    gold = broker_manifest("a", namespace="ns1")
    gold["metadata"]["labels"] = {"tier": "gold"}
    await cluster.create(gold)
    await cluster.create(broker_manifest("b", namespace="ns1"))
    await cluster.create(broker_manifest("a", namespace="ns2"))
    named = await cluster.list(BROKERS, field_selector="metadata.name=a")
    assert [i["metadata"]["namespace"] for i in named.items] == ["ns1", "ns2"]
    both = await cluster.list(
        BROKERS, field_selector="metadata.namespace!=ns2", label_selector="tier"
    )
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in both.items] == [
        ("ns1", "a")
    ]
    assert (await cluster.list(BROKERS, field_selector="metadata.name=")).items == []


async def test_unsupported_field_selector_is_invalid(cluster: Cluster) -> None:
    await cluster.create(broker_manifest("a"))
    with pytest.raises(Invalid, match=r"field label not supported: spec\.region"):
        await cluster.list(BROKERS, field_selector="spec.region=us-east-1")
    with pytest.raises(Invalid, match="field label not supported: reason"):
        await cluster.list(SECRETS, field_selector="reason=x")
