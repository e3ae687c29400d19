"""Errors of the kube adapter: what the API server and the client library raise, mapped
into the ClusterError hierarchy (the way httpx maps httpcore's exceptions)."""

from __future__ import annotations

import json
from typing import Any

import urllib3
from kubernetes import client as k8s_client

from kidp_ops.cluster.base import (
    AlreadyExists,
    ClusterError,
    Conflict,
    FieldProblem,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    Unavailable,
)

_CONNECT_FAILED = "Failed to establish a new connection: "


def error_from_status(code: int, body: bytes | str | None, *, fallback: str = "") -> ClusterError:
    """The ClusterError for an HTTP error answer (a Kubernetes Status, when it is one)."""
    status = _status_object(body)
    message = one_line(str(status.get("message") or fallback or f"HTTP {code}"))
    if code == 404:
        return NotFound(message)
    if code == 409:
        return (
            AlreadyExists(message) if status.get("reason") == "AlreadyExists" else Conflict(message)
        )
    if code == 410:
        return Gone(message)
    if code == 422:
        return Invalid(message, problems=_problems(status))
    if code in (401, 403):
        return Forbidden(message)
    if code in (400, 415):
        return Invalid(message)
    if code == 429 or code >= 500:
        return Unavailable(message)
    return ClusterError(f"HTTP {code}: {message}")


def _status_object(body: bytes | str | None) -> dict[str, Any]:
    try:
        status = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return status if isinstance(status, dict) else {}


def _problems(status: dict[str, Any]) -> tuple[FieldProblem, ...]:
    """details.causes as FieldProblems: the server's `spec.endpoint` is our `.spec.endpoint`."""
    causes = (status.get("details") or {}).get("causes") or []
    problems = []
    for cause in causes:
        field = str(cause.get("field") or "")
        if field and not field.startswith((".", "[")):
            field = f".{field}"
        message = str(cause.get("message") or cause.get("reason") or "invalid value")
        problems.append(FieldProblem(field, message))
    return tuple(problems)


def map_error(exc: BaseException, *, host: str) -> BaseException:
    """Translate what the client library raises; anything unknown passes unchanged."""
    if isinstance(exc, ClusterError):
        return exc
    if isinstance(exc, k8s_client.ApiException):
        if not exc.status:  # raised before any answer (TLS handshake, ...)
            return Unavailable(f"cannot reach the Kubernetes API at {host}: {one_line(exc.reason)}")
        return error_from_status(exc.status, exc.body, fallback=str(exc.reason or ""))
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return Unavailable(f"cannot reach the Kubernetes API at {host}: {_describe(exc)}")
    return exc


def _describe(exc: BaseException) -> str:
    """`[Errno 111] Connection refused` rather than urllib3's nested repr."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        exc = reason
    text = str(exc)
    if _CONNECT_FAILED in text:
        text = text.split(_CONNECT_FAILED, 1)[1]
    elif text.startswith("<") and ">: " in text:
        text = text.split(">: ", 1)[1]
    return one_line(text) or type(exc).__name__


def one_line(text: object) -> str:
    return " ".join(str(text or "").split())
