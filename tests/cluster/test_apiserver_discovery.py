"""Discovery (legacy and aggregated) and OpenAPI documents of the API facade."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
import yaml

from kidp_ops.cluster import openapi_protobuf
from kidp_ops.cluster.base import Manifest
from kidp_ops.model.bundled import load_crds
from tests.support.facade import Api, get_json

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
KUBECTL_132 = f"{AGGREGATED.format(v='v2')},{AGGREGATED.format(v='v2beta1')},application/json"
PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
BROKER_SCHEMA = "com.company.platform.v1.Broker"


async def store_crds(api: Api) -> None:
    for crd in load_crds():
        await api.cluster.create(dict(crd))


# --- legacy ---------------------------------------------------------------------------------


async def test_version(api: Api) -> None:
    version = await get_json(api, "/version")
    assert (version["major"], version["minor"], version["gitVersion"]) == (
        "1",
        "30",
        "v1.30.0-kidp",
    )


async def test_core_discovery(api: Api) -> None:
    versions = await get_json(api, "/api")
    assert (versions["kind"], versions["versions"]) == ("APIVersions", ["v1"])
    core = await get_json(api, "/api/v1")
    assert core["kind"] == "APIResourceList" and core["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in core["resources"]}
    assert set(by_name) == {"namespaces", "secrets", "events"}
    assert by_name["events"]["shortNames"] == ["ev"]
    assert by_name["secrets"]["namespaced"] is True
    assert core["resources"][0]["name"] == "namespaces"


async def test_group_discovery(api: Api) -> None:
    groups = await get_json(api, "/apis", Accept="application/json")
    assert groups["kind"] == "APIGroupList"
    names = [g["name"] for g in groups["groups"]]
    assert names == ["platform.company.com", "coordination.k8s.io", "apiextensions.k8s.io"]
    platform = groups["groups"][0]
    assert platform["preferredVersion"] == {
        "groupVersion": "platform.company.com/v1",
        "version": "v1",
    }
    assert (await get_json(api, "/apis/platform.company.com"))["kind"] == "APIGroup"


async def test_resource_discovery(api: Api) -> None:
    resources = await get_json(api, "/apis/platform.company.com/v1")
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["brokers"] == {
        "name": "brokers",
        "singularName": "broker",
        "namespaced": True,
        "kind": "Broker",
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        "shortNames": ["br"],
        "categories": ["kidp", "all"],
    }
    assert by_name["brokers/status"]["verbs"] == ["get", "patch", "update"]
    assert {"databases", "databases/status"} <= set(by_name)
    crds = await get_json(api, "/apis/apiextensions.k8s.io/v1")
    assert crds["resources"][0]["namespaced"] is False
    assert crds["resources"][0]["shortNames"] == ["crd"]


# --- aggregated ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "version"),
    [(KUBECTL_132, "v2"), (f"{AGGREGATED.format(v='v2beta1')},application/json", "v2beta1")],
)
async def test_aggregated_discovery_answers_in_one_document(
    api: Api, accept: str, version: str
) -> None:
    async with api.http.get("/apis", headers={"Accept": accept}) as response:
        content_type = response.headers["Content-Type"]
        document = json.loads(await response.read())
    # client-go tells aggregated from legacy discovery by these parameters only
    assert content_type == AGGREGATED.format(v=version)
    assert document["apiVersion"] == f"apidiscovery.k8s.io/{version}"
    assert document["kind"] == "APIGroupDiscoveryList"
    by_group = {g["metadata"]["name"]: g for g in document["items"]}
    assert list(by_group) == ["platform.company.com", "coordination.k8s.io", "apiextensions.k8s.io"]
    [v1] = by_group["platform.company.com"]["versions"]
    assert (v1["version"], v1["freshness"]) == ("v1", "Current")
    brokers = next(r for r in v1["resources"] if r["resource"] == "brokers")
    assert brokers == {
        "resource": "brokers",
        "responseKind": {"group": "platform.company.com", "version": "v1", "kind": "Broker"},
        "scope": "Namespaced",
        "singularResource": "broker",
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        "shortNames": ["br"],
        "categories": ["kidp", "all"],
        "subresources": [
            {
                "subresource": "status",
                "responseKind": {
                    "group": "platform.company.com",
                    "version": "v1",
                    "kind": "Broker",
                },
                "verbs": ["get", "patch", "update"],
            }
        ],
    }
    crds = by_group["apiextensions.k8s.io"]["versions"][0]["resources"][0]
    assert crds["scope"] == "Cluster"


async def test_aggregated_core_group_has_no_name(api: Api) -> None:
    document = await get_json(api, "/api", Accept=KUBECTL_132)
    [core] = document["items"]
    assert core["metadata"] == {}
    resources = {r["resource"]: r for r in core["versions"][0]["resources"]}
    assert set(resources) == {"namespaces", "secrets", "events"}
    assert resources["namespaces"]["verbs"] == ["create", "get", "list"]
    assert resources["namespaces"]["scope"] == "Cluster"


# --- OpenAPI v3 ----------------------------------------------------------------------------------


async def test_openapi_v3_tells_kubectl_the_server_validates(api: Api) -> None:
    root = await get_json(api, "/openapi/v3")
    relative = root["paths"]["apis/platform.company.com/v1"]["serverRelativeURL"]
    document = await get_json(api, relative)
    path = "/apis/platform.company.com/v1/namespaces/{namespace}/brokers/{name}"
    patch = document["paths"][path]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "platform.company.com",
        "version": "v1",
        "kind": "Broker",
    }
    assert {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}} in patch[
        "parameters"
    ]
    crds = await get_json(api, root["paths"]["apis/apiextensions.k8s.io/v1"]["serverRelativeURL"])
    assert "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}" in crds["paths"]
    assert crds["components"]["schemas"] == {}


async def test_openapi_v3_has_the_stored_crds_schemas(api: Api) -> None:
    await store_crds(api)
    document = await get_json(api, "/openapi/v3/apis/platform.company.com/v1")
    schemas = document["components"]["schemas"]
    assert set(schemas) == {
        BROKER_SCHEMA,
        "com.company.platform.v1.Database",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    }
    broker = schemas[BROKER_SCHEMA]
    assert broker["x-kubernetes-group-version-kind"] == [
        {"group": "platform.company.com", "version": "v1", "kind": "Broker"}
    ]
    ref = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    assert broker["properties"]["metadata"]["allOf"] == [{"$ref": ref}]
    crd_schema = next(c for c in load_crds() if c["spec"]["names"]["kind"] == "Broker")
    stored = crd_schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert broker["properties"]["spec"] == stored["properties"]["spec"]


# --- OpenAPI v2 -----------------------------------------------------------------------------------


async def test_openapi_v2_as_json(api: Api) -> None:
    await store_crds(api)
    document = await get_json(api, "/openapi/v2", Accept="application/json")
    assert document["swagger"] == "2.0"
    broker = document["definitions"][BROKER_SCHEMA]
    assert broker["properties"]["metadata"]["$ref"] == (
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    )
    assert "nullable" not in json.dumps(document)


def test_swagger2_leaves_out_what_it_cannot_say() -> None:
    from kidp_ops.cluster.apiserver_openapi import _swagger2

    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "nullable": True, "anyOf": [{}]}},
        "items": {"oneOf": [{}], "type": "integer"},
        "additionalProperties": {"not": {}, "type": "string"},
    }
    assert _swagger2(schema) == {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "items": {"type": "integer"},
        "additionalProperties": {"type": "string"},
    }


def read_protobuf(data: bytes) -> list[tuple[int, Any]]:
    """(field number, value) pairs of one message: ints, doubles or bytes (nested)."""
    fields, at = [], 0

    def varint() -> int:
        nonlocal at
        value, shift = 0, 0
        while True:
            byte = data[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while at < len(data):
        key = varint()
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            fields.append((field, varint()))
        elif wire_type == 1:
            fields.append((field, struct.unpack("<d", data[at : at + 8])[0]))
            at += 8
        else:
            assert wire_type == 2, wire_type
            length = varint()
            fields.append((field, data[at : at + length]))
            at += length
    return fields


def named(message: bytes) -> tuple[str, bytes]:
    """A NamedSchema / NamedAny: (name, value message)."""
    parts = dict(read_protobuf(message))
    return parts[1].decode(), parts[2]


async def test_openapi_v2_as_the_protobuf_kubectl_1_20_reads(api: Api) -> None:
    """Field numbers of gnostic's openapiv2/OpenAPIv2.proto: Document.swagger 1, info 2,
    definitions 9; Schema.description 4, required 19, type 22, properties 25, x- 31."""
    await store_crds(api)
    async with api.http.get("/openapi/v2", headers={"Accept": PROTOBUF}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == openapi_protobuf.MEDIA_TYPE
        body = await response.read()
    document = read_protobuf(body)
    assert document[0] == (1, b"2.0")
    info = dict(read_protobuf(document[1][1]))
    assert info == {1: b"Kubernetes", 2: b"v1.30.0-kidp"}
    [(_, definitions)] = [f for f in document if f[0] == 9]
    schemas = dict(named(value) for _, value in read_protobuf(definitions))
    assert BROKER_SCHEMA in schemas
    broker = read_protobuf(schemas[BROKER_SCHEMA])
    by_field: dict[int, list[Any]] = {}
    for field, value in broker:
        by_field.setdefault(field, []).append(value)
    assert read_protobuf(by_field[22][0]) == [(1, b"object")]
    properties = dict(named(value) for _, value in read_protobuf(by_field[25][0]))
    assert {"apiVersion", "kind", "metadata", "spec", "status"} <= set(properties)
    metadata_ref = dict(read_protobuf(properties["metadata"]))[1].decode()
    assert metadata_ref == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    [extension] = [named(v) for v in by_field[31]]
    assert extension[0] == "x-kubernetes-group-version-kind"
    yaml_text = dict(read_protobuf(extension[1]))[2].decode()
    assert yaml.safe_load(yaml_text) == [
        {"group": "platform.company.com", "version": "v1", "kind": "Broker"}
    ]


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"minimum": 1.5}, [(9, 1.5)]),
        ({"maxLength": 3}, [(11, 3)]),
        ({"minItems": -1}, [(15, 2**64 - 1)]),  # int64 -1: ten-byte varint
        ({"uniqueItems": True}, [(16, 1)]),
        ({"required": ["a", "b"]}, [(19, b"a"), (19, b"b")]),
        ({"additionalProperties": False}, [(21, b"\x10\x00")]),
        ({"default": {"a": 1}}, [(5, b'\x12\x08{"a": 1}')]),
        ({"nullable": True, "format": "int32"}, [(2, b"int32")]),
    ],
)
def test_schema_fields_are_encoded_by_gnostic_numbers(
    schema: Manifest, expected: list[tuple[int, Any]]
) -> None:
    assert read_protobuf(openapi_protobuf.schema(schema)) == expected
