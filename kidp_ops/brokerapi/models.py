"""Request and response bodies of the broker HTTP contract, v1 (ARCHITECTURE.md §6).

The base is the seed system's published contract (aykay76/kidp: `pkg/broker/models.go`,
`cmd/broker/main.go`); ours are optional additions a seed broker ignores (`requestId`,
`phase` in status answers, `requestId` in inventory items). Both directions work: our
manager with a seed broker, the seed's manager with our reference broker.

Python names are snake_case; on the wire every field is camelCase (`deploymentId`), and
both spellings are accepted when parsing. Unknown fields are ignored, so an older manager
and a newer broker (or the other way round) still understand each other.

These models are the single description of the contract: the reference broker serves
them (and FastAPI turns them into `/openapi.json`), the client parses with them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from kidp_ops.brokerapi.gojson import marshal_callback

API_VERSION = "v1"

#: Phases of one deployment on a broker (`phase` in status, resources and callbacks), as
#: the seed system names them. Deprovisioning/Deprovisioned (earlier kidp-ops brokers)
#: are read as Deleting/Deleted.
PROVISIONING, READY, FAILED = "Provisioning", "Ready", "Failed"
DELETING, DELETED = "Deleting", "Deleted"
DEPLOYMENT_PHASES = (PROVISIONING, READY, FAILED, DELETING, DELETED)
PHASE_ALIASES = {"Deprovisioning": DELETING, "Deprovisioned": DELETED}
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


class ProvisionRequest(ContractModel):
    """`POST /v1/provision`: create a resource.

    As the seed's manager sends it: `resourceType` (lower-case, e.g. "database"), `team`
    ("<owner kind>/<owner name>") and `owner` (the owner's name) are strings, `spec` the
    resource's spec. Ours: `requestId`, the requesting object's UID; the same requestId
    always yields the same deploymentId. Without one, a broker is idempotent by namespace,
    resource type and name.
    """

    resource_type: NonEmpty = Field(description='What to create, e.g. "database".')
    resource_name: NonEmpty = Field(description="Name of the requesting object.")
    namespace: NonEmpty = Field(description="Namespace of the requesting object.")
    team: str = Field(default="", description='The owner as "<kind>/<name>", e.g. "Team/payments".')
    owner: str = Field(default="", description="The owner's name, e.g. payments.")
    callback_url: HttpUrl | None = Field(
        default=None, description="Where the broker POSTs the signed result callback."
    )
    spec: dict[str, Any] = Field(
        default_factory=dict, description="The requested resource's spec (engine, size, ...)."
    )
    request_id: str | None = Field(
        default=None,
        max_length=253,
        description="Idempotency key (kidp-ops addition): the requesting object's UID. "
        "The same requestId always yields the same deploymentId and is never provisioned "
        "twice. Absent: idempotent by namespace, resource type and name.",
    )

    @field_validator("owner", mode="before")
    @classmethod
    def _owner_name(cls, value: Any) -> Any:
        """Earlier kidp-ops managers sent the owner as an object: keep its name."""
        if isinstance(value, dict):
            return str(value.get("name") or "")
        return value

    def idempotency_key(self) -> str:
        """requestId, else namespace/resourceType/resourceName (the type in lower case)."""
        if self.request_id:
            return self.request_id
        return f"{self.namespace}/{self.resource_type.lower()}/{self.resource_name}"


class ProvisionResponse(ContractModel):
    """202 answer to provision: the work continues in the background."""

    status: str = "accepted"
    deployment_id: NonEmpty = Field(description="The broker's id of the deployment.")
    message: str = ""


class DeprovisionRequest(ContractModel):
    """`POST /v1/deprovision`: remove a deployment. 404 means it is already gone."""

    deployment_id: NonEmpty
    resource_type: str = ""
    resource_name: str = ""
    namespace: str = ""
    callback_url: HttpUrl | None = Field(
        default=None, description="Where the broker POSTs the signed result callback."
    )


class DeprovisionResponse(ContractModel):
    """202 answer to deprovision. The seed's broker sends no deploymentId; ours does."""

    status: str = "accepted"
    message: str = ""
    deployment_id: str | None = None


# --- status / inventory -----------------------------------------------------------------


class DeploymentStatus(ContractModel):
    """`GET /v1/status?id=` (we also send `deploymentId=`): the polling fallback when
    callbacks do not arrive. An answer without `phase` (the seed's broker answers
    `status: "unknown"`) means the broker cannot tell: still working."""

    deployment_id: str = ""
    phase: str | None = Field(default=None, description=_PHASE_DOC)
    status: str | None = Field(default=None, description='The seed\'s broker says "unknown".')
    message: str = ""
    last_updated: datetime | None = Field(default=None, description="RFC 3339.")


class ResourceItem(ContractModel):
    """One deployment in the broker's inventory."""

    deployment_id: NonEmpty
    request_id: str = Field(default="", description="kidp-ops addition; may be absent.")
    resource_type: str = ""
    resource_name: str = ""
    namespace: str = ""
    phase: str = Field(default="", description=_PHASE_DOC)
    endpoint: str | None = Field(default=None, description="Host to connect to, once Ready.")

    def is_for(self, *, request_id: str, namespace: str, resource_type: str, name: str) -> bool:
        """Whether this item is the deployment of that request: by requestId when the
        broker reports one, else by namespace, resource type (any case) and name."""
        if self.request_id:
            return self.request_id == request_id
        return (
            self.namespace == namespace
            and self.resource_type.lower() == resource_type.lower()
            and self.resource_name == name
        )


class ResourceList(ContractModel):
    """`GET|POST /v1/resources?namespace=`: for orphan sweeps and deprovision checks."""

    resources: list[ResourceItem]
    total: int = Field(ge=0)
    namespace: str | None = None


class ResourceQuery(ContractModel):
    """`POST /v1/resources` body (the GET form takes the same names as query parameters)."""

    namespace: str = ""
    resource_type: str = ""
    resource_name: str = ""
    deployment_id: str = ""


# --- callbacks and errors ---------------------------------------------------------------


class CallbackPayload(ContractModel):
    """Body of the broker -> manager callback, the seed's `CallbackRequest`, field for field
    and in its order (signed, see `kidp_ops.brokerapi.signing`). Sent as Go's `json.Marshal`
    writes it (`to_json_bytes`), because the seed's manager verifies the signature over its
    own re-marshal of the body."""

    deployment_id: NonEmpty
    resource_type: str = ""
    resource_name: str = ""
    namespace: str = ""
    status: str = Field(default="", description="success, failed or in-progress.")
    phase: str = Field(default="", description=_PHASE_DOC)
    message: str = ""
    error: str = Field(default="", description="Why it failed, when status is failed.")
    time: datetime = Field(description="When the broker sent the callback (RFC 3339).")
    endpoint: str = ""
    port: int = Field(default=0, ge=0, le=65535)
    connection_secret: str = Field(
        default="", description="Name of the Secret holding the connection credentials."
    )
    details: dict[str, Any] = Field(default_factory=dict)
    additional_metadata: dict[str, str] = Field(default_factory=dict)
    estimated_monthly_cost: float = Field(default=0.0, ge=0)

    def to_json_bytes(self) -> bytes:
        """The exact bytes Go's `json.Marshal` of the seed's CallbackRequest gives."""
        return marshal_callback(
            {**self.model_dump(by_alias=True, exclude={"time"}), "time": self.time}
        )


class ErrorResponse(ContractModel):
    """Body of every 4xx/5xx JSON answer, as the seed's broker writes it."""

    error: str = Field(description='Machine-readable reason, e.g. "validation_failed".')
    message: str = Field(description="One sentence for a person.")
    code: int = Field(default=0, description="The HTTP status again.")
