"""`kidp-ops dev` as a user runs it: a real process with its reference brokers, stopped by
--duration or SIGTERM, with another "terminal" using the same state meanwhile."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.waiting import until_sync
from tests.test_cli import kidp

DEV_PORTS = range(18081, 18086)
pytestmark = pytest.mark.slow


def start_dev(state: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kidp_ops.cli", "dev", "--state", str(state), "--headless",
         "--http-addr", "127.0.0.1:0", "--api-port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def ports_free() -> bool:
    for port in DEV_PORTS:
        with socket.socket() as sock:
            # Like the brokers themselves: a port in TIME_WAIT from an earlier run is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@pytest.fixture(autouse=True)
def _dev_ports_free() -> None:
    if not ports_free():
        pytest.fail("ports 18081-18085 are taken: is a `kidp-ops dev` running on this machine?")


def test_dev_runs_everything_and_another_terminal_can_use_the_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # --duration only as a backstop: the test stops it once it has seen enough (the second
    # test shows --duration ending a run by itself).
    dev = start_dev(state, "--duration", "120", "--create-every", "1")
    try:
        # Another terminal, while dev runs: brokers turn Ready, and an applied Database
        # is provisioned like the generated ones.
        def brokers_ready() -> bool:
            listed = kidp("get", "brokers", "--state", str(state), "-o", "json")
            items = json.loads(listed.stdout)["items"] if listed.returncode == 0 else []
            phases = [(i.get("status") or {}).get("phase") for i in items]
            return len(items) == 5 and phases.count("Ready") >= 4

        until_sync(brokers_ready, 20, every=0.2, what="brokers Ready")
        mine = {
            "apiVersion": "platform.company.com/v1",
            "kind": "Database",
            "metadata": {"name": "from-another-terminal", "namespace": "team-x"},
            "spec": {
                "engine": "postgresql",
                "target": "aws-us-west-2",
                "owner": {"kind": "Team", "name": "dev"},
            },
        }
        path = tmp_path / "db.yaml"
        path.write_text(yaml.safe_dump(mine))
        applied = kidp("apply", "-f", str(path), "--state", str(state))
        assert applied.returncode == 0, applied.stderr

        def mine_ready() -> bool:
            got = kidp("get", "db", "from-another-terminal", "--state", str(state), "-o", "json")
            status = json.loads(got.stdout).get("status") or {} if got.returncode == 0 else {}
            return status.get("phase") == "Ready"

        until_sync(mine_ready, 20, every=0.2, what="the applied Database Ready")
        got = json.loads(
            kidp("get", "db", "from-another-terminal", "--state", str(state), "-o", "json").stdout
        )
        assert got["status"]["brokerRef"]["name"] == "dev-aws-us-west-2"
        assert got["status"]["deploymentId"] and got["status"]["endpoint"]
        dev.send_signal(signal.SIGTERM)
        out, _ = dev.communicate(timeout=60)
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
    assert dev.returncode == 0, out
    assert "Traceback" not in out
    assert "applied samples/dev: 11 created" in out
    assert "started 5 reference brokers" in out
    summary = out[out.index("kidp-ops dev ran") :]
    assert "brokers: 5 Ready" in summary or "brokers: 4 Ready" in summary, summary
    assert "databases:" in summary and " Ready" in summary.split("databases:")[1].splitlines()[0]
    assert ports_free(), "a reference broker outlived kidp-ops dev"


def test_sigterm_stops_everything_and_a_second_run_reuses_the_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    dev = start_dev(state)
    try:
        assert dev.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = dev.stdout.readline()
            lines.append(line)
            if "leading" in line:
                break
        assert any("leading" in line for line in lines), lines
        dev.send_signal(signal.SIGTERM)
        out, _ = dev.communicate(timeout=20)
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
    assert dev.returncode == 0, "".join(lines) + out
    assert "kidp-ops dev ran" in out
    assert ports_free()
    again = start_dev(state, "--duration", "3")
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0, out
    assert "applied samples/dev: 11 unchanged" in out


def test_dev_refuses_a_cluster_target() -> None:
    result = kidp("dev", "--kubeconfig", "/nonexistent")
    assert result.returncode == 2
    assert "runs on the embedded store" in result.stderr
