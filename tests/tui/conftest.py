"""Helpers for the dashboard's tests: the screen as text, apps over fixed or real data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kidp_ops.cluster.embedded import EmbeddedCluster
from tests.tui.fleet import NOW, dev_brokers, fixed_feed, with_status
from tui.app import DashboardApp, create_app
from tui.feed import own_feed


def screen_text(app: DashboardApp) -> str:
    """What the terminal shows, as plain text lines."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip).rstrip() for strip in strips)


@pytest.fixture
def fixed_app() -> DashboardApp:
    return create_app(fixed_feed(), clock=lambda: NOW, tick=None)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    """A real embedded store with the dev brokers (their status as in the fixed data)."""
    cluster = await EmbeddedCluster.open(tmp_path / "state", bookmark_seconds=0.1)
    try:
        for broker in dev_brokers():
            stored = await cluster.create(broker)
            status = with_status(stored)["status"]
            await cluster.patch_status(
                stored_kind(), broker["metadata"]["name"], {"status": status},
                namespace="kidp-system",
            )  # fmt: skip
        yield cluster
    finally:
        await cluster.close()


def stored_kind() -> Any:
    from kidp_ops.cluster.base import BROKERS

    return BROKERS


@pytest.fixture
def live_app(store: EmbeddedCluster) -> DashboardApp:
    """The dashboard on real informers over the embedded store."""
    feed = own_feed(store, target="test store", readonly=False, history=None)
    return create_app(feed, clock=lambda: NOW, tick=0.05)
