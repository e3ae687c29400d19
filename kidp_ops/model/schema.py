"""A CRD's openAPIV3Schema as a validator and defaulter: the one source of truth.

The API server prunes or rejects unknown fields, applies `default`s, then validates. This
module does the same with jsonschema, and turns each error into a `FieldProblem` with a
kubectl-style path (`.spec.capabilities[0].resourceType`) and what is allowed.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from kidp_ops.errors import FieldProblem

# jsonschema imports `rfc3987_syntax` when it is installed (Jupyter's dependencies bring it
# in the dev install) to check the "iri" format, which no CRD uses; that import builds a
# grammar for 2.5 s, in every command that validates. It is kept out while jsonschema
# loads, and importable again afterwards for whoever else wants it.
_KEPT_OUT = "rfc3987_syntax"
_keeping_out = _KEPT_OUT not in sys.modules
if _keeping_out:
    sys.modules[_KEPT_OUT] = None  # type: ignore[assignment]  # import raises ImportError
try:
    import jsonschema
finally:
    if _keeping_out:
        del sys.modules[_KEPT_OUT]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")
_INTEGER_FORMATS = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_METADATA_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "labels",
        "annotations",
        "finalizers",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "ownerReferences",
        "managedFields",
        "selfLink",
    }
)


def json_path(parts: Iterable[str | int]) -> str:
    """`('spec', 'capabilities', 0, 'resourceType')` -> `.spec.capabilities[0].resourceType`."""
    out = []
    for part in parts:
        out.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(out)


def _to_json_schema(node: Any) -> Any:
    """Translate OpenAPI v3 (Kubernetes flavour) into JSON Schema draft 7."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {k: _to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_to_json_schema(v) for v in value]
        elif key == "nullable" or key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = value
    _exclusive_bounds(out)
    bounds = (
        _INTEGER_FORMATS.get(str(node.get("format"))) if node.get("type") == "integer" else None
    )
    if bounds is not None:  # the API server range-checks int32/int64 fields
        out["minimum"] = max(out.get("minimum", bounds[0]), bounds[0])
        out["maximum"] = min(out.get("maximum", bounds[1]), bounds[1])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        out.pop("type", None)
    closed = (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    )
    if closed:
        out["additionalProperties"] = False
    return out


def _exclusive_bounds(schema: dict[str, Any]) -> None:
    """OpenAPI 3.0 (a CRD) marks `minimum`/`maximum` exclusive with a boolean
    `exclusiveMinimum`/`exclusiveMaximum`; JSON Schema draft 7 holds the bound there."""
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(schema.get(flag), bool) and schema.pop(flag) and bound in schema:
            schema[flag] = schema.pop(bound)


def _is_integer(checker: Any, instance: Any) -> bool:
    """JSON integers only: `1e30` or `30.0` is a number, as the API server sees it."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def defaults_only(node: Any) -> dict[str, Any] | None:
    """The part of a schema node that `apply_defaults` needs: the nodes with a `default`
    at or beneath them, None when there is none. Walking it instead of the whole schema
    skips most of a manifest (status has no defaults at all)."""
    if not isinstance(node, Mapping):
        return None
    pruned: dict[str, Any] = {"default": node["default"]} if "default" in node else {}
    props = {}
    for name, sub in (node.get("properties") or {}).items():
        kept = defaults_only(sub)
        if kept is not None:
            props[name] = kept
    if props:
        pruned["properties"] = props
    for key in ("additionalProperties", "items"):
        kept = defaults_only(node.get(key))
        if kept is not None:
            pruned[key] = kept
    return pruned or None


def apply_defaults(node: Mapping[str, Any], value: Any) -> None:
    """Fill absent fields with the schema's `default`, recursively, in place (as the API
    server does before validating)."""
    if isinstance(value, dict):
        for name, sub in (node.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                apply_defaults(sub, value[name])
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for item in value.values():
                apply_defaults(extra, item)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            apply_defaults(node["items"], item)


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:57] + "..."


def _must_sentence(description: str) -> str:
    """The part of a field description that says what is allowed."""
    for sentence in re.split(r"(?<=[.;])\s+", description):
        if "must" in sentence.lower():
            return sentence.strip().rstrip(".;")
    return description.strip().rstrip(".")


def _describe(error: Any) -> tuple[list[str | int], str]:
    """A jsonschema ValidationError as (path parts, message a person understands)."""
    path: list[str | int] = list(error.absolute_path)
    kind, schema, instance = error.validator, error.schema, error.instance
    allowed = schema.get("description", "")
    if kind == "required":
        missing = [n for n in error.validator_value if n not in instance]
        path.append(missing[0] if missing else "?")
        return path, "required field is missing"
    if kind == "additionalProperties":
        known = sorted((schema.get("properties") or {}).keys())
        extras = sorted(k for k in instance if k not in known)
        path.append(extras[0] if extras else "?")
        return path, f"unknown field (allowed: {', '.join(known)})"
    if kind == "enum":
        choices = ", ".join(str(v) for v in error.validator_value)
        return path, f"{_show(instance)} is not allowed (allowed: {choices})"
    if kind == "pattern":
        hint = f" ({_must_sentence(allowed)})" if allowed else ""
        return path, f"{_show(instance)} must match {error.validator_value}{hint}"
    if kind == "minimum":
        return path, f"{_show(instance)} is below the minimum {error.validator_value}"
    if kind == "exclusiveMinimum":
        return path, f"{_show(instance)} must be above {error.validator_value}"
    if kind == "maximum":
        return path, f"{_show(instance)} is above the maximum {error.validator_value}"
    if kind == "exclusiveMaximum":
        return path, f"{_show(instance)} must be below {error.validator_value}"
    if kind == "type":
        got = type(instance).__name__.replace("NoneType", "null").replace("dict", "object")
        got = got.replace("list", "array").replace("str", "string").replace("bool", "boolean")
        scalar = isinstance(instance, int | float | bool)
        quote = error.validator_value == "string" and scalar
        hint = f' (quote it: "{instance}")' if quote else ""
        return path, f"{_show(instance)} is {got}, expected {error.validator_value}{hint}"
    if kind == "minLength" and error.validator_value == 1:
        return path, "must not be empty"
    if kind == "format":
        return path, f"{_show(instance)} is not a valid {error.validator_value}"
    return path, str(error.message)


class ResourceSchema:
    """Validator and defaulter built from one CRD version's `openAPIV3Schema`."""

    def __init__(self, openapi: Mapping[str, Any]) -> None:
        self.openapi = openapi
        self._defaults = defaults_only(openapi) or {}
        closed = dict(_to_json_schema(dict(openapi)))
        props = dict(closed.get("properties") or {})
        for name in _ROOT_FIELDS:
            props.setdefault(name, {})
        props["metadata"] = {"type": "object"}  # checked by check_metadata, as the server does
        closed["properties"] = props
        self._validator = _Validator(closed, format_checker=_Validator.FORMAT_CHECKER)

    @classmethod
    def from_crd(cls, crd: Mapping[str, Any], version: str | None = None) -> ResourceSchema:
        versions = crd["spec"]["versions"]
        chosen = next(
            (v for v in versions if (v["name"] == version if version else v.get("storage"))),
            versions[0],
        )
        return cls(chosen["schema"]["openAPIV3Schema"])

    def default(self, manifest: dict[str, Any]) -> None:
        apply_defaults(self._defaults, manifest)

    def subschema(self, *path: str) -> Mapping[str, Any]:
        """The OpenAPI node at `path` (e.g. `("spec", "healthCheck")`), `{}` when absent."""
        node: Mapping[str, Any] = self.openapi
        for part in path:
            node = (node.get("properties") or {}).get(part) or {}
        return node

    def problems(self, manifest: Mapping[str, Any]) -> list[FieldProblem]:
        found = []
        for error in sorted(self._validator.iter_errors(manifest), key=lambda e: list(e.path)):
            path, message = _describe(error)
            found.append(FieldProblem(json_path(path), message))
        return found


def check_metadata(manifest: Mapping[str, Any], *, namespaced: bool) -> list[FieldProblem]:
    """What the API server checks of every object's metadata."""
    meta = manifest.get("metadata")
    if not isinstance(meta, dict):
        return [FieldProblem(".metadata", "required field is missing (an object with a name)")]
    found = []
    name, generate = meta.get("name"), meta.get("generateName")
    if not name and not generate:
        found.append(FieldProblem(".metadata.name", "required field is missing"))
    elif name is not None and (
        not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name)
    ):
        found.append(
            FieldProblem(
                ".metadata.name",
                f"{_show(name)} is not a valid name (lower-case letters, digits, '-' and '.', "
                "starting and ending with a letter or digit, at most 253 characters)",
            )
        )
    namespace = meta.get("namespace")
    if namespace is not None and not namespaced:
        found.append(FieldProblem(".metadata.namespace", "not allowed on a cluster-scoped kind"))
    elif namespace is not None and (
        not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.match(namespace)
    ):
        found.append(
            FieldProblem(
                ".metadata.namespace",
                f"{_show(namespace)} is not a valid namespace (lower-case letters, digits and "
                "'-', at most 63 characters)",
            )
        )
    for key in ("labels", "annotations"):
        found.extend(_check_string_map(meta.get(key), f".metadata.{key}"))
    for field in sorted(set(meta) - _METADATA_FIELDS):
        found.append(FieldProblem(f".metadata.{field}", "unknown field"))
    return found


def _check_string_map(value: Any, path: str) -> list[FieldProblem]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [FieldProblem(path, f"{_show(value)} is {type(value).__name__}, expected object")]
    return [
        FieldProblem(f"{path}.{k}", f"{_show(v)} must be a string")
        for k, v in value.items()
        if not isinstance(v, str)
    ]
