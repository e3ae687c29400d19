"""The Brokers view: phase, load (reported + reserved / max), score for the criteria,
heartbeat age, probe sparkline and flaps; sorts by name, phase, load, heartbeat, score."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from rich.text import Text

from kidp_ops.explaining import describe_criteria
from kidp_ops.health.states import OFFLINE_INTERVALS, OFFLINE_MINIMUM
from kidp_ops.selection import rejection, score
from kidp_ops.times import parse_time
from tui import cells
from tui.views.base import Column, Context, Manifest, Sort, View, key_of, meta, spec, status

SPARK_WIDTH = 10
PHASE_ORDER = {"Offline": 0, "Unhealthy": 1, "Unknown": 2, "Pending": 3, "Ready": 4}


def _interval(obj: Manifest) -> float:
    return float((spec(obj).get("healthCheck") or {}).get("intervalSeconds") or 30)


def heartbeat_age(obj: Manifest, ctx: Context) -> float | None:
    return cells.since(parse_time(status(obj).get("lastHeartbeat")), ctx.now)


def phase_since(obj: Manifest, ctx: Context) -> float | None:
    ready = next((c for c in status(obj).get("conditions") or [] if c.get("type") == "Ready"), None)
    return cells.since(parse_time((ready or {}).get("lastTransitionTime")), ctx.now)


def load_numbers(obj: Manifest, ctx: Context) -> tuple[int, int, int]:
    """(reported active, reserved, max): the numbers selection counts."""
    return (
        int(status(obj).get("activeDeployments") or 0),
        ctx.reserved.get(key_of(obj), 0),
        int(spec(obj).get("maxConcurrentDeployments", 10)),
    )


def load_fraction(obj: Manifest, ctx: Context) -> float:
    active, reserved, limit = load_numbers(obj, ctx)
    return (active + reserved) / limit if limit > 0 else 0.0


def score_of(obj: Manifest, ctx: Context) -> tuple[float | None, str | None]:
    """The broker's score for the current criteria, or why it is rejected."""
    broker = ctx.registry.get(key_of(obj))
    if broker is None:
        return None, "not readable"
    reserved = ctx.reserved.get(broker.key, 0)
    reason = rejection(broker, ctx.criteria, reserved_count=reserved)
    if reason is not None:
        return None, reason
    return score(broker, now=ctx.now, reserved_count=reserved).total, None


def _heartbeat(obj: Manifest, ctx: Context) -> Text:
    interval = _interval(obj)
    offline = max(timedelta(seconds=OFFLINE_INTERVALS * interval), OFFLINE_MINIMUM)
    return cells.heartbeat(heartbeat_age(obj, ctx), interval=interval, offline_after=offline)


def _cordoned(obj: Manifest) -> bool:
    return bool(spec(obj).get("unschedulable"))


def _phase(obj: Manifest, ctx: Context) -> Text:
    text = cells.phase(status(obj).get("phase"))
    if _cordoned(obj):
        text = Text("⊘", style="bold magenta") + text
    return text


def _flaps(obj: Manifest, ctx: Context) -> Text:
    count = ctx.probes.flaps(key_of(obj), ctx.now)
    return Text(str(count), style="bold yellow") if count else Text("")


COLUMNS = (
    Column("NAME", 30, 0, lambda o, c: Text(str(meta(o).get("name", ""))), fit=True),
    Column("NAMESPACE", 12, 9, lambda o, c: Text(str(meta(o).get("namespace", "")))),
    Column("PROVIDER", 8, 6, lambda o, c: Text(str(spec(o).get("cloudProvider", "")))),
    Column("REGION", 13, 4, lambda o, c: Text(str(spec(o).get("region") or "*"))),
    Column("PHASE", 10, 0, _phase),
    Column("SINCE", 5, 1, lambda o, c: cells.age(phase_since(o, c)), right=True, timed=True),
    Column("LOAD", 13, 2, lambda o, c: cells.load(*load_numbers(o, c), bar=3), timed=True),
    Column("PRIO", 4, 7, lambda o, c: cells.number(spec(o).get("priority")), right=True),
    Column("SCORE", 6, 3, lambda o, c: cells.score(*score_of(o, c)), right=True, timed=True),
    Column("HEARTBEAT", 9, 1, _heartbeat, right=True, timed=True),
    Column(
        "LATENCY", 7, 7, lambda o, c: cells.latency(status(o).get("lastProbeLatencyMs")), right=True
    ),
    Column(
        "PROBES",
        SPARK_WIDTH,
        2,
        lambda o, c: cells.sparkline(c.probes.recent(key_of(o), SPARK_WIDTH), SPARK_WIDTH),
        timed=True,
    ),
    Column("FLAPS", 5, 5, _flaps, right=True, timed=True),
    Column("VERSION", 10, 10, lambda o, c: Text(str(status(o).get("version") or ""))),
    Column(
        "AGE",
        5,
        8,
        lambda o, c: cells.age(cells.since(parse_time(meta(o).get("creationTimestamp")), c.now)),
        right=True,
        timed=True,
    ),
)


def _score_sort(obj: Manifest, ctx: Context) -> Any:
    value, _ = score_of(obj, ctx)
    return -value if value is not None else float("inf")


class BrokersView(View):
    name = "brokers"
    title_word = "Brokers"
    columns = COLUMNS
    sorts = (
        Sort("N", "name", lambda o, c: (meta(o).get("name", ""), meta(o).get("namespace", ""))),
        Sort("S", "phase", lambda o, c: PHASE_ORDER.get(status(o).get("phase", ""), -1)),
        Sort("L", "load", lambda o, c: -load_fraction(o, c), timed=True),  # reservations
        Sort("H", "heartbeat", lambda o, c: -(heartbeat_age(o, c) or float("inf")), timed=True),
        Sort("R", "score", _score_sort, timed=True),
    )

    def fault(self, obj: Manifest, ctx: Context) -> bool:
        """Not Ready, cordoned, or flapped in the last ten minutes."""
        return (
            status(obj).get("phase") != "Ready"
            or _cordoned(obj)
            or ctx.probes.flaps(key_of(obj), ctx.now) > 0
        )

    def search_text(self, obj: Manifest) -> str:
        s, m = spec(obj), meta(obj)
        return " ".join(
            str(v)
            for v in (
                m.get("namespace"),
                m.get("name"),
                s.get("cloudProvider"),
                s.get("region"),
                status(obj).get("phase"),
                "cordoned" if _cordoned(obj) else "",
            )
        )

    def title(self, objs: Sequence[Manifest], ctx: Context) -> str:
        phases = Counter(status(o).get("phase") or "New" for o in objs)
        shown = ", ".join(
            f"{n} {p}" for p, n in sorted(phases.items(), key=lambda i: PHASE_ORDER.get(i[0], 9))
        )
        return f"Brokers ({len(objs)}{': ' + shown if shown else ''})"

    def details(self, ctx: Context) -> list[str]:
        return [f"score for {describe_criteria(ctx.criteria)}"]
