"""Snapshots (pytest-textual-snapshot) of the main views on fixed data at a fixed clock
(tests/tui/fleet.py), at 80x24 and 160x48. After a deliberate change of the screens:
`pytest tests/tui/test_snapshots.py --snapshot-update`, and look at the SVGs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.tui.fleet import NOW, fixed_feed
from tui.app import create_app

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]
Compare = Callable[..., bool]


def app() -> Any:
    return create_app(fixed_feed(), clock=lambda: NOW, tick=None)


@pytest.mark.parametrize("size", SIZES)
def test_brokers(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_databases(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, press=[":", "d", "b", "enter"])


@pytest.mark.parametrize("size", SIZES)
def test_describe_database(snap_compare: Compare, size: tuple[int, int]) -> None:
    keys = [":", "d", "b", "enter", "end", "d"]
    assert snap_compare(app(), terminal_size=size, press=keys)


@pytest.mark.parametrize("size", SIZES)
def test_simulator(snap_compare: Compare, size: tuple[int, int]) -> None:
    keys = [":", *"select postgresql eastus", "enter"]
    assert snap_compare(app(), terminal_size=size, press=keys)


def test_faults_only(snap_compare: Compare) -> None:
    assert snap_compare(app(), terminal_size=(80, 24), press=["ctrl+z"])
