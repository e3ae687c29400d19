"""Broker specs into the history: an informer handler that records a `BrokerRecord` when a
Broker appears, when its spec changes, and when it goes (capacity planning needs each
broker's region, provider and capacity over time; what-if replays need the whole spec)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from kidp_ops.clock import utc_now
from kidp_ops.history import BrokerRecord, HistorySink

SECRET_FIELDS = ("authentication",)  # names of Secrets only, but nothing replays need


def broker_record(obj: Mapping[str, Any], *, now: datetime, deleted: bool = False) -> BrokerRecord:
    meta = obj.get("metadata") or {}
    spec = {k: v for k, v in (obj.get("spec") or {}).items() if k not in SECRET_FIELDS}
    return BrokerRecord(
        time=now,
        broker=f"{meta.get('namespace', '')}/{meta.get('name', '')}",
        cloud_provider=str(spec.get("cloudProvider") or ""),
        region=str(spec.get("region") or ""),
        priority=_int(spec.get("priority"), 100),
        max_concurrent_deployments=_int(spec.get("maxConcurrentDeployments"), 10),
        spec=spec,
        deleted=deleted,
    )


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def spec_recorder(
    sink: HistorySink, *, clock: Callable[[], datetime] = utc_now
) -> Callable[[str, Mapping[str, Any]], None]:
    """An informer handler `(change, broker manifest)`: records only spec changes (status
    writes, which are most events, record nothing)."""
    seen: dict[str, str] = {}

    def handle(change: str, obj: Mapping[str, Any]) -> None:
        record = broker_record(obj, now=clock(), deleted=change == "DELETED")
        if record.deleted:
            if seen.pop(record.broker, None) is not None:
                sink.record_broker(record)
            return
        text = json.dumps(record.spec, sort_keys=True)
        if seen.get(record.broker) != text:
            seen[record.broker] = text
            sink.record_broker(record)

    return handle
