"""The Cluster port: what kidp-ops needs from a Kubernetes API server.

Objects cross the port as plain manifest dicts (like the dynamic client), so the
port stays independent of any client library. Adapters translate their own errors
into the exception hierarchy below (the way httpx maps httpcore's exceptions).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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


# --- errors ---------------------------------------------------------------------------


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
    ) -> ObjectList:
        """All objects of a kind (in one namespace, or in all when None), and the list's version."""

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
        from kidp_ops.cluster.patching import applied

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
        import base64

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
