"""The async client the manager talks to brokers with (contract v1, ARCHITECTURE.md §6).

    async with BrokerClient("http://127.0.0.1:18081", credentials=Credentials.api_key(k)) as c:
        accepted = await c.provision(ProvisionRequest(...))
        outcome = await c.deprovision(DeprovisionRequest(deployment_id=accepted.deployment_id))

It speaks the seed system's contract to any broker: a deprovision 202 without a
deploymentId is success, `/v1/status` is asked with `id` (and `deploymentId`), and an
answer without a `phase` is returned as such (the caller reads it as "still working").

Every failure is a `BrokerError` (httpx's and pydantic's exceptions never leak, as httpx
maps httpcore's): `BrokerUnreachable` (refused, DNS, reset; `BrokerTimeout` when the
total time ran out), `BrokerRejected` (non-2xx; `DeploymentNotFound` for a 404 on
status), `BrokerProtocolError` (not JSON, wrong shape, too large). Every call has a
total deadline and a cap on the body it reads; redirects are never followed.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx
import pydantic

from kidp_ops import boundedjson
from kidp_ops.brokerapi.models import (
    ContractModel,
    DeploymentStatus,
    DeprovisionRequest,
    HealthResponse,
    ProvisionRequest,
    ProvisionResponse,
    ResourceList,
)

M = TypeVar("M", bound=ContractModel)

DEFAULT_TIMEOUT_SECONDS = 10.0
HEALTH_MAX_BYTES = 64 * 1024
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
USER_AGENT = "kidp-ops/0.1"


# --- errors -----------------------------------------------------------------------------


class BrokerError(Exception):
    """Base of every failure talking to a broker; `message` is one line for a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BrokerUnreachable(BrokerError):
    """No HTTP answer: connection refused or reset, DNS failure, TLS failure."""


class BrokerTimeout(BrokerUnreachable):
    """No complete answer within the deadline (the request may still have been applied)."""


class BrokerRejected(BrokerError):
    """The broker answered with a non-2xx status."""

    def __init__(self, status: int, message: str, *, error: str = "") -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.reason = message
        self.error = error


class DeploymentNotFound(BrokerRejected):
    """404 from `/v1/status`: the broker does not know the deployment."""


class BrokerProtocolError(BrokerError):
    """An answer that breaks the contract: not JSON, wrong shape, or too large."""


# --- credentials ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """How requests authenticate: `api-key` -> X-API-Key, `jwt` -> Authorization: Bearer."""

    type: Literal["none", "api-key", "jwt"] = "none"
    value: str = ""

    @classmethod
    def api_key(cls, value: str) -> Credentials:
        return cls("api-key", value)

    @classmethod
    def bearer(cls, token: str) -> Credentials:
        return cls("jwt", token)

    def headers(self) -> dict[str, str]:
        if self.type == "api-key":
            return {"X-API-Key": self.value}
        if self.type == "jwt":
            return {"Authorization": f"Bearer {self.value}"}
        return {}

    def __repr__(self) -> str:  # never print the secret
        return f"Credentials(type={self.type!r})"


class DeprovisionOutcome(enum.Enum):
    ACCEPTED = "accepted"  # 202: the broker is removing it
    ALREADY_GONE = "already-gone"  # 404: nothing to remove


# --- the client -------------------------------------------------------------------------


class BrokerClient:
    """One broker's API. Use as `async with`, or call `aclose()`."""

    def __init__(
        self,
        endpoint: str,
        *,
        credentials: Credentials | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        headers = {"User-Agent": USER_AGENT, **(credentials or Credentials()).headers()}
        self._http = httpx.AsyncClient(
            base_url=self.endpoint,
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
            verify=verify,
            transport=transport,
        )

    async def __aenter__(self) -> BrokerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- the contract -----------------------------------------------------------------

    async def health(
        self, path: str = "/health", *, max_bytes: int = HEALTH_MAX_BYTES
    ) -> HealthResponse:
        """GET the health endpoint (a path, never a URL). Any 2xx with the right shape is
        returned, whatever its `status`; deciding what counts as healthy is the caller's."""
        if not path.startswith("/") or path.startswith("//"):
            raise ValueError(f"health check endpoint must be a path like /health, not {path!r}")
        status, body = await self._call("GET", path, max_bytes=max_bytes)
        return self._parse(HealthResponse, status, body, "health")

    async def provision(self, request: ProvisionRequest) -> ProvisionResponse:
        """The broker's 202; a 2xx without a deploymentId breaks the contract (nothing
        could ever be polled, deprovisioned or matched to a callback)."""
        content = request.model_dump_json(exclude_none=True).encode()
        status, body = await self._call("POST", "/v1/provision", content=content)
        return self._parse(ProvisionResponse, status, body, "provision")

    async def deprovision(self, request: DeprovisionRequest) -> DeprovisionOutcome:
        """ACCEPTED on any 2xx (whatever its body: the seed's brokers send no deploymentId);
        ALREADY_GONE on 404 (the broker does not know the deployment)."""
        path = "/v1/deprovision"
        status, body = await self._call("POST", path, content=request.to_json_bytes())
        if status == 404:
            return DeprovisionOutcome.ALREADY_GONE
        _raise_unless_2xx(status, body)
        return DeprovisionOutcome.ACCEPTED

    async def status(self, deployment_id: str) -> DeploymentStatus:
        """The deployment's status. `id` is the seed's parameter; `deploymentId` is sent too
        for brokers that read that one. The answer may carry no phase (the seed's)."""
        params = {"id": deployment_id, "deploymentId": deployment_id}
        status, body = await self._call("GET", "/v1/status", params=params)
        if status == 404:
            message, error = _error_of(body, "deployment not found")
            raise DeploymentNotFound(404, message, error=error)
        return self._parse(DeploymentStatus, status, body, "status")

    async def resources(self, namespace: str | None = None) -> ResourceList:
        params = {"namespace": namespace} if namespace else {}
        status, body = await self._call("GET", "/v1/resources", params=params)
        return self._parse(ResourceList, status, body, "resources")

    # --- plumbing ---------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> tuple[int, bytes]:
        """(status, body) of one request, under one total deadline and a body cap."""
        headers = {"Content-Type": "application/json"} if content is not None else {}
        what = f"{method} {self.endpoint}{path}"
        try:
            async with (
                asyncio.timeout(self.timeout),
                self._http.stream(
                    method, path, content=content, params=params, headers=headers
                ) as response,
            ):
                return response.status_code, await _read_capped(response, max_bytes, what)
        except (TimeoutError, httpx.TimeoutException):
            raise BrokerTimeout(f"{what}: no answer within {self.timeout:g}s") from None
        except httpx.TransportError as exc:
            raise BrokerUnreachable(f"{what}: {_describe(exc)}") from None
        except httpx.HTTPError as exc:  # e.g. a malformed URL
            raise BrokerError(f"{what}: {_describe(exc)}") from None

    @staticmethod
    def _parse(model: type[M], status: int, body: bytes, what: str) -> M:
        _raise_unless_2xx(status, body)
        try:
            return model.model_validate_json(body)
        except pydantic.ValidationError as exc:
            raise BrokerProtocolError(f"unexpected {what} response: {_summary(exc)}") from None


def _raise_unless_2xx(status: int, body: bytes) -> None:
    if not 200 <= status < 300:
        message, error = _error_of(body, httpx.codes.get_reason_phrase(status) or "error")
        raise BrokerRejected(status, message, error=error)


async def _read_capped(response: httpx.Response, max_bytes: int, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise BrokerProtocolError(f"{what}: response larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error_of(body: bytes, fallback: str) -> tuple[str, str]:
    """(message, error code) from an error body: ours, FastAPI's `detail`, or plain text."""
    try:
        data: Any = boundedjson.loads(body, max_bytes=len(body))
    except boundedjson.UntrustedJSON:
        text = body.decode(errors="replace").strip().splitlines()
        return (text[0][:200] if text else fallback), ""
    if not isinstance(data, dict):
        return fallback, ""
    if isinstance(data.get("message"), str):
        return data["message"], str(data.get("error") or "")
    detail = data.get("detail")
    if isinstance(detail, str):
        return detail, ""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg', 'invalid')}", "ValidationError"
    return fallback, ""


def _summary(exc: pydantic.ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"
