"""OpenAPI documents of the API facade, built from the CRDs stored in the Cluster.

kubectl reads them for `kubectl explain` and before `apply`/`create`:

- v3 (`/openapi/v3`, then one document per group version), read by kubectl 1.27 and
  newer. Each custom kind's schema is its CRD's `openAPIV3Schema` with `metadata` pointing
  at ObjectMeta and the `x-kubernetes-group-version-kind` kubectl looks schemas up by, as
  kube-apiserver publishes them. Every kind's PATCH path declares the `fieldValidation`
  parameter, so kubectl leaves validation to the server (the Cluster validates every write).
- v2 (`/openapi/v2`), read by kubectl before 1.27 (Debian's 1.20) for `explain` and for
  its client-side validation of `apply`/`create`. Those clients ask for the protobuf form
  (`openapi_protobuf`); a client asking for JSON gets JSON. The schemas are the v3 ones
  with what Swagger 2.0 cannot say left out (`nullable`, `anyOf`, `oneOf`, `not`), as
  kube-apiserver does for CRDs.

Only the custom kinds have schemas: the built-in ones (Secret, Event, Lease, CRD) are
served without, so `kubectl explain secrets` has nothing to show and kubectl 1.20 skips
its client-side check of them (the server still validates).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from kidp_ops.cluster.apiserver_discovery import VERSION_INFO, api_prefix, group_versions
from kidp_ops.cluster.base import KNOWN_KINDS, Manifest

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_V2_UNSUPPORTED = frozenset({"nullable", "anyOf", "oneOf", "not"})
_META_DESCRIPTION = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)


def _strings(description: str) -> Manifest:
    return {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": description,
    }


def _text(description: str, **extra: str) -> Manifest:
    return {"type": "string", "description": description, **extra}


def _int64(description: str) -> Manifest:
    return {"type": "integer", "format": "int64", "description": description}


# Every field of ObjectMeta (so kubectl 1.20's client-side check accepts any metadata a
# server would), documented in a line each for `kubectl explain broker.metadata`.
OBJECT_META_SCHEMA: Manifest = {
    "type": "object",
    "description": "ObjectMeta is metadata that all persisted resources must have.",
    "properties": {
        "annotations": _strings("Unstructured key value map set by external tools."),
        "creationTimestamp": _text("When the server created the object.", format="date-time"),
        "deletionGracePeriodSeconds": _int64("Seconds allowed to terminate gracefully."),
        "deletionTimestamp": _text("When the object will be deleted.", format="date-time"),
        "finalizers": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Must be empty before the object is deleted from the registry.",
        },
        "generateName": _text("Prefix of a server-generated name, used when name is empty."),
        "generation": _int64("A sequence number representing a generation of the spec."),
        "labels": _strings("Key value pairs used to organize and select objects."),
        "managedFields": {"type": "array", "items": {"type": "object"}},
        "name": _text("Name, unique within a namespace."),
        "namespace": _text("The namespace the name is unique in."),
        "ownerReferences": {
            "type": "array",
            "items": {"type": "object"},
            "description": "Objects this object depends on.",
        },
        "resourceVersion": _text("The version of the object, for optimistic concurrency."),
        "selfLink": _text("Deprecated; not set by the server."),
        "uid": _text("Unique in time and space for this object."),
    },
}


def schema_name(crd: Manifest) -> str:
    """kube-apiserver's name for a CRD kind's schema: `com.company.platform.v1.Broker`."""
    spec = crd["spec"]
    group = ".".join(reversed(spec["group"].split(".")))
    return f"{group}.{_served_version(crd)['name']}.{spec['names']['kind']}"


def _served_version(crd: Manifest) -> Manifest:
    versions = crd["spec"]["versions"]
    return next((v for v in versions if v.get("storage")), versions[0])


def _kind_schema(crd: Manifest, *, meta_ref: str, v2: bool) -> Manifest:
    schema = copy.deepcopy(_served_version(crd).get("schema", {}).get("openAPIV3Schema") or {})
    schema.setdefault("type", "object")
    properties = schema.setdefault("properties", {})
    if v2:
        properties["metadata"] = {"$ref": meta_ref, "description": _META_DESCRIPTION}
        schema = _swagger2(schema)
    else:
        properties["metadata"] = {"allOf": [{"$ref": meta_ref}], "description": _META_DESCRIPTION}
    schema["x-kubernetes-group-version-kind"] = [
        {
            "group": crd["spec"]["group"],
            "version": _served_version(crd)["name"],
            "kind": crd["spec"]["names"]["kind"],
        }
    ]
    return schema


def _swagger2(schema: Any) -> Any:
    """The schema without the keywords Swagger 2.0 lacks (recursively)."""
    if isinstance(schema, list):
        return [_swagger2(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned = {}
    for key, value in schema.items():
        if key in _V2_UNSUPPORTED:
            continue
        if key in ("properties", "patternProperties"):
            cleaned[key] = {name: _swagger2(s) for name, s in value.items()}
        elif key in ("items", "additionalProperties", "allOf"):
            cleaned[key] = _swagger2(value)
        else:
            cleaned[key] = value
    return cleaned


# --- v3 -----------------------------------------------------------------------------------


def _served_group_versions() -> list[str]:
    return ["v1", *(f"{g}/{v}" for g, v in group_versions())]


def v3_root() -> Manifest:
    """`/openapi/v3`: where each group version's document is."""
    paths = {}
    for group_version in _served_group_versions():
        relative = "api/v1" if group_version == "v1" else f"apis/{group_version}"
        paths[relative] = {"serverRelativeURL": f"/openapi/v3/{relative}"}
    return {"paths": paths}


def v3_relative_paths() -> list[tuple[str, str]]:
    """(the path of a group version's v3 document, the group version)."""
    return [
        (f"/openapi/v3/{'api/v1' if gv == 'v1' else f'apis/{gv}'}", gv)
        for gv in _served_group_versions()
    ]


def _patch_paths(group_version: str) -> Manifest:
    paths: Manifest = {}
    for kind in KNOWN_KINDS:
        if kind.api_version != group_version:
            continue
        scope = "/namespaces/{namespace}" if kind.namespaced else ""
        paths[f"{api_prefix(kind)}{scope}/{kind.plural}/{{name}}"] = {
            "patch": {
                "x-kubernetes-group-version-kind": {
                    "group": kind.group,
                    "version": kind.version,
                    "kind": kind.kind,
                },
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return paths


def v3_document(group_version: str, crds: Iterable[Manifest]) -> Manifest:
    """A group version's OpenAPI v3 document: its kinds' PATCH paths and CRD schemas."""
    schemas: Manifest = {}
    for crd in crds:
        spec = crd.get("spec") or {}
        if f"{spec.get('group')}/{_served_version(crd).get('name')}" == group_version:
            ref = f"#/components/schemas/{OBJECT_META}"
            schemas[schema_name(crd)] = _kind_schema(crd, meta_ref=ref, v2=False)
    if schemas:
        schemas[OBJECT_META] = OBJECT_META_SCHEMA
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION_INFO["gitVersion"]},
        "paths": _patch_paths(group_version),
        "components": {"schemas": schemas},
    }


# --- v2 -----------------------------------------------------------------------------------


def v2_document(crds: Iterable[Manifest]) -> Manifest:
    """The Swagger 2.0 document: the custom kinds' schemas and ObjectMeta."""
    definitions: Manifest = {OBJECT_META: OBJECT_META_SCHEMA}
    for crd in crds:
        ref = f"#/definitions/{OBJECT_META}"
        definitions[schema_name(crd)] = _kind_schema(crd, meta_ref=ref, v2=True)
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": VERSION_INFO["gitVersion"]},
        "paths": {},
        "definitions": definitions,
    }
