"""Typed resources: defaults mirror the CRD schema, and manifests round-trip."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kidp_ops.model.bundled import crd_schema
from kidp_ops.model.resources import (
    AtRest,
    Authentication,
    Backup,
    Broker,
    BrokerSpec,
    Database,
    DatabaseSpec,
    Encryption,
    HealthCheck,
    InTransit,
)
from tests.conftest import broker_manifest, load_yaml


def _schema_defaults(node: dict[str, Any]) -> dict[str, Any]:
    return {
        name: sub["default"]
        for name, sub in (node.get("properties") or {}).items()
        if "default" in sub and sub["default"] != {}
    }


def _python_defaults(cls: type) -> dict[str, Any]:
    from kidp_ops.model.convert import camel

    return {
        camel(f.name): f.default
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING
    }


@pytest.mark.parametrize(
    ("resource", "path", "cls"),
    [
        ("brokers.platform.company.com", ("spec",), BrokerSpec),
        ("brokers.platform.company.com", ("spec", "healthCheck"), HealthCheck),
        ("brokers.platform.company.com", ("spec", "authentication"), Authentication),
        ("databases.platform.company.com", ("spec",), DatabaseSpec),
    ],
)
def test_python_defaults_mirror_the_crd(resource: str, path: tuple[str, ...], cls: type) -> None:
    """The CRD is the source of truth; every schema default has the same Python default."""
    schema_defaults = _schema_defaults(dict(crd_schema(resource).subschema(*path)))
    python = _python_defaults(cls)
    assert schema_defaults, "the schema has defaults here"
    for key, value in schema_defaults.items():
        assert python.get(key) == value, f"{cls.__name__}.{key}"


def test_backup_encryption_and_ha_have_no_defaults() -> None:
    """As in the seed system: what the manifest leaves out stays out (and so stays out of
    the provision request)."""
    spec = crd_schema("databases.platform.company.com").subschema("spec")
    for name in ("backup", "encryption", "highAvailability"):
        node = spec["properties"][name]
        assert "default" not in node
        assert not _schema_defaults(dict(node)), name
    database = Database.from_manifest(
        {
            "apiVersion": "platform.company.com/v1",
            "kind": "Database",
            "metadata": {"name": "d", "namespace": "ns"},
            "spec": {"owner": {"kind": "Team", "name": "t"}, "engine": "redis"},
        }
    )
    assert (database.spec.backup, database.spec.encryption) == (None, None)
    assert database.spec.high_availability is None
    assert set(database.to_manifest()["spec"]) == {"owner", "engine", "size"}


def test_seed_shapes_of_backup_and_encryption_convert() -> None:
    database = Database.from_manifest(
        {
            "apiVersion": "platform.company.com/v1",
            "kind": "Database",
            "metadata": {"name": "d", "namespace": "ns"},
            "spec": {
                "owner": {"kind": "Application", "name": "api", "namespace": "ns"},
                "engine": "postgresql",
                "backup": {"enabled": True, "retention": "30d", "pointInTimeRestore": True},
                "encryption": {
                    "atRest": {"enabled": True, "kmsKeyId": "k-1"},
                    "inTransit": {"enabled": True, "minTLSVersion": "1.3"},
                },
            },
        }
    )
    assert database.spec.backup == Backup(True, "30d", None, True)
    assert database.spec.encryption == Encryption(AtRest(True, "k-1"), InTransit(True, "1.3"))
    wire = database.to_manifest()["spec"]
    assert wire["encryption"]["inTransit"] == {"enabled": True, "minTLSVersion": "1.3"}
    assert Database.from_manifest(database.to_manifest()) == database


def test_sparse_manifest_gets_schema_defaults() -> None:
    broker = Broker.from_manifest(broker_manifest("b"))
    assert broker.spec.priority == 100
    assert broker.spec.max_concurrent_deployments == 10
    assert broker.spec.health_check == HealthCheck("/health", 30, 5, 3, 1)
    assert broker.spec.capability("Database") is not None
    assert broker.spec.capability("Cache") is None
    assert broker.metadata.key == "kidp-system/b"


@pytest.mark.parametrize("path", ["samples", "samples/dev"])
def test_samples_round_trip(path: str) -> None:
    from tests.conftest import REPO

    for file in sorted((REPO / path).glob("*.yaml")):
        for doc in load_yaml(file):
            cls = {"Broker": Broker, "Database": Database}.get(doc["kind"])
            if cls is None:
                continue
            typed = cls.from_manifest(doc)
            assert cls.from_manifest(typed.to_manifest()) == typed


names = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)


@given(
    name=names,
    priority=st.integers(0, 10_000),
    max_deployments=st.integers(0, 500),
    providers=st.lists(names, max_size=4, unique=True),
    region=st.sampled_from(["", "eastus", "us-west-2"]),
    phase=st.sampled_from(["Pending", "Ready", "Unhealthy", "Offline", "Unknown"]),
    active=st.integers(0, 100),
)
def test_broker_manifest_round_trip(
    name: str,
    priority: int,
    max_deployments: int,
    providers: list[str],
    region: str,
    phase: str,
    active: int,
) -> None:
    manifest = broker_manifest(
        name,
        priority=priority,
        maxConcurrentDeployments=max_deployments,
        region=region,
        capabilities=[{"resourceType": "Database", "providers": providers}],
    )
    manifest["status"] = {
        "phase": phase,
        "activeDeployments": active,
        "lastHeartbeat": "2026-01-02T03:04:05Z",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Probed",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
            }
        ],
    }
    broker = Broker.from_manifest(manifest)
    assert broker.status.phase == phase and broker.status.active_deployments == active
    again = broker.to_manifest()
    assert again["status"]["lastHeartbeat"] == "2026-01-02T03:04:05Z"
    assert Broker.from_manifest(again) == broker
    if region:
        assert again["spec"]["region"] == region
