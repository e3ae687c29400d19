"""The dashboard in a real terminal (tmux, 80x24): `kidp-ops tui` on a dev state, used with
keys and read back with capture-pane, with another terminal writing meanwhile; and `kidp-ops
dev`, whose dashboard appears and whose Ctrl-C leaves no process behind."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.waiting import until_sync
from tests.test_cli import kidp
from tests.test_dev import ports_free
from tests.tui.fleet import dev_brokers, with_status

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (./test does)"),
]
KIDP = [sys.executable, "-m", "kidp_ops.cli"]


class Tmux:
    """One tmux server of our own (its own socket) running one command at 80x24."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.status_file = socket.with_name("exit-status")

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, check=False
        )
        return done.stdout

    def start(self, command: list[str], cwd: Path) -> None:
        env = f"TERM=xterm-256color PYTHONUNBUFFERED=1 HOME={shlex.quote(str(cwd))}"
        # The shell writes the exit status to a file: tmux 3.3 sometimes leaves its pane's
        # process a zombie it never reaps (#{pane_dead} 1 and no status, in 1 run of 4-12 here)
        status = shlex.quote(str(self.status_file))
        line = f"cd {shlex.quote(str(cwd))} && env {env} {shlex.join(command)}; echo $? >{status}"
        self.run("new-session", "-d", "-x", "80", "-y", "24", "-s", "t", line)
        self.run("set-option", "-t", "t", "remain-on-exit", "on")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "t", *keys)

    def shows(self, text: str, timeout: float = 30) -> str:
        last = [""]

        def showing() -> str:
            last[0] = self.screen()
            return last[0] if text in last[0] else ""

        try:
            return until_sync(showing, timeout, every=0.1, what=f"{text!r} on the screen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{last[0]}") from None

    def exit_status(self) -> int | None:
        """The command's exit status once it has ended (the pane stays: remain-on-exit, so
        the last screen can still be read)."""
        try:
            written = self.status_file.read_text().strip()
        except FileNotFoundError:
            return None
        return int(written) if written else None  # empty: being written

    def kill(self) -> None:
        self.run("kill-server")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    terminal = Tmux(tmp_path / "tmux.sock")
    yield terminal
    terminal.kill()


def _dev_state(state: Path) -> None:
    """A dev state: the dev samples applied, brokers with the fixed data's statuses."""
    applied = kidp("apply", "-f", "samples/dev/", "--state", str(state), cwd=Path.cwd())
    assert applied.returncode == 0, applied.stderr
    code = (
        "import asyncio, json, sys\n"
        "from kidp_ops.cluster.embedded import EmbeddedCluster\n"
        "from kidp_ops.cluster.base import BROKERS\n"
        "async def main():\n"
        "    async with await EmbeddedCluster.open(sys.argv[1]) as c:\n"
        "        for name, status in json.loads(sys.argv[2]).items():\n"
        "            patch = {'status': status}\n"
        "            await c.patch_status(BROKERS, name, patch, namespace='kidp-system')\n"
        "asyncio.run(main())\n"
    )
    import json

    statuses = {b["metadata"]["name"]: with_status(b, 60)["status"] for b in dev_brokers()}
    subprocess.run([sys.executable, "-c", code, str(state), json.dumps(statuses)], check=True)


def _processes_mentioning(text: str) -> list[str]:
    """kidp-ops processes (dev, its reference brokers) whose command line names `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in line and "kidp_ops" in line and not line.startswith("tmux"):
                found.append(f"{entry.name}: {line}")
    return found


def test_tui_in_a_real_terminal(tmux: Tmux, tmp_path: Path) -> None:
    state = tmp_path / "state"
    _dev_state(state)
    repo = Path(__file__).resolve().parents[2]
    tmux.start([*KIDP, "tui", "--state", str(state)], cwd=repo)
    screen = tmux.shows("Brokers (5: 1 Offline, 1 Unhealthy, 3 Ready)")
    lines = screen.splitlines()
    assert lines[0].startswith(" kidp-ops  read-write") and len(lines) == 24
    assert "dev-onprem-local" in screen and "Offline" in screen
    # another terminal writes; the dashboard follows the watch
    mine = tmp_path / "db.yaml"
    mine.write_text(
        "apiVersion: platform.company.com/v1\nkind: Database\n"
        "metadata: {name: from-elsewhere, namespace: team-x}\n"
        "spec: {engine: postgresql, target: azure-eastus, owner: {kind: Team, name: x}}\n"
    )
    assert kidp("apply", "-f", str(mine), "--state", str(state)).returncode == 0
    tmux.keys(":", "db", "Enter")
    tmux.shows("from-elsewhere")
    tmux.shows("6 databases")
    tmux.keys("/", "ledger", "Enter")
    screen = tmux.shows("/ledger")
    assert "payments-ledger" in screen and "from-elsewhere" not in screen
    # (Escape then a key at once reads as Alt+key in any terminal: wait between them)
    tmux.keys("Escape")
    tmux.shows("from-elsewhere")  # the filter is cleared
    tmux.keys("Escape")
    tmux.shows("Brokers (5")  # back from the Databases
    tmux.keys(":select postgresql eastus", "Enter")
    screen = tmux.shows("Selection simulator")
    assert "1 dev-azure-eastus" in screen
    tmux.keys("Escape")
    tmux.shows("Brokers (5")
    tmux.keys(":q", "Enter")
    until_sync(lambda: tmux.exit_status() is not None, 10, what="the dashboard to exit")
    assert tmux.exit_status() == 0
    assert "Traceback" not in tmux.screen()


def test_dev_opens_the_dashboard_and_ctrl_c_leaves_nothing(tmux: Tmux, tmp_path: Path) -> None:
    if not ports_free():
        pytest.fail("ports 18081-18085 are taken: is a `kidp-ops dev` running on this machine?")
    state = tmp_path / "state"
    repo = Path(__file__).resolve().parents[2]
    command = [*KIDP, "dev", "--state", str(state), "--http-addr", "127.0.0.1:0",
               "--api-port", "0", "--create-every", "1"]  # fmt: skip
    tmux.start(command, cwd=repo)
    screen = tmux.shows("dev (daemon in this process)", 60)
    assert "Brokers (5" in screen
    tmux.shows(" Ready", 30)
    tmux.keys(":", "db", "Enter")
    tmux.shows("dev-db-0001", 30)
    assert "INFO" not in tmux.screen() and "WARNING" not in tmux.screen()  # logs: file, pane
    tmux.keys("C-c")
    until_sync(lambda: tmux.exit_status() is not None, 30, what="kidp-ops dev to exit")
    assert tmux.exit_status() == 0
    screen = tmux.screen()
    assert "kidp-ops dev ran" in screen, screen
    assert "Traceback" not in screen
    assert (state / "dev.log").read_text().count("leading") >= 1
    until_sync(lambda: not _processes_mentioning(str(state)), 10, what="no process left")
    assert not _processes_mentioning(str(state))
    assert ports_free(), "a reference broker outlived kidp-ops dev"
