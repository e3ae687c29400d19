"""What-if: the recorded selection decisions re-run through the real selection code with
changed priorities, capacities, or brokers removed, and compared with what happened.

The replay drives a real `BrokerRegistry` (the daemon's: `kidp_ops.selection` plus its
in-flight reservations) on a clock of its own. Every broker is fed to it as it was at each
recorded moment: the spec last recorded (`brokers` frame), the phase from its last phase
change, the active deployments from its last probe, the heartbeat from its last successful
probe. Each recorded decision is then asked again at its time, for its request (so the
request's reservation counts as it did). The load the brokers reported is the load that
happened: a what-if does not simulate how different placements would have changed it,
beyond the reservations. `baseline` (the replay without changes) next to `actual` (what
was recorded) shows how faithful the reconstruction is.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from kidp_ops.analysis.style import NONE, empty_figure, titled
from kidp_ops.history import HistoryError
from kidp_ops.history.frames import HistoryFrames
from kidp_ops.model.resources import Broker, BrokerStatus
from kidp_ops.registry import BrokerRegistry
from kidp_ops.selection import SelectionCriteria


@dataclass(frozen=True)
class Changes:
    """What to change for a what-if (brokers by namespace/name)."""

    priorities: Mapping[str, int] = field(default_factory=dict)
    capacities: Mapping[str, int] = field(default_factory=dict)  # 0: unlimited
    removed: frozenset[str] = frozenset()

    def describe(self) -> str:
        parts = [f"without {b}" for b in sorted(self.removed)]
        parts += [f"{b} priority {p}" for b, p in sorted(self.priorities.items())]
        parts += [f"{b} capacity {c}" for b, c in sorted(self.capacities.items())]
        return ", ".join(parts) or "no change"

    def apply(self, broker: Broker) -> Broker | None:
        """`broker` changed as asked; None when it is removed."""
        if broker.key in self.removed:
            return None
        spec = broker.spec
        if broker.key in self.priorities:
            spec = replace(spec, priority=self.priorities[broker.key])
        if broker.key in self.capacities:
            spec = replace(spec, max_concurrent_deployments=self.capacities[broker.key])
        return broker if spec is broker.spec else replace(broker, spec=spec)


class _Timeline:
    """Values of one broker over time, looked up as of a time (ns since the epoch)."""

    def __init__(self, times: Any, values: list[Any]) -> None:
        self.times = [int(t.value) for t in times]
        self.values = values

    def at(self, t: int, default: Any = None) -> Any:
        i = bisect.bisect_right(self.times, t)
        return self.values[i - 1] if i else default


class _Fleet:
    """Every broker as it was at any recorded time."""

    def __init__(self, frames: HistoryFrames) -> None:
        self.specs: dict[str, _Timeline] = {}
        for broker, rows in frames.brokers.groupby("broker", sort=True):
            built = [
                None if d else _broker(str(broker), s)
                for d, s in zip(rows["deleted"], rows["spec"], strict=True)
            ]
            self.specs[str(broker)] = _Timeline(rows.index, built)
        self.phases = _by_broker(frames.transitions, "new")
        probes = frames.probes
        self.active = _by_broker(probes.dropna(subset=["active"]), "active")
        self.heartbeats = _by_broker(probes[probes["ok"]], None)
        self.probed = _by_broker(probes, None)

    def broker_at(self, key: str, ns: int) -> Broker | None:
        """Broker `key` as it was at `ns` (ns since the epoch); None before its first
        recorded spec and after its deletion."""
        broker: Broker | None = self.specs[key].at(ns)
        if broker is None:
            return None
        phase = self._get(self.phases, key, ns)
        active = self._get(self.active, key, ns)
        beat = self._get(self.heartbeats, key, ns, time=True)
        status = BrokerStatus(phase=phase, active_deployments=int(active or 0),
                              last_heartbeat=beat)  # fmt: skip
        return replace(broker, status=status)

    def moments(self) -> Iterator[tuple[int, str]]:
        """(ns, broker) whenever something about a broker changed: its spec, its phase, a
        probe (load, heartbeat)."""
        for key, specs in self.specs.items():
            times = set(specs.times)
            for table in (self.phases, self.probed):
                if key in table:
                    times.update(table[key].times)
            yield from ((t, key) for t in times)

    @staticmethod
    def _get(table: dict[str, _Timeline], key: str, ns: int, *, time: bool = False) -> Any:
        timeline = table.get(key)
        if timeline is None:
            return None
        value = timeline.at(ns)
        return value.to_pydatetime() if time and value is not None else value


def _by_broker(frame: Any, column: str | None) -> dict[str, _Timeline]:
    """broker -> timeline of `column` (or of the row's own time when None)."""
    found = {}
    for broker, rows in frame.groupby("broker", observed=True, sort=False):
        values = list(rows.index) if column is None else list(rows[column])
        found[str(broker)] = _Timeline(rows.index, values)
    return found


def _broker(key: str, spec: Mapping[str, Any]) -> Broker | None:
    namespace, _, name = key.partition("/")
    try:
        return Broker.from_manifest(
            {"metadata": {"name": name, "namespace": namespace}, "spec": dict(spec)}
        )
    except (ValueError, TypeError, KeyError):
        return None  # a spec this version cannot read: the broker sits out the replay


def replay(frames: HistoryFrames, changes: Changes | None = None) -> Any:
    """Index time; columns request, actual (what was chosen), baseline (the replay as
    recorded), what_if (the replay with `changes`), changed (what_if != baseline). NA: no
    broker. attrs: `changes` (text), `fidelity` (share of baseline == actual)."""
    import pandas as pd  # lazy: pandas is optional and slow to import

    if not frames.per_request:
        raise HistoryError(
            "a what-if replay needs the recorded requests, which Prometheus does not keep: "
            "read the history store (kidp-ops daemon --history DIR)"
        )
    changes = changes or Changes()
    fleet = _Fleet(frames)
    clock = _Clock()
    recorded, what_if = BrokerRegistry(clock=clock), BrokerRegistry(clock=clock)
    decisions: list[tuple[int, int, Any]] = [
        (int(t.value), 1, i) for i, t in enumerate(frames.selections.index)
    ]
    changes_at: list[tuple[int, int, Any]] = [(ns, 0, key) for ns, key in fleet.moments()]
    rows = []
    for ns, kind, item in sorted([*changes_at, *decisions]):  # at one time: state first
        clock.now = _time(ns)
        if kind == 0:
            _feed(recorded, what_if, fleet.broker_at(str(item), ns), str(item), changes)
            continue
        row = frames.selections.iloc[int(item)]
        criteria, request = _criteria(row), str(row["request"])
        actual = row["broker"] if isinstance(row["broker"], str) else None
        rows.append((request, actual, _pick(recorded, criteria, request),
                     _pick(what_if, criteria, request)))  # fmt: skip
    table = pd.DataFrame(rows, columns=["request", "actual", "baseline", "what_if"],
                         index=frames.selections.index)  # fmt: skip
    table["changed"] = table["what_if"].fillna(NONE) != table["baseline"].fillna(NONE)
    same = table["baseline"].fillna(NONE) == table["actual"].fillna(NONE)
    table.attrs["changes"] = changes.describe()
    table.attrs["fidelity"] = float(same.mean()) if len(table) else float("nan")
    return table


class _Clock:
    """The replay's clock: the registry reads it for reservations' expiry."""

    def __init__(self) -> None:
        self.now = datetime.min

    def __call__(self) -> datetime:
        return self.now


def _time(ns: int) -> datetime:
    import pandas as pd  # lazy: pandas is optional and slow to import

    moment: datetime = pd.Timestamp(ns, tz="UTC").to_pydatetime()
    return moment


def _feed(
    recorded: BrokerRegistry, what_if: BrokerRegistry, broker: Broker | None, key: str,
    changes: Changes,
) -> None:  # fmt: skip
    for registry, shown in ((recorded, broker), (what_if, broker and changes.apply(broker))):
        if shown is None:
            registry.remove(key)
        else:
            registry.upsert(shown)


def _pick(registry: BrokerRegistry, criteria: SelectionCriteria, request: str) -> str | None:
    chosen = registry.select(criteria, reserve_for=request)
    return chosen.broker.key if chosen is not None else None


def _criteria(row: Any) -> SelectionCriteria:
    def text(name: str) -> str | None:
        value = row[name]
        return value if isinstance(value, str) and value else None

    return SelectionCriteria(
        resource_type=str(row["resource_type"]),
        provider=text("provider"),
        cloud_provider=text("cloud_provider"),
        region=text("region"),
        namespace=text("namespace"),
    )


def removal_impact(frames: HistoryFrames) -> Any:
    """Index broker (each one that won a decision in the replay); columns won, moved (to
    another broker), unplaced (no broker would fit), moved_to (where most of them go)."""
    import pandas as pd  # lazy: pandas is optional and slow to import

    base = replay(frames)
    rows = []
    for broker in sorted(set(base["baseline"].dropna())):
        mine = replay(frames, Changes(removed=frozenset({broker})))
        won = mine[mine["baseline"] == broker]
        targets = Counter(won["what_if"].dropna())
        top = ", ".join(f"{b} ({n})" for b, n in targets.most_common(2)) or "-"
        unplaced = int(won["what_if"].isna().sum())
        rows.append((broker, len(won), len(won) - unplaced, unplaced, top))
    columns = ["broker", "won", "moved", "unplaced", "moved_to"]
    return pd.DataFrame(rows, columns=columns).set_index("broker")


def whatif_figure(
    frames: HistoryFrames, changes: Changes | None = None, *, table: Any = None
) -> Any:
    """Decisions per broker: what happened, the replay as recorded, and the what-if of
    `changes` (without changes, just the first two: how faithful the replay is). `table`:
    the `replay(frames, changes)` when the caller has it already."""
    import plotly.graph_objects as go  # lazy: plotly is optional and slow to import

    title = "What-if replay" if changes is not None else "The replay against what happened"
    if frames.selections.empty:
        return empty_figure(title, "no selection decisions in this window")
    table = replay(frames, changes) if table is None else table
    traces = [("actual", "what happened"), ("baseline", "replayed as recorded")]
    if changes is not None:
        traces.append(("what_if", f"what-if: {table.attrs['changes']}"))
    figure = go.Figure()
    for column, label in traces:
        counts = table[column].fillna(NONE).value_counts().sort_index()
        figure.add_trace(go.Bar(x=counts.index, y=counts.values, name=label))
    figure.update_layout(barmode="group")
    figure.update_yaxes(title="decisions")
    changed = f"{int(table['changed'].sum())} change; " if changes is not None else ""
    subtitle = (
        f"{len(table)} recorded decisions re-run through kidp_ops.selection; {changed}"
        f"the replay as recorded matches what happened in {table.attrs['fidelity']:.0%}"
    )
    return titled(figure, title, subtitle)
