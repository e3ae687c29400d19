"""Checks a CRD schema cannot express, and whole-document validation for `kidp-ops validate`.

`semantic_problems` is what an admission webhook would add on a real cluster; the embedded
store runs it on every spec write, so the embedded default and `validate` agree.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kidp_ops.errors import FieldProblem, Invalid
from kidp_ops.kinds import BROKERS, DATABASES, kind_for_manifest
from kidp_ops.model.bundled import crd_schema
from kidp_ops.model.schema import check_metadata


@dataclass(frozen=True, slots=True)
class Problem:
    """One line of `kidp-ops validate`: `PATH: Kind namespace/name: .spec.field: message`."""

    source: str
    obj: str
    field: str
    message: str

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.obj, self.field) if p]
        return ": ".join([*parts, self.message])


def object_label(manifest: Mapping[str, Any]) -> str:
    """`Broker kidp-system/aws-us-east-1`, as a person would name it."""
    kind = manifest.get("kind") if isinstance(manifest.get("kind"), str) else "object"
    raw_meta = manifest.get("metadata")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    name = meta.get("name") or meta.get("generateName") or "<unnamed>"
    namespace = meta.get("namespace") or "default"
    cluster_scoped = kind == "CustomResourceDefinition"
    return f"{kind} {name}" if cluster_scoped else f"{kind} {namespace}/{name}"


def _endpoint_problems(url: str) -> list[FieldProblem]:
    endpoint, found = urlsplit(url), []
    if not endpoint.hostname:
        found.append(FieldProblem(".spec.endpoint", "has no host (e.g. http://broker:8080)"))
    if endpoint.query or endpoint.fragment:
        found.append(
            FieldProblem(
                ".spec.endpoint",
                "must not have a query or fragment (API and health paths are appended to it)",
            )
        )
    return found


def _broker_problems(spec: Mapping[str, Any], namespace: str) -> list[FieldProblem]:
    """The rules a Broker obeys beyond its schema. Each one is stricter than the seed
    system on purpose, and says why (docs/seed-compatibility.md lists them)."""
    found = _endpoint_problems(str(spec.get("endpoint", "")))
    check = spec.get("healthCheck") or {}
    timeout, interval = check.get("timeoutSeconds"), check.get("intervalSeconds")
    if isinstance(timeout, int) and isinstance(interval, int) and timeout >= interval:
        found.append(
            FieldProblem(
                ".spec.healthCheck.timeoutSeconds",
                f"{timeout} must be less than intervalSeconds ({interval}): a probe must end "
                "before the next one is due",
            )
        )
    secret = (spec.get("authentication") or {}).get("secretRef") or {}
    if secret.get("namespace") not in (None, "", namespace):
        found.append(
            FieldProblem(
                ".spec.authentication.secretRef.namespace",
                f'"{secret["namespace"]}" is not the Broker\'s namespace "{namespace}": '
                "kidp-ops reads broker credentials only from the Broker's own namespace, so "
                "a Broker cannot make it read another tenant's Secret (omit it, or use "
                f'"{namespace}")',
            )
        )
    pinned = spec.get("callbackPublicKey")
    if pinned and not _is_public_key(str(pinned)):
        found.append(
            FieldProblem(
                ".spec.callbackPublicKey",
                "must be the base64 of a 32-byte Ed25519 public key (as status.callbackPublicKey)",
            )
        )
    return found


def _is_public_key(text: str) -> bool:
    try:
        return len(base64.b64decode(text.strip(), validate=True)) == 32
    except binascii.Error:
        return False


def _database_problems(spec: Mapping[str, Any]) -> list[FieldProblem]:
    if spec.get("region") and not spec.get("cloudProvider") and not spec.get("target"):
        return [
            FieldProblem(".spec.region", "needs cloudProvider (or a target such as azure-eastus)")
        ]
    return []


def semantic_problems(manifest: Mapping[str, Any]) -> list[FieldProblem]:
    """Cross-field rules of Broker and Database, on an already defaulted, schema-valid object."""
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        return []
    if manifest.get("kind") == BROKERS.kind and manifest.get("apiVersion") == BROKERS.api_version:
        namespace = (manifest.get("metadata") or {}).get("namespace") or "default"
        return _broker_problems(spec, str(namespace))
    if (
        manifest.get("kind") == DATABASES.kind
        and manifest.get("apiVersion") == DATABASES.api_version
    ):
        return _database_problems(spec)
    return []


def manifest_problems(manifest: Mapping[str, Any]) -> list[FieldProblem]:
    """Everything the API server (plus our admission rules) would reject, offline."""
    try:
        kind = kind_for_manifest(manifest)
    except Invalid as exc:
        return list(exc.problems)
    problems = check_metadata(manifest, namespaced=kind.namespaced)
    if kind in (BROKERS, DATABASES):
        schema = crd_schema(kind.resource)
        defaulted = copy.deepcopy(dict(manifest))
        schema.default(defaulted)
        problems += schema.problems(defaulted)
        if not problems:
            problems += semantic_problems(defaulted)
    return problems
