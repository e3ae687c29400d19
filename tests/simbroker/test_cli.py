"""`kidp-ops broker serve` as a user runs it: a real process, real signals, real ports."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from kidp_ops.cli import main
from kidp_ops.cluster.base import BROKERS
from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.simbroker.config import BrokerConfig
from kidp_ops.simbroker.server import running_broker
from tests.conftest import broker_manifest

KIDP = str(Path(sys.executable).parent / "kidp-ops")
LISTENING = re.compile(r"^broker (\S+) listening on (http://127\.0\.0\.1:(\d+)) \((.*)\)$")


@asynccontextmanager
async def kidp_process(*args: str, cwd: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        KIDP,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def read_line(process: asyncio.subprocess.Process, timeout: float = 10.0) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout)
    return line.decode().rstrip("\n")


async def stop(process: asyncio.subprocess.Process, sig: int) -> tuple[int, str, str]:
    assert process.stdout is not None
    assert process.stderr is not None
    process.send_signal(sig)
    code = await asyncio.wait_for(process.wait(), 10)
    return code, (await process.stdout.read()).decode(), (await process.stderr.read()).decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_serve_listens_answers_and_stops_cleanly_on_a_signal(
    tmp_path: Path, sig: int
) -> None:
    args = ("broker", "serve", "--port", "0", "--name", "kidp-system/sub", "--delay", "0.1")
    async with kidp_process(*args, cwd=tmp_path) as process:
        match = LISTENING.match(await read_line(process))
        assert match, "no listening line"
        assert match.group(1) == "kidp-system/sub"
        assert "health mode healthy, delay 0.1s" in match.group(4)
        assert (await read_line(process)).startswith("callback public key ")
        async with httpx.AsyncClient() as http:
            health = await http.get(f"{match.group(2)}/health")
        assert health.json()["status"] == "healthy"
        code, out, err = await stop(process, sig)
    assert code == 0, err
    assert "broker kidp-system/sub stopped" in out
    assert "Traceback" not in err


async def test_serve_registers_its_key_on_the_broker(tmp_path: Path, state_dir: Path) -> None:
    async with await EmbeddedCluster.open(state_dir) as cluster:
        await cluster.apply(broker_manifest("b1"))
    args = ("broker", "serve", "--port", "0", "--register", "kidp-system/b1")
    async with kidp_process(*args, "--state", str(state_dir), cwd=tmp_path) as process:
        match = LISTENING.match(await read_line(process))
        assert match
        assert match.group(1) == "kidp-system/b1"  # --name defaults to --register
        key = (await read_line(process)).removeprefix("callback public key ")
        registered = await read_line(process)
        assert registered.startswith("registered callback public key on Broker kidp-system/b1")
        async with await EmbeddedCluster.open(state_dir) as cluster:
            stored = await cluster.get(BROKERS, "b1", namespace="kidp-system")
        assert stored["status"]["callbackPublicKey"] == key
        code, _, err = await stop(process, signal.SIGTERM)
    assert code == 0, err


async def test_serve_exits_1_when_the_broker_to_register_is_missing(
    tmp_path: Path, state_dir: Path
) -> None:
    args = ("broker", "serve", "--port", "0", "--register", "kidp-system/nope")
    extra = ("--register-wait", "0", "--state", str(state_dir))
    async with kidp_process(*args, *extra, cwd=tmp_path) as process:
        code = await asyncio.wait_for(process.wait(), 10)
        assert process.stderr is not None
        err = (await process.stderr.read()).decode()
    assert code == 1
    assert err.strip().splitlines() == [
        "error: cannot register the callback key: Broker kidp-system/nope not found; "
        "apply its manifest first (kidp-ops apply -f ...) or fix --register"
    ]


def test_port_in_use_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["broker", "serve", "--port", str(port)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: address already in use "
        "(another broker on that port?)"
    ]
    assert captured.out == ""


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--failure-rate", "2", "failure rate must be between 0 and 1"),
        ("--delay", "-1", "delay must be between 0 and 3600"),
        ("--health-mode", "sideways", "invalid health mode 'sideways'"),
        ("--health-mode", "flap:0", "invalid health mode"),
        ("--capacity", "-3", "capacity must be 0 (unlimited) or more"),
        ("--port", "70000", "port must be 0..65535"),
        ("--register", "noslash", "expected NAMESPACE/NAME"),
        ("--seed", "x", "seed must be a whole number"),
    ],
)
def test_bad_knob_values_are_usage_errors(
    capsys: pytest.CaptureFixture[str], option: str, value: str, words: str
) -> None:
    args = ["broker", "serve", "--port", "0", option, value]
    if option == "--port":
        args = ["broker", "serve", option, value]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert words in capsys.readouterr().err


def test_broker_without_a_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["broker"])
    assert exit_info.value.code == 2
    assert "serve" in capsys.readouterr().err


def test_help_describes_every_knob_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["broker", "serve", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in (
        "--port PORT",
        "--host HOST",
        "(default: 127.0.0.1)",
        "--name NS/NAME",
        "--register NS/NAME",
        "--register-wait SECONDS",
        "--key-file PATH",
        "--api-key-file PATH",
        "$KIDP_BROKER_API_KEY",
        "--token-file PATH",
        "$KIDP_BROKER_TOKEN",
        "--delay SECONDS time a provision or deprovision takes (default: 2)",
        "--failure-rate R probability 0..1 that a provisioning ends Failed (default: 0)",
        "--health-mode MODE healthy | degraded | fail | hang | garbage | huge | flap:N "
        "(default: healthy",
        "--capacity N",
        "(default: 0 = unlimited)",
        "--version V version reported by /health (default: 1.0.0-sim)",
        "--seed N",
        "flap:N healthy for N seconds, then fail for N seconds",
        "PATCH /admin/knobs",
        "--state DIR",
    ):
        assert words in text, words


def test_unreadable_credentials_file_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.txt"
    code = main(["broker", "serve", "--port", "0", "--api-key-file", str(missing)])
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: cannot read API key file {missing}: No such file or directory"
    ]


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kidp_ops.simbroker", "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--health-mode" in result.stdout


async def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    key_file = tmp_path / "broker.key"
    async with running_broker(BrokerConfig(key_file=str(key_file))) as first:
        pass
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    async with running_broker(BrokerConfig(key_file=str(key_file))) as second:
        assert second.public_key == first.public_key


async def test_credentials_from_files_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI reads the API key from a file (trailing newline dropped), or from the env."""
    key_file = tmp_path / "api-key"
    key_file.write_text("k-123\n")
    monkeypatch.setenv("KIDP_BROKER_TOKEN", "t-456")
    args = ("broker", "serve", "--port", "0", "--api-key-file", str(key_file))
    async with kidp_process(*args, cwd=tmp_path) as process:
        match = LISTENING.match(await read_line(process))
        assert match
        assert "auth api-key or bearer token" in match.group(4)
        url = match.group(2)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/health")).status_code == 401
            with_key = await http.get(f"{url}/health", headers={"X-API-Key": "k-123"})
            assert with_key.status_code == 200
            bearer = await http.get(f"{url}/health", headers={"Authorization": "Bearer t-456"})
            assert bearer.status_code == 200
        code, _, err = await stop(process, signal.SIGTERM)
    assert code == 0, err
