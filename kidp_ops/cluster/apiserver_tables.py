"""Table responses (`meta.k8s.io` Table): how kubectl gets its columns from the server.

`kubectl get` asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints the
columns it receives; without Tables it could only print NAME and AGE. A custom resource's
columns are its CRD's `additionalPrinterColumns` (read from the CRD stored in the Cluster,
the one that also validates it), rendered as apiextensions-apiserver renders them: `date`
as an age (`5m`), a missing value as null (kubectl prints `<none>`), a column with
`priority` > 0 only under `-o wide`. The built-in kinds get the columns kube-apiserver
prints for them (Events: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE; Secrets: TYPE, DATA, AGE;
...). Only simple JSONPaths (`.status.brokerRef.name`) are evaluated: those are all our
CRDs use; any other yields an empty cell rather than an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kidp_ops.cluster.base import CRDS, EVENTS, LEASES, SECRETS, Manifest, ResourceKind
from kidp_ops.times import format_time, human_age, parse_time

Cell = Callable[[Manifest, datetime], Any]
TABLE_VERSIONS = ("v1", "v1beta1")
INCLUDE_OBJECT = ("None", "Metadata", "Object")
_NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition."
)


@dataclass(frozen=True, slots=True)
class Column:
    """One TableColumnDefinition and how to compute its cell."""

    name: str
    cell: Cell
    type: str = "string"
    format: str = ""
    priority: int = 0
    description: str = ""

    def definition(self) -> Manifest:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


def lookup(obj: Mapping[str, Any], json_path: str) -> Any:
    """A printer column's simple JSONPath (`.status.brokerRef.name`); None when absent."""
    value: Any = obj
    for part in json_path.strip().strip("{}").strip(".").split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def age(value: Any, now: datetime) -> str:
    """kube's translateTimestampSince: `<unknown>` for no time, `<invalid>` for a time
    more than a second ahead (clocks disagree), else a human age."""
    when = parse_time(value) if isinstance(value, str | datetime) else None
    if when is None:
        return "<unknown>"
    seconds = (now - when).total_seconds()
    return "<invalid>" if int(seconds) < -1 else human_age(seconds)


def _typed(column_type: str, value: Any, now: datetime) -> Any:
    """apiextensions-apiserver's cellForJSONValue: the value if it has the column's type."""
    if value is None:
        return None
    if column_type == "date":
        if not isinstance(value, str):
            return None
        try:
            return age(value, now)
        except ValueError:
            return "<invalid>"
    if column_type == "string":
        return _text(value)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if column_type == "integer":
        return int(value) if number else None
    if column_type == "number":
        return float(value) if number else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    return None


def _text(value: Any) -> str:
    """A value as kubectl's JSONPath printer writes it (objects and lists as JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _name_column() -> Column:
    return Column(
        "Name",
        lambda obj, _: (obj.get("metadata") or {}).get("name", ""),
        format="name",
        description=_NAME_DESCRIPTION,
    )


def _printer_column(spec: Mapping[str, Any]) -> Column:
    column_type, path = str(spec.get("type", "string")), str(spec.get("jsonPath", ""))
    return Column(
        str(spec.get("name", "")),
        lambda obj, now: _typed(column_type, lookup(obj, path), now),
        type=column_type,
        format=str(spec.get("format", "")),
        priority=int(spec.get("priority", 0) or 0),
        description=str(spec.get("description", "")),
    )


def crd_columns(crd: Manifest | None, version: str) -> list[Column]:
    """Name, then the CRD's printer columns for `version` (just Age when it has none)."""
    versions = ((crd or {}).get("spec") or {}).get("versions") or []
    served: Manifest = next((v for v in versions if v.get("name") == version), {})
    specs = served.get("additionalPrinterColumns") or [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    ]
    return [_name_column(), *(_printer_column(s) for s in specs)]


# --- built-in kinds: kube-apiserver's printers -------------------------------------------------


def _created_age(obj: Manifest, now: datetime) -> str:
    return age((obj.get("metadata") or {}).get("creationTimestamp"), now)


def _event_object(event: Manifest, _: datetime) -> str:
    involved = event.get("involvedObject") or {}
    kind = str(involved.get("kind", "")).lower()
    return f"{kind}/{involved['name']}" if involved.get("name") else kind


def _event_first_seen(event: Manifest, now: datetime) -> str:
    return age(event.get("firstTimestamp") or event.get("eventTime"), now)


def _event_last_seen(event: Manifest, now: datetime) -> str:
    if event.get("lastTimestamp"):
        return age(event["lastTimestamp"], now)
    return _event_first_seen(event, now)


def _event_source(event: Manifest, _: datetime) -> str:
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    return f"{component}, {source['host']}" if source.get("host") else str(component)


def _field(*path: str, default: Any = "") -> Cell:
    return lambda obj, _: lookup(obj, ".".join(path)) or default


def _secret_data(secret: Manifest, _: datetime) -> int:
    return len({*(secret.get("data") or {}), *(secret.get("stringData") or {})})


def _namespace_phase(namespace: Manifest, _: datetime) -> str:
    return str((namespace.get("status") or {}).get("phase", "Active"))


def _builtin_columns(kind: ResourceKind) -> list[Column] | None:
    name, created = _name_column(), Column("Age", _created_age)
    if kind is EVENTS:
        return [
            Column("Last Seen", _event_last_seen),
            Column("Type", _field("type")),
            Column("Reason", _field("reason")),
            Column("Object", _event_object),
            Column("Subobject", _field("involvedObject", "fieldPath"), priority=1),
            Column("Source", _event_source, priority=1),
            Column("Message", lambda e, _: str(e.get("message") or "").strip()),
            Column("First Seen", _event_first_seen, priority=1),
            Column("Count", lambda e, _: int(e.get("count") or 1), priority=1),
            Column("Name", name.cell, format="name", priority=1),
        ]
    if kind is SECRETS:
        secret_type = Column("Type", _field("type", default="Opaque"))
        return [name, secret_type, Column("Data", _secret_data), created]
    if kind is LEASES:
        return [name, Column("Holder", _field("spec", "holderIdentity")), created]
    if kind.kind == "Namespace":
        return [name, Column("Status", _namespace_phase), created]
    if kind is CRDS:
        return [name, Column("Created At", _created_at, type="date")]
    return None


def _created_at(obj: Manifest, _: datetime) -> str:
    when = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return format_time(when) if when else ""


def columns_for(kind: ResourceKind, crd: Manifest | None) -> list[Column]:
    """The columns of `kind`: kube-apiserver's for a built-in kind, else its CRD's."""
    builtin = _builtin_columns(kind)
    return builtin if builtin is not None else crd_columns(crd, kind.version)


# --- the Table -----------------------------------------------------------------------------------


def _row_object(obj: Manifest, include: str, table_version: str) -> Manifest | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{table_version}",
        "metadata": obj.get("metadata") or {},
    }


def table(
    items: Iterable[Manifest],
    columns: list[Column],
    *,
    resource_version: str,
    table_version: str,
    include: str,
    now: datetime,
) -> Manifest:
    """A meta.k8s.io Table of `items` (`include`: None, Metadata or Object per row)."""
    rows = []
    for obj in items:
        row: Manifest = {"cells": [c.cell(obj, now) for c in columns]}
        shown = _row_object(obj, include, table_version)
        if shown is not None:
            row["object"] = shown
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{table_version}",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [c.definition() for c in columns],
        "rows": rows,
    }
