"""The dashboard's pure helpers: filters, commands, criteria, the probe memory, cells,
column layout; and `kidp-ops tui`'s one-line errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kidp_ops.history import ProbeRecord
from kidp_ops.selection import SelectionCriteria
from tests.test_cli import kidp
from tests.tui.fleet import NOW
from tui import cells
from tui.commands import Command, CommandError, parse_command
from tui.criteria import DEFAULT, CriteriaError, criteria_text, parse_criteria
from tui.filtering import FilterError, parse_filter
from tui.probes import Point, ProbeMemory
from tui.views.base import Column, layout


def test_filters() -> None:
    assert parse_filter("west").matches("aws us-west-2", {})
    assert not parse_filter("!west").matches("aws us-west-2", {})
    assert parse_filter("WEST").matches("us-west-2", {})  # case-insensitive
    labels = parse_filter("-l env=dev,tier")
    assert labels.matches("x", {"env": "dev", "tier": "db"})
    assert not labels.matches("x", {"env": "dev"})
    assert not labels.matches("x", {"env": "prod", "tier": "db"})
    assert not parse_filter("").active
    with pytest.raises(FilterError, match="not a regular expression"):
        parse_filter("((")
    with pytest.raises(FilterError, match="-l needs key=value"):
        parse_filter("-l")


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        (":db", Command("view", "databases")),
        ("br", Command("view", "brokers")),
        ("ev", Command("view", "events")),
        ("ns team-x", Command("namespace", "team-x")),
        ("ns all", Command("namespace", "")),
        ("select postgresql eastus", Command("select", "postgresql eastus")),
        ("q", Command("quit")),
        ("q!", Command("quit")),
        ("help", Command("help")),
    ],
)
def test_commands(typed: str, command: Command) -> None:
    assert parse_command(typed) == command


def test_bad_commands_say_what_is_allowed() -> None:
    with pytest.raises(CommandError, match="unknown command 'nope'"):
        parse_command("nope")
    with pytest.raises(CommandError, match=r":ns NAME"):
        parse_command("ns")


def test_criteria_from_words_and_keys() -> None:
    known = {"regions": {"eastus", "us-west-2"}, "resource_types": {"Database", "Cache"}}
    assert parse_criteria("postgresql in eastus", **known) == SelectionCriteria(
        "Database", provider="postgresql", region="eastus"
    )
    assert parse_criteria("cache redis aws us-west-2 ns=team-x", **known) == SelectionCriteria(
        "Cache", provider="redis", cloud_provider="aws", region="us-west-2", namespace="team-x"
    )
    assert parse_criteria("", **known) == DEFAULT
    criteria = SelectionCriteria("Database", provider="mysql", cloud_provider="aws")
    assert parse_criteria(criteria_text(criteria), **known) == criteria
    with pytest.raises(CriteriaError, match="'mars' is not a cloud"):
        parse_criteria("postgresql mars", **known)
    with pytest.raises(CriteriaError, match="keys are"):
        parse_criteria("colour=blue", **known)


def test_probe_memory_takes_each_record_once_and_counts_flaps() -> None:
    memory = ProbeMemory()
    records = [
        ProbeRecord(
            time=NOW - timedelta(seconds=s),
            broker="ns/b",
            ok=ok,
            phase=phase,
            latency_ms=1.0,
            active_deployments=0,
        )
        for s, ok, phase in [(700, True, "Ready"), (300, False, "Unhealthy"), (100, True, "Ready")]
    ]
    assert memory.take(records) == 3
    assert memory.take(records) == 0  # read again from `since`: nothing new
    assert memory.recent("ns/b", 2) == [("Unhealthy", False), ("Ready", True)]
    assert memory.flaps("ns/b", NOW) == 2  # 700 s ago is outside ten minutes
    memory.observe_phase("ns/c", "Ready", NOW)
    memory.observe_phase("ns/c", "Ready", NOW)  # the same phase again is no new point
    memory.add("ns/c", Point(NOW, "Offline", False))
    assert memory.recent("ns/c", 5) == [("Ready", True), ("Offline", False)]


def test_cells() -> None:
    assert cells.load(7, 2, 10, bar=4).plain == "9/10 ███▋ +2r"
    assert cells.load(3, 0, 0).plain == "3/∞"
    assert cells.meter(0.5, 4) == "██··"
    assert (
        cells.sparkline([("Ready", True), ("Ready", False), ("Offline", False)], 5).plain == "█▅▁"
    )
    slow = cells.heartbeat(65, interval=30, offline_after=timedelta(minutes=5))
    assert slow.plain == "65s" and "yellow" in str(slow.style)
    assert "red" in str(cells.heartbeat(400, interval=30, offline_after=timedelta(minutes=5)).style)


def test_columns_drop_by_priority() -> None:
    def column(title: str, width: int, drop: int) -> Column:
        return Column(title, width, drop, lambda o, c: cells.number(None))

    columns = [column("NAME", 10, 0), column("A", 10, 2), column("B", 10, 1), column("C", 5, 3)]
    assert layout(columns, 80, {}) == [0, 1, 2, 3]
    assert layout(columns, 32, {}) == [0, 1, 2]  # C goes first
    assert layout(columns, 21, {}) == [0, 2]  # then A
    assert layout(columns, 5, {}) == [0]  # NAME always


def test_tui_says_in_one_line_what_it_cannot_open() -> None:
    result = kidp("tui", "--kubeconfig", "/nonexistent")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip().splitlines()[0]
    ] and result.stderr.startswith("error: cannot open the cluster of kubeconfig /nonexistent")
