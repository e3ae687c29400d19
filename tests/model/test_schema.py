"""A CRD's OpenAPI schema as validator and defaulter (`model/schema.py`), on a schema of
the test's own: the translation to JSON Schema, defaulting, every kind of message, and the
metadata rules every object obeys. (The bundled CRDs' shapes are tested elsewhere.)"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kidp_ops.errors import FieldProblem
from kidp_ops.kinds import BROKERS, DATABASES
from kidp_ops.model import manifests
from kidp_ops.model.bundled import crd_schema
from kidp_ops.model.convert import json_copy
from kidp_ops.model.schema import (
    ResourceSchema,
    apply_defaults,
    check_metadata,
    defaults_only,
    json_path,
)
from tests.conftest import REPO

SPEC: dict[str, Any] = {
    "type": "object",
    "required": ["endpoint"],
    "properties": {
        "endpoint": {
            "type": "string",
            "pattern": "^https?://",
            "description": "Where the widget listens. It must start with http:// or https://.",
        },
        "code": {"type": "string", "pattern": "^[A-Z]+$"},
        "size": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
        "ratio": {
            "type": "number",
            "minimum": 0,
            "exclusiveMinimum": True,
            "maximum": 1,
            "exclusiveMaximum": True,
        },
        "share": {"type": "number", "minimum": 0, "exclusiveMinimum": False},
        "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
        "name": {"type": "string", "minLength": 1},
        "label": {"type": "string", "minLength": 2},
        "address": {"type": "string", "format": "ipv4"},
        "version": {"type": "string"},
        "enabled": {"type": "boolean"},
        "port": {"x-kubernetes-int-or-string": True},
        "note": {"type": "string", "nullable": True},
        "extra": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"known": {"type": "string"}},
        },
        "tags": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"weight": {"type": "integer", "default": 1}},
            },
        },
        "checks": {
            "type": "array",
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "default": "/health"},
                    "interval": {"type": "integer", "default": 10},
                },
            },
        },
        "limits": {
            "type": "object",
            "default": {},
            "properties": {"cpu": {"type": "integer", "default": 2}},
        },
        "options": {
            "type": "object",
            "properties": {"retries": {"type": "integer", "default": 5}},
        },
    },
}
WIDGET: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": SPEC,
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    },
}


def widget(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"endpoint": "http://w:80", **spec}
    return {
        "apiVersion": "test.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "default"},
        "spec": body,
    }


@pytest.fixture(scope="module")
def schema() -> ResourceSchema:
    return ResourceSchema(WIDGET)


def problems(schema: ResourceSchema, **spec: Any) -> list[tuple[str, str]]:
    return [(p.field, p.message) for p in schema.problems(widget(**spec))]


# --- paths ----------------------------------------------------------------------------


def test_json_path_is_kubectls() -> None:
    assert json_path(["spec", "capabilities", 0, "resourceType"]) == (
        ".spec.capabilities[0].resourceType"
    )
    assert json_path([]) == ""


# --- translation: what the OpenAPI flavour means --------------------------------------


def test_a_valid_object_has_no_problems(schema: ResourceSchema) -> None:
    full = widget(
        code="ABC",
        size=10,
        ratio=0.5,
        share=0,
        color="blue",
        name="n",
        label="ab",
        address="10.0.0.1",
        enabled=False,
        note=None,
        port=8080,
        tags={"a": {"weight": 2}},
        checks=[{"path": "/ready"}],
    )
    full["status"] = {"phase": "Ready"}
    assert schema.problems(full) == []


def test_objects_with_properties_are_closed_unless_they_preserve_unknown_fields(
    schema: ResourceSchema,
) -> None:
    assert problems(schema, extra={"known": "x", "anything": {"goes": 1}}) == []
    unknown = problems(schema, colour="red")
    assert unknown == [
        (
            ".spec.colour",
            "unknown field (allowed: address, checks, code, color, enabled, endpoint, extra, "
            "label, limits, name, note, options, port, ratio, share, size, tags, version)",
        )
    ]
    assert problems(schema, tags={"a": {"weight": 1, "height": 2}}) == [
        (".spec.tags.a.height", "unknown field (allowed: weight)")
    ]


def test_int_or_string_takes_either(schema: ResourceSchema) -> None:
    assert problems(schema, port=8080) == problems(schema, port="http") == []
    assert [field for field, _ in problems(schema, port=1.5)] == [".spec.port"]


def test_nullable_admits_null_only_where_it_is_said(schema: ResourceSchema) -> None:
    assert problems(schema, note=None) == []
    assert problems(schema, version=None) == [(".spec.version", "None is null, expected string")]


def test_the_root_admits_apiversion_kind_and_any_metadata_and_nothing_else(
    schema: ResourceSchema,
) -> None:
    manifest = widget()
    manifest["metadata"]["Whatever"] = 1  # check_metadata's business, not the schema's
    assert schema.problems(manifest) == []
    manifest["extra"] = True
    assert [p.field for p in schema.problems(manifest)] == [".extra"]


def test_from_crd_picks_the_storage_version_or_the_one_named() -> None:
    def version(name: str, *, storage: bool, field: str) -> dict[str, Any]:
        openapi = {"type": "object", "properties": {field: {"type": "string"}}}
        return {"name": name, "storage": storage, "schema": {"openAPIV3Schema": openapi}}

    crd = {
        "spec": {
            "versions": [
                version("v1alpha1", storage=False, field="old"),
                version("v1", storage=True, field="new"),
            ]
        }
    }
    stored, named = ResourceSchema.from_crd(crd), ResourceSchema.from_crd(crd, "v1alpha1")
    assert stored.problems({"new": "x"}) == [] and stored.problems({"old": "x"})
    assert named.problems({"old": "x"}) == [] and named.problems({"new": "x"})
    assert stored.subschema("new") == {"type": "string"}
    assert stored.subschema("missing", "deeper") == {}


# --- defaulting -----------------------------------------------------------------------


def test_defaults_fill_absent_fields_at_every_depth(schema: ResourceSchema) -> None:
    manifest = widget(tags={"a": {}, "b": {"weight": 7}}, checks=[{}, {"interval": 30}])
    schema.default(manifest)
    spec = manifest["spec"]
    assert (spec["size"], spec["color"]) == (3, "red")
    assert spec["tags"] == {"a": {"weight": 1}, "b": {"weight": 7}}  # map values
    assert spec["checks"] == [
        {"path": "/health", "interval": 10},
        {"path": "/health", "interval": 30},
    ]  # list items
    assert spec["limits"] == {"cpu": 2}  # a defaulted object is defaulted in turn
    assert "options" not in spec  # no default of its own: its fields wait for it to exist


def test_defaults_keep_what_is_set_and_are_copies() -> None:
    node = {"type": "object", "properties": {"list": {"type": "array", "default": []}}}
    one: dict[str, Any] = {}
    two: dict[str, Any] = {}
    apply_defaults(node, one)
    apply_defaults(node, two)
    one["list"].append("x")
    assert two == {"list": []} and node["properties"]["list"]["default"] == []
    kept = {"list": ["mine"]}
    apply_defaults(node, kept)
    assert kept == {"list": ["mine"]}
    apply_defaults(node, "not an object")  # nothing to fill, no error


def test_defaulting_then_validating_a_sparse_object(schema: ResourceSchema) -> None:
    sparse = widget()
    before = copy.deepcopy(sparse)
    assert schema.problems(sparse) == []
    assert sparse == before  # validating does not default
    schema.default(sparse)
    assert sparse != before and schema.problems(sparse) == []


# --- every kind of message ------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"endpoint": None}, ".spec.endpoint", "None is null, expected string"),
        ({"size": "3"}, ".spec.size", '"3" is string, expected integer'),
        ({"version": 2}, ".spec.version", '2 is int, expected string (quote it: "2")'),
        ({"version": True}, ".spec.version", 'True is boolean, expected string (quote it: "True")'),
        ({"version": 1.5}, ".spec.version", '1.5 is float, expected string (quote it: "1.5")'),
        ({"enabled": "yes"}, ".spec.enabled", '"yes" is string, expected boolean'),
        ({"tags": []}, ".spec.tags", "[] is array, expected object"),
        ({"checks": {}}, ".spec.checks", "{} is object, expected array"),
        ({"color": "green"}, ".spec.color", '"green" is not allowed (allowed: red, blue)'),
        (
            {"endpoint": "ftp://x"},
            ".spec.endpoint",
            '"ftp://x" must match ^https?:// (It must start with http:// or https://)',
        ),
        ({"code": "abc"}, ".spec.code", '"abc" must match ^[A-Z]+$'),
        ({"size": 0}, ".spec.size", "0 is below the minimum 1"),
        ({"size": 11}, ".spec.size", "11 is above the maximum 10"),
        ({"ratio": 0}, ".spec.ratio", "0 must be above 0"),
        ({"ratio": 1}, ".spec.ratio", "1 must be below 1"),
        ({"share": -1}, ".spec.share", "-1 is below the minimum 0"),
        ({"name": ""}, ".spec.name", "must not be empty"),
        ({"address": "10.0.0.300"}, ".spec.address", '"10.0.0.300" is not a valid ipv4'),
        ({"label": "a"}, ".spec.label", "'a' is too short"),
        ({"checks": [{}, {}, {}]}, ".spec.checks", "[{}, {}, {}] is too long"),
    ],
)
def test_each_problem_names_the_field_and_what_is_allowed(
    schema: ResourceSchema, spec: dict[str, Any], field: str, message: str
) -> None:
    assert problems(schema, **spec) == [(field, message)]


def test_a_missing_required_field_is_named(schema: ResourceSchema) -> None:
    manifest = widget()
    del manifest["spec"]["endpoint"]
    assert schema.problems(manifest) == [
        FieldProblem(".spec.endpoint", "required field is missing")
    ]


def test_exclusive_bounds_follow_openapi_flags(schema: ResourceSchema) -> None:
    """OpenAPI 3.0 (what a CRD holds) flags `minimum` as exclusive with a boolean; JSON
    Schema draft 7 wants the bound itself. Inside the bounds is valid, on them is not."""
    assert problems(schema, ratio=0.5) == []
    assert problems(schema, ratio=0.001) == []
    assert problems(schema, share=0) == []  # exclusiveMinimum: false keeps 0 allowed


def test_long_values_are_cut_in_messages(schema: ResourceSchema) -> None:
    [(_, message)] = problems(schema, color="x" * 100)
    shown = message.split(" is not allowed")[0]
    assert len(shown) == 60 and shown.endswith("...")


def test_problems_come_in_field_order(schema: ResourceSchema) -> None:
    found = problems(schema, size=0, color="green", checks=[{"path": 1}], code="a")
    assert [field for field, _ in found] == [
        ".spec.checks[0].path",
        ".spec.code",
        ".spec.color",
        ".spec.size",
    ]


# --- metadata -------------------------------------------------------------------------


def meta(**fields: Any) -> dict[str, Any]:
    return {"metadata": fields}


@pytest.mark.parametrize(
    ("manifest", "namespaced", "expected"),
    [
        (meta(name="ok", namespace="team-x"), True, []),
        (meta(generateName="gen-"), True, []),
        (meta(name="a.b-c", labels={"k": "v"}, annotations={"a": "b"}), False, []),
        ({}, True, [(".metadata", "required field is missing (an object with a name)")]),
        (
            {"metadata": "x"},
            True,
            [(".metadata", "required field is missing (an object with a name)")],
        ),
        (meta(namespace="x"), True, [(".metadata.name", "required field is missing")]),
        (
            meta(name="Bad_Name"),
            True,
            [
                (
                    ".metadata.name",
                    "\"Bad_Name\" is not a valid name (lower-case letters, digits, '-' and "
                    "'.', starting and ending with a letter or digit, at most 253 characters)",
                )
            ],
        ),
        (meta(name="a" * 254), True, [".metadata.name"]),
        (meta(name=5), True, [".metadata.name"]),
        (
            meta(name="n", namespace="x"),
            False,
            [(".metadata.namespace", "not allowed on a cluster-scoped kind")],
        ),
        (
            meta(name="n", namespace="a.b"),
            True,
            [
                (
                    ".metadata.namespace",
                    "\"a.b\" is not a valid namespace (lower-case letters, digits and '-', "
                    "at most 63 characters)",
                )
            ],
        ),
        (meta(name="n", namespace="a" * 64), True, [".metadata.namespace"]),
        (
            meta(name="n", labels={"k": 1, "ok": "v"}),
            True,
            [(".metadata.labels.k", "1 must be a string")],
        ),
        (
            meta(name="n", annotations=["x"]),
            True,
            [(".metadata.annotations", "['x'] is list, expected object")],
        ),
        (
            meta(name="n", owner="me", colour="x"),
            True,
            [(".metadata.colour", "unknown field"), (".metadata.owner", "unknown field")],
        ),
    ],
)
def test_check_metadata(manifest: dict[str, Any], namespaced: bool, expected: list[Any]) -> None:
    found = check_metadata(manifest, namespaced=namespaced)
    if expected and isinstance(expected[0], str):  # only the fields are checked
        assert [p.field for p in found] == expected
    else:
        assert [(p.field, p.message) for p in found] == expected


def test_server_set_metadata_is_known() -> None:
    server_set = meta(
        name="n",
        uid="u",
        resourceVersion="1",
        generation=1,
        creationTimestamp="t",
        deletionTimestamp="t",
        deletionGracePeriodSeconds=0,
        finalizers=["f"],
        ownerReferences=[],
        managedFields=[],
        selfLink="/x",
    )
    assert check_metadata(server_set, namespaced=True) == []


def test_defaulting_walks_only_the_nodes_with_defaults_and_fills_the_same() -> None:
    # The bundled CRDs, on every sample and seed manifest and on bare ones: defaulting
    # through the pruned tree gives exactly what walking the whole schema gives.
    loaded = manifests.load([str(REPO / "samples"), str(REPO / "tests/fixtures/seed")])
    documents = [d.manifest for d in loaded.documents]
    for kind in ("Broker", "Database"):
        documents.append({"kind": kind, "spec": {"capabilities": [{}]}, "status": {}})
    checked = 0
    for manifest in documents:
        kind = {"Broker": BROKERS, "Database": DATABASES}.get(manifest.get("kind", ""))
        if kind is None:
            continue
        schema = crd_schema(kind.resource)
        pruned, full = copy.deepcopy(manifest), copy.deepcopy(manifest)
        schema.default(pruned)
        apply_defaults(schema.openapi, full)
        assert pruned == full, manifest.get("metadata")
        checked += 1
    assert checked >= 20
    assert defaults_only({"type": "object", "properties": {"a": {"type": "string"}}}) is None


def test_json_copy_is_deep_and_equal() -> None:
    tree = {"a": [1, {"b": "c"}, [2.5, None]], "d": {"e": True}}
    copied = json_copy(tree)
    assert copied == tree
    copied["a"][1]["b"] = "changed"
    copied["d"]["e"] = False
    copied["a"][2].append(3)
    assert tree == {"a": [1, {"b": "c"}, [2.5, None]], "d": {"e": True}}
