"""Kubernetes field selectors: parsing and matching (`involvedObject.name=db1,type!=Normal`).

Which fields a kind can be selected by is the API server's choice, not the client's, so
this module holds kube-apiserver's table: every kind offers `metadata.name` (and
`metadata.namespace` when namespaced); core Events add their `involvedObject.*`, `reason`,
`reportingComponent`, `source` and `type`, which is how `kubectl describe` finds an
object's Events; Secrets add `type`. Any other field is refused as kube-apiserver refuses
it (`field label not supported: spec.region`), so a selector that works against the
embedded store works against a cluster, and the other way round.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from kidp_ops.cluster.base import EVENTS, SECRETS, Invalid, Manifest, ResourceKind

Matcher = Callable[[Manifest], bool]

_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "involvedObject.kind": ("involvedObject", "kind"),
    "involvedObject.namespace": ("involvedObject", "namespace"),
    "involvedObject.name": ("involvedObject", "name"),
    "involvedObject.uid": ("involvedObject", "uid"),
    "involvedObject.apiVersion": ("involvedObject", "apiVersion"),
    "involvedObject.resourceVersion": ("involvedObject", "resourceVersion"),
    "involvedObject.fieldPath": ("involvedObject", "fieldPath"),
    "reason": ("reason",),
    "reportingComponent": ("reportingComponent",),
    "source": ("source", "component"),
    "type": ("type",),
}
_KIND_FIELDS: dict[ResourceKind, dict[str, tuple[str, ...]]] = {
    EVENTS: _EVENT_FIELDS,
    SECRETS: {"type": ("type",)},
}
# A term: key, operator, value; `\,` `\=` `\!` and `\\` escape inside values.
_TERM = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(!=|==|=)(.*)$", re.DOTALL)
_ESCAPE = re.compile(r"\\(.)")


def selectable_fields(kind: ResourceKind) -> dict[str, tuple[str, ...]]:
    """Field name -> path into the object, for every field `kind` can be selected by."""
    fields: dict[str, tuple[str, ...]] = {"metadata.name": ("metadata", "name")}
    if kind.namespaced:
        fields["metadata.namespace"] = ("metadata", "namespace")
    fields.update(_KIND_FIELDS.get(kind, {}))
    return fields


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not escaped with a backslash."""
    terms: list[str] = []
    current: list[str] = []
    escaped = False
    for char in selector:
        if char == "," and not escaped:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
        escaped = char == "\\" and not escaped
    terms.append("".join(current))
    return [t for t in terms if t.strip()]


def _value(obj: Mapping[str, Any], path: tuple[str, ...]) -> str:
    """The field as the API server compares it: a missing field is the empty string."""
    value: Any = obj
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def _term(kind: ResourceKind, term: str, fields: dict[str, tuple[str, ...]]) -> Matcher:
    match = _TERM.match(term)
    if match is None:
        raise Invalid(
            f"invalid field selector term {term.strip()!r} (allowed: field=value, "
            "field==value, field!=value)"
        )
    key, operator, raw = match.groups()
    path = fields.get(key)
    if path is None:
        allowed = ", ".join(fields)
        raise Invalid(
            f"field label not supported: {key} ({kind.resource} can be selected by {allowed})"
        )
    wanted = _ESCAPE.sub(r"\1", raw.strip())
    if operator == "!=":
        return lambda obj: _value(obj, path) != wanted
    return lambda obj: _value(obj, path) == wanted


def parse_field_selector(kind: ResourceKind, selector: str | None) -> Matcher:
    """A predicate over objects of `kind`; an empty selector matches everything.

    Raises Invalid (naming the fields `kind` offers) for a field it cannot be selected by.
    """
    if not selector or not selector.strip():
        return lambda obj: True
    fields = selectable_fields(kind)
    matchers = [_term(kind, t, fields) for t in _split_terms(selector)]
    return lambda obj: all(m(obj) for m in matchers)
