"""The YAML alias bomb (issue 10): refused in under a second with flat memory.

    .venv/bin/python benchmarks/alias_bomb.py

`kidp-ops validate` as a process (start-up included), median of 7 runs each:
- baseline: a valid manifest of about the same size (a Broker);
- measured: a "billion laughs" (nine levels of nine aliases, as small), refused by the
  alias budget.
Prints both times, the ratio and the peak RSS of the refused run. Target: the bomb under
1 s and 200 MB, i.e. no slower than validating an ordinary file of its size.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.model.test_yaml_bounds import bomb, validate  # noqa: E402  (one bomb, one runner)

RUNS = 7
BROKER = """\
apiVersion: platform.company.com/v1
kind: Broker
metadata: {name: aws-us-east-1, namespace: kidp-system}
spec:
  endpoint: http://broker.kidp-system.svc:8080
  cloudProvider: aws
  region: us-east-1
  priority: 100
  maxConcurrentDeployments: 40
  capabilities:
    - resourceType: Database
      providers: [postgresql, mysql]
  healthCheck: {endpoint: /health, intervalSeconds: 30, timeoutSeconds: 5}
"""


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        ordinary, bad = Path(folder) / "broker.yaml", Path(folder) / "bomb.yaml"
        ordinary.write_text(BROKER)
        bad.write_text(bomb())
        base, measured, peaks = [], [], []
        for _ in range(RUNS):  # interleaved, so both see the same machine
            result, seconds, _peak = validate(ordinary)
            assert result.returncode == 0, result.stderr
            base.append(seconds)
            result, seconds, peak = validate(bad)
            assert result.returncode == 1, "the bomb must be refused"
            measured.append(seconds)
            peaks.append(peak)
    b, m = statistics.median(base), statistics.median(measured)
    print(f"ordinary manifest ({len(BROKER)} bytes, baseline): {b * 1000:.0f} ms")
    print(f"alias bomb ({len(bomb())} bytes): {m * 1000:.0f} ms, peak RSS {max(peaks)} MB")
    print(f"ratio: {m / b:.2f}")
    met = m < 1.0 and max(peaks) < 200
    print(f"target (bomb < 1 s, < 200 MB): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
