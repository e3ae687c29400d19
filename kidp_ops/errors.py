"""The errors of the Cluster port, and the field problems of an invalid object.

A leaf module: the model (validation), the adapters and the commands all speak it, so it
imports nothing of kidp_ops. Adapters translate their own errors into this hierarchy (the
way httpx maps httpcore's exceptions); `kidp_ops.cluster.base` re-exports it as the port's.
"""

from __future__ import annotations

from dataclasses import dataclass


class ClusterError(Exception):
    """Base of everything an adapter raises. `reason` mirrors a Kubernetes Status reason."""

    reason = "InternalError"
    code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unavailable(ClusterError):
    """The cluster could not be reached or answered with a server error."""

    reason = "ServiceUnavailable"
    code = 503


class NotConnected(Unavailable):
    """A problem on this machine, before any server was asked: a state directory that is
    missing or is a file, a kubeconfig that does not load. The person fixes it here, so
    the CLI says `error: ...`, not `Error from server`."""


class NotFound(ClusterError):
    reason = "NotFound"
    code = 404


class AlreadyExists(ClusterError):
    reason = "AlreadyExists"
    code = 409


class Conflict(ClusterError):
    """The object changed since it was read (stale resourceVersion)."""

    reason = "Conflict"
    code = 409


class Gone(ClusterError):
    """The requested resourceVersion is too old: list again."""

    reason = "Expired"
    code = 410


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One invalid field: `.spec.endpoint` and what is wrong with it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class Invalid(ClusterError):
    """The object fails validation; `problems` names every field."""

    reason = "Invalid"
    code = 422

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        problems: tuple[FieldProblem, ...] = (),
    ) -> None:
        if not problems and (field or message):
            problems = (FieldProblem(field, message),)
        super().__init__("; ".join(str(p) for p in problems) if problems else message)
        self.problems = problems


class Forbidden(ClusterError):
    reason = "Forbidden"
    code = 403
