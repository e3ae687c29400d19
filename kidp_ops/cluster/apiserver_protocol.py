"""The wire format of the Kubernetes REST API, as the API facade speaks it.

Status objects for errors, request-body and patch checks, content negotiation (`Accept`)
and the selectors a list or watch may carry. No aiohttp application logic lives here (see
`apiserver`); discovery and OpenAPI documents are in `apiserver_discovery`/`_openapi`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kidp_ops import boundedjson
from kidp_ops.cluster.base import PLATFORM_KINDS, ClusterError, Invalid, Manifest, ResourceKind
from kidp_ops.cluster.fields import parse_field_selector
from kidp_ops.cluster.labels import parse_selector

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
_HTTP_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
}
_HTTP_MESSAGES = {
    401: "Unauthorized",
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


def _details(kind: ResourceKind | None, name: str, *, by_kind: bool = False) -> Manifest:
    """Status details: the object's name, group and kind; kube-apiserver names the kind
    by its resource (`brokers`) except in Invalid, where it is the Kind (`Broker`), so
    kubectl prints `The Broker "b1" is invalid`."""
    details: Manifest = {}
    if name:
        details["name"] = name
    if kind is not None:
        if kind.group:
            details["group"] = kind.group
        details["kind"] = kind.kind if by_kind else kind.plural
    return details


def failure_status(exc: ClusterError, *, kind: ResourceKind | None, name: str) -> Manifest:
    """The Status a real API server sends for `exc` (Invalid: one cause per problem).

    Field paths lose their leading dot on the wire (`.spec.endpoint` -> `spec.endpoint`),
    as kube-apiserver writes them; the kube adapter puts the dot back.
    """
    details = _details(kind, name, by_kind=isinstance(exc, Invalid))
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


MAX_BODY_DEPTH = 500  # nesting; deep enough for any CRD schema, shallow enough for `json`


def _parse_json(raw: bytes) -> Any:
    """The body's JSON (its size is bounded by the server): 400 for anything else,
    including nesting Python's parser would overflow on."""
    try:
        return boundedjson.loads(raw, max_bytes=len(raw), max_depth=MAX_BODY_DEPTH)
    except boundedjson.UntrustedJSON as exc:
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


@dataclass(frozen=True, slots=True)
class Patch:
    """A PATCH request's body and its type (one of the *_PATCH media types)."""

    media_type: str
    body: Any


def _accepted_patch_types(kind: ResourceKind) -> tuple[str, ...]:
    """What kube-apiserver accepts: no strategic merge patch for custom resources."""
    if kind in PLATFORM_KINDS:
        return (JSON_PATCH, MERGE_PATCH)
    return (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)


async def read_patch(request: web.Request, kind: ResourceKind) -> Patch:
    """The body of a PATCH, checked against what `kind` accepts.

    Server-side apply is refused with 415 and a line saying what to use instead; a
    strategic merge patch of a custom resource is refused with kube-apiserver's own 415.
    """
    media = request.content_type
    if media == APPLY_PATCH:
        raise RequestRejected(
            415,
            "server-side apply is not supported by the kidp-ops API: use client-side "
            "apply (kubectl apply without --server-side)",
        )
    accepted = _accepted_patch_types(kind)
    if media not in accepted:
        raise RequestRejected(
            415,
            f"the body of the request was in an unknown format - accepted media types "
            f"include: {', '.join(accepted)}",
        )
    body = _parse_json(await request.read())
    if media == JSON_PATCH:
        if not isinstance(body, list):
            raise RequestRejected(400, "a JSON patch must be a JSON array of operations")
    elif not isinstance(body, dict):
        raise RequestRejected(400, "a merge patch must be a JSON object")
    return Patch(media, body)


def refuse_dry_run(query: Mapping[str, str]) -> None:
    """A dry run would write for real here: refuse it rather than ignore it."""
    if query.get("dryRun"):
        raise RequestRejected(400, "dry run is not supported by the kidp-ops API")


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


# --- content negotiation -------------------------------------------------------------------

PLAIN = ("", "", "")  # (as, g, v) of plain JSON


def media_preferences(accept: str | None) -> list[tuple[str, str, str]]:
    """The JSON forms a client accepts, in its order, as (as, g, v); PLAIN for plain JSON.

    `application/json;as=Table;v=v1;g=meta.k8s.io` -> ("Table", "meta.k8s.io", "v1").
    Other media types (YAML, protobuf) are left out: the facade speaks JSON only."""
    if not accept or not accept.strip():
        return [PLAIN]
    preferences = []
    for media_range in accept.split(","):
        media, *raw_params = (part.strip() for part in media_range.split(";"))
        if media.lower() not in ("application/json", "application/*", "*/*"):
            continue
        params = dict(p.partition("=")[::2] for p in raw_params if "=" in p)
        preferences.append((params.get("as", ""), params.get("g", ""), params.get("v", "")))
    return preferences


def negotiate(accept: str | None, offers: Mapping[tuple[str, str, str], str]) -> str:
    """The offer for the first form the client accepts (plain JSON is offered as PLAIN);
    406 when there is none."""
    for preference in media_preferences(accept):
        if preference in offers:
            return offers[preference]
    raise RequestRejected(406, f"only application/json is served, not {accept!r}")
