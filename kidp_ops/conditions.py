"""Kubernetes-style conditions on JSON status, pure (meta.SetStatusCondition in Python).

`lastTransitionTime` changes only when a condition's status flips; reason, message and
observedGeneration follow the latest call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from kidp_ops.times import format_time


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def set_condition(
    conditions: Iterable[Mapping[str, Any]],
    *,
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """A new list with `type_` set; the others are kept in order, a new type goes last."""
    result: list[dict[str, Any]] = []
    placed = False
    for condition in conditions:
        if condition.get("type") != type_:
            result.append(dict(condition))
            continue
        placed = True
        result.append(_updated(condition, status, reason, message, now, generation))
    if not placed:
        result.append(_updated({"type": type_}, status, reason, message, now, generation))
    return result


def remove_condition(conditions: Iterable[Mapping[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [dict(c) for c in conditions if c.get("type") != type_]


def _updated(
    old: Mapping[str, Any],
    status: str,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    flipped = old.get("status") != status or not old.get("lastTransitionTime")
    new: dict[str, Any] = {
        "type": old["type"],
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": format_time(now) if flipped else old["lastTransitionTime"],
    }
    if generation is not None:
        new["observedGeneration"] = generation
    return new
