"""`python -m kidp_ops.simbroker serve --port 18081 ...`: the same as `kidp-ops broker serve`,
without loading the manager's command line (the broker never imports the manager)."""

from __future__ import annotations

import sys

from kidp_ops.simbroker.cli import main

if __name__ == "__main__":
    sys.exit(main())
