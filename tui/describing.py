"""The `d` (describe) text, pure: a Broker with its probes and selections, a Database with
the whole decision that placed it (every candidate with its score parts or rejection),
both with conditions and Events. Everything it shows is passed in; `now` too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.text import Text

from kidp_ops.explaining import describe_criteria, describe_parts
from kidp_ops.history import LifecycleRecord, ProbeRecord, SelectionRecord
from kidp_ops.selection import Candidate, ScoreParts, SelectionCriteria
from kidp_ops.times import human_age, parse_time
from tui import cells

Manifest = Mapping[str, Any]


class Page:
    """A describe page being written: headings and indented lines, as Rich Text."""

    def __init__(self) -> None:
        self.text = Text()

    def heading(self, title: str) -> None:
        if self.text:
            self.text.append("\n")
        self.text.append(title + "\n", style="bold underline")

    def line(self, *parts: str | Text, indent: int = 2) -> None:
        self.text.append(" " * indent)
        for part in parts:
            self.text.append(part)
        self.text.append("\n")

    def field(self, label: str, value: object, *, style: str = "") -> None:
        shown = "<none>" if value in (None, "") else str(value)
        self.text.append(f"  {label + ':':<22}", style="bold")
        self.text.append(shown + "\n", style=style)


def when(value: Any, now: datetime) -> str:
    """`10:42:01 (4m ago)` for a timestamp; `<none>` when absent."""
    moment = parse_time(value) if not isinstance(value, datetime) else value
    if moment is None:
        return "<none>"
    return f"{moment:%Y-%m-%d %H:%M:%S} ({human_age((now - moment).total_seconds())} ago)"


def conditions(page: Page, status: Manifest, now: datetime) -> None:
    page.heading("Conditions")
    listed = status.get("conditions") or []
    if not listed:
        page.line(Text("none", style="dim"))
    for condition in listed:
        flag = condition.get("status", "Unknown")
        style = "green" if flag == "True" else "red" if flag == "False" else "magenta"
        changed = when(condition.get("lastTransitionTime"), now)
        page.line(
            Text(f"{condition.get('type', '?')}={flag}", style=style),
            f"  {condition.get('reason', '')}  since {changed}",
        )
        if condition.get("message"):
            page.line(str(condition["message"]), indent=6)


def events(page: Page, listed: Sequence[Manifest], now: datetime) -> None:
    page.heading("Events")
    if not listed:
        page.line(Text("none", style="dim"))
    for event in listed[-20:]:
        kind = event.get("type", "Normal")
        seen = event.get("lastTimestamp") or event.get("firstTimestamp")
        moment = parse_time(seen)
        ago = human_age((now - moment).total_seconds()) if moment else "?"
        page.line(
            f"{ago:>6}  ",
            Text(f"{kind:<8}", style=cells.PHASE_STYLES.get(kind, "")),
            f"{event.get('reason', ''):<22} {event.get('message', '')}",
        )


def describe_broker(
    manifest: Manifest,
    *,
    now: datetime,
    reserved: int,
    probes: Sequence[ProbeRecord],
    selections: Sequence[SelectionRecord],
    related_events: Sequence[Manifest],
) -> Text:
    meta, spec = manifest.get("metadata") or {}, manifest.get("spec") or {}
    status = manifest.get("status") or {}
    page = Page()
    page.heading(f"Broker {meta.get('namespace')}/{meta.get('name')}")
    _broker_spec(page, spec)
    page.heading("Status")
    listed: list[Manifest] = status.get("conditions") or []
    ready: Manifest = next((c for c in listed if c.get("type") == "Ready"), {})
    phase = str(status.get("phase") or "")
    page.field("phase", phase, style=cells.PHASE_STYLES.get(phase, ""))
    page.field("in this phase since", when(ready.get("lastTransitionTime"), now))
    page.field("last heartbeat", when(status.get("lastHeartbeat"), now))
    active = int(status.get("activeDeployments") or 0)
    page.field("load", f"{active + reserved}/{spec.get('maxConcurrentDeployments')} "
               f"({active} reported, {reserved} reserved)")  # fmt: skip
    page.field("version", status.get("version"))
    page.field("consecutive failures", status.get("consecutiveFailures", 0))
    page.field("message", status.get("message"))
    conditions(page, status, now)
    _probes(page, probes, now)
    _selections_onto(page, selections, now)
    events(page, related_events, now)
    return page.text


def _broker_spec(page: Page, spec: Manifest) -> None:
    page.field("endpoint", spec.get("endpoint"))
    page.field("cloud / region", f"{spec.get('cloudProvider')} / {spec.get('region') or '*'}")
    page.field("priority", spec.get("priority"))
    page.field("max deployments", spec.get("maxConcurrentDeployments"))
    page.field("cordoned", "yes (unschedulable)" if spec.get("unschedulable") else "no")
    for capability in spec.get("capabilities") or []:
        regions = ", ".join(capability.get("regions") or []) or "every region it serves"
        providers = ", ".join(capability.get("providers") or []) or "none declared"
        page.field(f"serves {capability.get('resourceType')}", f"{providers} (in {regions})")
    check = spec.get("healthCheck") or {}
    page.field(
        "health check",
        f"{check.get('endpoint', '/health')} every {check.get('intervalSeconds', 30)}s, "
        f"timeout {check.get('timeoutSeconds', 5)}s, "
        f"down after {check.get('failureThreshold', 3)} failures",
    )


def _probes(page: Page, probes: Sequence[ProbeRecord], now: datetime) -> None:
    page.heading(f"Recent probes (newest first, {len(probes)})")
    if not probes:
        page.line(Text("no probe history here (the daemon's history is not readable)", "dim"))
    for probe in reversed(probes):
        latency = f"{probe.latency_ms:.0f}ms" if probe.latency_ms is not None else "-"
        page.line(
            f"{probe.time:%H:%M:%S} ",
            Text("ok    " if probe.ok else "FAILED", style="green" if probe.ok else "bold red"),
            " ",
            Text(f"{probe.phase:<10}", style=cells.PHASE_STYLES.get(probe.phase, "")),
            f"{latency:>7}  {probe.reason}",
        )


def _selections_onto(page: Page, selections: Sequence[SelectionRecord], now: datetime) -> None:
    page.heading(f"Recent selections onto it ({len(selections)})")
    if not selections:
        page.line(Text("none recorded", style="dim"))
    for record in reversed(selections[-15:]):
        parts = f" ({_parts(record.parts)})" if record.parts else ""
        score = f"score {record.score:.1f}" if record.score is not None else ""
        page.line(
            f"{record.time:%H:%M:%S} {record.request}  {score}{parts}, "
            f"{record.eligible} of {record.candidates} eligible"
        )


def _parts(parts: tuple[float, float, float]) -> str:
    return describe_parts(ScoreParts(*parts))


def describe_database(
    manifest: Manifest,
    *,
    now: datetime,
    criteria: SelectionCriteria | None,
    criteria_problem: str,
    candidates: Sequence[Candidate],
    decisions: Sequence[SelectionRecord],
    lifecycle: Sequence[LifecycleRecord],
    related_events: Sequence[Manifest],
) -> Text:
    meta, spec = manifest.get("metadata") or {}, manifest.get("spec") or {}
    status = manifest.get("status") or {}
    page = Page()
    page.heading(f"Database {meta.get('namespace')}/{meta.get('name')}")
    page.field("engine", f"{spec.get('engine')} {spec.get('version') or ''}".strip())
    page.field("size", spec.get("size"))
    page.field("target", spec.get("target") or f"{spec.get('cloudProvider')}-{spec.get('region')}")
    owner = spec.get("owner") or {}
    page.field("owner", f"{owner.get('kind')}/{owner.get('name')}" if owner else None)
    page.field("created", when(meta.get("creationTimestamp"), now))
    page.heading("Status")
    phase = str(status.get("phase") or "")
    page.field("phase", phase, style=cells.PHASE_STYLES.get(phase, ""))
    broker = status.get("brokerRef") or {}
    page.field("broker", f"{broker.get('namespace', '')}/{broker.get('name')}" if broker else None)
    page.field("deployment", status.get("deploymentId"))
    page.field("endpoint", status.get("endpoint"))
    page.field("message", status.get("message"))
    conditions(page, status, now)
    _decisions(page, decisions)
    _candidates(page, criteria, criteria_problem, candidates)
    _lifecycle(page, lifecycle)
    events(page, related_events, now)
    return page.text


def _decisions(page: Page, decisions: Sequence[SelectionRecord]) -> None:
    page.heading("The decision that placed it (as recorded)")
    if not decisions:
        page.line(Text("no decision recorded here (made before this history began)", "dim"))
    for record in decisions[-5:]:
        asked = SelectionCriteria(
            resource_type=record.resource_type,
            provider=record.provider,
            cloud_provider=record.cloud_provider,
            region=record.region,
        )
        page.line(f"{record.time:%H:%M:%S} asked {describe_criteria(asked)}")
        if record.broker:
            parts = f" = {_parts(record.parts)}" if record.parts else ""
            page.line(
                Text(f"chose {record.broker}", style="bold green"),
                f", score {record.score:.1f}{parts}" if record.score is not None else "",
                indent=4,
            )
        else:
            page.line(Text(f"no broker: {record.reason}", style="bold red"), indent=4)
        page.line(f"{record.eligible} of {record.candidates} brokers eligible", indent=4)
        if record.rejections:
            rejected = ", ".join(f"{f} {n}" for f, n in sorted(record.rejections.items()))
            page.line(f"rejected by filter: {rejected}", indent=4)


def _candidates(
    page: Page,
    criteria: SelectionCriteria | None,
    problem: str,
    candidates: Sequence[Candidate],
) -> None:
    if criteria is None:
        page.heading("Every candidate now")
        page.line(Text(problem or "no criteria", style="red"))
        return
    page.heading(f"Every candidate now, for {describe_criteria(criteria)}")
    for index, candidate in enumerate(candidates):
        key = candidate.broker.key
        if candidate.accepted and candidate.parts is not None:
            label = "selected" if index == 0 else "eligible"
            page.line(
                Text(f"{label:<9}", style="bold green" if index == 0 else "green"),
                f"{key}  {candidate.parts.total:.1f} = {describe_parts(candidate.parts)}",
            )
        else:
            page.line(Text("rejected ", style="red"), f"{key}: {candidate.rejected}")
    if not candidates:
        page.line(Text("no brokers known", style="dim"))


def _lifecycle(page: Page, lifecycle: Sequence[LifecycleRecord]) -> None:
    page.heading("Lifecycle")
    if not lifecycle:
        page.line(Text("none recorded", style="dim"))
    for step in lifecycle[-12:]:
        extra = f" on {step.broker}" if step.broker else ""
        extra += f" ({step.deployment_id})" if step.deployment_id else ""
        extra += f": {step.message}" if step.message else ""
        page.line(f"{step.time:%H:%M:%S} {step.step}{extra}")
