"""A broker that speaks the seed system's published contract exactly, for interop tests.

Written from the seed's `cmd/broker/main.go` and `pkg/broker/models.go` (aykay76/kidp), not
from our contract: it is what an unmodified seed-era broker answers.

- Bodies are decoded as Go's `json.NewDecoder(...).Decode(&req)` does: unknown keys
  ignored, keys matched case-insensitively, a JSON value of the wrong type for a field
  (an object where Go has a string) is `400 invalid_request`; then `Validate()` runs its
  checks in order and the first failure is `400 validation_failed` ("team is required").
- Provision answers 202 with a random `deploy-<32 hex>` id and keeps no state; deprovision
  answers 202 **without** a deploymentId; `/v1/status` takes `?id=` and answers
  `status: "unknown"` with no phase, for any id; `/v1/resources` needs a namespace and is
  always empty. It never calls back (the seed broker's handlers stop at a TODO).
- JSON answers end in a newline (Go's `json.Encoder`), maps have sorted keys, structs keep
  their field order; 404, 405 and "Missing deployment ID" are plain text.

Every request is recorded in `requests` (method, path, query, parsed body) for assertions.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

VERSION = "0.1.0"
PROVISION_FIELDS = (
    ("resourceType", "string"),
    ("resourceName", "string"),
    ("namespace", "string"),
    ("team", "string"),
    ("owner", "string"),
    ("callbackUrl", "string"),
    ("spec", "map[string]interface {}"),
)
PROVISION_CHECKS = ("resourceType", "resourceName", "namespace", "team", "callbackUrl", "spec")
DEPROVISION_FIELDS = (
    ("deploymentId", "string"),
    ("resourceType", "string"),
    ("resourceName", "string"),
    ("namespace", "string"),
    ("callbackUrl", "string"),
)
DEPROVISION_CHECKS = ("deploymentId", "resourceType", "resourceName", "namespace", "callbackUrl")
RESOURCES_FIELDS = (
    ("resourceType", "string"),
    ("resourceName", "string"),
    ("namespace", "string"),
    ("deploymentId", "string"),
)


class GoDecodeError(Exception):
    """What `json.Decoder.Decode` returns, as Go words it."""


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def go_decode(body: bytes, struct: str, fields: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Decode `body` into a Go struct with `fields` (JSON name, Go type), as encoding/json
    would: the zero value for absent or null fields, case-insensitive names, last duplicate
    wins, unknown keys ignored, the first type mismatch reported after decoding the rest."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        raise GoDecodeError("EOF")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)  # only the first JSON value counts
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text):
            raise GoDecodeError("unexpected EOF") from None
        raise GoDecodeError(
            f"invalid character {text[exc.pos]!r} looking for beginning of value"
        ) from None
    decoded: dict[str, Any] = {name: ("" if kind == "string" else None) for name, kind in fields}
    if value is None:
        return decoded
    if not isinstance(value, dict):
        raise GoDecodeError(
            f"json: cannot unmarshal {_json_kind(value)} into Go value of type broker.{struct}"
        )
    first_error: str | None = None
    by_lower = {name.lower(): (name, kind) for name, kind in fields}
    for key, item in value.items():
        known = by_lower.get(key.lower())
        if known is None or item is None:
            continue
        name, kind = known
        wanted = "string" if kind == "string" else "object"
        if _json_kind(item) != wanted:
            first_error = first_error or (
                f"json: cannot unmarshal {_json_kind(item)} into Go struct field "
                f"{struct}.{name} of type {kind}"
            )
            continue
        decoded[name] = item
    if first_error is not None:
        raise GoDecodeError(first_error)
    return decoded


def go_json(value: Any) -> bytes:
    """What `json.NewEncoder(w).Encode(v)` writes for maps and flat structs: compact, HTML
    characters escaped, a trailing newline (dict order is the struct's or sorted keys)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return (text + "\n").encode()


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=go_json(value), status=status, content_type="application/json")


def _text(message: str, status: int) -> web.Response:
    response = web.Response(text=message + "\n", status=status)
    response.headers["Content-Type"] = "text/plain; charset=utf-8"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _error(code: str, message: str) -> web.Response:
    return _json({"error": code, "message": message, "code": 400}, 400)


def _decoded(
    body: bytes, struct: str, fields: tuple[tuple[str, str], ...], checks: tuple[str, ...]
) -> dict[str, Any] | web.Response:
    """Decode, then `Validate()`: the first empty required field is the error."""
    try:
        req = go_decode(body, struct, fields)
    except GoDecodeError as exc:
        return _error("invalid_request", f"Failed to parse request body: {exc}")
    for name in checks:
        if req[name] in ("", None):
            return _error("validation_failed", f"{name} is required")
    return req


def go_duration(seconds: float) -> str:
    """Go's `time.Duration.String()` for a positive duration under a day (enough here)."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    return f"{int(minutes)}m{text}" if minutes else text


@dataclass
class SeedBroker:
    """The seed broker's HTTP handlers; `requests` records what arrived."""

    started: float = field(default_factory=time.monotonic)
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        routes = {
            "/health": ({"GET"}, self.health),
            "/readiness": ({"GET"}, self.readiness),
            "/v1/provision": ({"POST"}, self.provision),
            "/v1/deprovision": ({"POST"}, self.deprovision),
            "/v1/status": ({"GET"}, self.status),
            "/v1/resources": ({"GET", "POST"}, self.resources),
        }

        async def dispatch(request: web.Request) -> web.Response:
            entry = routes.get(request.path)
            if entry is None:
                return _text("404 page not found", 404)
            methods, handler = entry
            if request.method not in methods:
                return _text("Method not allowed", 405)
            body = await request.read()
            self.requests.append((request.method, request.path, dict(request.query), body))
            return await handler(request, body)

        app.router.add_route("*", "/{tail:.*}", dispatch)
        return app

    async def health(self, request: web.Request, body: bytes) -> web.Response:
        uptime = time.monotonic() - self.started
        return _json(
            {
                "activeDeployments": 0,
                "failedDeployments": 0,
                "status": "healthy",
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "totalDeployments": 0,
                "uptime": go_duration(uptime),
                "uptimeSeconds": int(uptime),
                "version": VERSION,
            }
        )

    async def readiness(self, request: web.Request, body: bytes) -> web.Response:
        return _json({"ready": True, "reason": "ok", "version": VERSION})

    async def provision(self, request: web.Request, body: bytes) -> web.Response:
        req = _decoded(body, "ProvisionRequest", PROVISION_FIELDS, PROVISION_CHECKS)
        if isinstance(req, web.Response):
            return req
        deployment_id = "deploy-" + secrets.token_hex(16)
        message = f"Provisioning request accepted for {req['resourceType']}/{req['resourceName']}"
        return _json({"status": "accepted", "deploymentId": deployment_id, "message": message}, 202)

    async def deprovision(self, request: web.Request, body: bytes) -> web.Response:
        req = _decoded(body, "DeprovisionRequest", DEPROVISION_FIELDS, DEPROVISION_CHECKS)
        if isinstance(req, web.Response):
            return req
        message = f"Deprovisioning request accepted for deployment {req['deploymentId']}"
        return _json({"status": "accepted", "message": message}, 202)

    async def status(self, request: web.Request, body: bytes) -> web.Response:
        deployment_id = request.query.get("id", "")
        if not deployment_id:
            return _text("Missing deployment ID", 400)
        return _json(
            {
                "deploymentId": deployment_id,
                "message": "Status endpoint - implementation pending",
                "status": "unknown",
            }
        )

    async def resources(self, request: web.Request, body: bytes) -> web.Response:
        if request.method == "POST":
            decoded = _decoded(body, "ResourceStateRequest", RESOURCES_FIELDS, ("namespace",))
            if isinstance(decoded, web.Response):
                return decoded
            req = decoded
        else:
            req = {name: request.query.get(name, "") for name, _ in RESOURCES_FIELDS}
        if not req["namespace"]:
            return _error("validation_failed", "namespace is required")
        return _json({"resources": [], "total": 0, "namespace": req["namespace"]})

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies that arrived on `path`, in order."""
        return [json.loads(body) for _, p, _, body in self.requests if p == path and body]


@asynccontextmanager
async def running_seed_broker(host: str = "127.0.0.1") -> AsyncIterator[tuple[SeedBroker, str]]:
    """Serve a SeedBroker on a free loopback port: (the broker, its base URL)."""
    broker = SeedBroker()
    runner = web.AppRunner(broker.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield broker, f"http://{host}:{port}"
    finally:
        await runner.cleanup()
