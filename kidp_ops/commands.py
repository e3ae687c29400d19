"""What each `kidp-ops` command does; `cli.py` only parses arguments and calls these.

Each function writes its output to the given streams and returns the exit code:
0 success, 1 a problem with the input or the cluster, 2 bad usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from kidp_ops.cluster.base import Cluster, ClusterError, Invalid, NotFound, ResourceKind

OK, FAILED, USAGE = 0, 1, 2


class Ambiguous(ClusterError):
    """A name given without -n that several namespaces hold."""

    reason = "Ambiguous"
    code = 400


@dataclass(frozen=True, slots=True)
class Target:
    """Which cluster a command talks to: the embedded store in `state`, or a kubeconfig."""

    state: str = ".kidp"
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False

    @property
    def is_kube(self) -> bool:
        return bool(self.kubeconfig or self.context or self.in_cluster)

    def describe(self) -> str:
        if self.in_cluster:
            return "the in-cluster API server"
        if self.is_kube:
            return f"the cluster of kubeconfig {self.kubeconfig or '~/.kube/config'}" + (
                f" (context {self.context})" if self.context else ""
            )
        return f"the embedded store in {self.state}/"


async def connect(target: Target) -> Cluster:
    """Open the target's Cluster adapter (importing the kubernetes client only when needed)."""
    if target.is_kube:
        from kidp_ops.cluster.kube import KubeCluster

        return await KubeCluster.connect(
            kubeconfig=target.kubeconfig, context=target.context, in_cluster=target.in_cluster
        )
    from kidp_ops.cluster.embedded import EmbeddedCluster

    return await EmbeddedCluster.open(target.state)


def validate(paths: list[str], *, out: TextIO, err: TextIO) -> int:
    from kidp_ops.model import manifests

    loaded = manifests.load(paths)
    problems = manifests.validate(loaded)
    for problem in problems:
        print(problem, file=err)
    count = len(loaded.documents)
    if problems:
        print(f"{len(problems)} problem(s) in {count} object(s)", file=err)
        return FAILED
    print(f"{count} object(s) valid", file=out)
    return OK


def _qualified(kind: ResourceKind) -> str:
    return f"{kind.singular}.{kind.group}" if kind.group else kind.singular


async def apply(paths: list[str], target: Target, *, out: TextIO, err: TextIO) -> int:
    """Validate everything first; write nothing unless every document is valid."""
    from kidp_ops.cluster.base import kind_for_manifest
    from kidp_ops.model import manifests

    loaded = manifests.load(paths)
    problems = manifests.validate(loaded)
    if problems:
        for problem in problems:
            print(problem, file=err)
        print(f"nothing applied: {len(problems)} problem(s)", file=err)
        return FAILED
    failed = 0
    async with await connect(target) as cluster:
        for doc in loaded.in_apply_order():
            kind = kind_for_manifest(doc.manifest)
            try:
                outcome, stored = await cluster.apply(doc.manifest)
            except Invalid as exc:
                failed += 1
                for p in exc.problems:
                    print(f"{doc.source}: {doc.label}: {p}", file=err)
                continue
            except ClusterError as exc:
                failed += 1
                print(f"{doc.source}: {doc.label}: {exc.message}", file=err)
                continue
            print(f"{_qualified(kind)}/{stored['metadata']['name']} {outcome}", file=out)
    return FAILED if failed else OK


async def get(
    kind: ResourceKind,
    name: str | None,
    target: Target,
    *,
    namespace: str | None,
    output: str,
    out: TextIO,
    err: TextIO,
) -> int:
    from kidp_ops import output as fmt

    async with await connect(target) as cluster:
        if name:
            items = [await _find(cluster, kind, name, namespace)]
            listed_rv = ""
        else:
            listed = await cluster.list(kind, namespace=namespace)
            items, listed_rv = listed.items, listed.resource_version
    if output in ("json", "yaml"):
        document = items[0] if name else fmt.as_list(items, listed_rv)
        print(fmt.dump(document, output), file=out)
        return OK
    if not items:
        where = f"{namespace} namespace" if namespace else "any namespace"
        print(f"No resources found in {where}.", file=err)
        return OK
    now = datetime.now(UTC)
    show_ns = namespace is None and kind.namespaced
    print(fmt.table(items, kind, now=now, wide=output == "wide", show_namespace=show_ns), file=out)
    return OK


async def _find(
    cluster: Cluster, kind: ResourceKind, name: str, namespace: str | None
) -> dict[str, Any]:
    """The object `name`: in `namespace`, or in the one namespace that holds it."""
    if namespace or not kind.namespaced:
        return await cluster.get(kind, name, namespace=namespace)
    found = [i for i in (await cluster.list(kind)).items if i["metadata"]["name"] == name]
    if not found:
        raise NotFound(f'{kind.resource} "{name}" not found in any namespace')
    if len(found) > 1:
        where = ", ".join(i["metadata"]["namespace"] for i in found)
        raise Ambiguous(
            f'{kind.resource} "{name}" exists in several namespaces ({where}): pick one with -n'
        )
    return found[0]


async def delete(
    kind: ResourceKind,
    name: str,
    target: Target,
    *,
    namespace: str | None,
    out: TextIO,
    err: TextIO,
) -> int:
    async with await connect(target) as cluster:
        found = await _find(cluster, kind, name, namespace)
        ns = found["metadata"].get("namespace")
        remaining = await cluster.delete(kind, name, namespace=ns)
    label = f'{_qualified(kind)} "{name}"'
    if remaining is None:
        print(f"{label} deleted", file=out)
    else:
        waiting = ", ".join(remaining["metadata"].get("finalizers") or [])
        print(f"{label} marked for deletion (waiting for finalizers: {waiting})", file=out)
    return OK


async def dev_preview(target: Target, *, out: TextIO, err: TextIO) -> int:
    """Until the full embedded environment exists: apply the dev samples and list them."""
    from kidp_ops.cluster.base import BROKERS, DATABASES
    from kidp_ops.model.bundled import bundled_dir

    print(
        "kidp-ops dev: the simulated brokers and reconcilers are not built yet; this preview\n"
        f"applies crds/ and samples/dev/ to {target.describe()} and lists them.\n",
        file=out,
    )
    code = await apply([str(bundled_dir("samples") / "dev")], target, out=out, err=err)
    if code != OK:
        return code
    for kind in (BROKERS, DATABASES):
        print(file=out)
        await get(kind, None, target, namespace=None, output="table", out=out, err=err)
    print(
        f"\nThe store is in {target.state}/; try `kidp-ops get brokers -o wide` or "
        "`kidp-ops apply -f samples/`.",
        file=out,
    )
    return OK
