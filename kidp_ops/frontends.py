"""Front-ends plug into `kidp-ops` from outside: `kidp_ops` never imports them.

A front-end (the dashboard in `tui/`) is a module named by an entry point in the group
`kidp_ops.frontends` (pyproject.toml). `kidp-ops tui` and `kidp-ops dev` load it here, by
name, when they run; nothing in `kidp_ops` names the package that provides it.

The dashboard's module offers `main(target, *, readonly) -> int` (`kidp-ops tui`) and
`async run_in_dev(**parts) -> None` (`kidp-ops dev`, with the daemon in this process).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

GROUP = "kidp_ops.frontends"


class FrontendMissing(Exception):
    """No installed distribution provides the front-end; one line for the user."""


def load(name: str) -> Any:
    """The front-end module registered as `name` (e.g. "tui")."""
    found = entry_points(group=GROUP, name=name)
    if not found:
        raise FrontendMissing(
            f"the {name!r} front-end is not installed (entry point group {GROUP}); "
            "reinstall kidp-ops (./kidp-ops does it, or pip install -e .)"
        )
    return next(iter(found)).load()
