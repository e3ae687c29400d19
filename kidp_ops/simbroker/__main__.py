"""`python -m kidp_ops.simbroker serve --port 18081 ...`: the same as `kidp-ops broker serve`."""

from __future__ import annotations

import sys

from kidp_ops.cli import main

if __name__ == "__main__":
    sys.exit(main(["broker", *sys.argv[1:]]))
