"""Discovery documents of the API facade: what kubectl reads before anything else.

Two shapes of the same facts. The legacy one (`/api`, `/apis`, then one APIResourceList per
group version) is what kubectl before 1.26 and the `kubernetes` Python client read. The
aggregated one (`apidiscovery.k8s.io` v2, and v2beta1 for kubectl 1.26-1.29) answers
`/api` and `/apis` in one document each, when the client asks for it in `Accept`; kubectl
then makes no per-group request. Both are built once from the kinds the facade serves.
"""

from __future__ import annotations

import functools

from kidp_ops.cluster.base import BROKERS, CRDS, DATABASES, KNOWN_KINDS, Manifest, ResourceKind
from kidp_ops.model.bundled import load_crds

VERSION_INFO: Manifest = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-kidp",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-04-17T00:00:00Z",
    "goVersion": "go1.22.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
STATUS_SUBRESOURCE_KINDS = frozenset({BROKERS, DATABASES, CRDS})
VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")
NAMESPACES = ResourceKind(
    "", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",)
)
NAMESPACE_VERBS = ("create", "get", "list")
AGGREGATED_GROUP = "apidiscovery.k8s.io"
AGGREGATED_VERSIONS = ("v2", "v2beta1")


def api_prefix(kind: ResourceKind) -> str:
    return f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"


def group_versions() -> list[tuple[str, str]]:
    """(group, version) of every API group served, in first-seen order; core excluded."""
    seen = dict.fromkeys((k.group, k.version) for k in KNOWN_KINDS if k.group)
    return list(seen)


@functools.cache
def _categories() -> dict[str, tuple[str, ...]]:
    """The bundled CRDs' categories (`kubectl get kidp`, `kubectl get all`), by resource."""
    return {
        crd["metadata"]["name"]: tuple(crd["spec"]["names"].get("categories") or ())
        for crd in load_crds()
    }


def _kinds_of(group_version: str) -> list[tuple[ResourceKind, tuple[str, ...]]]:
    """The kinds of a group version with their verbs; the core group has namespaces too."""
    kinds: list[tuple[ResourceKind, tuple[str, ...]]] = [
        (k, VERBS) for k in KNOWN_KINDS if k.api_version == group_version
    ]
    if group_version == "v1":
        kinds.insert(0, (NAMESPACES, NAMESPACE_VERBS))
    return kinds


def _other_names(kind: ResourceKind) -> Manifest:
    """The short names and categories of a kind, as both discovery shapes carry them."""
    names: Manifest = {}
    if kind.short_names:
        names["shortNames"] = list(kind.short_names)
    if categories := _categories().get(kind.resource):
        names["categories"] = list(categories)
    return names


# --- legacy discovery ----------------------------------------------------------------------


def _legacy_resources(kind: ResourceKind, verbs: tuple[str, ...]) -> list[Manifest]:
    entry: Manifest = {
        "name": kind.plural,
        "singularName": kind.singular,
        "namespaced": kind.namespaced,
        "kind": kind.kind,
        "verbs": list(verbs),
    }
    entries = [{**entry, **_other_names(kind)}]
    if kind in STATUS_SUBRESOURCE_KINDS:
        status = {**entry, "name": f"{kind.plural}/status", "singularName": ""}
        entries.append({**status, "verbs": list(STATUS_VERBS)})
    return entries


def resource_list(group_version: str) -> Manifest:
    """APIResourceList of `/api/v1` (with the implicit namespaces) or `/apis/{group}/{version}`."""
    resources = [r for k, verbs in _kinds_of(group_version) for r in _legacy_resources(k, verbs)]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def api_group(group: str) -> Manifest:
    versions = [
        {"groupVersion": f"{g}/{v}", "version": v} for g, v in group_versions() if g == group
    ]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }


def group_list() -> Manifest:
    groups = list(dict.fromkeys(g for g, _ in group_versions()))
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group(g) for g in groups]}


def api_versions(server_address: str) -> Manifest:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


# --- aggregated discovery --------------------------------------------------------------------


def _gvk(kind: ResourceKind) -> Manifest:
    return {"group": kind.group, "version": kind.version, "kind": kind.kind}


def _aggregated_resource(kind: ResourceKind, verbs: tuple[str, ...]) -> Manifest:
    entry: Manifest = {
        "resource": kind.plural,
        "responseKind": _gvk(kind),
        "scope": "Namespaced" if kind.namespaced else "Cluster",
        "singularResource": kind.singular,
        "verbs": list(verbs),
        **_other_names(kind),
    }
    if kind in STATUS_SUBRESOURCE_KINDS:
        entry["subresources"] = [
            {"subresource": "status", "responseKind": _gvk(kind), "verbs": list(STATUS_VERBS)}
        ]
    return entry


def _aggregated_group(group: str, version: str) -> Manifest:
    group_version = f"{group}/{version}" if group else version
    resources = [_aggregated_resource(k, verbs) for k, verbs in _kinds_of(group_version)]
    return {
        "metadata": {"name": group} if group else {},
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
    }


def aggregated(*, legacy: bool, version: str) -> Manifest:
    """The APIGroupDiscoveryList of `/api` (legacy=True) or `/apis`, as `version`."""
    items = (
        [_aggregated_group("", "v1")]
        if legacy
        else [_aggregated_group(g, v) for g, v in group_versions()]
    )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"{AGGREGATED_GROUP}/{version}",
        "metadata": {},
        "items": items,
    }


def namespace_object(name: str) -> Manifest:
    """Namespaces are implicit in the port: every one exists and is Active."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }
