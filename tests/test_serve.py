"""`kidp-ops serve` as a user runs it: a real process serving a state directory over TLS,
used through the kubeconfig it writes (by `kidp-ops --kubeconfig`, and by kubectl when
there is one), stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kidp_ops.cli import API_PORT
from kidp_ops.cluster.serving import DEFAULT_PORT
from tests.conftest import REPO
from tests.support.kubectl import KUBECTL, Kubectl, client_minor
from tests.support.waiting import collect_lines, until_sync
from tests.test_cli import kidp, no_traceback

SERVING = re.compile(
    r"as a Kubernetes API on (https://127\.0\.0\.1:\d+) \(kubectl context kidp-dev\)"
)


class Served:
    """A `kidp-ops serve` process and what it printed."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kidp_ops.cli",
                "serve",
                "--state",
                str(state),
                "--api-port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        self.output, self._reader = collect_lines(self.process.stdout)
        until_sync(
            lambda: len(self.output) >= 2 or self.process.poll() is not None,
            30, 0.05, what="kidp-ops serve printing two lines",
        )  # fmt: skip
        self.lines = self.output[:2]
        assert len(self.lines) == 2, f"kidp-ops serve printed {self.output}"

    @property
    def url(self) -> str:
        match = SERVING.search(self.lines[0])
        assert match, self.lines
        return match.group(1)

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=20)
        self._reader.join(10)  # the rest of the output, to its end
        return self.process.returncode, "\n".join(self.output)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    running = Served(tmp_path / "state")
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait(10)


def test_the_cli_default_port_is_the_servers() -> None:
    assert API_PORT == DEFAULT_PORT == 18443


def test_serve_prints_the_export_line_and_stops_on_sigterm(served: Served) -> None:
    kubeconfig = served.state / "kubeconfig"
    assert served.lines[1] == f"export KUBECONFIG={kubeconfig}"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    applied = kidp(
        "apply", "-f", str(REPO / "samples" / "broker-local.yaml"), "--kubeconfig", str(kubeconfig)
    )
    assert applied.returncode == 0, applied.stderr  # the kube adapter, over TLS, with the token
    listed = kidp("get", "brokers", "--state", str(served.state), "-o", "json")
    assert [i["metadata"]["name"] for i in json.loads(listed.stdout)["items"]] == ["local-broker"]
    code, out = served.stop()
    assert code == 0, out
    assert "Traceback" not in out
    port = int(served.url.rsplit(":", 1)[1])
    with socket.socket() as probe:  # the port is free again
        probe.bind(("127.0.0.1", port))


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_through_the_written_kubeconfig(served: Served, tmp_path: Path) -> None:
    assert KUBECTL is not None
    kubectl = Kubectl(
        KUBECTL, served.state / "kubeconfig", tmp_path / "cache", client_minor(KUBECTL)
    )
    kubectl.ok("apply", "-f", str(REPO / "samples" / "dev"))
    table = kubectl.ok("get", "brokers", "-o", "wide")  # the context's namespace: kidp-system
    assert table.split()[:6] == ["NAME", "PROVIDER", "REGION", "PHASE", "ACTIVE", "AGE"]
    assert sum(1 for line in table.splitlines() if line.startswith("dev-")) == 5


def test_a_taken_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = kidp("serve", "--state", str(tmp_path / "s"), "--api-port", str(port))
    no_traceback(result)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot serve the Kubernetes API on 127.0.0.1:{port}: the port is in use (is "
        "another `kidp-ops dev` or `kidp-ops serve` running? pick a port with --api-port)"
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--kubeconfig", "/nonexistent"), "serves the embedded store"),
        (("--api-port", "99999"), "is not a port"),
        (("--api-port", "http"), "is not a port"),
    ],
)
def test_bad_usage_is_exit_2(args: tuple[str, ...], words: str) -> None:
    result = kidp("serve", *args)
    no_traceback(result)
    assert result.returncode == 2
    assert words in result.stderr
