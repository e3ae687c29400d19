"""The Cluster port: what kidp-ops needs from a Kubernetes API server.

Objects cross the port as plain manifest dicts (like the dynamic client), so the
port stays independent of any client library. Adapters translate their own errors
into the hierarchy of `kidp_ops.errors` (the way httpx maps httpcore's exceptions); the
kinds and errors are re-exported here, as the port's vocabulary.
"""

from __future__ import annotations

import abc
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from kidp_ops.cluster.patching import applied
from kidp_ops.errors import (
    AlreadyExists,
    ClusterError,
    Conflict,
    FieldProblem,
    Forbidden,
    Gone,
    Invalid,
    NotConnected,
    NotFound,
    Unavailable,
)
from kidp_ops.kinds import (
    BROKERS,
    BUILTIN_KINDS,
    CRDS,
    DATABASES,
    EVENTS,
    GROUP,
    KNOWN_KINDS,
    LEASES,
    PLATFORM_KINDS,
    SECRETS,
    VERSION,
    Manifest,
    ResourceKind,
    kind_by_name,
    kind_for_manifest,
)

__all__ = [
    "BROKERS",
    "BUILTIN_KINDS",
    "CRDS",
    "DATABASES",
    "EVENTS",
    "GROUP",
    "KNOWN_KINDS",
    "LEASES",
    "PLATFORM_KINDS",
    "SECRETS",
    "VERSION",
    "AlreadyExists",
    "Cluster",
    "ClusterError",
    "Conflict",
    "EventType",
    "FieldProblem",
    "Forbidden",
    "Gone",
    "Invalid",
    "Manifest",
    "NotConnected",
    "NotFound",
    "ObjectList",
    "ResourceKind",
    "Unavailable",
    "WatchEvent",
    "kind_by_name",
    "kind_for_manifest",
]

# --- results ----------------------------------------------------------------------------

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


@dataclass(frozen=True, slots=True)
class ObjectList:
    items: list[Manifest]
    resource_version: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    object: Manifest = field(repr=False)

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))


# --- the port ---------------------------------------------------------------------------


class Cluster(abc.ABC):
    """Async access to a Kubernetes-like API. Every method may raise ClusterError."""

    @abc.abstractmethod
    async def get(self, kind: ResourceKind, name: str, *, namespace: str | None = None) -> Manifest:
        """Return the object or raise NotFound."""

    @abc.abstractmethod
    async def list(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList:
        """All objects of a kind (in one namespace, or in all when None), and the list's version.

        Selectors are Kubernetes' syntax; the fields a kind may be selected by are
        kube-apiserver's (`kidp_ops.cluster.fields`), and any other is Invalid."""

    @abc.abstractmethod
    def watch(
        self,
        kind: ResourceKind,
        *,
        resource_version: str,
        namespace: str | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Changes after `resource_version`, in order; raises Gone when it is too old.

        The iterator ends after `timeout_seconds` (None: never) and may send BOOKMARK events
        whose object carries only `metadata.resourceVersion`.
        """

    @abc.abstractmethod
    async def create(self, manifest: Manifest) -> Manifest:
        """Create; the server sets uid, resourceVersion, creationTimestamp, generation."""

    @abc.abstractmethod
    async def replace(self, manifest: Manifest) -> Manifest:
        """Replace the whole object; `metadata.resourceVersion` must match (else Conflict)."""

    @abc.abstractmethod
    async def patch(
        self,
        kind: ResourceKind,
        name: str,
        patch: Manifest,
        *,
        namespace: str | None = None,
    ) -> Manifest:
        """JSON merge patch (RFC 7386) of the object, status excluded where it is a subresource."""

    @abc.abstractmethod
    async def patch_status(
        self,
        kind: ResourceKind,
        name: str,
        patch: Manifest,
        *,
        namespace: str | None = None,
    ) -> Manifest:
        """JSON merge patch of the status subresource; spec and metadata stay untouched
        (except `metadata.resourceVersion`, which is honoured as a precondition)."""

    @abc.abstractmethod
    async def delete(
        self, kind: ResourceKind, name: str, *, namespace: str | None = None
    ) -> Manifest | None:
        """Delete. With finalizers the object stays, with deletionTimestamp set, and is
        returned; it goes when the last finalizer is removed. None when it is gone at once."""

    async def apply(self, manifest: Manifest) -> tuple[str, Manifest]:
        """Create, or update what the manifest names (kubectl apply): returns
        ("created" | "configured" | "unchanged", the stored object). Adapters with an
        atomic path override this; this one retries on Conflict."""
        kind = kind_for_manifest(manifest)
        meta = manifest.get("metadata") or {}
        for _attempt in range(5):
            try:
                current = await self.get(
                    kind, meta.get("name", ""), namespace=meta.get("namespace")
                )
            except NotFound:
                try:
                    return "created", await self.create(manifest)
                except AlreadyExists:
                    continue
            desired = applied(current, manifest, keep_status=kind in PLATFORM_KINDS)
            desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                stored = await self.replace(desired)
            except Conflict:
                continue
            same = stored["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
            return ("unchanged" if same else "configured"), stored
        raise Conflict(f"{kind.resource} {meta.get('name')!r} kept changing while applying it")

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads."""

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- conveniences shared by every adapter ------------------------------------------

    async def get_secret_data(self, name: str, *, namespace: str) -> dict[str, bytes]:
        """The decoded `data` (and `stringData`) of a Secret."""
        secret = await self.get(SECRETS, name, namespace=namespace)
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
        return data

    async def create_event(
        self,
        *,
        involved: Manifest,
        reason: str,
        message: str,
        type: str = "Normal",
        component: str = "kidp-ops",
        now: str,
    ) -> Manifest:
        """Record a core/v1 Event about `involved` (as `kubectl describe` shows them)."""
        meta = involved.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": type,
            "source": {"component": component},
            "reportingComponent": component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        return await self.create(event)
