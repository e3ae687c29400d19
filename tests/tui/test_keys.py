"""Pilot tests: every key of the dashboard, on fixed data (NOW, tests/tui/fleet.py)."""

from __future__ import annotations

from tests.tui.conftest import screen_text
from tests.tui.fleet import NOW, databases, dev_brokers, with_status
from tui.app import DashboardApp
from tui.body.resource_table import ResourceTable
from tui.screens.describe_screen import DescribeScreen
from tui.screens.help_screen import HelpScreen
from tui.screens.main_screen import MainScreen
from tui.screens.select_screen import SelectScreen


def table(app: DashboardApp) -> ResourceTable:
    return app.screen.query_one(ResourceTable)


async def test_brokers_view_shows_the_fleet_at_80x24(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(fixed_app)
        first = text.splitlines()[0]
        assert "read-write" in first and "10:00:00Z" in first
        assert "Brokers (5: 1 Offline, 1 Unhealthy, 3 Ready)" in text
        for column in ("NAME", "PHASE", "SINCE", "LOAD", "SCORE", "HEARTBEAT", "PROBES"):
            assert column in text
        onprem = next(line for line in text.splitlines() if "dev-onprem-local" in line)
        assert "Offline" in onprem and "7m50s" in onprem and "▁" in onprem


async def test_wide_terminal_shows_every_column(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        text = screen_text(fixed_app)
        for column in ("NAMESPACE", "PROVIDER", "REGION", "PRIO", "LATENCY", "FLAPS", "VERSION"):
            assert column in text, column


async def test_cursor_keys_and_enter_lists_a_brokers_databases(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert table(fixed_app).cursor_key == "kidp-system/dev-aws-us-west-2"
        await pilot.press("j", "down")
        assert table(fixed_app).cursor_key == "kidp-system/dev-azure-westeurope"
        await pilot.press("k")
        assert table(fixed_app).cursor_key == "kidp-system/dev-azure-eastus"
        await pilot.press("G")
        assert table(fixed_app).cursor_key == "kidp-system/dev-onprem-local"
        await pilot.press("g", "down", "enter")
        await pilot.pause()
        text = screen_text(fixed_app)
        assert "on dev-azure-eastus" in text
        rows = table(fixed_app).row_keys()
        assert rows and all(k.startswith("team-dev/") for k in rows)
        assert len(rows) == 8  # Ready and Provisioning ones on that broker
        await pilot.press("escape")
        await pilot.pause()
        assert "Brokers (5" in screen_text(fixed_app)
        assert table(fixed_app).cursor_key == "kidp-system/dev-azure-eastus"


async def test_command_bar_switches_views_and_namespaces(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.press(":", *"db", "enter")
        await pilot.pause()
        text = screen_text(fixed_app)
        assert "26 databases: 1 Failed, 2 Pending, 2 Provisioning, 21 Ready" in text
        assert table(fixed_app).row_keys()[0] == "team-dev/dev-db-0020"  # Failed first
        await pilot.press(":", *"ns nowhere", "enter")
        await pilot.pause()
        assert table(fixed_app).row_count == 0
        await pilot.press(":", *"ns all", "enter", ":", *"events", "enter")
        await pilot.pause()
        assert "Events (7: 1 Warning)" in screen_text(fixed_app)
        await pilot.press(":", *"bogus", "enter")
        await pilot.pause()
        assert "unknown command 'bogus'" in screen_text(fixed_app)
        await pilot.press("escape", ":", *"brokers", "enter")
        await pilot.pause()
        assert "Brokers (5" in screen_text(fixed_app)


async def test_every_database_is_reachable_by_scrolling(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.press(":", *"db", "enter", "end")
        await pilot.pause()
        last = table(fixed_app).row_keys()[-1]
        assert table(fixed_app).cursor_key == last
        assert last.rpartition("/")[2] in screen_text(fixed_app)
        assert screen_text(fixed_app).splitlines()[0].startswith(" kidp-ops")  # header stays


async def test_a_filter_that_leaves_fewer_rows_than_the_cursor_index(
    fixed_app: DashboardApp,
) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.press(":", *"db", "enter", "end", "/", *"dev-db-0001", "enter")
        await pilot.pause()
        assert table(fixed_app).row_keys() == ["team-dev/dev-db-0001"]
        assert table(fixed_app).cursor_key == "team-dev/dev-db-0001"
        await pilot.press("d")
        await pilot.pause()
        assert "Database team-dev/dev-db-0001" in screen_text(fixed_app)


async def test_filter_regex_inverse_and_labels(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.press("/", *"west", "enter")
        await pilot.pause()
        assert [k.rpartition("/")[2] for k in table(fixed_app).row_keys()] == [
            "dev-aws-us-west-2", "dev-azure-westeurope", "dev-gcp-europe-west1"]  # fmt: skip
        await pilot.press("/")
        await pilot.press(*"\b" * 0)
        fixed_app.screen.query_one("#command").value = "!Ready"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
        assert len(table(fixed_app).row_keys()) == 2
        await pilot.press(":", *"db", "enter", "/")
        fixed_app.screen.query_one("#command").value = "-l env=prod"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
        assert table(fixed_app).row_count == 13
        await pilot.press("/")
        fixed_app.screen.query_one("#command").value = "(("  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
        assert "not a regular expression" in screen_text(fixed_app)
        await pilot.press("escape", "escape")  # close the bar, then clear the filter
        await pilot.pause()
        assert table(fixed_app).row_count == 26


async def test_sort_keys_and_reverse(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        names = lambda: [k.rpartition("/")[2] for k in table(fixed_app).row_keys()]  # noqa: E731
        await pilot.press("S")
        assert names()[:2] == ["dev-onprem-local", "dev-gcp-europe-west1"]
        await pilot.press("H")
        assert names()[0] == "dev-onprem-local"  # the oldest heartbeat first
        await pilot.press("L")
        assert names()[0] == "dev-azure-westeurope"  # 3/3
        await pilot.press("R")
        assert names()[0] == "dev-aws-us-west-2"  # 150 + 90 + 50
        await pilot.press("R")
        assert names()[-1] == "dev-aws-us-west-2"
        await pilot.press("N")
        assert names() == sorted(names())
        assert "sort name" in screen_text(fixed_app)


async def test_faults_only_shows_down_and_flapping_brokers(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+z")
        await pilot.pause()
        names = {k.rpartition("/")[2] for k in table(fixed_app).row_keys()}
        # westeurope is Ready now, but flapped six minutes ago
        assert names == {"dev-onprem-local", "dev-gcp-europe-west1", "dev-azure-westeurope"}
        assert "faults only" in screen_text(fixed_app)
        await pilot.press("ctrl+z")
        assert table(fixed_app).row_count == 5


async def test_describe_a_broker_shows_probes_and_conditions(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.press("G", "d")
        await pilot.pause()
        assert isinstance(fixed_app.screen, DescribeScreen)
        body = str(fixed_app.screen.query_one("#body").render())
        assert "Broker kidp-system/dev-onprem-local" in body
        assert "in this phase since:  2026-11-25 09:52:10 (7m50s ago)" in body
        assert "Ready=False" in body and "HTTP 503" in body
        assert "Recent probes (newest first, 30)" in body
        await pilot.press("escape")
        assert isinstance(fixed_app.screen, MainScreen)


async def test_describe_a_database_shows_the_decision(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.press(":", *"db", "enter", "/")
        fixed_app.screen.query_one("#command").value = r"dev-db-0003\b"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("d")
        await pilot.pause()
        body = str(fixed_app.screen.query_one("#body").render())
        assert "chose kidp-system/dev-azure-eastus, score 250.0" in body
        assert "2 of 5 brokers eligible" in body
        assert "rejected by filter: cloud_provider 2, phase 1" in body
        assert "Every candidate now, for Database (provider postgresql, cloud azure" in body
        assert "selected kidp-system/dev-azure-eastus" in body
        assert "rejected kidp-system/dev-onprem-local: phase Offline (not Ready)" in body


async def test_yaml_shows_the_manifest(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(fixed_app.screen, DescribeScreen)
        assert "YAML broker kidp-system/dev-aws-us-west-2" in screen_text(fixed_app)
        assert "apiVersion: platform.company.com/v1" in screen_text(fixed_app)


async def test_simulator_answers_where_a_postgresql_database_in_eastus_goes(
    fixed_app: DashboardApp,
) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.press(":", *"select postgresql eastus", "enter")
        await pilot.pause()
        assert isinstance(fixed_app.screen, SelectScreen)
        text = screen_text(fixed_app)
        assert "1 of 5 brokers eligible" in text
        first = next(line for line in text.splitlines() if line.startswith(" 1 "))
        assert (
            "dev-azure-eastus" in first and "200.0 priority 100 + load 50 + heartbeat 50" in first
        )
        assert "region westeurope, asked eastus" in text
        await pilot.press("escape")
        await pilot.pause()
        rows = {line.split()[0]: line for line in screen_text(fixed_app).splitlines()[3:8]}
        assert "200.0" in rows["dev-azure-eastus"]  # SCORE follows the simulator's criteria
        assert "300.0" not in rows["dev-aws-us-west-2"]
        await pilot.press("s")
        await pilot.pause()
        fixed_app.screen.query_one("#criteria").value = "postgresql mars ohno"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause()
        assert "is not a cloud, a known region or a resource type" in screen_text(fixed_app)


async def test_live_updates_keep_the_cursor_and_pause_holds_them(fixed_app: DashboardApp) -> None:
    feed = fixed_app.feed
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down")
        cursor = table(fixed_app).cursor_key
        broker = with_status(dev_brokers()[1])
        broker["status"] = {**broker["status"], "phase": "Offline"}
        feed.brokers.emit("MODIFIED", broker)  # type: ignore[attr-defined]
        await pilot.pause()
        assert "2 Offline" in screen_text(fixed_app)
        assert table(fixed_app).cursor_key == cursor
        await pilot.press("p")
        feed.databases.emit("DELETED", databases()[20])  # type: ignore[attr-defined]
        await pilot.pause()
        assert "PAUSED (1 held" in screen_text(fixed_app)
        assert len(fixed_app.model.objects["databases"]) == 26
        await pilot.press("p")
        await pilot.pause()
        assert len(fixed_app.model.objects["databases"]) == 25


async def test_help_lists_the_bindings(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(80, 48)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(fixed_app.screen, HelpScreen)
        listed = {d: k for k, d in fixed_app.screen.bindings}
        for description in ("Describe", "YAML", "Faults", "Sort score", "Cordon", "Probe now",
                            "Delete", "Pause", "Simulate", "Logs", "Quit", "Open"):  # fmt: skip
            assert description in listed, description
        assert "Commands (:)" in screen_text(fixed_app)


async def test_read_only_refuses_actions() -> None:
    from tests.tui.fleet import fixed_feed
    from tui.app import create_app

    app = create_app(fixed_feed(readonly=True), clock=lambda: NOW, tick=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("c")
        await pilot.pause()
        assert "READ-ONLY" in screen_text(app)
        notes = [n.message for n in app._notifications]
        assert "read-only: cannot cordon kidp-system/dev-aws-us-west-2" in notes
        assert isinstance(app.screen, MainScreen)


async def test_quit_by_command_and_by_ctrl_c(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.press(":", "q", "enter")
        await pilot.pause()
    assert fixed_app.return_code == 0
    from tests.tui.fleet import fixed_feed
    from tui.app import create_app

    other = create_app(fixed_feed(), clock=lambda: NOW, tick=None)
    async with other.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause()
    assert other.return_code == 0


async def test_click_enter_on_a_database_and_the_logs_command(fixed_app: DashboardApp) -> None:
    async with fixed_app.run_test(size=(80, 24)) as pilot:
        await pilot.click(ResourceTable, offset=(3, 3))  # the header is line 0
        assert table(fixed_app).cursor_key == "kidp-system/dev-azure-westeurope"
        await pilot.press(":", *"db", "enter")
        await pilot.pause()
        await pilot.press("enter")  # on a Database: describe
        await pilot.pause()
        assert isinstance(fixed_app.screen, DescribeScreen)
        await pilot.press("escape", ":", *"logs", "enter")
        await pilot.pause()
        assert fixed_app.screen.query_one("#logs").has_class("-shown")
