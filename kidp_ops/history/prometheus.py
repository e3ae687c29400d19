"""The history's frames from Prometheus, for production clusters where the daemon keeps no
history store: `query_range` over the daemon's own series (`history.series` and
`kidp_ops.metrics`), one point per `step`.

Only bare series are asked for (`kidp_broker_active_deployments`, ...); counters become
per-step increases here (a reset counts from zero), so any Prometheus-compatible server
answers, with no PromQL functions needed. What Prometheus cannot give: a row per probe or
per decision (a row is one step: `n`, `count` say how many it stands for), requests and
their criteria (no what-if replay), failure reasons, versions, and lifecycle steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from kidp_ops.clock import utc_now
from kidp_ops.history import HistoryError
from kidp_ops.history.frames import (
    BROKERS,
    LIFECYCLE,
    PROBES,
    PROVISIONS,
    REJECTIONS,
    SELECTIONS,
    TRANSITIONS,
    HistoryFrames,
    empty,
    timed,
)

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_WINDOW = timedelta(hours=1)
MAX_POINTS = 10_000  # Prometheus refuses more than 11,000 points per series
Series = dict[tuple[str, ...], dict[float, float]]  # label values -> {time: value}


class PrometheusClient:
    """`query_range` against one Prometheus (bare selectors only); errors in one line."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def query_range(
        self, query: str, *, start: float, end: float, step: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        params: dict[str, str | float] = {"query": query, "start": start, "end": end, "step": step}
        try:
            response = self._http.get(f"{self.url}/api/v1/query_range", params=params)
            body = response.json()
        except httpx.HTTPError as exc:
            raise HistoryError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        except ValueError:
            raise HistoryError(
                f"Prometheus at {self.url} answered {response.status_code} without JSON "
                "(is it a Prometheus URL?)"
            ) from None
        if body.get("status") != "success":
            raise HistoryError(
                f"Prometheus at {self.url} refused {query}: "
                f"{body.get('errorType', 'error')}: {body.get('error', 'no reason given')}"
            )
        return [
            (item.get("metric", {}), [(float(t), float(v)) for t, v in item.get("values", [])])
            for item in body.get("data", {}).get("result", [])
        ]

    def series(
        self, name: str, labels: Iterable[str], *, start: float, end: float, step: float
    ) -> Series:
        """`name`'s samples keyed by the values of `labels` (summed over the others)."""
        found: Series = {}
        keys = tuple(labels)
        for metric, values in self.query_range(name, start=start, end=end, step=step):
            samples = found.setdefault(tuple(metric.get(k, "") for k in keys), {})
            for t, v in values:
                samples[t] = samples.get(t, 0.0) + v
        return found


# size: one keyword per frame in the result
def load(
    url: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    step: float | None = None,
    client: PrometheusClient | None = None,
) -> HistoryFrames:
    """The frames of [since, until] (default: the last hour) from Prometheus at `url`
    (long: one keyword per frame in the result)."""
    import pandas as pd  # lazy: pandas is optional and slow to import

    end = until or utc_now()
    start = since or end - DEFAULT_WINDOW
    if start >= end:
        raise HistoryError(
            f"the window is empty: {start:%Y-%m-%dT%H:%M:%SZ} is not before "
            f"{end:%Y-%m-%dT%H:%M:%SZ}"
        )
    span = (end - start).total_seconds()
    step = step or max(15.0, math.ceil(span / MAX_POINTS))
    owned = client is None
    client = client or PrometheusClient(url)
    try:
        window = {"start": start.timestamp(), "end": end.timestamp(), "step": step}
        probes, transitions = _probes(client, window)
        selections, rejections, provisions, brokers = _decisions(client, window)
    finally:
        if owned:
            client.close()
    return HistoryFrames(
        probes=probes,
        transitions=transitions,
        selections=selections,
        rejections=rejections,
        lifecycle=empty(LIFECYCLE),
        provisions=provisions,
        brokers=brokers,
        start=pd.Timestamp(start),
        end=pd.Timestamp(end),
        source=f"prometheus {url}",
        per_request=False,
    )


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _increases(samples: dict[float, float], start: float) -> dict[float, float]:
    """Per-step increases of a counter: after a reset, the new value; a series that first
    appears after `start` counts from zero (a new broker's first probes)."""
    found, previous = {}, None
    for t in sorted(samples):
        value = samples[t]
        if previous is not None:
            found[t] = value - previous if value >= previous else value
        elif t > start:
            found[t] = value
        previous = value
    return found


# size: one pass over the five series of a broker builds both frames
def _probes(client: PrometheusClient, w: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Probe rows per step and the phase changes between steps (long: one pass over the
    five series of a broker builds both)."""
    nb = ("namespace", "broker")
    phases = client.series("kidp_broker_phase", (*nb, "phase"), **w)
    active = client.series("kidp_broker_active_deployments", nb, **w)
    limit = client.series("kidp_broker_max_concurrent_deployments", nb, **w)
    latency = client.series("kidp_broker_last_probe_latency_seconds", nb, **w)
    counts = client.series("kidp_broker_probes_total", (*nb, "result"), **w)
    current: dict[tuple[str, str], dict[float, str]] = {}
    for (namespace, name, phase), samples in phases.items():
        for t, v in samples.items():
            if v == 1:
                current.setdefault((namespace, name), {})[t] = phase
    rows, times, changes, change_times = [], [], [], []
    for labels, by_time in sorted(current.items()):
        ok = _increases(counts.get((*labels, "success"), {}), w["start"])
        failed = _increases(counts.get((*labels, "failure"), {}), w["start"])
        before: str | None = None
        for t in sorted(by_time):
            phase, fails = by_time[t], int(failed.get(t, 0))
            n = int(ok.get(t, 0)) + fails
            seconds = latency.get(labels, {}).get(t)
            rows.append(
                (
                    _key(*labels),
                    phase,
                    fails == 0,
                    n,
                    fails,
                    seconds * 1000 if seconds is not None else math.nan,
                    _int(active.get(labels, {}).get(t)),
                    _int(limit.get(labels, {}).get(t)),
                    None,
                    "",
                )
            )
            times.append(datetime.fromtimestamp(t, UTC))
            if phase != before:
                changes.append((_key(*labels), before, phase))
                change_times.append(datetime.fromtimestamp(t, UTC))
                before = phase
    probes = timed(rows, PROBES, times)
    if not probes.empty:
        probes = probes.astype({"active": "Int64", "max": "Int64"})
    return probes, timed(changes, TRANSITIONS, change_times)


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _decisions(
    client: PrometheusClient, w: dict[str, float]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    nb = ("namespace", "broker")
    chosen = client.series("kidp_selections_total", (*nb, "resource_type", "provider"), **w)
    parts = client.series("kidp_selection_score_parts_total", (*nb, "part"), **w)
    part_steps = {key: _increases(samples, w["start"]) for key, samples in parts.items()}
    rows, times = [], []
    for (namespace, name, rtype, provider), samples in sorted(chosen.items()):
        for t, count in _increases(samples, w["start"]).items():
            if count <= 0:
                continue
            means = [
                part_steps.get((namespace, name, p), {}).get(t, math.nan) / count
                for p in ("priority", "load", "heartbeat")
            ]
            broker = _key(namespace, name) if name else None
            request = (None, None, rtype, provider or None, None, None)  # unknown: None
            rows.append((*request, broker, int(count), sum(means), *means, None, None, ""))
            times.append(datetime.fromtimestamp(t, UTC))
    return (
        timed(rows, SELECTIONS, times),
        _rejections(client, w),
        _provisions(client, w),
        _brokers(client, w),
    )


def _rejections(client: PrometheusClient, w: dict[str, float]) -> pd.DataFrame:
    rejections = client.series("kidp_selection_rejections_total", ("filter",), **w)
    found = [
        (t, f, n)
        for (f,), s in rejections.items()
        for t, n in _increases(s, w["start"]).items()
        if n
    ]
    return timed(
        [(None, f, int(n)) for _, f, n in found],
        REJECTIONS,
        [datetime.fromtimestamp(t, UTC) for t, _, _ in found],
    )


def _provisions(client: PrometheusClient, w: dict[str, float]) -> pd.DataFrame:
    nb = ("namespace", "broker")
    counts = client.series("kidp_provision_duration_seconds_count", nb, **w)
    sums = client.series("kidp_provision_duration_seconds_sum", nb, **w)
    failures = client.series("kidp_provision_failures_total", nb, **w)
    rows, times = [], []
    for labels, samples in sorted(counts.items()):
        total = _increases(sums.get(labels, {}), w["start"])
        for t, n in _increases(samples, w["start"]).items():
            if n > 0:
                rows.append((None, _key(*labels), "ready", total.get(t, math.nan) / n, int(n)))
                times.append(datetime.fromtimestamp(t, UTC))
    for labels, samples in sorted(failures.items()):
        for t, n in _increases(samples, w["start"]).items():
            if n > 0:
                rows.append((None, _key(*labels), "failed", math.nan, int(n)))
                times.append(datetime.fromtimestamp(t, UTC))
    return timed(rows, PROVISIONS, times)


def _brokers(client: PrometheusClient, w: dict[str, float]) -> pd.DataFrame:
    nb = ("namespace", "broker")
    info = client.series("kidp_broker_info", (*nb, "cloud_provider", "region"), **w)
    priority = client.series("kidp_broker_priority", nb, **w)
    limit = client.series("kidp_broker_max_concurrent_deployments", nb, **w)
    rows: list[tuple[Any, ...]] = []
    times = []
    for (namespace, name, cloud, region), samples in sorted(info.items()):
        first = min(samples)
        labels = (namespace, name)
        last = max(limit.get(labels, {0.0: 0.0}).items())[1]
        rank = max(priority.get(labels, {0.0: 100.0}).items())[1]
        rows.append((_key(*labels), cloud, region, int(rank), int(last), False, {}))
        times.append(datetime.fromtimestamp(first, UTC))
    return timed(rows, BROKERS, times)
