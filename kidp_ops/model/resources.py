"""Typed Broker and Database resources (spec and status), as frozen slotted dataclasses.

`from_manifest` applies the CRD's defaults first (the schema is the source of truth; the
Python defaults below mirror it and a test keeps them equal), so a Broker built from a
sparse manifest has the same values an API server would store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, Self

from kidp_ops.kinds import BROKERS, DATABASES, ResourceKind
from kidp_ops.model.bundled import crd_schema
from kidp_ops.model.convert import from_json, json_copy, to_json

BrokerPhase = Literal["Pending", "Ready", "Unhealthy", "Offline", "Unknown"]
DatabasePhase = Literal["Pending", "Provisioning", "Ready", "Failed", "Deleting"]
CLOUD_PROVIDERS = ("azure", "aws", "gcp", "on-prem")
_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    name: str = ""
    namespace: str = "default"
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    finalizers: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """`namespace/name`, the work-queue and cache key."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: Literal["True", "False", "Unknown"] = "Unknown"
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None
    observed_generation: int | None = None


@dataclass(frozen=True, slots=True)
class Reference:
    name: str = ""
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    name: str
    namespace: str | None = None  # only the Broker's own (model/validation.py)
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Authentication:
    """`spec.authentication`; `type` defaults to jwt as in the seed's CRD. A Broker without
    `authentication` (BrokerSpec.authentication None) authenticates with nothing."""

    type: Literal["jwt", "mtls", "api-key", "none"] = "jwt"
    secret_ref: SecretKeyRef | None = None


@dataclass(frozen=True, slots=True)
class HealthCheck:
    endpoint: str = "/health"
    interval_seconds: int = 30
    timeout_seconds: int = 5
    failure_threshold: int = 3
    success_threshold: int = 1


@dataclass(frozen=True, slots=True)
class Capability:
    resource_type: str
    providers: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BrokerSpec:
    endpoint: str
    cloud_provider: str
    region: str = ""
    priority: int = 100
    max_concurrent_deployments: int = 10
    capabilities: tuple[Capability, ...] = ()
    authentication: Authentication | None = None
    health_check: HealthCheck = HealthCheck()
    unschedulable: bool = False
    callback_public_key: str | None = None  # operator-pinned; wins over status'
    allowed_namespaces: tuple[str, ...] | None = None  # None: every namespace; (): none

    def serves_namespace(self, namespace: str) -> bool:
        """Whether a Database in `namespace` may be placed on this broker."""
        return self.allowed_namespaces is None or namespace in self.allowed_namespaces

    def capability(self, resource_type: str) -> Capability | None:
        """The first capability of `resource_type` (see `capabilities_of` for all of them)."""
        return next((c for c in self.capabilities if c.resource_type == resource_type), None)

    def capabilities_of(self, resource_type: str) -> tuple[Capability, ...]:
        """Every capability of `resource_type`: a type listed twice matches when any entry
        does (as the seed's registry reads it)."""
        return tuple(c for c in self.capabilities if c.resource_type == resource_type)

    def named_regions(self) -> set[str]:
        """Every region this broker names: `region` and its capabilities' `regions`."""
        named = {region for capability in self.capabilities for region in capability.regions}
        if self.region:
            named.add(self.region)
        return named


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    phase: BrokerPhase | None = None
    last_heartbeat: datetime | None = None
    active_deployments: int = 0
    version: str | None = None
    conditions: tuple[Condition, ...] = ()
    observed_generation: int | None = None
    message: str | None = None
    callback_public_key: str | None = None
    consecutive_failures: int = 0
    last_probe_latency_ms: float | None = None

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


class _Resource:
    """Shared manifest conversion of the two top-level kinds."""

    __slots__ = ()
    KIND: ResourceKind

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> Self:
        defaulted = json_copy(dict(manifest))
        crd_schema(cls.KIND.resource).default(defaulted)
        return from_json(cls, defaulted)

    def to_manifest(self) -> dict[str, Any]:
        return {"apiVersion": self.KIND.api_version, "kind": self.KIND.kind, **to_json(self)}


@dataclass(frozen=True, slots=True)
class Broker(_Resource):
    KIND = BROKERS
    metadata: ObjectMeta
    spec: BrokerSpec
    status: BrokerStatus = BrokerStatus()

    @property
    def key(self) -> str:
        return self.metadata.key


@dataclass(frozen=True, slots=True)
class Owner:
    kind: Literal["Tenant", "Team", "Application"]
    name: str
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class Backup:
    enabled: bool = False
    retention: str = ""  # ^\d+[dhm]$, e.g. 30d
    schedule: str | None = None
    point_in_time_restore: bool | None = None


@dataclass(frozen=True, slots=True)
class AtRest:
    enabled: bool = False
    kms_key_id: str | None = None


@dataclass(frozen=True, slots=True)
class InTransit:
    enabled: bool = False
    min_tls_version: str | None = field(default=None, metadata={"json": "minTLSVersion"})


@dataclass(frozen=True, slots=True)
class Encryption:
    at_rest: AtRest = AtRest()
    in_transit: InTransit = InTransit()


@dataclass(frozen=True, slots=True)
class Cost:
    estimated_monthly: float | None = None
    currency: str | None = None
    last_updated: datetime | None = None


@dataclass(frozen=True, slots=True)
class LastCallback:
    """The replay guard: the signed time of the last applied callback and the digests of
    the callbacks applied at that very time (callbacks.py)."""

    time: str = ""
    digests: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DatabaseSpec:
    engine: str
    owner: Owner | None = None
    version: str | None = None
    size: str = "small"
    target: str | None = None
    cloud_provider: str | None = None
    region: str | None = None
    provider: str | None = None
    backup: Backup | None = None
    encryption: Encryption | None = None
    high_availability: bool | None = None
    parameters: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class DatabaseStatus:
    phase: DatabasePhase | None = None
    deployment_id: str | None = None
    broker_ref: Reference | None = None
    endpoint: str | None = None
    port: int | None = None
    connection_secret_ref: Reference | None = None
    cloud_resource_id: str | None = None
    cost: Cost | None = None
    last_backup: datetime | None = None
    conditions: tuple[Condition, ...] = ()
    observed_generation: int | None = None
    message: str | None = None
    last_callback: LastCallback | None = None

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


@dataclass(frozen=True, slots=True)
class Database(_Resource):
    KIND = DATABASES
    metadata: ObjectMeta
    spec: DatabaseSpec
    status: DatabaseStatus = DatabaseStatus()

    @property
    def key(self) -> str:
        return self.metadata.key
