"""The embedded API server's rules (`cluster/storage.py`), called directly on a real SQLite
store in a temporary directory: no event loop, no adapter.

The custom kinds are the test's own (`widgets` with a status subresource, `gadgets` without),
defined by CRDs written here, so the rules are tested apart from the platform's CRD shapes.
"""

from __future__ import annotations

import copy
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kidp_ops.cluster import storage
from kidp_ops.cluster.base import (
    CRDS,
    SECRETS,
    AlreadyExists,
    Conflict,
    FieldProblem,
    Gone,
    Invalid,
    Manifest,
    NotFound,
    ResourceKind,
)
from kidp_ops.cluster.embedded import _compact, _open_db

WIDGETS = ResourceKind("test.example.com", "v1", "Widget", "widgets")
GADGETS = ResourceKind("test.example.com", "v1", "Gadget", "gadgets")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def crd(kind: ResourceKind, *, status: bool, colors: tuple[str, ...] = ("red", "blue")) -> Manifest:
    spec = {
        "type": "object",
        "properties": {
            "size": {"type": "integer", "minimum": 1, "default": 1},
            "color": {"type": "string", "enum": list(colors)},
        },
    }
    openapi = {
        "type": "object",
        "properties": {
            "spec": spec,
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
        },
    }
    version = {
        "name": kind.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi},
        "subresources": {"status": {}} if status else {},
    }
    return {
        "apiVersion": CRDS.api_version,
        "kind": CRDS.kind,
        "metadata": {"name": kind.resource},
        "spec": {
            "group": kind.group,
            "names": {"plural": kind.plural, "kind": kind.kind},
            "scope": "Namespaced",
            "versions": [version],
        },
    }


def thing(kind: ResourceKind = WIDGETS, name: str = "w1", **spec: Any) -> Manifest:
    return {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"name": name, "namespace": "team-x"},
        "spec": spec,
    }


class Store:
    """A store connection and its schema cache, with the operations bound to them."""

    def __init__(self, path: Path) -> None:
        self.conn = _open_db(path)
        self.schemas = storage.SchemaCache()

    def head(self) -> int:
        return storage.head_revision(self.conn)

    def log(self) -> list[tuple[int, str, str]]:
        """Every revision kept: (rv, event type, name)."""
        rows = self.conn.execute("SELECT rv, type, body FROM log ORDER BY rv").fetchall()
        return [(rv, etype, storage._decode(body)["metadata"]["name"]) for rv, etype, body in rows]

    def create(self, manifest: Manifest, kind: ResourceKind = WIDGETS) -> Manifest:
        return storage.create_op(self.conn, self.schemas, kind, manifest)

    def get(self, name: str = "w1", kind: ResourceKind = WIDGETS, ns: str = "team-x") -> Manifest:
        return storage.get_op(self.conn, kind, name, ns)

    def replace(self, manifest: Manifest, kind: ResourceKind = WIDGETS) -> Manifest:
        return storage.replace_op(self.conn, self.schemas, kind, manifest)

    def patch(
        self,
        patch: Manifest,
        *,
        name: str = "w1",
        kind: ResourceKind = WIDGETS,
        status: bool = False,
    ) -> Manifest:
        return storage.patch_op(self.conn, self.schemas, kind, name, "team-x", patch, status)

    def delete(self, name: str = "w1", kind: ResourceKind = WIDGETS) -> Manifest | None:
        return storage.delete_op(self.conn, kind, name, "team-x")

    def apply(self, manifest: Manifest, kind: ResourceKind = WIDGETS) -> tuple[str, Manifest]:
        return storage.apply_op(self.conn, self.schemas, kind, manifest)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "store.db")
    opened.apply(crd(WIDGETS, status=True), CRDS)
    opened.apply(crd(GADGETS, status=False), CRDS)
    yield opened
    assert not opened.conn.in_transaction  # every operation, refused or not, ends its own
    opened.conn.close()


# --- create ---------------------------------------------------------------------------


def test_create_sets_the_server_fields_and_ignores_the_clients(store: Store) -> None:
    manifest = thing(color="red")
    manifest["apiVersion"] = "whatever/v9"
    manifest["metadata"].update(
        uid="mine", resourceVersion="99", generation=7, creationTimestamp="x", deletionTimestamp="y"
    )
    manifest["status"] = {"phase": "Ready"}
    created = store.create(manifest)
    meta = created["metadata"]
    assert UUID.match(meta["uid"]) and RFC3339.match(meta["creationTimestamp"])
    assert meta["resourceVersion"] == str(store.head())
    assert meta["generation"] == 1 and "deletionTimestamp" not in meta
    assert created["apiVersion"] == "test.example.com/v1"
    assert "status" not in created  # the status subresource is written on its own
    assert created["spec"] == {"color": "red", "size": 1}  # defaulted by the schema
    assert store.get() == created
    assert store.log()[-1] == (int(meta["resourceVersion"]), "ADDED", "w1")
    assert manifest["metadata"]["uid"] == "mine"  # the caller's manifest is left alone


def test_without_a_status_subresource_create_keeps_the_status(store: Store) -> None:
    created = store.create({**thing(GADGETS, "g1"), "status": {"phase": "New"}}, GADGETS)
    assert created["status"] == {"phase": "New"}


def test_builtin_kinds_have_no_generation_and_a_default_namespace(store: Store) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {}}
    created = store.create(secret, SECRETS)
    assert created["metadata"]["namespace"] == "default"
    assert "generation" not in created["metadata"]
    assert store.get("s", SECRETS, "default") == created


def test_generate_name_makes_a_fresh_name(store: Store) -> None:
    manifest = thing()
    manifest["metadata"] = {"generateName": "w-", "namespace": "team-x"}
    names = {store.create(copy.deepcopy(manifest))["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3
    assert all(re.fullmatch(r"w-[bcdfghjklmnpqrstvwxz2456789]{5}", name) for name in names)


def test_create_refuses_a_duplicate_and_writes_nothing(store: Store) -> None:
    store.create(thing())
    head = store.head()
    with pytest.raises(AlreadyExists, match=r"widgets.test.example.com \"w1\" already exists"):
        store.create(thing(size=5))
    assert store.head() == head and store.get()["spec"]["size"] == 1


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ("not an object", ".metadata"),
        ({"namespace": "team-x"}, ".metadata.name"),
        ({"name": "Not_A_Name", "namespace": "team-x"}, ".metadata.name"),
        ({"name": "w1", "namespace": "team-x", "colour": "x"}, ".metadata.colour"),
    ],
)
def test_create_refuses_bad_metadata(store: Store, metadata: Any, field: str) -> None:
    head = store.head()
    with pytest.raises(Invalid) as caught:
        store.create({**thing(), "metadata": metadata})
    assert [p.field for p in caught.value.problems] == [field]
    assert store.head() == head


def test_create_validates_against_the_stored_crd(store: Store) -> None:
    with pytest.raises(Invalid) as caught:
        store.create(thing(color="green", size=0))
    assert caught.value.problems == (
        FieldProblem(".spec.color", '"green" is not allowed (allowed: red, blue)'),
        FieldProblem(".spec.size", "0 is below the minimum 1"),
    )
    assert caught.value.message == (
        '.spec.color: "green" is not allowed (allowed: red, blue); '
        ".spec.size: 0 is below the minimum 1"
    )


def test_a_changed_crd_changes_the_rules_at_once(store: Store) -> None:
    with pytest.raises(Invalid):
        store.create(thing(color="green"))
    outcome, _ = store.apply(crd(WIDGETS, status=True, colors=("red", "green")), CRDS)
    assert outcome == "configured"
    assert store.create(thing(color="green"))["spec"]["color"] == "green"


def test_a_kind_without_its_crd_is_not_served(store: Store) -> None:
    other = ResourceKind("test.example.com", "v1", "Gizmo", "gizmos")
    with pytest.raises(NotFound, match=r"no CustomResourceDefinition gizmos\.test\.example\.com"):
        store.create(thing(other, "z"), other)


def test_a_crd_must_be_named_after_its_plural_and_group(store: Store) -> None:
    misnamed = crd(ResourceKind("test.example.com", "v1", "Gizmo", "gizmos"), status=False)
    misnamed["metadata"]["name"] = "gizmo.test.example.com"
    with pytest.raises(Invalid) as caught:
        store.create(misnamed, CRDS)
    assert caught.value.problems == (
        FieldProblem(
            ".metadata.name", "must be spec.names.plural+'.'+spec.group (gizmos.test.example.com)"
        ),
    )


# --- update: generation, concurrency, server fields -----------------------------------


def test_generation_moves_on_spec_changes_only(store: Store) -> None:
    created = store.create(thing())
    labelled = store.patch({"metadata": {"labels": {"tier": "gold"}}})
    assert labelled["metadata"]["generation"] == 1
    assert int(labelled["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    resized = store.patch({"spec": {"size": 2}})
    assert resized["metadata"]["generation"] == 2
    status = store.patch({"status": {"phase": "Ready"}}, status=True)
    assert status["metadata"]["generation"] == 2
    replaced = store.replace({**status, "spec": {"size": 3}})
    assert replaced["metadata"]["generation"] == 3


def test_a_status_change_through_the_main_resource_is_no_spec_change(store: Store) -> None:
    store.create(thing(GADGETS, "g1"), GADGETS)
    updated = store.patch({"status": {"phase": "Busy"}}, name="g1", kind=GADGETS)
    assert updated["status"] == {"phase": "Busy"}  # no subresource: the main write sets it
    assert updated["metadata"]["generation"] == 1


def test_replace_needs_the_current_resource_version(store: Store) -> None:
    created = store.create(thing())
    unversioned = copy.deepcopy(created)
    del unversioned["metadata"]["resourceVersion"]
    with pytest.raises(Invalid) as caught:
        store.replace(unversioned)
    assert [p.field for p in caught.value.problems] == [".metadata.resourceVersion"]
    store.replace({**created, "spec": {"size": 2}})
    head = store.head()
    with pytest.raises(Conflict, match="the object has been modified"):
        store.replace({**created, "spec": {"size": 3}})  # written against the old version
    with pytest.raises(Conflict):
        store.patch({"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}})
    assert store.head() == head and store.get()["spec"]["size"] == 2


def test_builtin_kinds_may_be_replaced_unconditionally(store: Store) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "b"}}
    store.create(copy.deepcopy(secret), SECRETS)
    secret["data"] = {"a": "c"}
    assert store.replace(secret, SECRETS)["data"] == {"a": "c"}


def test_updates_keep_the_server_fields(store: Store) -> None:
    created = store.create(thing())
    forged = copy.deepcopy(created)
    forged["metadata"].update(uid="forged", creationTimestamp="1999-01-01T00:00:00Z", generation=9)
    forged["spec"]["size"] = 2
    updated = store.replace(forged)
    for key in ("uid", "creationTimestamp"):
        assert updated["metadata"][key] == created["metadata"][key]
    assert updated["metadata"]["generation"] == 2


def test_updating_or_deleting_a_missing_object_is_not_found(store: Store) -> None:
    missing = "widgets.test.example.com \"nope\" not found in namespace 'team-x'"
    with pytest.raises(NotFound, match=re.escape(missing)):
        store.patch({"spec": {"size": 2}}, name="nope")
    with pytest.raises(NotFound, match=re.escape(missing)):
        store.delete("nope")
    with pytest.raises(NotFound):
        store.replace({**thing(name="nope"), "metadata": {"name": "nope", "resourceVersion": "1"}})


def test_a_patch_must_be_an_object(store: Store) -> None:
    store.create(thing())
    with pytest.raises(Invalid, match="a merge patch must be a JSON object"):
        store.patch(["not", "a", "patch"])  # type: ignore[arg-type]


# --- writes that change nothing -------------------------------------------------------


def test_a_write_that_changes_nothing_writes_no_revision(store: Store) -> None:
    created = store.create(thing(size=1))
    head, log = store.head(), store.log()
    assert store.replace(copy.deepcopy(created)) == created
    assert store.patch({}) == created
    assert store.patch({"spec": {"size": 1}}) == created
    assert store.patch({"spec": {"size": None}}) == created  # removed, then defaulted back
    assert store.apply(thing(size=1)) == ("unchanged", created)
    assert (store.head(), store.log()) == (head, log)


# --- the status subresource -----------------------------------------------------------


def test_a_status_write_changes_the_status_only(store: Store) -> None:
    created = store.create(thing())
    written = store.patch(
        {"status": {"phase": "Ready"}, "spec": {"size": 5}, "metadata": {"labels": {"a": "b"}}},
        status=True,
    )
    assert written["status"] == {"phase": "Ready"}
    assert written["spec"] == created["spec"] and "labels" not in written["metadata"]
    assert store.patch({"status": None}, status=True).get("status") is None


def test_a_main_write_keeps_the_status(store: Store) -> None:
    store.create(thing())
    ready = store.patch({"status": {"phase": "Ready"}}, status=True)
    replaced = store.replace({**ready, "spec": {"size": 2}, "status": {"phase": "Forged"}})
    assert replaced["status"] == {"phase": "Ready"} and replaced["spec"]["size"] == 2
    patched = store.patch({"status": {"phase": "Forged"}})
    assert patched["status"] == {"phase": "Ready"}


def test_a_status_write_is_validated(store: Store) -> None:
    store.create(thing())
    with pytest.raises(Invalid) as caught:
        store.patch({"status": {"phase": 3}}, status=True)
    assert [p.field for p in caught.value.problems] == [".status.phase"]


def test_a_kind_without_a_status_subresource_has_no_status_writes(store: Store) -> None:
    store.create(thing(GADGETS, "g1"), GADGETS)
    with pytest.raises(NotFound, match=r"gadgets\.test\.example\.com has no status subresource"):
        store.patch({"status": {"phase": "x"}}, name="g1", kind=GADGETS, status=True)


# --- deletion and finalizers ----------------------------------------------------------


def test_delete_without_finalizers_removes_the_object(store: Store) -> None:
    created = store.create(thing())
    assert store.delete() is None
    with pytest.raises(NotFound):
        store.get()
    rv, event, name = store.log()[-1]
    assert (event, name) == ("DELETED", "w1") and rv == store.head()
    assert rv > int(created["metadata"]["resourceVersion"])


def test_finalizers_hold_a_deletion_until_the_last_is_removed(store: Store) -> None:
    manifest = thing()
    manifest["metadata"]["finalizers"] = ["a/one", "a/two"]
    store.create(manifest)
    marked = store.delete()
    assert marked is not None
    assert RFC3339.match(marked["metadata"]["deletionTimestamp"])
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert store.get() == marked and store.log()[-1][1] == "MODIFIED"

    head = store.head()
    assert store.delete() == marked  # deleting again changes nothing
    assert store.head() == head

    with pytest.raises(Invalid) as caught:
        store.patch({"metadata": {"finalizers": ["a/one", "a/two", "a/three"]}})
    assert caught.value.problems[0].field == ".metadata.finalizers"
    assert "['a/three']" in caught.value.problems[0].message

    one_left = store.patch({"metadata": {"finalizers": ["a/two"]}})
    assert one_left["metadata"]["finalizers"] == ["a/two"]
    last = store.patch({"metadata": {"finalizers": None}})
    assert last["metadata"]["name"] == "w1" and last["kind"] == "Widget"  # its last state
    with pytest.raises(NotFound):
        store.get()
    assert store.log()[-1][1:] == ("DELETED", "w1")


# --- apply ----------------------------------------------------------------------------


def test_apply_creates_then_configures_and_keeps_what_it_does_not_own(store: Store) -> None:
    manifest = thing(size=2)
    manifest["metadata"]["labels"] = {"tier": "gold"}
    outcome, created = store.apply(copy.deepcopy(manifest))
    assert outcome == "created"
    store.patch({"status": {"phase": "Ready"}}, status=True)
    store.patch({"metadata": {"annotations": {"note": "kept"}}})
    manifest["spec"]["size"] = 3
    manifest["metadata"]["labels"] = {"tier": "silver"}
    outcome, configured = store.apply(manifest)
    assert outcome == "configured"
    assert configured["spec"] == {"size": 3}
    assert configured["metadata"]["labels"] == {"tier": "silver"}  # named: owned
    assert configured["metadata"]["annotations"] == {"note": "kept"}  # not named: kept
    assert configured["status"] == {"phase": "Ready"}
    assert configured["metadata"]["uid"] == created["metadata"]["uid"]
    assert configured["metadata"]["generation"] == 2


# --- reads: list, the log, compaction -------------------------------------------------


def test_list_is_ordered_by_namespace_then_name_and_carries_the_head(store: Store) -> None:
    for name, namespace in (("b", "team-y"), ("c", "team-x"), ("a", "team-y")):
        manifest = thing(name=name)
        manifest["metadata"]["namespace"] = namespace
        store.create(manifest)
    items, head = storage.list_op(store.conn, WIDGETS, None)
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items] == [
        ("team-x", "c"),
        ("team-y", "a"),
        ("team-y", "b"),
    ]
    assert head == store.head()
    items, _ = storage.list_op(store.conn, WIDGETS, "team-y")
    assert [i["metadata"]["name"] for i in items] == ["a", "b"]
    assert storage.list_op(store.conn, GADGETS, None) == ([], store.head())


def test_the_log_since_a_cursor_by_kind_and_namespace_in_pages(store: Store) -> None:
    start = store.head()
    for name in ("a", "b", "c"):
        store.create(thing(name=name))
    store.create(thing(GADGETS, "g"), GADGETS)
    store.patch({"spec": {"size": 4}}, name="b")
    events, cursor = storage.log_since(store.conn, WIDGETS, None, start, 100)
    assert [(t, o["metadata"]["name"]) for t, o in events] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("ADDED", "c"),
        ("MODIFIED", "b"),
    ]
    assert cursor == store.head()  # past the gadget's revision as well
    first, page_end = storage.log_since(store.conn, WIDGETS, None, start, 2)
    assert [o["metadata"]["name"] for _, o in first] == ["a", "b"]
    assert page_end == int(first[-1][1]["metadata"]["resourceVersion"])  # a full page
    rest, _ = storage.log_since(store.conn, WIDGETS, None, page_end, 2)
    assert [(t, o["metadata"]["name"]) for t, o in rest] == [("ADDED", "c"), ("MODIFIED", "b")]
    assert storage.log_since(store.conn, WIDGETS, "team-y", start, 100) == ([], store.head())


def test_compaction_drops_old_revisions_and_older_cursors_are_gone(store: Store) -> None:
    for name in ("a", "b", "c", "d"):
        store.create(thing(name=name))
    head = store.head()
    assert _compact(store.conn, head + 10) == 0  # nothing old enough
    floor = _compact(store.conn, 2)
    assert floor == head - 2
    assert [rv for rv, _, _ in store.log()] == [head - 1, head]
    with pytest.raises(Gone, match=f"too old resource version: {floor - 1}"):
        storage.log_since(store.conn, WIDGETS, None, floor - 1, 100)
    events, _ = storage.log_since(store.conn, WIDGETS, None, floor, 100)
    assert [o["metadata"]["name"] for _, o in events] == ["c", "d"]
    assert _compact(store.conn, 100) == 0
    with pytest.raises(Gone):  # the floor never moves back
        storage.log_since(store.conn, WIDGETS, None, floor - 1, 100)


def test_a_bookmark_carries_the_revision_only() -> None:
    event = storage.bookmark(WIDGETS, 42)
    assert event.type == "BOOKMARK"
    assert event.object == {
        "apiVersion": "test.example.com/v1",
        "kind": "Widget",
        "metadata": {"resourceVersion": "42"},
    }


def test_the_store_file_is_plain_sqlite(store: Store, tmp_path: Path) -> None:
    store.create(thing())
    other = sqlite3.connect(tmp_path / "store.db")
    try:
        (count,) = other.execute(
            "SELECT count(*) FROM objects WHERE resource=?", (WIDGETS.resource,)
        ).fetchone()
    finally:
        other.close()
    assert count == 1
