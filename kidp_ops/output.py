"""kubectl-style output: tables with printer columns, ages, json and yaml."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import yaml

from kidp_ops.cluster.base import ResourceKind
from kidp_ops.model.bundled import load_crds
from kidp_ops.times import human_age, parse_time


def _lookup(obj: Mapping[str, Any], path: str) -> Any:
    """A printer column's JSONPath (`.status.brokerRef.name`); None when absent."""
    value: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _cell(value: Any, column: Mapping[str, Any], now: datetime) -> str:
    if value is None or value == "":
        return "<none>"
    if column.get("type") == "date":
        when = parse_time(value)
        return human_age((now - when).total_seconds()) if when else "<unknown>"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def printer_columns(kind: ResourceKind) -> list[dict[str, Any]]:
    """The CRD's additionalPrinterColumns (a built-in kind gets only AGE)."""
    for crd in load_crds():
        if crd["metadata"]["name"] == kind.resource:
            version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
            return list(version.get("additionalPrinterColumns") or [])
    return [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]


def table(
    items: Sequence[Mapping[str, Any]],
    kind: ResourceKind,
    *,
    now: datetime,
    wide: bool = False,
    show_namespace: bool = False,
) -> str:
    columns = [c for c in printer_columns(kind) if wide or not c.get("priority")]
    header = (["NAMESPACE"] if show_namespace else []) + ["NAME"]
    header += [c["name"].upper() for c in columns]
    rows = [header]
    for item in items:
        meta = item.get("metadata", {})
        row = ([meta.get("namespace", "")] if show_namespace else []) + [meta.get("name", "")]
        row += [_cell(_lookup(item, c["jsonPath"]), c, now) for c in columns]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join(lines)


def as_list(items: Sequence[Mapping[str, Any]], resource_version: str = "") -> dict[str, Any]:
    """kubectl's `-o json` of several objects: a v1 List."""
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": resource_version},
        "items": list(items),
    }


def dump(obj: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(obj, indent=4, sort_keys=False)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump(obj, Dumper=dumper, sort_keys=False, default_flow_style=False)).rstrip()
