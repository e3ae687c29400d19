"""The resource kinds kidp-ops knows, and how a manifest or a typed name maps to one.

A leaf module (it imports only `kidp_ops.errors`): the model, the Cluster port and its
adapters, the commands and the dashboard all name kinds, so none of them has to import
another to do it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kidp_ops.errors import Invalid

Manifest = dict[str, Any]

GROUP = "platform.company.com"
VERSION = "v1"


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """One REST resource: enough to build its URL and name it to a person."""

    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """`brokers.platform.company.com`, `secrets` (kubectl's fully-qualified name)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def singular(self) -> str:
        return self.kind.lower()


BROKERS = ResourceKind(GROUP, VERSION, "Broker", "brokers", short_names=("br",))
DATABASES = ResourceKind(GROUP, VERSION, "Database", "databases", short_names=("db",))
LEASES = ResourceKind("coordination.k8s.io", "v1", "Lease", "leases")
SECRETS = ResourceKind("", "v1", "Secret", "secrets")
EVENTS = ResourceKind("", "v1", "Event", "events", short_names=("ev",))
CRDS = ResourceKind(
    "apiextensions.k8s.io",
    "v1",
    "CustomResourceDefinition",
    "customresourcedefinitions",
    namespaced=False,
    short_names=("crd",),
)
BUILTIN_KINDS: tuple[ResourceKind, ...] = (LEASES, SECRETS, EVENTS, CRDS)
PLATFORM_KINDS: tuple[ResourceKind, ...] = (BROKERS, DATABASES)
KNOWN_KINDS: tuple[ResourceKind, ...] = PLATFORM_KINDS + BUILTIN_KINDS


def kind_for_manifest(manifest: Mapping[str, Any]) -> ResourceKind:
    """The known ResourceKind of a manifest, by apiVersion and kind."""
    api_version, kind = manifest.get("apiVersion"), manifest.get("kind")
    for known in KNOWN_KINDS:
        if known.api_version == api_version and known.kind == kind:
            return known
    allowed = ", ".join(f"{k.api_version} {k.kind}" for k in KNOWN_KINDS)
    raise Invalid(
        f"unknown kind {api_version!r} {kind!r} (allowed: {allowed})",
        field=".kind",
    )


def kind_by_name(name: str) -> ResourceKind:
    """Resolve what a person types after `get`/`delete`: plural, singular, short or qualified."""
    wanted = name.lower()
    for known in KNOWN_KINDS:
        names = {known.plural, known.singular, known.resource, *known.short_names}
        names.add(f"{known.singular}.{known.group}" if known.group else known.singular)
        if wanted in names:
            return known
    allowed = ", ".join(k.plural for k in KNOWN_KINDS)
    raise Invalid(f"unknown resource type {name!r} (allowed: {allowed})")


def object_key(obj: Mapping[str, Any]) -> str:
    """`namespace/name`, or `name` for a cluster-scoped object: the key of caches and queues."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name', '')}" if namespace else str(meta.get("name", ""))
