"""Real Go for contract tests: build `tests/support/gocheck` once per session and ask it.

`./test` installs Debian's golang-go when it is missing (as CI does). Without Go these
tests fail with a message saying so: they are the proof that our bytes are Go's bytes,
and a skip would hide that the proof did not run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent / "gocheck"


def build_gocheck(workdir: Path) -> Path:
    """Compile gocheck into `workdir` (standard library only: no network)."""
    go = shutil.which("go")
    assert go, (
        "Go is not installed: run ./test (it installs golang-go) or apt-get install golang-go"
    )
    binary = workdir / "gocheck"
    env = {
        **os.environ,
        "GOCACHE": str(workdir / "cache"),
        "GOPATH": str(workdir / "path"),
        "GOFLAGS": "-mod=mod",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }
    result = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return binary


def ask(binary: Path, request: dict[str, Any]) -> dict[str, Any]:
    """One gocheck run: `request` on stdin, its JSON answer back."""
    result = subprocess.run(
        [str(binary)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer
