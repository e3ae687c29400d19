"""Selection decisions for people and programs: the `select --explain` table and JSON.

Pure formatting of `selection.rank` output; the CLI, the daemon's Events and the dashboard's
what-if panel all describe a decision the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from kidp_ops.selection import Candidate, ScoreParts, SelectionCriteria
from kidp_ops.times import human_age


def describe_criteria(criteria: SelectionCriteria) -> str:
    """`Database (provider postgresql, cloud aws, region us-west-2)`; "any" parts left out."""
    asked = [
        f"{label} {value}"
        for label, value in (
            ("provider", criteria.provider),
            ("cloud", criteria.cloud_provider),
            ("region", criteria.region),
        )
        if value is not None
    ]
    return criteria.resource_type + (f" ({', '.join(asked)})" if asked else " (any provider)")


def _number(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0") if value == int(value) else f"{value:.1f}"


def describe_parts(parts: ScoreParts) -> str:
    """`priority 150 + load 70 + heartbeat 50`."""
    return (
        f"priority {_number(parts.priority)} + load {_number(parts.load)}"
        f" + heartbeat {_number(parts.heartbeat)}"
    )


def summary(criteria: SelectionCriteria, candidates: Sequence[Candidate]) -> str:
    """One line: what was asked and what was chosen, or that nothing fits."""
    eligible = sum(1 for c in candidates if c.accepted)
    asked = describe_criteria(criteria)
    if not candidates:
        return f"{asked}: no brokers registered"
    if not eligible:
        return f"{asked}: no broker matches ({len(candidates)} rejected)"
    best = candidates[0]
    assert best.parts is not None and best.score is not None
    return (
        f"{asked}: selected {best.broker.key}, score {best.score:.1f} "
        f"({describe_parts(best.parts)}); {eligible} of {len(candidates)} brokers eligible"
    )


def _row(index: int, candidate: Candidate, now: datetime, reserved: dict[str, int]) -> list[str]:
    broker = candidate.broker
    spec, status = broker.spec, broker.status
    active = status.active_deployments + reserved.get(broker.key, 0)
    limit = spec.max_concurrent_deployments
    heartbeat = status.last_heartbeat
    score = "-"
    if candidate.parts is not None:
        score = f"{candidate.parts.total:.1f} = {describe_parts(candidate.parts)}"
    if candidate.accepted:
        result = "selected" if index == 0 else "eligible"
    else:
        result = f"rejected: {candidate.rejected}"
    return [
        broker.key,
        spec.cloud_provider,
        spec.region or "*",
        status.phase or "<none>",
        f"{active}/{limit}" if limit else f"{active}/-",
        human_age((now - heartbeat).total_seconds()) + " ago" if heartbeat else "never",
        score,
        result,
    ]


def table(
    candidates: Sequence[Candidate],
    *,
    now: datetime,
    reserved: dict[str, int] | None = None,
) -> str:
    """Every broker, best first: score parts for the eligible, the reason for the rest."""
    header = ["BROKER", "CLOUD", "REGION", "PHASE", "LOAD", "HEARTBEAT", "SCORE", "RESULT"]
    rows = [header]
    rows += [_row(i, candidate, now, reserved or {}) for i, candidate in enumerate(candidates)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "   "
        + row[-1]
        for row in rows
    )


def candidate_json(candidate: Candidate) -> dict[str, Any]:
    meta = candidate.broker.metadata
    parts = candidate.parts
    return {
        "namespace": meta.namespace,
        "name": meta.name,
        "score": candidate.score,
        "parts": None
        if parts is None
        else {"priority": parts.priority, "load": parts.load, "heartbeat": parts.heartbeat},
        "rejected": candidate.rejected,
    }


def decision_json(candidates: Sequence[Candidate]) -> dict[str, Any]:
    """`{"selected": {namespace, name, score} | null, "candidates": [...]}`."""
    best = candidates[0] if candidates and candidates[0].accepted else None
    selected = None
    if best is not None:
        meta = best.broker.metadata
        selected = {"namespace": meta.namespace, "name": meta.name, "score": best.score}
    return {"selected": selected, "candidates": [candidate_json(c) for c in candidates]}
