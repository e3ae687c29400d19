"""Files shipped with kidp-ops: the CRDs (the schema) and the samples.

In a checkout (editable install) they are read from the repository's `crds/` and
`samples/`; in a wheel they are bundled under `kidp_ops/_bundled/`. `load_crds()` keeps
only the CustomResourceDefinition documents of `crds/`, which also holds the
`kustomization.yaml` that `deploy/` builds on.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from kidp_ops.model.schema import ResourceSchema

_PACKAGE = Path(__file__).resolve().parent.parent


def bundled_dir(name: str) -> Path:
    """`crds` or `samples`: the checkout's folder, else the wheel's copy."""
    for candidate in (_PACKAGE.parent / name, _PACKAGE / "_bundled" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"kidp-ops is installed without its {name}/ folder")


@functools.cache
def load_crds() -> tuple[dict[str, Any], ...]:
    # Only CustomResourceDefinitions: crds/ also holds kustomization.yaml (a build file).
    crds: list[dict[str, Any]] = []
    for path in sorted(bundled_dir("crds").glob("*.yaml")):
        crds.extend(
            d
            for d in yaml.safe_load_all(path.read_text(encoding="utf-8"))
            if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"
        )
    return tuple(crds)


@functools.cache
def crd_schema(resource: str) -> ResourceSchema:
    """The ResourceSchema of a bundled CRD, by `plural.group`."""
    for crd in load_crds():
        if crd["metadata"]["name"] == resource:
            return ResourceSchema.from_crd(crd)
    raise KeyError(resource)
