"""What each `kidp-ops` command does; `cli.py` only parses arguments and calls these.

Each function writes its output to the given streams and returns the exit code:
0 success, 1 a problem with the input or the cluster, 2 bad usage.
"""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from kidp_ops import explaining
from kidp_ops import output as fmt
from kidp_ops.cluster.base import (
    BROKERS,
    DATABASES,
    EVENTS,
    Cluster,
    ClusterError,
    Invalid,
    NotFound,
    ResourceKind,
    kind_by_name,
    kind_for_manifest,
)
from kidp_ops.cluster.target import Target, connect
from kidp_ops.model import manifests
from kidp_ops.model.resources import Broker, Database
from kidp_ops.placement import PlacementError, criteria_for, known_regions
from kidp_ops.selection import SelectionCriteria, rank
from kidp_ops.trust import BrokerTrust

OK, FAILED, USAGE = 0, 1, 2


class Ambiguous(ClusterError):
    """A name given without -n that several namespaces hold."""

    reason = "Ambiguous"
    code = 400


def validate(paths: list[str], *, out: TextIO, err: TextIO) -> int:
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


@dataclass(frozen=True, slots=True)
class GetRequest:
    """`kidp-ops get TYPE [NAME]` with kubectl's selectors; `for_object` (`db/NAME`) picks
    one object's Events, as `kubectl events --for` does."""

    kind: ResourceKind
    name: str | None = None
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    for_object: str | None = None

    def selectors(self) -> tuple[str | None, str | None] | str:
        """(label selector, field selector), or what is wrong with the request."""
        fields = self.field_selector
        if self.for_object is not None:
            if self.kind is not EVENTS:
                return "--for selects Events: kidp-ops get events --for db/NAME"
            kind_name, _, name = self.for_object.partition("/")
            try:
                involved: ResourceKind | None = kind_by_name(kind_name)
            except Invalid:
                involved = None
            if involved is None or not name:
                return f"--for {self.for_object!r}: give KIND/NAME, e.g. db/orders or br/aws-east"
            term = f"involvedObject.kind={involved.kind},involvedObject.name={name}"
            fields = f"{fields},{term}" if fields else term
        if self.name and (self.label_selector or fields):
            return "a NAME cannot be given together with a selector or --for"
        return self.label_selector, fields


def _seen(event: dict[str, Any]) -> tuple[str, int]:
    """When an Event was last seen, as sortable RFC 3339 text; within one second, in the
    order they were written (resourceVersion, when it is a number, as the store's are)."""
    meta = event.get("metadata") or {}
    when = event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
    version = str(meta.get("resourceVersion") or "")
    order = int(version) if version.isdigit() else 0
    return str(when or meta.get("creationTimestamp") or ""), order


async def get(request: GetRequest, target: Target, *, output: str, out: TextIO, err: TextIO) -> int:
    selectors = request.selectors()
    if isinstance(selectors, str):
        print(f"error: {selectors}", file=err)
        return USAGE
    labels, fields = selectors
    kind, name, namespace = request.kind, request.name, request.namespace
    async with await connect(target) as cluster:
        if name:
            items = [await _find(cluster, kind, name, namespace)]
            listed_rv = ""
        else:
            listed = await cluster.list(
                kind, namespace=namespace, label_selector=labels, field_selector=fields
            )
            items, listed_rv = listed.items, listed.resource_version
    if kind is EVENTS:  # oldest first, the latest next to the prompt (as `kubectl events`)
        items.sort(key=_seen)
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


async def serve(target: Target, *, port: int, out: TextIO, err: TextIO) -> int:
    """`kidp-ops serve`: the embedded store as a Kubernetes API for kubectl, on
    127.0.0.1:`port`, until SIGINT, SIGTERM or SIGHUP."""
    if target.is_kube:
        print(
            "error: kidp-ops serve serves the embedded store (--state); "
            "a cluster already has an API server",
            file=err,
        )
        return USAGE
    # lazy: the TLS machinery (cryptography, aiohttp) loads for this command only
    from kidp_ops.cluster.serving import ServeError, serve_store
    from kidp_ops.controller.shutdown import stop_on_signals  # lazy: as above

    stop = asyncio.Event()
    async with await connect(target) as cluster:
        try:
            async with serve_store(cluster, target.state, port=port) as api:
                print(
                    f"serving {target.describe()} as a Kubernetes API on {api.url} "
                    f"(kubectl context {api.context}); Ctrl-C to stop",
                    file=out,
                )
                print(api.export_line(), file=out, flush=True)
                with stop_on_signals(stop, signals=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)):
                    await stop.wait()
        except ServeError as exc:
            print(f"error: {exc}", file=err)
            return FAILED
    return OK


@dataclass(frozen=True, slots=True)
class SelectRequest:
    """What `kidp-ops select` was asked: explicit criteria, or those of a Database."""

    resource_type: str | None = None
    provider: str | None = None
    cloud_provider: str | None = None
    region: str | None = None
    database: str | None = None
    namespace: str | None = None
    files: tuple[str, ...] = ()
    now: str | None = None
    broker_namespaces: tuple[str, ...] = ()  # none: kidp-system, or every one with files

    def trust(self) -> BrokerTrust:
        """Which Brokers count, as a daemon with that --broker-namespace would see them."""
        if self.broker_namespaces:
            return BrokerTrust.of(self.broker_namespaces)
        return BrokerTrust.everywhere() if self.files else BrokerTrust.of(None)


async def select(
    request: SelectRequest, target: Target, *, explain: bool, output: str, out: TextIO, err: TextIO
) -> int:
    """Rank the brokers for a request: 0 selected, 1 none matches, 2 bad input."""

    now = _parse_now(request.now, err)
    if now is None:
        return USAGE
    loaded = await _select_inputs(request, target, err)
    if isinstance(loaded, int):
        return loaded
    brokers, databases = loaded
    criteria = _select_criteria(request, brokers, databases, err)
    if criteria is None:
        return USAGE
    candidates = rank(brokers, criteria, now=now)
    selected = bool(candidates) and candidates[0].accepted
    if output == "json":
        print(json.dumps(explaining.decision_json(candidates), indent=2), file=out)
    else:
        print(explaining.summary(criteria, candidates), file=out)
        if (explain or not selected) and candidates:
            print(file=out)
            print(explaining.table(candidates, now=now), file=out)
    return OK if selected else FAILED


def _parse_now(text: str | None, err: TextIO) -> datetime | None:
    if text is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        print(
            f"error: --now {text!r} is not an RFC 3339 time with a zone "
            "(for example 2026-11-25T10:00:00Z)",
            file=err,
        )
        return None
    return when


async def _select_inputs(request: SelectRequest, target: Target, err: TextIO) -> Any:
    """(brokers, databases) from the files, or from the cluster; an exit code on failure."""

    if request.files:
        loaded = manifests.load(request.files)
        problems = manifests.validate(loaded)
        for problem in problems:
            print(problem, file=err)
        if problems:
            return USAGE
        docs = [d.manifest for d in loaded.documents]
    else:
        async with await connect(target) as cluster:
            docs = (await cluster.list(BROKERS)).items
            if request.database:
                docs += (await cluster.list(DATABASES, namespace=request.namespace)).items
    trust = request.trust()
    every = [Broker.from_manifest(d) for d in docs if d.get("kind") == "Broker"]
    brokers = [b for b in every if trust.trusts(b.metadata.namespace)]
    skipped = [b.key for b in every if not trust.trusts(b.metadata.namespace)]
    if skipped:
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        named = ", ".join(skipped[:5]) + more
        print(
            f"note: {len(skipped)} Broker(s) outside the broker namespaces "
            f"({trust.describe()}) not considered: {named} (--broker-namespace NS to include)",
            file=err,
        )
    databases = [Database.from_manifest(d) for d in docs if d.get("kind") == "Database"]
    seen: set[str] = set()
    for broker in brokers:
        if broker.key in seen:
            print(f"error: Broker {broker.key} is defined twice in the input", file=err)
            return USAGE
        seen.add(broker.key)
    return brokers, databases


def _select_criteria(
    request: SelectRequest, brokers: list[Any], databases: list[Any], err: TextIO
) -> Any:

    if not request.database:
        assert request.resource_type is not None
        return SelectionCriteria(
            resource_type=request.resource_type,
            provider=request.provider,
            cloud_provider=request.cloud_provider,
            region=request.region,
        )
    name, ns = request.database, request.namespace
    found = [d for d in databases if d.metadata.name == name and ns in (None, d.metadata.namespace)]
    if len(found) != 1:
        where = f"namespace {ns}" if ns else "any namespace"
        problem = "not found" if not found else "found in several namespaces: pick one with -n"
        print(f'error: database "{name}" {problem} ({where})', file=err)
        return None
    try:
        return criteria_for(found[0], known_regions(brokers))
    except PlacementError as exc:
        print(f"error: Database {found[0].key}: {exc}", file=err)
        return None
