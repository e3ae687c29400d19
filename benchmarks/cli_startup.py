"""`kidp-ops --help` start-up time against a bare interpreter, measured in the same run.

Target: <= 250 ms for `kidp-ops --help` (issue 2). Run: .venv/bin/python benchmarks/cli_startup.py
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 15
TARGET_MS = 250.0


def timed(argv: list[str]) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> int:
    script = shutil.which("kidp-ops") or str(Path(sys.executable).parent / "kidp-ops")
    baseline = timed([sys.executable, "-c", "pass"])
    helped = timed([script, "--help"])
    heavy = timed([sys.executable, "-c", "import kubernetes, jsonschema, yaml"])
    print(f"python -c pass (baseline):            {baseline:7.1f} ms")
    ratio = helped / baseline
    print(f"kidp-ops --help:                      {helped:7.1f} ms  ({ratio:.2f}x baseline)")
    print(f"importing kubernetes+jsonschema+yaml: {heavy:7.1f} ms  (what lazy imports avoid)")
    ok = helped <= TARGET_MS
    print(f"target <= {TARGET_MS:.0f} ms: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
