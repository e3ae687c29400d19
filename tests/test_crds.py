"""The CRDs in crds/ are what a real API server accepts, and every sample validates.

The checks mirror what kube-apiserver enforces on an apiextensions.k8s.io/v1 CRD (a
structural schema, pruned and valid defaults, list-type rules, only name/generateName
under metadata) and what it enforces on the custom resources themselves (the
openAPIV3Schema, with unknown fields rejected as `kubectl apply --validate=strict` does).
The schemas are checked on their own here, independently of kidp_ops.model.
"""

from __future__ import annotations

import base64
import copy
import inspect
import json
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CRD_DIR = ROOT / "crds"
SAMPLES = ROOT / "samples"
DEV = SAMPLES / "dev"
GROUP = "platform.company.com"
API_VERSION = f"{GROUP}/v1"
KINDS = ("Broker", "Database")
CRD_FILES = {
    "Broker": CRD_DIR / f"brokers.{GROUP}.yaml",
    "Database": CRD_DIR / f"databases.{GROUP}.yaml",
}

# Keys of apiextensions.k8s.io/v1 JSONSchemaProps that this project allows. Composition
# (allOf/anyOf/oneOf/not) is not used: it would need the extra structural rules for
# value validations. $ref, definitions, dependencies, additionalItems, patternProperties
# and id are rejected by the API server for v1 CRDs.
ALLOWED_KEYS = frozenset(
    {
        "type",
        "description",
        "title",
        "format",
        "default",
        "example",
        "enum",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "properties",
        "additionalProperties",
        "required",
        "items",
        "nullable",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
    }
)
TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})
SCALARS = frozenset({"string", "integer", "number", "boolean"})
FORMATS = {
    "string": {"date-time", "date", "byte", "uri", "hostname", "ipv4", "ipv6", "duration"},
    "integer": {"int32", "int64"},
    "number": {"float", "double"},
}
# Go's regexp (RE2), which the API server uses for `pattern`, has no look-around and no
# back-references; a pattern that compiles in Python but not in Go would break apply.
RE2_UNSUPPORTED = re.compile(r"\(\?[=!<]|\\[1-9]")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
)

FORMAT_CHECKER = jsonschema.FormatChecker()


@FORMAT_CHECKER.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(RFC3339.match(value))


# --------------------------------------------------------------------------- helpers


@cache
def _crd_text(kind: str) -> str:
    return CRD_FILES[kind].read_text(encoding="utf-8")


def load_crd(kind: str) -> dict[str, Any]:
    """A fresh copy of the CRD (tests may mutate what they get)."""
    return yaml.safe_load(_crd_text(kind))


def schema_of(kind: str) -> dict[str, Any]:
    (version,) = load_crd(kind)["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def iter_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with a kubectl-style path (`[]` for items, `{}` for values)."""
    yield path or ".", node
    for name, sub in (node.get("properties") or {}).items():
        yield from iter_nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from iter_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from iter_nodes(node["additionalProperties"], f"{path}{{}}")


def to_draft7(node: Any, *, closed: bool) -> Any:
    """OpenAPI v3 (Kubernetes flavour) -> JSON Schema draft 7.

    `nullable` and x-kubernetes-* keys are annotations for draft 7 (nullable widens the
    type). With `closed`, an object with `properties` rejects unknown fields, as the API
    server does with strict field validation (and as pruning would silently drop them).
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "nullable" or key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {k: to_draft7(v, closed=closed) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = to_draft7(value, closed=closed)
        else:
            out[key] = value
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        closed
        and node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def validator_for(node: dict[str, Any], *, closed: bool = True) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(to_draft7(node, closed=closed), format_checker=FORMAT_CHECKER)


@cache
def _resource_validator(kind: str) -> jsonschema.Draft7Validator:
    return validator_for(schema_of(kind))


def errors(kind: str, obj: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, failed keyword) for every schema violation of a Broker or Database."""
    return [
        (tuple(e.absolute_path), e.validator) for e in _resource_validator(kind).iter_errors(obj)
    ]


def apply_defaults(node: dict[str, Any], value: Any) -> Any:
    """Fill absent fields from `default`, top-down, as the API server does (a parent's
    default first, then the defaults nested under it)."""
    if isinstance(value, dict):
        for name, sub in (node.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                apply_defaults(sub, value[name])
        if isinstance(node.get("additionalProperties"), dict):
            for item in value.values():
                apply_defaults(node["additionalProperties"], item)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            apply_defaults(node["items"], item)
    return value


def sample_documents() -> list[tuple[str, int, dict[str, Any]]]:
    """(relative file, index, document) for every YAML document under samples/."""
    docs = []
    for path in sorted(SAMPLES.glob("*.yaml")) + sorted(DEV.glob("*.yaml")):
        rel = path.relative_to(ROOT).as_posix()
        with path.open(encoding="utf-8") as fh:
            for index, doc in enumerate(yaml.safe_load_all(fh)):
                if doc is not None:
                    docs.append((rel, index, doc))
    return docs


SAMPLE_DOCS = sample_documents()
RESOURCE_DOCS = [
    pytest.param(doc, id=f"{rel}#{i}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}")
    for rel, i, doc in SAMPLE_DOCS
    if doc.get("apiVersion") == API_VERSION and doc.get("kind") in KINDS
]


def docs_in(path: Path, kind: str) -> list[dict[str, Any]]:
    rel = path.relative_to(ROOT).as_posix()
    return [doc for f, _, doc in SAMPLE_DOCS if f == rel and doc.get("kind") == kind]


def k8s_deserialize(api: Any, text: str, response_type: str) -> Any:
    """`ApiClient.deserialize` across client generations: older clients take a response
    object with `.data`; kubernetes >= 35 takes the text and a content type."""
    params = inspect.signature(api.deserialize).parameters
    if "response_text" in params:
        return api.deserialize(text, response_type, "application/json")
    return api.deserialize(SimpleNamespace(data=text), response_type)


# ------------------------------------------------------------------ (a) the CRD itself


@pytest.mark.parametrize("kind", KINDS)
def test_crd_envelope(kind: str) -> None:
    crd = load_crd(kind)
    plural = kind.lower() + "s"
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    spec = crd["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert (names["kind"], names["listKind"]) == (kind, f"{kind}List")
    assert (names["plural"], names["singular"]) == (plural, kind.lower())
    assert [v["name"] for v in spec["versions"]] == ["v1"]
    (version,) = spec["versions"]
    assert version["served"] is True
    assert version["storage"] is True
    assert not spec.get("preserveUnknownFields", False)


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_structural(kind: str) -> None:
    problems: list[str] = []
    for path, node in iter_nodes(schema_of(kind)):
        exempt = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        unknown = set(node) - ALLOWED_KEYS
        if unknown:
            problems.append(f"{path}: keys not allowed in a v1 CRD schema: {sorted(unknown)}")
        kind_ = node.get("type")
        if kind_ is None and not exempt:
            problems.append(f"{path}: no type")
        elif kind_ is not None and kind_ not in TYPES:
            problems.append(f"{path}: unknown type {kind_!r}")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties: false is not allowed in v1")
        if node.get("uniqueItems"):
            problems.append(f"{path}: uniqueItems: true is not allowed in v1")
        if ("properties" in node or "additionalProperties" in node) and kind_ != "object":
            problems.append(f"{path}: properties on a non-object")
        if kind_ == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{path}: an array needs a single `items` schema")
        if "items" in node and kind_ != "array":
            problems.append(f"{path}: items on a non-array")
        missing = set(node.get("required", ())) - set(node.get("properties") or {})
        if missing:
            problems.append(f"{path}: required names unknown properties {sorted(missing)}")
        if "format" in node and node["format"] not in FORMATS.get(kind_, ()):
            problems.append(f"{path}: format {node['format']!r} does not fit type {kind_}")
        if "pattern" in node:
            re.compile(node["pattern"])
            if RE2_UNSUPPORTED.search(node["pattern"]):
                problems.append(f"{path}: pattern uses syntax Go's RE2 does not support")
        type_only = validator_for({"type": kind_} if kind_ else {})
        problems.extend(
            f"{path}: enum value {value!r} is not a {kind_}"
            for value in node.get("enum", ())
            if not type_only.is_valid(value)
        )
        if path != ".metadata" and not str(node.get("description", "")).strip():
            problems.append(f"{path}: no description (kubectl explain shows nothing)")
        problems.extend(_list_type_problems(path, node))
    assert not problems, "\n".join(problems)


def _list_type_problems(path: str, node: dict[str, Any]) -> list[str]:
    """The API server's rules for x-kubernetes-list-type / x-kubernetes-list-map-keys."""
    list_type = node.get("x-kubernetes-list-type")
    keys = node.get("x-kubernetes-list-map-keys")
    items = node.get("items") if isinstance(node.get("items"), dict) else {}
    problems = []
    if keys and list_type != "map":
        problems.append(f"{path}: list-map-keys without list-type map")
    if list_type is not None and node.get("type") != "array":
        problems.append(f"{path}: x-kubernetes-list-type on a non-array")
    if list_type not in (None, "atomic", "set", "map"):
        problems.append(f"{path}: unknown x-kubernetes-list-type {list_type!r}")
    if list_type == "set" and items.get("type") not in SCALARS:
        problems.append(f"{path}: a set needs scalar items")
    if list_type == "map" and (items.get("type") != "object" or not keys):
        problems.append(f"{path}: a map list needs object items and x-kubernetes-list-map-keys")
    map_keys = (keys or []) if list_type == "map" else []
    for key in map_keys:
        sub = (items.get("properties") or {}).get(key)
        if sub is None or sub.get("type") not in SCALARS:
            problems.append(f"{path}: map key {key!r} must be a scalar property of the items")
        elif key not in items.get("required", ()) and "default" not in sub:
            problems.append(f"{path}: map key {key!r} must be required or defaulted")
    return problems


@pytest.mark.parametrize("kind", KINDS)
def test_every_default_is_valid_and_pruned(kind: str) -> None:
    problems, seen = [], 0
    for path, node in iter_nodes(schema_of(kind)):
        if "default" not in node:
            continue
        seen += 1
        if path.startswith(".metadata"):
            problems.append(f"{path}: defaults under metadata")
        # closed: a default with fields the schema does not know would be pruned (rejected);
        # and it must stay valid once the defaults nested under it are applied.
        value = copy.deepcopy(node["default"])
        for candidate in (value, apply_defaults(node, copy.deepcopy(value))):
            problems.extend(
                f"{path}: default {candidate!r}: {error.message}"
                for error in validator_for(node).iter_errors(candidate)
            )
    assert not problems, "\n".join(problems)
    assert seen >= {"Broker": 10, "Database": 1}[kind]  # Database: size only (issue 9)


@pytest.mark.parametrize("kind", KINDS)
def test_root_and_metadata_are_what_the_api_server_allows(kind: str) -> None:
    root = schema_of(kind)
    assert root["type"] == "object"
    # With the status subresource the root may only carry these.
    assert set(root) <= {"type", "description", "properties", "required"}
    assert set(root["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert root["required"] == ["spec"]
    metadata = root["properties"]["metadata"]
    assert metadata.get("type") == "object"
    # Only metadata.name / metadata.generateName may be constrained, and only as strings.
    assert set(metadata) <= {"type", "properties"}
    for name, sub in (metadata.get("properties") or {}).items():
        assert name in {"name", "generateName"}, name
        assert sub.get("type") == "string"
        assert "default" not in sub
    for section in ("spec", "status"):
        assert root["properties"][section]["type"] == "object"


# ------------------------------------------------- (b) the official client's model


@pytest.mark.parametrize("kind", KINDS)
def test_crd_round_trips_through_kubernetes_client_model(kind: str) -> None:
    from kubernetes.client import ApiClient, V1CustomResourceDefinition

    original = load_crd(kind)
    api = ApiClient()
    try:
        obj = k8s_deserialize(api, json.dumps(original), "V1CustomResourceDefinition")
        back = api.sanitize_for_serialization(obj)
    finally:
        api.close()
    assert isinstance(obj, V1CustomResourceDefinition)
    # A misspelled or unknown key (e.g. `minimun`) would be dropped by the model.
    assert back == original


# ------------------------------------------- (c) printer columns, names, subresource

EXPECTED_COLUMNS = {
    "Broker": [
        ("Provider", "string", ".spec.cloudProvider"),
        ("Region", "string", ".spec.region"),
        ("Phase", "string", ".status.phase"),
        ("Active", "integer", ".status.activeDeployments"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ],
    "Database": [
        ("Engine", "string", ".spec.engine"),
        ("Version", "string", ".spec.version"),
        ("Size", "string", ".spec.size"),
        ("Phase", "string", ".status.phase"),
        ("Broker", "string", ".status.brokerRef.name"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ],
}
# Extra columns for `-o wide` (priority 1), after the default ones, as kubectl shows them.
EXPECTED_WIDE_COLUMNS = {
    "Broker": [
        ("Priority", "integer", ".spec.priority"),
        ("Max", "integer", ".spec.maxConcurrentDeployments"),
        ("Version", "string", ".status.version"),
        ("Heartbeat", "date", ".status.lastHeartbeat"),
        ("Endpoint", "string", ".spec.endpoint"),
    ],
    "Database": [
        ("Target", "string", ".spec.target"),
        ("Deployment", "string", ".status.deploymentId"),
        ("Endpoint", "string", ".status.endpoint"),
    ],
}


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns_names_and_status_subresource(kind: str) -> None:
    crd = load_crd(kind)
    (version,) = crd["spec"]["versions"]
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    default = [
        c
        for c, raw in zip(columns, version["additionalPrinterColumns"], strict=True)
        if not raw.get("priority")
    ]
    wide = [
        c
        for c, raw in zip(columns, version["additionalPrinterColumns"], strict=True)
        if raw.get("priority")
    ]
    assert default == EXPECTED_COLUMNS[kind]
    assert wide == EXPECTED_WIDE_COLUMNS[kind]
    assert columns == EXPECTED_COLUMNS[kind] + EXPECTED_WIDE_COLUMNS[kind]
    assert version["subresources"] == {"status": {}}
    names = crd["spec"]["names"]
    assert names["shortNames"] == {"Broker": ["br"], "Database": ["db"]}[kind]
    assert names["categories"] == ["kidp", "all"]


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns_point_at_schema_fields_of_the_right_type(kind: str) -> None:
    nodes = dict(iter_nodes(schema_of(kind)))
    for name, type_, json_path in EXPECTED_COLUMNS[kind] + EXPECTED_WIDE_COLUMNS[kind]:
        if json_path.startswith(".metadata."):
            continue
        assert json_path in nodes, f"{name}: {json_path} is not in the schema"
        if type_ == "date":  # a date column shows an RFC 3339 string as an age
            assert nodes[json_path]["type"] == "string", name
            assert nodes[json_path]["format"] == "date-time", name
        else:
            assert nodes[json_path]["type"] == type_, name


# ---------------------------------------------------------------- (d) the samples


def test_samples_exist_and_have_known_kinds() -> None:
    files = {rel for rel, _, _ in SAMPLE_DOCS}
    assert {
        "samples/broker-local.yaml",
        "samples/brokers-cloud.yaml",
        "samples/database.yaml",
        "samples/dev/brokers.yaml",
        "samples/dev/databases.yaml",
        "samples/dev/secrets.yaml",
    } <= files
    for rel, index, doc in SAMPLE_DOCS:
        where = f"{rel}#{index}"
        kind = (doc.get("apiVersion"), doc.get("kind"))
        assert kind in {(API_VERSION, k) for k in KINDS} | {("v1", "Secret")}, where
        meta = doc["metadata"]
        assert DNS_SUBDOMAIN.match(meta["name"]) and len(meta["name"]) <= 253, where
        assert DNS_LABEL.match(meta["namespace"]) and len(meta["namespace"]) <= 63, where
    for path in sorted(SAMPLES.rglob("*.yaml")):
        head = path.read_text(encoding="utf-8").lstrip()
        assert head.startswith("#"), f"{path}: no comment saying what the file is for"


@pytest.mark.parametrize("doc", RESOURCE_DOCS)
def test_sample_validates_against_crd_schema(doc: dict[str, Any]) -> None:
    assert errors(doc["kind"], doc) == []
    # ... and still after the API server applied the defaults.
    defaulted = apply_defaults(schema_of(doc["kind"]), copy.deepcopy(doc))
    assert errors(doc["kind"], defaulted) == []


def test_seed_samples_match_the_design_note() -> None:
    (local,) = docs_in(SAMPLES / "broker-local.yaml", "Broker")
    assert local["metadata"] == {"name": "local-broker", "namespace": "kidp-system"}
    assert local["spec"]["cloudProvider"] == "on-prem"
    assert local["spec"]["region"] == "local"
    cloud = docs_in(SAMPLES / "brokers-cloud.yaml", "Broker")
    assert sorted(b["spec"]["cloudProvider"] for b in cloud) == ["aws", "azure"]
    (database,) = docs_in(SAMPLES / "database.yaml", "Database")
    assert database["metadata"] == {"name": "my-postgres", "namespace": "my-app"}
    assert database["spec"]["target"]


def test_dev_brokers_cover_the_dev_environment() -> None:
    brokers = docs_in(DEV / "brokers.yaml", "Broker")
    assert len(brokers) >= 5
    assert {b["metadata"]["namespace"] for b in brokers} == {"kidp-system"}
    ports = []
    for broker in brokers:
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", broker["spec"]["endpoint"])
        assert match, broker["spec"]["endpoint"]
        ports.append(int(match.group(1)))
    assert sorted(ports) == list(range(18081, 18081 + len(brokers)))
    specs = [b["spec"] for b in brokers]
    assert {s["cloudProvider"] for s in specs} == {"azure", "aws", "gcp", "on-prem"}
    assert len({s["region"] for s in specs}) == len(specs)
    assert len({s["priority"] for s in specs}) > 1
    assert len({s["maxConcurrentDeployments"] for s in specs}) > 1
    assert min(s["maxConcurrentDeployments"] for s in specs) <= 3
    providers = {p for s in specs for c in s["capabilities"] for p in c.get("providers", ())}
    assert {"postgresql", "mysql", "redis", "mongodb"} <= providers


def test_dev_api_key_broker_has_its_secret() -> None:
    secrets = {s["metadata"]["name"]: s for s in docs_in(DEV / "secrets.yaml", "Secret")}
    with_auth = [
        b
        for b in docs_in(DEV / "brokers.yaml", "Broker")
        if b["spec"].get("authentication", {}).get("type", "none") != "none"
    ]
    assert [b["spec"]["authentication"]["type"] for b in with_auth] == ["api-key"]
    for broker in with_auth:
        ref = broker["spec"]["authentication"]["secretRef"]
        secret = secrets[ref["name"]]
        assert secret["metadata"]["namespace"] == broker["metadata"]["namespace"]
        assert ref["key"] == "api-key"
        assert base64.b64decode(secret["data"][ref["key"]], validate=True)


def test_dev_databases_each_have_a_dev_broker_that_serves_them() -> None:
    brokers = [b["spec"] for b in docs_in(DEV / "brokers.yaml", "Broker")]
    databases = docs_in(DEV / "databases.yaml", "Database")
    assert len(databases) >= 4
    assert len({d["metadata"]["namespace"] for d in databases}) == 1
    targets = {d["spec"].get("target") for d in databases}
    assert {"azure-eastus", "aws-us-west-2-prod", "gcp-europe-west1"} <= targets
    assert len({d["spec"]["engine"] for d in databases}) >= 3
    regions = sorted({b["region"] for b in brokers}, key=len, reverse=True)
    for database in databases:
        spec = database["spec"]
        cloud, region = spec.get("cloudProvider"), spec.get("region")
        target = spec.get("target", "")
        if cloud is None:
            cloud = next(c for c in ("on-prem", "azure", "aws", "gcp") if target.startswith(c))
        if region is None:
            rest = target.removeprefix(f"{cloud}-")
            region = next(r for r in regions if rest == r or rest.startswith(f"{r}-"))
        provider = spec.get("provider", spec["engine"])
        serving = [
            b
            for b in brokers
            if b["cloudProvider"] == cloud
            and b.get("region", "") in ("", region)
            and any(
                c["resourceType"] == "Database"
                and provider in c.get("providers", ())
                and region in c.get("regions", [region])
                for c in b["capabilities"]
            )
        ]
        assert serving, f"no dev broker serves {database['metadata']['name']}"


# --------------------------------------------------------- defaults, as applied


def test_broker_defaults() -> None:
    broker = {
        "apiVersion": API_VERSION,
        "kind": "Broker",
        "metadata": {"name": "b", "namespace": "kidp-system"},
        "spec": {"endpoint": "http://b:8080", "cloudProvider": "aws", "authentication": {}},
    }
    spec = apply_defaults(schema_of("Broker"), broker)["spec"]
    assert spec == {
        "endpoint": "http://b:8080",
        "cloudProvider": "aws",
        "priority": 100,
        "maxConcurrentDeployments": 10,
        "authentication": {"type": "jwt"},  # the seed's default
        "healthCheck": {
            "endpoint": "/health",
            "intervalSeconds": 30,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
            "successThreshold": 1,
        },
        "unschedulable": False,
    }
    assert errors("Broker", broker) == []


def test_database_defaults() -> None:
    database = {
        "apiVersion": API_VERSION,
        "kind": "Database",
        "metadata": {"name": "d", "namespace": "team-a"},
        "spec": {"engine": "redis", "owner": {"kind": "Team", "name": "a"}},
    }
    spec = apply_defaults(schema_of("Database"), database)["spec"]
    # No defaults for backup, encryption or highAvailability: absent stays absent.
    assert spec == {"engine": "redis", "owner": {"kind": "Team", "name": "a"}, "size": "small"}
    assert errors("Database", database) == []


# ------------------------------------------------------- (e) what must be rejected

DELETE = object()


def valid_broker() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Broker",
        "metadata": {"name": "b", "namespace": "kidp-system"},
        "spec": {
            "endpoint": "https://broker.example.com",
            "cloudProvider": "azure",
            "region": "eastus",
            "capabilities": [{"resourceType": "Database", "providers": ["postgresql"]}],
            "authentication": {
                "type": "api-key",
                "secretRef": {"name": "s", "namespace": "kidp-system", "key": "api-key"},
            },
            "healthCheck": {"endpoint": "/health", "intervalSeconds": 3600, "timeoutSeconds": 60},
            "callbackPublicKey": "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",
            "allowedNamespaces": ["team-a", "team-b"],
        },
        "status": {
            "phase": "Ready",
            "lastHeartbeat": "2025-10-03T10:30:00Z",
            "activeDeployments": 2,
            "version": "0.1.0",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "ProbeSucceeded",
                    "message": "healthy",
                    "lastTransitionTime": "2025-10-03T10:29:30.123+02:00",
                    "observedGeneration": 1,
                }
            ],
            "observedGeneration": 1,
            "message": "",
            "callbackPublicKey": "MCowBQYDK2VwAyEA",
            "consecutiveFailures": 0,
            "lastProbeLatencyMs": 12.5,
        },
    }


def valid_database() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Database",
        "metadata": {"name": "d", "namespace": "team-a"},
        "spec": {
            "owner": {"kind": "Team", "name": "backend-team"},
            "engine": "postgresql",
            "version": "15",
            "target": "azure-eastus",
            "backup": {"enabled": True, "retention": "7d", "pointInTimeRestore": True},
            "encryption": {
                "atRest": {"enabled": True, "kmsKeyId": "key-1"},
                "inTransit": {"enabled": True, "minTLSVersion": "1.2"},
            },
            "parameters": {"max_connections": "200"},
        },
        "status": {
            "phase": "Ready",
            "deploymentId": "dep-123",
            "brokerRef": {"name": "b", "namespace": "kidp-system"},
            "endpoint": "pg.example.com",
            "port": 5432,
            "connectionSecretRef": {"name": "d-conn", "namespace": "team-a"},
            "conditions": [{"type": "Ready", "status": "False", "reason": "Provisioning"}],
            "observedGeneration": 2,
            "message": "ok",
            "cloudResourceId": "/subscriptions/s/pg/d",
            "lastBackup": "2025-10-03T02:00:00Z",
            "cost": {
                "estimatedMonthly": 42.5,
                "currency": "EUR",
                "lastUpdated": "2025-10-03T10:30:00Z",
            },
            "lastCallback": {"time": "2025-10-03T10:30:00Z", "digests": ["ab" * 32]},
        },
    }


def mutated(obj: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    parent: Any = out
    for part in path[:-1]:
        parent = parent[part]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


FACTORIES: dict[str, Callable[[], dict[str, Any]]] = {
    "Broker": valid_broker,
    "Database": valid_database,
}


@pytest.mark.parametrize("kind", KINDS)
def test_baselines_are_valid(kind: str) -> None:
    assert errors(kind, FACTORIES[kind]()) == []


S = ("spec",)
HC = ("spec", "healthCheck")
ST = ("status",)

BROKER_REJECTS = [
    # (id, path, value, error path, failed keyword)
    ("ftp-endpoint", (*S, "endpoint"), "ftp://x", (*S, "endpoint"), "pattern"),
    ("scheme-only", (*S, "endpoint"), "http://", (*S, "endpoint"), "pattern"),
    ("space-in-url", (*S, "endpoint"), "http://a b", (*S, "endpoint"), "pattern"),
    ("long-url", (*S, "endpoint"), "http://h/" + "x" * 2040, (*S, "endpoint"), "maxLength"),
    ("no-endpoint", (*S, "endpoint"), DELETE, S, "required"),
    ("no-cloud", (*S, "cloudProvider"), DELETE, S, "required"),
    ("ibm-cloud", (*S, "cloudProvider"), "ibm", (*S, "cloudProvider"), "enum"),
    ("text-priority", (*S, "priority"), "high", (*S, "priority"), "type"),
    (
        "capability-without-resourceType",
        (*S, "capabilities"),
        [{"providers": ["postgresql"]}],
        (*S, "capabilities", 0),
        "required",
    ),
    (
        "namespace-pattern",
        (*S, "allowedNamespaces"),
        ["Team_A"],
        (*S, "allowedNamespaces", 0),
        "pattern",
    ),
    ("long-key", (*S, "callbackPublicKey"), "x" * 65, (*S, "callbackPublicKey"), "maxLength"),
    ("oauth", (*S, "authentication", "type"), "oauth", (*S, "authentication", "type"), "enum"),
    (
        "secretRef-no-name",
        (*S, "authentication", "secretRef"),
        {},
        (*S, "authentication", "secretRef"),
        "required",
    ),
    ("hc-url", (*HC, "endpoint"), "http://evil", (*HC, "endpoint"), "pattern"),
    ("hc-host", (*HC, "endpoint"), "//evil.example/health", (*HC, "endpoint"), "pattern"),
    ("hc-backslash", (*HC, "endpoint"), "/\\evil.example", (*HC, "endpoint"), "pattern"),
    ("hc-relative", (*HC, "endpoint"), "health", (*HC, "endpoint"), "pattern"),
    ("hc-interval", (*HC, "intervalSeconds"), 4, (*HC, "intervalSeconds"), "minimum"),
    ("hc-interval-max", (*HC, "intervalSeconds"), 3601, (*HC, "intervalSeconds"), "maximum"),
    ("hc-timeout", (*HC, "timeoutSeconds"), 0, (*HC, "timeoutSeconds"), "minimum"),
    ("hc-timeout-max", (*HC, "timeoutSeconds"), 61, (*HC, "timeoutSeconds"), "maximum"),
    ("hc-failures", (*HC, "failureThreshold"), 0, (*HC, "failureThreshold"), "minimum"),
    ("hc-successes", (*HC, "successThreshold"), 0, (*HC, "successThreshold"), "minimum"),
    ("cordon-text", (*S, "unschedulable"), "yes", (*S, "unschedulable"), "type"),
    ("unknown-field", (*S, "endpointt"), "http://x", S, "additionalProperties"),
    ("phase", (*ST, "phase"), "Running", (*ST, "phase"), "enum"),
    ("heartbeat", (*ST, "lastHeartbeat"), "yesterday", (*ST, "lastHeartbeat"), "format"),
    ("active", (*ST, "activeDeployments"), -1, (*ST, "activeDeployments"), "minimum"),
    (
        "cond-status",
        (*ST, "conditions", 0, "status"),
        "true",
        (*ST, "conditions", 0, "status"),
        "enum",
    ),
    ("cond-no-type", (*ST, "conditions", 0, "type"), DELETE, (*ST, "conditions", 0), "required"),
    ("latency", (*ST, "lastProbeLatencyMs"), -0.5, (*ST, "lastProbeLatencyMs"), "minimum"),
    ("failures", (*ST, "consecutiveFailures"), -1, (*ST, "consecutiveFailures"), "minimum"),
]

DATABASE_REJECTS = [
    ("oracle", (*S, "engine"), "oracle", (*S, "engine"), "enum"),
    ("no-engine", (*S, "engine"), DELETE, S, "required"),
    ("huge", (*S, "size"), "huge", (*S, "size"), "enum"),
    ("numeric-version", (*S, "version"), 15, (*S, "version"), "type"),
    ("owner-kind", (*S, "owner", "kind"), "User", (*S, "owner", "kind"), "enum"),
    ("owner-no-name", (*S, "owner", "name"), DELETE, (*S, "owner"), "required"),
    ("empty-cloud", (*S, "cloudProvider"), "", (*S, "cloudProvider"), "enum"),
    ("no-owner", (*S, "owner"), DELETE, S, "required"),
    (
        "retention-unitless",
        (*S, "backup", "retention"),
        "30",
        (*S, "backup", "retention"),
        "pattern",
    ),
    ("retention-weeks", (*S, "backup", "retention"), "2w", (*S, "backup", "retention"), "pattern"),
    ("retention-days-int", (*S, "backup", "retention"), 7, (*S, "backup", "retention"), "type"),
    ("no-retention", (*S, "backup", "retention"), DELETE, (*S, "backup"), "required"),
    ("no-backup-enabled", (*S, "backup", "enabled"), DELETE, (*S, "backup"), "required"),
    ("bool-at-rest", (*S, "encryption", "atRest"), True, (*S, "encryption", "atRest"), "type"),
    ("no-in-transit", (*S, "encryption", "inTransit"), DELETE, (*S, "encryption"), "required"),
    (
        "at-rest-no-enabled",
        (*S, "encryption", "atRest", "enabled"),
        DELETE,
        (*S, "encryption", "atRest"),
        "required",
    ),
    (
        "tls-1.1",
        (*S, "encryption", "inTransit", "minTLSVersion"),
        "1.1",
        (*S, "encryption", "inTransit", "minTLSVersion"),
        "enum",
    ),
    (
        "tls-number",
        (*S, "encryption", "inTransit", "minTLSVersion"),
        1.2,
        (*S, "encryption", "inTransit", "minTLSVersion"),
        "type",
    ),
    ("old-cost", (*ST, "cost", "monthlyEstimate"), 1.0, (*ST, "cost"), "additionalProperties"),
    ("last-backup", (*ST, "lastBackup"), "last night", (*ST, "lastBackup"), "format"),
    (
        "numeric-parameter",
        (*S, "parameters", "max_connections"),
        200,
        (*S, "parameters", "max_connections"),
        "type",
    ),
    ("ha-text", (*S, "highAvailability"), "yes", (*S, "highAvailability"), "type"),
    ("phase", (*ST, "phase"), "Done", (*ST, "phase"), "enum"),
    ("port", (*ST, "port"), 70000, (*ST, "port"), "maximum"),
    ("unknown-status", (*ST, "brokerName"), "b", ST, "additionalProperties"),
]


@pytest.mark.parametrize(
    ("kind", "path", "value", "error_path", "keyword"),
    [pytest.param("Broker", *case[1:], id=f"broker-{case[0]}") for case in BROKER_REJECTS]
    + [pytest.param("Database", *case[1:], id=f"database-{case[0]}") for case in DATABASE_REJECTS],
)
def test_invalid_resources_are_rejected(
    kind: str,
    path: tuple[str | int, ...],
    value: Any,
    error_path: tuple[str | int, ...],
    keyword: str,
) -> None:
    found = errors(kind, mutated(FACTORIES[kind](), path, value))
    assert (error_path, keyword) in found, found


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:18081",
        "https://broker-aws-us-east-1.platform.company.com",
        "http://broker-service:8082/",
        "https://broker.example.com/base/path?x=1",
        "http://[::1]:8080",
    ],
)
def test_broker_endpoint_accepts_urls(endpoint: str) -> None:
    assert errors("Broker", mutated(valid_broker(), (*S, "endpoint"), endpoint)) == []


@pytest.mark.parametrize("path", ["/", "/health", "/healthz", "/v1/health?deep=true"])
def test_health_check_endpoint_accepts_paths(path: str) -> None:
    assert errors("Broker", mutated(valid_broker(), (*HC, "endpoint"), path)) == []
