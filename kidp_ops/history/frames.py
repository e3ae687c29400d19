"""The history as tidy pandas DataFrames: one `HistoryFrames` per window, from the store
(`load`) or from Prometheus (`history.prometheus.load`), with the same frames and columns.

Every frame has a UTC `DatetimeIndex` named `time`, oldest first. Columns:

`probes` (one row per probe; a per-minute aggregate for old probes, and a Prometheus step):
    broker, phase (after the probe), ok (no failure in the row), n (probes in the row),
    failures, latency_ms (mean; NaN none), active, max (Int64; NA unknown, max 0
    unlimited), version, reason (the last failure's; "" none)
`transitions` (phase changes): broker, old (NA: first seen), new; all of them up to the
    window's end, so the phase at its start is known (the last change before it)
`selections` (one row per decision; a Prometheus step per broker): request (NA from
    Prometheus), namespace, resource_type, provider, cloud_provider, region, broker (NA:
    nothing fitted), count (decisions in the row), score, priority, load, heartbeat (the
    winner's score parts; means when count > 1), candidates, eligible, reason
`rejections` (decisions that found no broker, by filter): request, filter, brokers
`lifecycle` (store only): request, step, broker, deployment_id, message
`provisions` (indexed by the end: Ready or Failed): request, broker, outcome (ready,
    failed), seconds (from creation; mean when count > 1), count
`brokers` (each broker's spec from then on): broker, cloud_provider, region, priority,
    max, deleted, spec (dict; {} from Prometheus)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kidp_ops.history import HistoryError, SelectionRecord
from kidp_ops.history.blocks import offsets
from kidp_ops.history.store import StoreReader, open_reader

if TYPE_CHECKING:
    import pandas as pd

PROBES = (
    "broker",
    "phase",
    "ok",
    "n",
    "failures",
    "latency_ms",
    "active",
    "max",
    "version",
    "reason",
)
TRANSITIONS = ("broker", "old", "new")
SELECTIONS = (
    "request",
    "namespace",
    "resource_type",
    "provider",
    "cloud_provider",
    "region",
    "broker",
    "count",
    "score",
    "priority",
    "load",
    "heartbeat",
    "candidates",
    "eligible",
    "reason",
)
REJECTIONS = ("request", "filter", "brokers")
LIFECYCLE = ("request", "step", "broker", "deployment_id", "message")
PROVISIONS = ("request", "broker", "outcome", "seconds", "count")
BROKERS = ("broker", "cloud_provider", "region", "priority", "max", "deleted", "spec")


@dataclass(frozen=True)
class HistoryFrames:
    """The frames of one window of history (see the module's docstring for the columns)."""

    probes: pd.DataFrame
    transitions: pd.DataFrame
    selections: pd.DataFrame
    rejections: pd.DataFrame
    lifecycle: pd.DataFrame
    provisions: pd.DataFrame
    brokers: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp
    source: str  # "store DIR" or "prometheus URL"
    per_request: bool = True  # False from Prometheus: no request, no criteria (no what-if)

    def between(self, start: Any = None, end: Any = None) -> HistoryFrames:
        """The same history narrowed to [start, end] (the brokers' specs are all kept)."""
        import pandas as pd  # lazy: pandas is optional and slow to import

        low = pd.Timestamp(start) if start is not None else self.start
        high = pd.Timestamp(end) if end is not None else self.end
        cut = {
            name: frame[(frame.index >= low) & (frame.index <= high)]
            for name, frame in self._timed().items()
        }
        cut["transitions"] = self.transitions[self.transitions.index <= high]
        return replace(self, **cut, start=low, end=high)

    def only(self, brokers: Any) -> HistoryFrames:
        """The same history for `brokers` (namespace/name keys) only; decisions that
        placed nothing are kept (they belong to no broker)."""
        wanted = set(brokers)

        def mine(name: str, frame: pd.DataFrame) -> pd.DataFrame:
            keep = frame["broker"].isin(wanted)
            if name == "selections":
                keep |= frame["broker"].isna()
            return frame[keep]

        cut = {
            name: mine(name, frame)
            for name, frame in {**self._timed(), "brokers": self.brokers}.items()
            if name not in ("rejections", "lifecycle")
        }
        return replace(self, **cut)

    def _timed(self) -> dict[str, pd.DataFrame]:
        return {
            "probes": self.probes,
            "transitions": self.transitions,
            "selections": self.selections,
            "rejections": self.rejections,
            "lifecycle": self.lifecycle,
            "provisions": self.provisions,
        }

    def latest_brokers(self) -> pd.DataFrame:
        """One row per broker that is not deleted: its last recorded spec (index: broker)."""
        if self.brokers.empty:
            return empty(BROKERS).set_index("broker")
        last = self.brokers.groupby("broker", sort=True).tail(1).set_index("broker")
        return last[~last["deleted"].astype(bool)]

    def broker_names(self) -> list[str]:
        seen = set(self.probes["broker"].dropna()) | set(self.brokers["broker"].dropna())
        return sorted(str(b) for b in seen)


def empty(columns: tuple[str, ...]) -> pd.DataFrame:
    import pandas as pd  # lazy: pandas is optional and slow to import

    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    frame.index = pd.DatetimeIndex([], tz="UTC", name="time")
    return frame


def timed(rows: list[Any], columns: tuple[str, ...], times: list[Any]) -> pd.DataFrame:
    """A frame from rows and their times (ms since the epoch, or datetimes)."""
    import pandas as pd  # lazy: pandas is optional and slow to import

    if not rows:
        return empty(columns)
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    unit = {"unit": "ms"} if isinstance(times[0], int) else {}
    frame.index = pd.DatetimeIndex(pd.to_datetime(times, utc=True, **unit), name="time")
    return frame.sort_index(kind="stable")


# --- from the store ------------------------------------------------------------------


def load(
    state_dir: str | Path, *, since: datetime | None = None, until: datetime | None = None
) -> HistoryFrames:
    """Every frame of the history in `state_dir/history.db` between `since` and `until`."""
    reader = open_reader(state_dir)
    if reader is None:
        raise HistoryError(
            f"no history in {state_dir}/ (history.db not found): run `kidp-ops dev` or "
            "`kidp-ops daemon --history DIR` first"
        )
    try:
        return frames_of(reader, since=since, until=until)
    finally:
        reader.close()


def frames_of(
    reader: StoreReader, *, since: datetime | None = None, until: datetime | None = None
) -> HistoryFrames:
    import pandas as pd  # lazy: pandas is optional and slow to import

    span = reader.span()
    now = pd.Timestamp.now(tz="UTC")
    start = pd.Timestamp(since) if since else (pd.Timestamp(span[0]) if span else now)
    end = pd.Timestamp(until) if until else (pd.Timestamp(span[1]) if span else now)
    lifecycle = _lifecycle(reader)  # all of it: provisions started before `since` end in it
    decisions = reader.selections(since=since)
    frames = HistoryFrames(
        probes=probes_frame(reader, since=since, until=until),
        transitions=_transitions(reader, None),
        selections=_selections(decisions),
        rejections=_rejections(decisions),
        lifecycle=lifecycle,  # cut to the window below
        provisions=provisions_from(lifecycle),
        brokers=_brokers(reader),
        start=start,
        end=end,
        source=f"store {reader.path.parent}",
    )
    return frames.between(start, end)


# size: one statement per column of the frame
def probes_frame(
    reader: StoreReader, *, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """The probes, columnar from the blocks (no Python object per value; long: one
    statement per column of the frame)."""
    import numpy as np  # lazy: numpy comes with pandas, which is optional
    import pandas as pd  # lazy: pandas is optional and slow to import

    blocks = reader.blocks(since=since, until=until)
    if not blocks:
        return empty(PROBES)
    parts: dict[str, list[Any]] = {}
    for _, _, rows, data in blocks:
        raw = zlib.decompress(data)
        for name, dtype, begin, finish in offsets(rows):
            size = np.dtype(dtype).itemsize
            parts.setdefault(name, []).append(
                np.frombuffer(raw, dtype=dtype)[begin // size : finish // size]
            )
    cols = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    order = np.argsort(cols["t"], kind="stable")
    cols = {name: values[order] for name, values in cols.items()}
    keep = np.ones(len(order), dtype=bool)
    if since is not None:
        keep &= cols["t"] >= int(since.timestamp() * 1000)
    if until is not None:
        keep &= cols["t"] <= int(until.timestamp() * 1000)
    cols = {name: values[keep] for name, values in cols.items()}
    names = reader.names()
    return pd.DataFrame(
        {
            "broker": _categories(cols["broker"], names),
            "phase": _categories(cols["phase"], names),
            "ok": cols["failures"] == 0,
            "n": cols["n"].astype("int64"),
            "failures": cols["failures"].astype("int64"),
            "latency_ms": cols["latency"],
            "active": pd.arrays.IntegerArray(cols["active"].astype("int64"), cols["active"] < 0),
            "max": pd.arrays.IntegerArray(cols["max"].astype("int64"), cols["max"] < 0),
            "version": _categories(cols["version"], names),
            "reason": _categories(cols["reason"], names, none=""),
        },
        index=pd.DatetimeIndex(pd.to_datetime(cols["t"], unit="ms", utc=True), name="time"),
    )


def _categories(ids: Any, names: dict[int, str], none: str | None = None) -> Any:
    """Name ids as a pandas Categorical (0: NA, or `none`)."""
    import numpy as np  # lazy: numpy comes with pandas, which is optional
    import pandas as pd  # lazy: pandas is optional and slow to import

    unique, codes = np.unique(ids, return_inverse=True)
    labels = [names.get(int(i), none) if i else none for i in unique]
    if None in labels:  # NA: code -1
        lookup = np.array([-1 if label is None else 0 for label in labels])
        kept: list[str | None] = [label for label in labels if label is not None]
        remap = np.cumsum(lookup == 0) - 1
        codes = np.where(lookup[codes] < 0, -1, remap[codes])
        labels = kept
    found = pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object))
    return found.reorder_categories(sorted(found.categories, key=str))  # groupby: by name


def _transitions(reader: StoreReader, since: datetime | None) -> pd.DataFrame:
    found = reader.transitions(since=since)
    return timed([r[1:] for r in found], TRANSITIONS, [r[0] for r in found])


def _selections(found: list[SelectionRecord]) -> pd.DataFrame:
    rows = [
        (
            s.request,
            s.namespace,
            s.resource_type,
            s.provider,
            s.cloud_provider,
            s.region,
            s.broker,
            1,
            s.score,
            *(s.parts or (None, None, None)),
            s.candidates,
            s.eligible,
            s.reason,
        )
        for s in found
    ]
    return timed(rows, SELECTIONS, [s.time for s in found])


def _rejections(decisions: list[SelectionRecord]) -> pd.DataFrame:
    found = [s for s in decisions if s.rejections]
    rows = [(s.time, s.request, f, n) for s in found for f, n in sorted(s.rejections.items())]
    return timed([r[1:] for r in rows], REJECTIONS, [r[0] for r in rows])


def _lifecycle(reader: StoreReader) -> pd.DataFrame:
    found = reader.lifecycle()
    rows = [(r.request, r.step, r.broker, r.deployment_id, r.message) for r in found]
    return timed(rows, LIFECYCLE, [r.time for r in found])


def _brokers(reader: StoreReader) -> pd.DataFrame:
    found = reader.brokers()
    rows = [
        (
            b.broker,
            b.cloud_provider,
            b.region,
            b.priority,
            b.max_concurrent_deployments,
            b.deleted,
            dict(b.spec),
        )
        for b in found
    ]
    return timed(rows, BROKERS, [b.time for b in found])


def provisions_from(lifecycle: pd.DataFrame) -> pd.DataFrame:
    """Per Database: from `created` to the first `ready` or `failed` after it, and the
    broker that got it (the last `scheduled` one before the end)."""
    rows, times = [], []
    for request, steps in lifecycle.groupby("request", sort=False):
        created = steps[steps["step"] == "created"]
        ended = steps[steps["step"].isin(["ready", "failed"])]
        if created.empty or ended.empty:
            continue
        begin = created.index[0]
        after = ended[ended.index >= begin]
        if after.empty:
            continue
        end, outcome = after.index[0], after["step"].iloc[0]
        chosen = steps[(steps["step"] == "scheduled") & (steps.index <= end)]["broker"].dropna()
        broker = chosen.iloc[-1] if not chosen.empty else after["broker"].iloc[0]
        rows.append((request, broker, outcome, (end - begin).total_seconds(), 1))
        times.append(end)
    return timed(rows, PROVISIONS, times)
