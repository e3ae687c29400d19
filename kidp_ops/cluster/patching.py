"""JSON merge patch (RFC 7386), the patch type kidp-ops sends and the embedded store applies."""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """Return `target` with `patch` applied; neither argument is modified.

    A dict patch merges key by key, a None value deletes the key; anything else replaces.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge_diff(old: Any, new: Any) -> Any:
    """The smallest merge patch that turns `old` into `new` (inverse of merge_patch)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return copy.deepcopy(new)
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = copy.deepcopy(value)
        elif old[key] != value:
            patch[key] = merge_diff(old[key], value)
    return patch


ENVELOPE = ("apiVersion", "kind", "metadata", "status")
APPLIED_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")


def applied(
    current: dict[str, Any], manifest: dict[str, Any], *, keep_status: bool
) -> dict[str, Any]:
    """What `kubectl apply` makes of `current`: the manifest owns every top-level field but
    the envelope, and the metadata it names; status stays when it is a subresource."""
    desired = {k: copy.deepcopy(v) for k, v in current.items() if k in ENVELOPE}
    desired.update({k: copy.deepcopy(v) for k, v in manifest.items() if k not in ENVELOPE})
    meta = manifest.get("metadata") or {}
    for key in APPLIED_METADATA:
        if key in meta:
            desired["metadata"][key] = copy.deepcopy(meta[key])
    if not keep_status and "status" in manifest:
        desired["status"] = copy.deepcopy(manifest["status"])
    return desired
