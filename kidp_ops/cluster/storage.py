"""What the embedded API server does to objects: run inside the store's thread.

Each `*_op` function takes the SQLite connection first and is one transaction. The rules
follow the Kubernetes API server: server-set metadata, `generation` bumped on spec
changes only, optimistic concurrency on `resourceVersion`, finalizers and
`deletionTimestamp`, the status subresource, schema defaulting and validation from the
stored CustomResourceDefinitions, and no new revision when an update changes nothing.
"""

# size: every write of the embedded API server shares the transaction helpers above it

from __future__ import annotations

import copy
import json
import secrets
import sqlite3
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kidp_ops.cluster.base import (
    BUILTIN_KINDS,
    CRDS,
    AlreadyExists,
    Conflict,
    EventType,
    FieldProblem,
    Gone,
    Invalid,
    Manifest,
    NotFound,
    ResourceKind,
    WatchEvent,
)
from kidp_ops.cluster.patching import ENVELOPE as _ENVELOPE
from kidp_ops.cluster.patching import applied, merge_patch
from kidp_ops.model.schema import ResourceSchema, check_metadata
from kidp_ops.model.validation import semantic_problems

_SERVER_META = ("uid", "creationTimestamp", "generation", "deletionTimestamp", "resourceVersion")


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dumps(obj: Manifest) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


# --- admission rules per kind --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rules:
    """How the server treats one kind."""

    schema: ResourceSchema | None = None  # custom resources only
    status_subresource: bool = False
    custom: bool = False


_BUILTIN_RULES = Rules()


class SchemaCache:
    """The Rules of every kind, rebuilt when the stored CRDs change. Store thread only."""

    def __init__(self) -> None:
        self._stamp: tuple[Any, ...] | None = None
        self._rules: dict[str, Rules] = {}

    def rules(self, conn: sqlite3.Connection, kind: ResourceKind) -> Rules:
        if kind in BUILTIN_KINDS:
            return _BUILTIN_RULES
        stamp = conn.execute(
            "SELECT max(rv), count(*) FROM objects WHERE resource=?", (CRDS.resource,)
        ).fetchone()
        if stamp != self._stamp:
            self._rules = self._load(conn)
            self._stamp = tuple(stamp)
        rules = self._rules.get(kind.resource)
        if rules is None:
            raise NotFound(
                f"the server could not find the requested resource: no "
                f"CustomResourceDefinition {kind.resource} is installed (apply crds/)"
            )
        return rules

    @staticmethod
    def _load(conn: sqlite3.Connection) -> dict[str, Rules]:
        rules = {}
        for (body,) in conn.execute("SELECT body FROM objects WHERE resource=?", (CRDS.resource,)):
            crd = json.loads(body)
            version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
            rules[crd["metadata"]["name"]] = Rules(
                schema=ResourceSchema.from_crd(crd),
                status_subresource="status" in (version.get("subresources") or {}),
                custom=True,
            )
        return rules


def _validate(rules: Rules, kind: ResourceKind, obj: Manifest, *, spec_write: bool) -> None:
    problems: list[FieldProblem] = check_metadata(obj, namespaced=kind.namespaced)
    if rules.schema is not None:
        rules.schema.default(obj)
        problems += rules.schema.problems(obj)
    if kind is CRDS:
        problems += _crd_problems(obj)
    if spec_write and not problems:
        problems += semantic_problems(obj)
    if problems:
        name = obj.get("metadata", {}).get("name") or "(generated)"
        raise Invalid(f"{kind.kind} {name!r} is invalid", problems=tuple(problems)) from None


def _crd_problems(crd: Manifest) -> list[FieldProblem]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    expected = f"{names.get('plural')}.{spec.get('group')}"
    if crd["metadata"].get("name") != expected:
        return [
            FieldProblem(".metadata.name", f"must be spec.names.plural+'.'+spec.group ({expected})")
        ]
    try:
        ResourceSchema.from_crd(crd)
    except (KeyError, TypeError, StopIteration, IndexError) as exc:
        return [FieldProblem(".spec.versions", f"no usable openAPIV3Schema ({exc})")]
    return []


# --- reads ----------------------------------------------------------------------------


def head_revision(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key='revision'").fetchone()
    return int(row[0])


def _current(conn: sqlite3.Connection, kind: ResourceKind, ns: str, name: str) -> Manifest | None:
    row = conn.execute(
        "SELECT body FROM objects WHERE resource=? AND namespace=? AND name=?",
        (kind.resource, ns, name),
    ).fetchone()
    return _decode(row[0]) if row else None


def _not_found(kind: ResourceKind, ns: str, name: str) -> NotFound:
    where = f" in namespace {ns!r}" if ns else ""
    return NotFound(f'{kind.resource} "{name}" not found{where}')


def _interned(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return {sys.intern(key): value for key, value in pairs}


# Objects kept in caches (informers, the daemon) share their key strings: a Broker takes
# about 3.9 KB instead of 6.1 KB (benchmarks/provisioning.py, daemon RSS).
_DECODER = json.JSONDecoder(object_pairs_hook=_interned)


def _decode(body: str) -> Any:
    return _DECODER.decode(body)


def get_op(conn: sqlite3.Connection, kind: ResourceKind, name: str, ns: str) -> Manifest:
    found = _current(conn, kind, ns, name)
    if found is None:
        raise _not_found(kind, ns, name)
    return found


def list_op(
    conn: sqlite3.Connection, kind: ResourceKind, ns: str | None
) -> tuple[list[Manifest], int]:
    conn.execute("BEGIN")
    try:
        if ns is None:
            cursor = conn.execute(
                "SELECT body FROM objects WHERE resource=? ORDER BY namespace, name",
                (kind.resource,),
            )
        else:
            cursor = conn.execute(
                "SELECT body FROM objects WHERE resource=? AND namespace=? ORDER BY name",
                (kind.resource, ns),
            )
        # Decoded row by row: a 10,000-object list never holds all the JSON text at once.
        items = [_decode(body) for (body,) in cursor]
        head = head_revision(conn)
    finally:
        conn.execute("COMMIT")
    return items, head


def log_since(
    conn: sqlite3.Connection, kind: ResourceKind, ns: str | None, cursor: int, limit: int
) -> tuple[list[tuple[EventType, Manifest]], int]:
    """Events of `kind` after `cursor` and the new cursor, read in one snapshot."""
    conn.execute("BEGIN")
    try:
        compacted = conn.execute("SELECT value FROM meta WHERE key='compacted'").fetchone()[0]
        if cursor < compacted:
            raise Gone(f"too old resource version: {cursor} (compacted up to {compacted})")
        query = "SELECT rv, type, body FROM log WHERE resource=? AND rv>?"
        params: list[Any] = [kind.resource, cursor]
        if ns is not None:
            query += " AND namespace=?"
            params.append(ns)
        rows = conn.execute(query + " ORDER BY rv LIMIT ?", [*params, limit]).fetchall()
        head = head_revision(conn)
    finally:
        conn.execute("COMMIT")
    events = [(etype, _decode(body)) for _, etype, body in rows]
    new_cursor = rows[-1][0] if len(rows) == limit else max(head, cursor)
    return events, new_cursor


def bookmark(kind: ResourceKind, revision: int) -> WatchEvent:
    return WatchEvent(
        "BOOKMARK",
        {
            "apiVersion": kind.api_version,
            "kind": kind.kind,
            "metadata": {"resourceVersion": str(revision)},
        },
    )


# --- writes ---------------------------------------------------------------------------

Decision = tuple[EventType | None, Manifest | None]  # (event type or None for no change, object)


def _write(
    conn: sqlite3.Connection,
    kind: ResourceKind,
    ns: str,
    name: str,
    decide: Callable[[Manifest | None], Decision],
) -> Manifest | None:
    """One atomic read-decide-write. `decide` sees the current object (or None).

    Whatever `decide` raises (NotFound, Conflict, AlreadyExists...) rolls the transaction
    back here, so a caller that catches it (apply's create-or-update race) can go on."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        return _decide_and_write(conn, kind, ns, name, decide)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _decide_and_write(
    conn: sqlite3.Connection,
    kind: ResourceKind,
    ns: str,
    name: str,
    decide: Callable[[Manifest | None], Decision],
) -> Manifest | None:
    event_type, obj = decide(_current(conn, kind, ns, name))
    if event_type is None or obj is None:
        conn.execute("COMMIT")
        return obj
    rv = conn.execute(
        "UPDATE meta SET value = value + 1 WHERE key='revision' RETURNING value"
    ).fetchone()[0]
    obj["metadata"]["resourceVersion"] = str(rv)
    body = _dumps(obj)
    conn.execute(
        "INSERT INTO log (rv, resource, namespace, type, body) VALUES (?,?,?,?,?)",
        (rv, kind.resource, ns, event_type, body),
    )
    if event_type == "DELETED":
        conn.execute(
            "DELETE FROM objects WHERE resource=? AND namespace=? AND name=?",
            (kind.resource, ns, name),
        )
    else:
        conn.execute(
            "INSERT OR REPLACE INTO objects (resource, namespace, name, rv, body) "
            "VALUES (?,?,?,?,?)",
            (kind.resource, ns, name, rv, body),
        )
    conn.execute("COMMIT")
    return None if event_type == "DELETED" else obj


def _identify(kind: ResourceKind, manifest: Manifest) -> tuple[str, str]:
    meta = manifest.get("metadata")
    if not isinstance(meta, dict):
        raise Invalid("required field is missing (an object with a name)", field=".metadata")
    ns = (meta.get("namespace") or "default") if kind.namespaced else ""
    name = meta.get("name")
    if not name and meta.get("generateName") and isinstance(meta["generateName"], str):
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        name = meta["generateName"] + "".join(secrets.choice(alphabet) for _ in range(5))
    if not name or not isinstance(name, str):
        raise Invalid("required field is missing", field=".metadata.name")
    return str(ns), name


def _fresh(kind: ResourceKind, manifest: Manifest, ns: str, name: str, rules: Rules) -> Manifest:
    obj = copy.deepcopy(manifest)
    obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
    meta = obj["metadata"]
    for key in _SERVER_META:
        meta.pop(key, None)
    meta["name"] = name
    if kind.namespaced:
        meta["namespace"] = ns
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = utcnow()
    if rules.custom:
        meta["generation"] = 1
    if rules.status_subresource:
        obj.pop("status", None)
    return obj


def create_op(
    conn: sqlite3.Connection, schemas: SchemaCache, kind: ResourceKind, manifest: Manifest
) -> Manifest:
    ns, name = _identify(kind, manifest)
    rules = schemas.rules(conn, kind)
    obj = _fresh(kind, manifest, ns, name, rules)
    _validate(rules, kind, obj, spec_write=True)

    def decide(current: Manifest | None) -> Decision:
        if current is not None:
            where = f" in namespace {ns!r}" if ns else ""
            raise AlreadyExists(f'{kind.resource} "{name}" already exists{where}')
        return "ADDED", obj

    created = _write(conn, kind, ns, name, decide)
    assert created is not None
    return created


def _spec_of(obj: Manifest) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in _ENVELOPE}


def _check_precondition(kind: ResourceKind, current: Manifest, wanted: Any, name: str) -> None:
    if wanted not in (None, "") and str(wanted) != current["metadata"]["resourceVersion"]:
        raise Conflict(
            f'Operation cannot be fulfilled on {kind.resource} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again"
        )


def _update(
    kind: ResourceKind, rules: Rules, current: Manifest, desired: Manifest, *, status_write: bool
) -> Decision:
    """Admit `desired` as the next state of `current`: the heart of every update."""
    new = copy.deepcopy(desired)
    new["apiVersion"], new["kind"] = kind.api_version, kind.kind
    meta, old_meta = new.setdefault("metadata", {}), current["metadata"]
    if status_write:  # status subresource: only status may change
        new = {**copy.deepcopy(current), "status": new.get("status")}
        if new["status"] is None:
            new.pop("status")
        meta = new["metadata"]
    elif rules.status_subresource:
        new.pop("status", None)
        if "status" in current:
            new["status"] = copy.deepcopy(current["status"])
    for key in ("name", "namespace", *_SERVER_META):
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    if rules.schema is not None:
        rules.schema.default(new)
    if rules.custom and _spec_of(new) != _spec_of(current):
        meta["generation"] = int(old_meta.get("generation", 1)) + 1
    _validate(rules, kind, new, spec_write=not status_write)
    deleting = "deletionTimestamp" in old_meta
    added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
    if deleting and added:
        raise Invalid(
            f"no new finalizers can be added while the object is being deleted: {sorted(added)}",
            field=".metadata.finalizers",
        )
    if new == current:
        return None, current
    if deleting and not meta.get("finalizers"):
        return "DELETED", new
    return "MODIFIED", new


def replace_op(
    conn: sqlite3.Connection, schemas: SchemaCache, kind: ResourceKind, manifest: Manifest
) -> Manifest:
    ns, name = _identify(kind, manifest)
    rules = schemas.rules(conn, kind)
    wanted = manifest["metadata"].get("resourceVersion")
    if wanted in (None, "") and rules.custom:
        raise Invalid("must be specified for an update", field=".metadata.resourceVersion")

    def decide(current: Manifest | None) -> Decision:
        if current is None:
            raise _not_found(kind, ns, name)
        _check_precondition(kind, current, wanted, name)
        return _update(kind, rules, current, manifest, status_write=False)

    return _written(kind, _write(conn, kind, ns, name, decide), manifest)


def _written(kind: ResourceKind, result: Manifest | None, fallback: Manifest) -> Manifest:
    """A write that deleted the object (last finalizer removed) returns its last state."""
    if result is not None:
        return result
    final = copy.deepcopy(fallback)
    final.setdefault("kind", kind.kind)
    return final


def patch_op(
    conn: sqlite3.Connection,
    schemas: SchemaCache,
    kind: ResourceKind,
    name: str,
    ns: str,
    patch: Manifest,
    status_write: bool,
) -> Manifest:
    if not isinstance(patch, dict):
        raise Invalid("a merge patch must be a JSON object")
    rules = schemas.rules(conn, kind)
    if status_write and not rules.status_subresource:
        raise NotFound(f"{kind.resource} has no status subresource")
    wanted = (patch.get("metadata") or {}).get("resourceVersion")
    last: list[Manifest] = []

    def decide(current: Manifest | None) -> Decision:
        if current is None:
            raise _not_found(kind, ns, name)
        _check_precondition(kind, current, wanted, name)
        last.append(current)
        desired = merge_patch(current, patch)
        return _update(kind, rules, current, desired, status_write=status_write)

    result = _write(conn, kind, ns, name, decide)
    return _written(kind, result, last[0] if last else {})


def delete_op(conn: sqlite3.Connection, kind: ResourceKind, name: str, ns: str) -> Manifest | None:
    def decide(current: Manifest | None) -> Decision:
        if current is None:
            raise _not_found(kind, ns, name)
        meta = current["metadata"]
        if not meta.get("finalizers"):
            return "DELETED", copy.deepcopy(current)
        if "deletionTimestamp" in meta:
            return None, current
        marked = copy.deepcopy(current)
        marked["metadata"]["deletionTimestamp"] = utcnow()
        marked["metadata"]["deletionGracePeriodSeconds"] = 0
        return "MODIFIED", marked

    return _write(conn, kind, ns, name, decide)


def apply_op(
    conn: sqlite3.Connection, schemas: SchemaCache, kind: ResourceKind, manifest: Manifest
) -> tuple[str, Manifest]:
    """kubectl-apply-like upsert: the manifest owns everything but status and server fields."""
    ns, name = _identify(kind, manifest)
    if _current(conn, kind, ns, name) is None:
        try:
            return "created", create_op(conn, schemas, kind, manifest)
        except AlreadyExists:  # another process won the race: update instead
            pass
    rules = schemas.rules(conn, kind)
    outcome: list[str] = []

    def decide(current: Manifest | None) -> Decision:
        if current is None:
            raise _not_found(kind, ns, name)
        desired = applied(current, manifest, keep_status=rules.status_subresource)
        event, obj = _update(kind, rules, current, desired, status_write=False)
        outcome.append("unchanged" if event is None else "configured")
        return event, obj

    result = _write(conn, kind, ns, name, decide)
    return outcome[0], _written(kind, result, manifest)


WRITES = frozenset({create_op, replace_op, patch_op, delete_op, apply_op})
