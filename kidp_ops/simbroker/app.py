"""The reference broker's HTTP face: a FastAPI app over one `Simulation`.

Its `/openapi.json` is the machine-readable form of the v1 contract (the admin
endpoint, which only the simulation has, is left out of it).

Credentials: when the broker is given an API key and/or a bearer token, every contract
endpoint (`/health` and `/v1/*`) and `/admin/knobs` require one of them (compared in
constant time), and answer 401 otherwise. `/health` is included on purpose: the prober
sends the broker's credentials, so a wrong Secret shows up as a failing probe instead
of a broker that looks healthy and then rejects every provision. `/readiness`, the
OpenAPI document and the docs UI stay open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request, Security
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from kidp_ops.brokerapi.models import (
    API_VERSION,
    CallbackPayload,
    DeploymentStatus,
    DeprovisionRequest,
    DeprovisionResponse,
    ErrorResponse,
    HealthResponse,
    ProvisionRequest,
    ProvisionResponse,
    ResourceList,
    ResourceQuery,
)
from kidp_ops.simbroker.knobs import MAX_DELAY_SECONDS, MAX_VERSION_LENGTH, parse_health_mode
from kidp_ops.simbroker.simulation import AtCapacity, Simulation, UnknownDeployment

HANG_LIMIT_SECONDS = 3600.0
HANG_POLL_SECONDS = 0.2
HUGE_BODY_BYTES = 1024 * 1024
RETRY_AFTER_SECONDS = 5

DESCRIPTION = """\
The KIDP broker API, version 1: what a broker serves so that kidp-ops can health-check
it, provision and deprovision through it, and sweep its inventory.

Results arrive as signed callbacks (see the callbacks of `POST /v1/provision`):
`X-KIDP-Signature` is the base64 Ed25519 signature over `X-KIDP-Timestamp + "." + body`,
checked against the broker's `status.callbackPublicKey`. `GET /v1/status` is the
polling fallback. When the broker is configured with credentials, send `X-API-Key` or
`Authorization: Bearer`; `/health` needs them too."""


class ApiError(Exception):
    """An error answer with the contract's `{"error", "message"}` body."""

    def __init__(
        self, status: int, error: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.headers = status, error, message, headers


def _error_response(exc: ApiError) -> JSONResponse:
    body = ErrorResponse(error=exc.error, message=exc.message, code=exc.status).model_dump()
    return JSONResponse(status_code=exc.status, content=body, headers=exc.headers)


async def _api_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _error_response(exc)


async def _invalid_body_handler(request: Request, exc: Exception) -> Response:
    """A contract request that does not fit: 400 in the seed broker's words
    (`invalid_request` when it is not JSON, `validation_failed` for a missing or wrong
    field), not FastAPI's 422 (which the simulation's own /admin endpoints keep)."""
    assert isinstance(exc, RequestValidationError)
    if not request.url.path.startswith(f"/{API_VERSION}/"):
        return await request_validation_exception_handler(request, exc)
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return _error_response(ApiError(400, "invalid_request", "request body is not JSON"))
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    message = f"{where}: {first.get('msg', 'invalid')}"
    if first.get("type") == "missing":
        message = f"{where} is required"
    return _error_response(ApiError(400, "validation_failed", message))


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}


# --- credentials ------------------------------------------------------------------------

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Broker API key (authentication type api-key)"
)
_bearer = HTTPBearer(auto_error=False, description="Bearer token (authentication type jwt)")


def _same(given: str | None, expected: str | None) -> bool:
    if given is None or expected is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _auth_dependency(api_key: str | None, token: str | None) -> Callable[..., Awaitable[None]]:
    async def require_credentials(
        key: Annotated[str | None, Security(_api_key_header)] = None,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
    ) -> None:
        if api_key is None and token is None:
            return
        if _same(key, api_key) or _same(bearer.credentials if bearer else None, token):
            return
        wanted = " or ".join(
            k for k, v in (("X-API-Key", api_key), ("Authorization: Bearer", token)) if v
        )
        challenge = {"WWW-Authenticate": "Bearer"} if token else None
        raise ApiError(401, "Unauthorized", f"missing or wrong credentials ({wanted})", challenge)

    return require_credentials


# --- health -----------------------------------------------------------------------------


async def _hang(request: Request, sim: Simulation) -> Response:
    """Answer nothing until the client leaves, the broker stops, or an hour has passed.
    Only this request waits: the loop keeps serving everything else."""
    deadline = sim.clock() + HANG_LIMIT_SECONDS
    sim.hanging += 1
    try:
        while not sim.stopping.is_set() and sim.clock() < deadline:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HANG_POLL_SECONDS):
                    await sim.stopping.wait()
            if await request.is_disconnected():
                break
    finally:
        sim.hanging -= 1
    return _error_response(ApiError(503, "ShuttingDown", "stopped hanging"))


def _health_body(sim: Simulation, status: str) -> dict[str, Any]:
    return sim.health(status).model_dump(mode="json")


def _health_router(sim: Simulation) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get(
        "/health",
        response_model=HealthResponse,
        summary="Liveness and load of the broker",
        description='200 with `status` "healthy" when the broker can take work; the '
        "prober also reads `version` and `activeDeployments`. Any other answer is a "
        "failed probe.",
        responses={**_errors(401), 503: {"model": HealthResponse}},
    )
    async def health(request: Request) -> Response:
        mode = sim.health_mode_now()
        if mode == "hang":
            return await _hang(request, sim)
        if mode == "fail":
            return JSONResponse(status_code=503, content=_health_body(sim, "unhealthy"))
        if mode == "garbage":
            return Response(b"<html><body>502 Bad Gateway", media_type="application/json")
        if mode == "huge":
            body = {**_health_body(sim, "healthy"), "padding": "x" * HUGE_BODY_BYTES}
            return Response(json.dumps(body).encode(), media_type="application/json")
        status = "degraded" if mode == "degraded" else "healthy"
        return JSONResponse(content=_health_body(sim, status))

    return router


def _readiness_router(sim: Simulation) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get(
        "/readiness",
        summary="Readiness (for a kubelet probe; needs no credentials)",
        responses={503: {"description": "Not ready: health mode fail, or shutting down"}},
    )
    async def readiness() -> JSONResponse:
        if sim.stopping.is_set() or sim.health_mode_now() == "fail":
            return JSONResponse(status_code=503, content={"status": "not ready"})
        return JSONResponse(content={"status": "ready"})

    return router


# --- the v1 contract --------------------------------------------------------------------

_callbacks = APIRouter()


@_callbacks.post(
    "{$request.body#/callbackUrl}",
    summary="Result callback, broker -> kidp-ops (signed)",
    description="Sent when provisioning or deprovisioning ends. Verify `X-KIDP-Signature` "
    '(base64 Ed25519 over `X-KIDP-Timestamp + "." + raw body`) against the Broker\'s '
    "`status.callbackPublicKey`; reject timestamps outside +-5 minutes and replays.",
)
def _result_callback(  # pragma: no cover - documentation only, never served
    body: CallbackPayload,
    x_kidp_broker_name: Annotated[
        str, Header(description="namespace/name of the Broker, or its bare name when unique")
    ],
    x_kidp_timestamp: Annotated[str, Header(description="RFC 3339 time of signing")],
    x_kidp_signature: Annotated[str, Header(description="base64 Ed25519 signature")],
) -> None:
    """Documentation of the callback the broker sends."""


# size: the contract's routes as closures over one simulation, in docs/BROKER_API.md order
def _v1_router(sim: Simulation) -> APIRouter:
    router = APIRouter(prefix=f"/{API_VERSION}", tags=["deployments"])

    @router.post(
        "/provision",
        status_code=202,
        response_model=ProvisionResponse,
        summary="Provision a resource (idempotent by requestId, else by namespace/type/name)",
        description="Accepts the request and provisions in the background; the result "
        "arrives as a callback. The same requestId (or, without one, the same namespace, "
        "resource type and name) always answers with the same deploymentId and never "
        "provisions twice. 429 when the broker is at capacity; 400 validation_failed for "
        "a missing field.",
        responses=_errors(400, 401, 429),
        callbacks=_callbacks.routes,
    )
    async def provision(request: ProvisionRequest) -> ProvisionResponse:
        try:
            deployment, created = sim.provision(request)
        except AtCapacity as exc:
            retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            raise ApiError(429, "AtCapacity", str(exc), retry) from None
        message = (
            f"Provisioning request accepted for {request.resource_type}/{request.resource_name}"
            if created
            else f"already accepted ({deployment.phase})"
        )
        return ProvisionResponse(deployment_id=deployment.deployment_id, message=message)

    @router.post(
        "/deprovision",
        status_code=202,
        response_model=DeprovisionResponse,
        summary="Deprovision a deployment",
        description="Accepts and removes the deployment in the background (callback when "
        "done). 404 when the broker does not know the deploymentId: it is already gone.",
        responses=_errors(400, 401, 404),
    )
    async def deprovision(request: DeprovisionRequest) -> DeprovisionResponse:
        try:
            deployment = sim.deprovision(request)
        except UnknownDeployment as exc:
            raise ApiError(404, "NotFound", str(exc)) from None
        message = f"Deprovisioning request accepted for deployment {deployment.deployment_id}"
        return DeprovisionResponse(deployment_id=deployment.deployment_id, message=message)

    @router.get(
        "/status",
        response_model=DeploymentStatus,
        summary="Phase of one deployment (polling fallback for callbacks)",
        description="`?id=` as in the seed's contract; `?deploymentId=` also works.",
        responses=_errors(400, 401, 404),
    )
    async def status(
        id_: Annotated[str | None, Query(alias="id")] = None,
        deployment_id: Annotated[str | None, Query(alias="deploymentId")] = None,
    ) -> DeploymentStatus:
        wanted = id_ or deployment_id
        if not wanted:
            raise ApiError(400, "validation_failed", "id is required")
        try:
            return sim.get(wanted).status()
        except UnknownDeployment as exc:
            raise ApiError(404, "NotFound", str(exc)) from None

    @router.get(
        "/resources",
        response_model=ResourceList,
        summary="The broker's inventory (all namespaces unless one is given)",
        responses=_errors(401),
    )
    async def resources(
        namespace: Annotated[str | None, Query()] = None,
        resource_type: Annotated[str | None, Query(alias="resourceType")] = None,
        resource_name: Annotated[str | None, Query(alias="resourceName")] = None,
        deployment_id: Annotated[str | None, Query(alias="deploymentId")] = None,
    ) -> ResourceList:
        query = ResourceQuery(
            namespace=namespace or "",
            resource_type=resource_type or "",
            resource_name=resource_name or "",
            deployment_id=deployment_id or "",
        )
        return sim.inventory(query)

    @router.post(
        "/resources",
        response_model=ResourceList,
        summary="The broker's inventory, asked with a JSON body (as the seed's contract allows)",
        responses=_errors(400, 401),
    )
    async def resources_query(query: ResourceQuery) -> ResourceList:
        return sim.inventory(query)

    return router


# --- simulation admin -------------------------------------------------------------------


class KnobsPatch(BaseModel):
    """PATCH /admin/knobs: any subset of the knobs; unknown fields are rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid"
    )

    delay: float | None = Field(default=None, ge=0, le=MAX_DELAY_SECONDS, strict=True)
    failure_rate: float | None = Field(default=None, ge=0, le=1, strict=True)
    deprovision_failure_rate: float | None = Field(default=None, ge=0, le=1, strict=True)
    health_mode: str | None = None
    capacity: int | None = Field(default=None, ge=0, strict=True)
    version: str | None = Field(default=None, min_length=1, max_length=MAX_VERSION_LENGTH)

    @field_validator("health_mode")
    @classmethod
    def _known_mode(cls, value: str | None) -> str | None:
        return None if value is None else str(parse_health_mode(value))


def _admin_router(sim: Simulation) -> APIRouter:
    router = APIRouter(prefix="/admin", include_in_schema=False)

    @router.get("/knobs")
    async def get_knobs() -> dict[str, Any]:
        return sim.knobs.as_json()

    @router.patch("/knobs")
    async def patch_knobs(patch: Annotated[KnobsPatch, Body()]) -> dict[str, Any]:
        changes = patch.model_dump(exclude_none=True)
        try:
            return sim.update_knobs(**changes).as_json()
        except ValueError as exc:
            raise ApiError(422, "Invalid", str(exc)) from None

    return router


# --- the app ----------------------------------------------------------------------------


def create_app(sim: Simulation, *, api_key: str | None = None, token: str | None = None) -> FastAPI:
    """The broker app over `sim`. Its lifespan closes the simulation on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sim.close()

    app = FastAPI(
        title="KIDP broker API",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.add_exception_handler(ApiError, _api_error_handler)
    app.add_exception_handler(RequestValidationError, _invalid_body_handler)
    secured = [Depends(_auth_dependency(api_key, token))]
    app.include_router(_health_router(sim), dependencies=secured)
    app.include_router(_readiness_router(sim))
    app.include_router(_v1_router(sim), dependencies=secured)
    app.include_router(_admin_router(sim), dependencies=secured)
    return app
