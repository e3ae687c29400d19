"""Untrusted YAML is bounded before anything is built: alias bombs, recursion, nesting.

Run as `kidp-ops validate` in a child process, as a user would, measuring its peak memory.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from kidp_ops.model import manifests, yamlguard
from tests.conftest import REPO


def bomb(levels: int = 9) -> str:
    """The classic "billion laughs": each level names the one below nine times."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        below = ",".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{below}]")
    return "\n".join(lines) + "\n"


def validate(path: Path) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """Run `kidp-ops validate PATH`; (result, seconds, the child's peak RSS in MB)."""
    # VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across exec, so a child of a
    # large test process would report its parent's size; VmHWM starts again with the exec
    code = (
        "import re, sys\n"
        "from kidp_ops.cli import main\n"
        "status = main(['validate', sys.argv[1]])\n"
        "status_text = open('/proc/self/status').read()\n"
        "print(re.search(r'VmHWM:\\s+(\\d+)', status_text).group(1), file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    elapsed = time.monotonic() - started
    *lines, peak_kb = result.stderr.strip().splitlines()
    result.stderr = "\n".join(lines)
    return result, elapsed, int(peak_kb) // 1024


def test_an_alias_bomb_is_refused_at_once_with_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb())
    assert len(path.read_bytes()) < 800
    result, seconds, peak_mb = validate(path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith(
        f"{path}: YAML aliases expand to over 100,000 nodes at line "
    )
    assert "the alias budget" in result.stderr
    assert "Traceback" not in result.stderr
    assert seconds < 5.0  # start-up included; the scan itself is milliseconds
    assert peak_mb < 200


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a: &a [1, *a]\n", "recursive YAML alias *a at line 1"),
        ("a: &a {b: *a}\n", "recursive YAML alias *a at line 1"),
        ("[" * 300 + "]" * 300 + "\n", "YAML nested deeper than 256 levels"),
        ("[" * 5000 + "]" * 5000 + "\n", "invalid YAML: line 1, column 1001"),
    ],
)
def test_recursion_and_depth_are_one_line_errors(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result, _, _ = validate(path)
    assert result.returncode == 1
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 2  # the problem, then the count


def test_ordinary_aliases_are_fine() -> None:
    text = (
        "defaults: &defaults {intervalSeconds: 30, timeoutSeconds: 5}\n"
        "a: *defaults\nb: *defaults\nc: [*defaults, *defaults]\n"
    )
    assert yamlguard.refusal(text) is None


def test_the_budget_counts_what_aliases_add(tmp_path: Path) -> None:
    """Just under the budget passes, just over it does not (nodes, not bytes)."""
    items = ",".join(["x"] * 999)  # a sequence node plus 999 scalars: 1,000 nodes
    under = f"a: &a [{items}]\nb: [{','.join(['*a'] * 100)}]\n"  # 100 x 1,000 = 100,000
    over = f"a: &a [{items}]\nb: [{','.join(['*a'] * 101)}]\n"
    assert yamlguard.refusal(under) is None
    assert "alias budget" in (yamlguard.refusal(over) or "")
    path = tmp_path / "over.yaml"
    path.write_text(over)
    loaded = manifests.load([str(path)])
    [problem] = loaded.problems
    assert problem.message.startswith("YAML aliases expand to over")
    assert loaded.documents == []
