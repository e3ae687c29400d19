"""Pilot tests on real parts: informers over an embedded store (tmp_path). Actions write to
the store behind a confirmation; a cut connection shows a banner that goes when the watch
is back; what the process logs goes to the log pane, never over the screen."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kidp_ops.cluster.base import BROKERS, DATABASES, Cluster, Unavailable, WatchEvent
from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.history import MemorySink, ProbeRecord, SelectionRecord
from kidp_ops.history.sqlite import FILE_NAME
from kidp_ops.history.store import StoreReader
from tests.support.history import generate
from tests.support.waiting import until
from tests.tui.conftest import screen_text
from tests.tui.fleet import NOW
from tui.actions import PROBE_NOW
from tui.app import DashboardApp, create_app
from tui.body.resource_table import ResourceTable
from tui.feed import own_feed
from tui.screens.confirm_screen import ConfirmScreen
from tui.screens.describe_screen import DescribeScreen


async def _rows(app: DashboardApp, count: int) -> None:
    await until(lambda: app.screen.query_one(ResourceTable).row_count == count, what="rows")


async def _spec(store: Cluster, name: str) -> dict[str, Any]:
    return await store.get(BROKERS, name, namespace="kidp-system")


async def test_cordon_uncordon_and_probe_now_behind_a_confirmation(
    live_app: DashboardApp, store: EmbeddedCluster
) -> None:
    async with live_app.run_test(size=(80, 24)) as pilot:
        await _rows(live_app, 5)
        version = (await _spec(store, "dev-aws-us-west-2"))["metadata"]["resourceVersion"]
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(live_app.screen, ConfirmScreen)
        assert "Cordon broker kidp-system/dev-aws-us-west-2?" in screen_text(live_app)
        await pilot.press("n")  # no: nothing written
        await until(lambda: not isinstance(live_app.screen, ConfirmScreen), what="no")
        after_no = await _spec(store, "dev-aws-us-west-2")
        assert after_no["metadata"]["resourceVersion"] == version
        assert not after_no["spec"].get("unschedulable")
        await pilot.press("c", "y")

        async def cordoned() -> bool:
            return bool((await _spec(store, "dev-aws-us-west-2"))["spec"].get("unschedulable"))

        await until(cordoned, what="spec.unschedulable")
        assert int((await _spec(store, "dev-aws-us-west-2"))["metadata"]["resourceVersion"]) > int(
            version
        )
        await until(lambda: "⊘Ready" in screen_text(live_app), what="the cordon mark")
        await pilot.press("u", "y")
        await until(lambda: "⊘" not in screen_text(live_app), what="uncordoned")
        assert not (await _spec(store, "dev-aws-us-west-2"))["spec"]["unschedulable"]
        await pilot.press("t", "y")

        async def asked() -> bool:
            meta = (await _spec(store, "dev-aws-us-west-2"))["metadata"]
            return (meta.get("annotations") or {}).get(PROBE_NOW) == "2026-11-25T10:00:00Z"

        await until(asked, what="the probe-now annotation")


async def test_delete_a_database(live_app: DashboardApp, store: EmbeddedCluster) -> None:
    await store.create({
        "apiVersion": "platform.company.com/v1", "kind": "Database",
        "metadata": {"name": "doomed", "namespace": "team-x"},
        "spec": {"engine": "postgresql", "target": "azure-eastus",
                 "owner": {"kind": "Team", "name": "x"}},
    })  # fmt: skip
    async with live_app.run_test(size=(80, 24)) as pilot:
        await _rows(live_app, 5)
        await pilot.press("ctrl+d")  # on a broker: not an action of brokers
        await pilot.pause()
        assert "delete works on databases, not brokers" in [
            n.message for n in live_app._notifications
        ]
        await pilot.press(":", *"db", "enter")
        await _rows(live_app, 1)
        await pilot.press("ctrl+d")
        await pilot.pause()
        assert "Delete Database team-x/doomed?" in screen_text(live_app)
        await pilot.press("y")
        await _rows(live_app, 0)
        listed = await store.list(DATABASES)
        assert not listed.items


class CuttableCluster(EmbeddedCluster):
    """The embedded store whose watches fail while `cut` is set, like a lost network."""

    cut = False

    async def _checked(self, events: AsyncIterator[WatchEvent]) -> AsyncIterator[WatchEvent]:
        if self.cut:
            raise Unavailable("connection refused (the test cut it)")
        async for event in events:
            if self.cut:
                raise Unavailable("connection reset (the test cut it)")
            yield event

    def watch(self, kind: Any, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        return self._checked(super().watch(kind, **kwargs))


async def test_a_lost_connection_shows_a_banner_until_the_watch_is_back(tmp_path: Any) -> None:
    store = await CuttableCluster.open(tmp_path / "state", bookmark_seconds=0.1)
    try:
        feed = own_feed(store, target="test", readonly=False, history=None)
        app = create_app(feed, clock=lambda: NOW, tick=0.05)
        async with app.run_test(size=(80, 24)):
            await until(lambda: feed.brokers.has_synced, what="synced")
            store.cut = True
            await until(lambda: "CONNECTION LOST" in screen_text(app), what="the banner")
            assert "the test cut it" in screen_text(app)
            store.cut = False
            await until(lambda: "CONNECTION LOST" not in screen_text(app), 10, what="back")
    finally:
        await store.close()


async def test_logs_go_to_the_pane_not_the_terminal(live_app: DashboardApp) -> None:
    async with live_app.run_test(size=(80, 24)) as pilot:
        logging.getLogger("kidp_ops.daemon").warning("callback refused (401): bad signature")
        await until(lambda: "1 log warnings (l)" in screen_text(live_app), what="the count")
        assert "callback refused" not in screen_text(live_app)
        await pilot.press("l")
        await until(lambda: "callback refused (401)" in screen_text(live_app), what="the pane")
        await pilot.press("l")
        await pilot.pause()
        assert "callback refused" not in screen_text(live_app)


async def test_command_palette_offers_the_views(live_app: DashboardApp) -> None:
    async with live_app.run_test(size=(80, 24)) as pilot:
        await _rows(live_app, 5)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"View: events")
        await until(lambda: "View: events" in screen_text(live_app), what="the command")
        await pilot.press("enter")
        await until(lambda: "Events (" in screen_text(live_app), what="the Events view")


class _ObservedReader(StoreReader):
    """The real reader over history.db, noting how much each probes() read returned and
    on which thread."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads: list[tuple[int, bool]] = []  # (records, on the main thread)

    def probes(self, **options: Any) -> list[ProbeRecord]:
        found = super().probes(**options)
        self.reads.append((len(found), threading.current_thread() is threading.main_thread()))
        return found


async def test_a_state_history_feeds_the_probes_up_to_what_is_kept(
    store: EmbeddedCluster, tmp_path: Path
) -> None:
    # The first read takes only the newest depth x brokers probes (not the whole store),
    # in a thread (the UI loop keeps running); later reads only what is newer.
    generate(tmp_path / "history")
    reader = _ObservedReader(tmp_path / "history" / FILE_NAME)
    everything = reader.probes()
    reader.reads.clear()
    feed = own_feed(store, target="test", readonly=False, history=reader)
    app = create_app(feed, clock=lambda: NOW, tick=0.05)
    async with app.run_test():
        await until(lambda: len(reader.reads) >= 2, what="two history reads")
        assert app.probes.newest == everything[-1].time
    first, later = reader.reads[0], reader.reads[1]
    assert first == (app.probes.depth * len(feed.registry), False) and first[0] < len(everything)
    assert later[1] is False and later[0] <= 3  # at most those of the newest instant again


class _CountingSink(MemorySink):
    """The in-memory history (as in dev), counting the describe page's selection reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def selections(self, **options: Any) -> list[SelectionRecord]:
        self.reads += 1
        return super().selections(**options)


async def test_a_describe_page_reads_the_history_again_only_when_something_moved(
    store: EmbeddedCluster,
) -> None:
    sink = _CountingSink()
    app = create_app(
        own_feed(store, target="test", readonly=False, history=sink), clock=lambda: NOW, tick=None
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await _rows(app, 5)
        await pilot.press("d")
        await until(lambda: isinstance(app.screen, DescribeScreen), what="the describe page")
        screen = app.screen
        assert isinstance(screen, DescribeScreen)
        read = sink.reads
        assert read >= 1
        for _ in range(5):  # what each one-second tick does
            screen.redraw()
        assert sink.reads == read
        revision = app.model.revision
        await store.patch_status(
            BROKERS, "dev-aws-us-west-2", {"status": {"activeDeployments": 7}},
            namespace="kidp-system",
        )  # fmt: skip
        await until(lambda: app.model.revision > revision, what="the change applied")
        screen.redraw()
        assert sink.reads > read
