"""Request and response bodies of the broker HTTP contract, v1 (ARCHITECTURE.md §6).

Python names are snake_case; on the wire every field is camelCase (`deploymentId`),
and both spellings are accepted when parsing. Unknown fields are ignored, so an older
manager and a newer broker (or the other way round) still understand each other.

These models are the single description of the contract: the reference broker serves
them (and FastAPI turns them into `/openapi.json`), the client parses with them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

API_VERSION = "v1"

#: Phases of one deployment on a broker (`phase` in status, resources and callbacks).
PROVISIONING, READY, FAILED = "Provisioning", "Ready", "Failed"
DEPROVISIONING, DEPROVISIONED = "Deprovisioning", "Deprovisioned"
DEPLOYMENT_PHASES = (PROVISIONING, READY, FAILED, DEPROVISIONING, DEPROVISIONED)
_PHASE_DOC = "Phase of the deployment: " + ", ".join(DEPLOYMENT_PHASES) + "."

CallbackStatus = Literal["success", "failed", "in-progress"]

NonEmpty = Annotated[str, Field(min_length=1, max_length=253)]
HttpUrl = Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2048)]


def rfc3339(moment: datetime) -> str:
    """`2025-10-03T10:30:00Z`: UTC, whole seconds, as in Kubernetes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ContractModel(BaseModel):
    """camelCase on the wire, either spelling accepted, unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
    )

    def to_json_bytes(self) -> bytes:
        """The wire form (camelCase JSON); what is sent, and what a callback signs."""
        return self.model_dump_json().encode()


# --- health -----------------------------------------------------------------------------


class HealthResponse(ContractModel):
    """`GET /health`: 200 with status "healthy" means the broker can take work."""

    status: str = Field(
        description='"healthy" when the broker accepts work; "degraded" or anything else '
        "counts as a failed probe.",
        examples=["healthy"],
    )
    version: str = Field(default="", description="The broker's software version.")
    time: datetime | None = Field(default=None, description="The broker's clock (RFC 3339).")
    uptime: str = Field(default="", description='Time since start, like "2h15m30s".')
    uptime_seconds: float = Field(default=0, ge=0, description="Time since start in seconds.")
    active_deployments: int = Field(
        default=0, ge=0, description="Deployments provisioning or ready (the broker's load)."
    )
    total_deployments: int = Field(
        default=0, ge=0, description="Provision requests accepted since start."
    )
    failed_deployments: int = Field(
        default=0, ge=0, description="Deployments that ended Failed since start."
    )


# --- provision / deprovision ----------------------------------------------------------


class Owner(ContractModel):
    """Who owns the resource: the Database's `spec.owner`."""

    kind: str = Field(description="Tenant, Team or Application.")
    name: NonEmpty
    namespace: str = ""


class ProvisionRequest(ContractModel):
    """`POST /v1/provision`: create a resource. Idempotent by `requestId`."""

    resource_type: NonEmpty = Field(description='What to create, e.g. "Database".')
    resource_name: NonEmpty = Field(description="Name of the requesting object.")
    namespace: NonEmpty = Field(description="Namespace of the requesting object.")
    team: str = Field(default="", description="Owning team, for the broker's bookkeeping.")
    owner: Owner | None = Field(default=None, description="The owner from the object's spec.")
    callback_url: HttpUrl | None = Field(
        default=None, description="Where the broker POSTs the signed result callback."
    )
    spec: dict[str, Any] = Field(
        default_factory=dict, description="The requested resource's spec (engine, size, ...)."
    )
    request_id: NonEmpty = Field(
        description="Idempotency key: the requesting object's UID. The same requestId "
        "always yields the same deploymentId and is never provisioned twice."
    )


class Accepted(ContractModel):
    """202 answer to provision and deprovision: the work continues in the background."""

    status: Literal["accepted"] = "accepted"
    deployment_id: NonEmpty = Field(description="The broker's id of the deployment.")
    message: str = ""


ProvisionResponse = Accepted
DeprovisionResponse = Accepted


class DeprovisionRequest(ContractModel):
    """`POST /v1/deprovision`: remove a deployment. 404 means it is already gone."""

    deployment_id: NonEmpty
    resource_type: str = ""
    resource_name: str = ""
    namespace: str = ""
    callback_url: HttpUrl | None = Field(
        default=None, description="Where the broker POSTs the signed result callback."
    )


# --- status / inventory -----------------------------------------------------------------


class DeploymentStatus(ContractModel):
    """`GET /v1/status?deploymentId=`: the polling fallback when callbacks do not arrive."""

    deployment_id: NonEmpty
    phase: str = Field(description=_PHASE_DOC)
    message: str = ""
    last_updated: datetime | None = Field(default=None, description="RFC 3339.")


class ResourceItem(ContractModel):
    """One deployment in the broker's inventory."""

    deployment_id: NonEmpty
    request_id: str = ""
    resource_type: str = ""
    resource_name: str = ""
    namespace: str = ""
    phase: str = Field(description=_PHASE_DOC)
    endpoint: str | None = Field(default=None, description="Host to connect to, once Ready.")


class ResourceList(ContractModel):
    """`GET /v1/resources?namespace=`: for orphan sweeps and double-provision checks."""

    resources: list[ResourceItem]
    total: int = Field(ge=0)


# --- callbacks and errors ---------------------------------------------------------------


class CallbackPayload(ContractModel):
    """Body of the broker -> manager callback (signed, see `kidp_ops.brokerapi.signing`)."""

    deployment_id: NonEmpty
    resource_type: str = ""
    resource_name: str = ""
    namespace: str = ""
    status: CallbackStatus
    phase: str = Field(description=_PHASE_DOC)
    message: str = ""
    error: str | None = Field(default=None, description="Why it failed, when status is failed.")
    time: datetime = Field(description="When the broker sent the callback (RFC 3339).")
    endpoint: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    connection_secret: str | None = Field(
        default=None, description="Name of the Secret holding the connection credentials."
    )
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(ContractModel):
    """Body of every 4xx/5xx answer the reference broker gives (422 keeps FastAPI's form)."""

    error: str = Field(description='Machine-readable reason, e.g. "NotFound", "AtCapacity".')
    message: str = Field(description="One sentence for a person.")
