"""kubectl-style output: tables with printer columns, ages, json and yaml."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import yaml

from kidp_ops.cluster.apiserver_tables import columns_for
from kidp_ops.cluster.base import ResourceKind
from kidp_ops.model.bundled import load_crds


def _crd_of(kind: ResourceKind) -> dict[str, Any] | None:
    return next((c for c in load_crds() if c["metadata"]["name"] == kind.resource), None)


def _shown(value: Any) -> str:
    """A cell as kubectl prints it: a missing value is `<none>`."""
    if value is None:
        return "<none>"
    return value if isinstance(value, str) else str(value)


def table(
    items: Sequence[dict[str, Any]],
    kind: ResourceKind,
    *,
    now: datetime,
    wide: bool = False,
    show_namespace: bool = False,
) -> str:
    """`kubectl get`'s table: the columns the API server would send (a CRD's printer
    columns, kube-apiserver's for built-in kinds such as Events), `-o wide` adding those
    with a priority."""
    columns = [c for c in columns_for(kind, _crd_of(kind)) if wide or not c.priority]
    header = (["NAMESPACE"] if show_namespace else []) + [c.name.upper() for c in columns]
    rows = [header]
    for item in items:
        meta = item.get("metadata", {})
        row = [meta.get("namespace", "")] if show_namespace else []
        row += [_shown(c.cell(item, now)) for c in columns]
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
