"""Reference brokers as real processes (`python -m kidp_ops.simbroker serve`) for tests.

broker = BrokerProcess.start("kidp-system/b1", "--health-mode", "healthy")
broker.url            # http://127.0.0.1:<port>
broker.kill()         # SIGKILL, like a crash
broker.restart()      # same port, same arguments
broker.stop()         # SIGTERM, waits
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.waiting import until_sync

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")
START_TIMEOUT = 20.0


@dataclass
class BrokerProcess:
    name: str
    args: tuple[str, ...]
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log: Path = field(default_factory=lambda: Path(tempfile.mkstemp(suffix=".log")[1]))

    @classmethod
    def start(cls, name: str, *args: str, port: int = 0) -> BrokerProcess:
        broker = cls(name, args, port)
        broker._launch()
        return broker

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _launch(self) -> None:
        command = [
            sys.executable,
            "-m",
            "kidp_ops.simbroker",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--name",
            self.name,
            *self.args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        start = self.log.stat().st_size
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        self._wait_listening(start)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def _wait_listening(self, start: int) -> None:
        process = self.process
        assert process is not None

        def listening() -> re.Match[str] | bool:
            found = LISTENING.search(self.log.read_bytes()[start:].decode(errors="replace"))
            return found or process.poll() is not None  # an exit ends the wait too

        try:
            match = until_sync(listening, START_TIMEOUT, 0.02, what=f"broker {self.name} listening")
        except AssertionError:
            match = False
        if not isinstance(match, re.Match):
            self.kill()
            raise RuntimeError(f"broker {self.name} did not start: {self.output()}")
        self.port = int(match.group(2))

    def kill(self) -> None:
        """SIGKILL and reap (a crash: no goodbye)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        code = 0
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            code = self.process.wait(10)
        return code

    def restart(self) -> None:
        self.kill()
        self._launch()
