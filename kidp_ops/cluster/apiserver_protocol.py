"""The wire format of the Kubernetes REST API, as the API facade speaks it.

Status objects for errors, discovery documents, request-body checks and the selectors a
list or watch may carry. No aiohttp application logic lives here (see `apiserver`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from kidp_ops.cluster.base import (
    BROKERS,
    CRDS,
    DATABASES,
    KNOWN_KINDS,
    ClusterError,
    Invalid,
    Manifest,
    ResourceKind,
)
from kidp_ops.cluster.fields import parse_field_selector
from kidp_ops.cluster.labels import parse_selector

VERSION_INFO: Manifest = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-kidp",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-04-17T00:00:00Z",
    "goVersion": "go1.22.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
STATUS_SUBRESOURCE_KINDS = frozenset({BROKERS, DATABASES, CRDS})
VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
_HTTP_REASONS = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
}
_HTTP_MESSAGES = {
    404: "the server could not find the requested resource",
    405: "the server does not allow this method on the requested resource",
}


class RequestRejected(Exception):
    """A request refused before it reaches the Cluster: bad body, media type, selector."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def status(self) -> Manifest:
        return status_object(code=self.code, reason=http_reason(self.code), message=self.message)


def http_reason(code: int) -> str:
    return _HTTP_REASONS.get(code, "InternalError" if code >= 500 else "BadRequest")


def http_failure(code: int, fallback: str) -> Manifest:
    """The Status for an error aiohttp raised itself (no route, wrong method)."""
    message = _HTTP_MESSAGES.get(code, fallback)
    return status_object(code=code, reason=http_reason(code), message=message)


# --- Status objects ----------------------------------------------------------------------


def status_object(
    *, code: int, reason: str, message: str, details: Manifest | None = None
) -> Manifest:
    status: Manifest = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
    }
    if message:
        status["message"] = message
    if reason:
        status["reason"] = reason
    if details:
        status["details"] = details
    status["code"] = code
    return status


def _details(kind: ResourceKind | None, name: str) -> Manifest:
    details: Manifest = {}
    if name:
        details["name"] = name
    if kind is not None:
        if kind.group:
            details["group"] = kind.group
        details["kind"] = kind.plural
    return details


def failure_status(exc: ClusterError, *, kind: ResourceKind | None, name: str) -> Manifest:
    """The Status a real API server sends for `exc` (Invalid: one cause per problem).

    Field paths lose their leading dot on the wire (`.spec.endpoint` -> `spec.endpoint`),
    as kube-apiserver writes them; the kube adapter puts the dot back.
    """
    details = _details(kind, name)
    if isinstance(exc, Invalid):
        details["causes"] = [_cause(p.field, p.message) for p in exc.problems]
    return status_object(code=exc.code, reason=exc.reason, message=exc.message, details=details)


def _cause(field: str, message: str) -> Manifest:
    cause: Manifest = {"reason": "FieldValueInvalid", "message": message}
    if field:
        cause["field"] = field.removeprefix(".")
    return cause


def success_status(kind: ResourceKind, name: str) -> Manifest:
    return status_object(code=200, reason="", message="", details=_details(kind, name))


# --- request bodies ------------------------------------------------------------------------


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestRejected(400, f"the request body is not valid JSON: {exc}") from None


async def read_object(request: web.Request, kind: ResourceKind) -> Manifest:
    """The JSON object of a create or update; apiVersion and kind default to the URL's."""
    media = request.content_type
    if "json" not in media and media != "application/octet-stream":
        raise RequestRejected(415, f"unsupported media type {media!r}: send application/json")
    body = _parse_json(await request.read())
    if not isinstance(body, dict):
        raise RequestRejected(400, "the request body must be a JSON object")
    api_version = body.setdefault("apiVersion", kind.api_version)
    kind_name = body.setdefault("kind", kind.kind)
    if (api_version, kind_name) != (kind.api_version, kind.kind):
        raise RequestRejected(
            400,
            f"the object ({api_version} {kind_name}) does not match the URL "
            f"({kind.api_version} {kind.kind})",
        )
    if not isinstance(body.setdefault("metadata", {}), dict):
        raise RequestRejected(400, "metadata must be a JSON object")
    return body


async def read_merge_patch(request: web.Request) -> Manifest:
    """A merge patch; a strategic merge patch is taken as one (custom resources have no
    patch strategies). JSON patch and server-side apply are refused with 415."""
    if request.content_type not in MERGE_PATCH_TYPES:
        accepted = ", ".join(MERGE_PATCH_TYPES)
        raise RequestRejected(
            415,
            f"the body of the request was in an unknown format ({request.content_type}) - "
            f"accepted media types include: {accepted}",
        )
    patch = _parse_json(await request.read())
    if not isinstance(patch, dict):
        raise RequestRejected(400, "a merge patch must be a JSON object")
    return patch


def flag(value: str | None) -> bool:
    return value in ("true", "1")


# --- selectors ---------------------------------------------------------------------------


def object_filter(
    kind: ResourceKind, query: Mapping[str, str]
) -> Callable[[Manifest], bool] | None:
    """The predicate of `labelSelector` and `fieldSelector`, or None when neither is set.
    A selector the Cluster would refuse is refused here with 400, as kube-apiserver does."""
    label_selector, field_selector = query.get("labelSelector"), query.get("fieldSelector")
    if not label_selector and not field_selector:
        return None
    try:
        labels = parse_selector(label_selector)
        fields = parse_field_selector(kind, field_selector)
    except Invalid as exc:
        raise RequestRejected(400, exc.message) from None
    return lambda obj: fields(obj) and labels((obj.get("metadata") or {}).get("labels") or {})


# --- discovery ---------------------------------------------------------------------------


def api_prefix(kind: ResourceKind) -> str:
    return f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"


def group_versions() -> list[tuple[str, str]]:
    """(group, version) of every API group served, in first-seen order; core excluded."""
    seen = dict.fromkeys((k.group, k.version) for k in KNOWN_KINDS if k.group)
    return list(seen)


def _resources(kind: ResourceKind) -> list[Manifest]:
    entry: Manifest = {
        "name": kind.plural,
        "singularName": kind.singular,
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": list(VERBS),
    }
    if kind.short_names:
        entry["shortNames"] = list(kind.short_names)
    entries = [entry]
    if kind in STATUS_SUBRESOURCE_KINDS:
        entries.append(
            {
                "name": f"{kind.plural}/status",
                "singularName": "",
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    return entries


NAMESPACES_RESOURCE: Manifest = {
    "name": "namespaces",
    "singularName": "namespace",
    "namespaced": False,
    "kind": "Namespace",
    "verbs": ["create", "get", "list"],
    "shortNames": ["ns"],
}


def resource_list(group_version: str) -> Manifest:
    """APIResourceList of `/api/v1` (with the implicit namespaces) or `/apis/{group}/{version}`."""
    resources = [r for k in KNOWN_KINDS if k.api_version == group_version for r in _resources(k)]
    if group_version == "v1":
        resources.insert(0, NAMESPACES_RESOURCE)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def api_group(group: str) -> Manifest:
    versions = [
        {"groupVersion": f"{g}/{v}", "version": v} for g, v in group_versions() if g == group
    ]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }


def group_list() -> Manifest:
    groups = list(dict.fromkeys(g for g, _ in group_versions()))
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group(g) for g in groups]}


def api_versions(server_address: str) -> Manifest:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def namespace_object(name: str) -> Manifest:
    """Namespaces are implicit in the port: every one exists and is Active."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


# --- OpenAPI v3: just enough for kubectl -------------------------------------------------------


def openapi_root() -> Manifest:
    """`/openapi/v3`: where each group version's document is."""
    group_versions_served = ["v1", *(f"{g}/{v}" for g, v in group_versions())]
    paths = {}
    for group_version in group_versions_served:
        relative = "api/v1" if group_version == "v1" else f"apis/{group_version}"
        paths[relative] = {"serverRelativeURL": f"/openapi/v3/{relative}"}
    return {"paths": paths}


def openapi_document(group_version: str) -> Manifest:
    """A group version's OpenAPI v3 document, reduced to what kubectl looks for before
    `apply`/`create`: each kind's PATCH accepts `fieldValidation`, so kubectl leaves the
    validation to the server (the Cluster validates every write) instead of asking for
    schemas. No component schemas are published."""
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
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION_INFO["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }
