"""kubectl as a process, for tests: the binary, its version, and a runner bound to a kubeconfig.

Which kubectl: `$KIDP_KUBECTL` (a path) when set, else `kubectl` on PATH (CI: Debian's
1.20, which `./test` installs when missing). Run the suites once per kubectl you care
about: `KIDP_KUBECTL=/path/to/kubectl-1.33 .venv/bin/pytest tests/cluster/test_kubectl.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.waiting import collect_lines, until_sync

KUBECTL = os.environ.get("KIDP_KUBECTL") or shutil.which("kubectl")
TIMEOUT_SECONDS = 60


def client_minor(binary: str) -> int:
    """The client's minor version (20 for v1.20.2); gcloud's dispatcher answers too."""
    done = subprocess.run(
        [binary, "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=True,
    )
    minor = json.loads(done.stdout)["clientVersion"]["minor"]
    return int("".join(c for c in minor if c.isdigit()))


@dataclass
class Kubectl:
    """Runs kubectl with one kubeconfig and a private cache directory."""

    binary: str
    kubeconfig: Path
    cache: Path
    minor: int
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        return [
            self.binary,
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.cache}",
            "--request-timeout=30s",
            *args,
        ]

    def run(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
            env={**os.environ, **self.env, **(env or {})},
        )

    def ok(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
        """stdout of a command that must succeed."""
        done = self.run(*args, stdin=stdin, env=env)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def fails(self, *args: str, stdin: str | None = None) -> str:
        """stderr of a command that must fail (and say why on one or two lines)."""
        done = self.run(*args, stdin=stdin)
        assert done.returncode != 0, f"kubectl {' '.join(args)} succeeded: {done.stdout}"
        assert "panic" not in done.stderr and done.stderr.strip(), done.stderr
        return done.stderr


class Streaming:
    """A long-running kubectl (`get -w`, `delete` that waits) whose output is collected."""

    def __init__(self, kubectl: Kubectl, *args: str) -> None:
        self.process = subprocess.Popen(
            kubectl.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **kubectl.env},
        )
        assert self.process.stdout is not None
        self.lines, self._reader = collect_lines(self.process.stdout)

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """The first line containing `text`, once kubectl has printed it."""

        def printed() -> str | bool:
            found = [line for line in list(self.lines) if text in line]
            if found:
                return found[0]
            return self.process.poll() is not None and not self._reader.is_alive()

        try:
            line = until_sync(printed, timeout, 0.02, what=f"kubectl printing {text!r}")
        except AssertionError:
            line = False
        if not isinstance(line, str):
            raise AssertionError(f"kubectl did not print {text!r}; it printed {self.lines}")
        return line

    def finish(self, timeout: float = 20.0) -> int:
        """Wait for kubectl to exit by itself; its exit code."""
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(10)
