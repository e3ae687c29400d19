"""Patches: JSON merge patch (RFC 7386), the type kidp-ops sends and the embedded store
applies; and, for the API facade, JSON patch (RFC 6902) and strategic merge patch, which
kubectl sends and the facade turns into a merge patch of the object it read."""

from __future__ import annotations

import copy
from typing import Any

from kidp_ops.errors import Invalid


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


# --- the other patch types kubectl sends: JSON patch, strategic merge patch --------------


def _pointer(path: str) -> list[str]:
    """An RFC 6901 JSON pointer's tokens (`/metadata/labels/a~1b` -> metadata, labels, a/b)."""
    if path == "":
        return []
    if not path.startswith("/"):
        raise Invalid(f"JSON patch path {path!r} must start with /")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _parent(doc: Any, tokens: list[str], path: str) -> tuple[Any, str]:
    """The container holding the pointer's last token, and that token."""
    if not tokens:
        raise Invalid(f"JSON patch path {path!r} cannot replace the whole object")
    here = doc
    for token in tokens[:-1]:
        if isinstance(here, dict) and token in here:
            here = here[token]
        elif isinstance(here, list) and token.isdigit() and int(token) < len(here):
            here = here[int(token)]
        else:
            raise Invalid(f"JSON patch path {path!r} does not exist")
    return here, tokens[-1]


def _index(container: list[Any], token: str, path: str, *, adding: bool) -> int:
    if adding and token == "-":
        return len(container)
    limit = len(container) + (1 if adding else 0)
    if not token.isdigit() or int(token) >= limit:
        raise Invalid(f"JSON patch path {path!r}: no such list index")
    return int(token)


def _get(doc: Any, path: str) -> Any:
    container, token = _parent(doc, _pointer(path), path)
    if isinstance(container, list):
        return container[_index(container, token, path, adding=False)]
    if isinstance(container, dict) and token in container:
        return container[token]
    raise Invalid(f"JSON patch path {path!r} does not exist")


def _add(doc: Any, path: str, value: Any) -> None:
    container, token = _parent(doc, _pointer(path), path)
    if isinstance(container, list):
        container.insert(_index(container, token, path, adding=True), copy.deepcopy(value))
    elif isinstance(container, dict):
        container[token] = copy.deepcopy(value)
    else:
        raise Invalid(f"JSON patch path {path!r} does not exist")


def _remove(doc: Any, path: str) -> Any:
    container, token = _parent(doc, _pointer(path), path)
    if isinstance(container, list):
        return container.pop(_index(container, token, path, adding=False))
    if isinstance(container, dict) and token in container:
        return container.pop(token)
    raise Invalid(f"JSON patch path {path!r} does not exist")


def _operate(doc: Any, op: dict[str, Any]) -> None:
    name, path = op.get("op"), op.get("path")
    if not isinstance(path, str) or name not in (
        "add",
        "remove",
        "replace",
        "move",
        "copy",
        "test",
    ):
        raise Invalid(f"invalid JSON patch operation {op!r}")
    if name in ("add", "replace", "test") and "value" not in op:
        raise Invalid(f"JSON patch operation {name} at {path!r} needs a value")
    if name == "test":
        if _get(doc, path) != op["value"]:
            raise Invalid(f"JSON patch test failed at {path!r}")
    elif name == "remove":
        _remove(doc, path)
    elif name == "replace":
        _remove(doc, path)
        _add(doc, path, op["value"])
    elif name == "add":
        _add(doc, path, op["value"])
    else:  # move or copy
        source = op.get("from")
        if not isinstance(source, str):
            raise Invalid(f"JSON patch operation {name} at {path!r} needs from")
        value = _remove(doc, source) if name == "move" else _get(doc, source)
        _add(doc, path, value)


def json_patch(target: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
    """RFC 6902 applied to a copy of `target`; Invalid names the operation that failed."""
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict):
            raise Invalid(f"invalid JSON patch operation {op!r}")
        _operate(doc, op)
    return doc


# Lists of ObjectMeta that a strategic merge patch merges instead of replacing (their Go
# tags say patchStrategy=merge): finalizers as a set, ownerReferences by uid. The kinds
# that take strategic merge patches here (Secret, Event, Lease, CRD) have no others.
_MERGED_LISTS: dict[tuple[str, ...], str | None] = {
    ("metadata", "finalizers"): None,
    ("metadata", "ownerReferences"): "uid",
}


def _merge_list(current: list[Any], patch: list[Any], key: str | None) -> list[Any]:
    if key is None:
        return [*current, *(item for item in patch if item not in current)]
    merged = {item.get(key): item for item in current if isinstance(item, dict)}
    for item in patch:
        if not isinstance(item, dict):
            continue
        if item.get("$patch") == "delete":
            merged.pop(item.get(key), None)
        else:
            merged[item.get(key)] = merge_patch(merged.get(item.get(key)), item)
    return list(merged.values())


def strategic_merge_patch(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """A strategic merge patch as kube-apiserver applies it to the built-in kinds served
    here: a merge patch, plus the directives kubectl writes (`$patch: replace|delete`,
    `$retainKeys`, `$deleteFromPrimitiveList/<list>`, `$setElementOrder/<list>`, an
    ordering hint ignored here) and the merged lists of ObjectMeta."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [x for x in result.get(name) or [] if x not in value]
        elif key.startswith("$"):
            continue
        elif value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
        elif isinstance(value, list) and (*path, key) in _MERGED_LISTS:
            result[key] = _merge_list(result.get(key) or [], value, _MERGED_LISTS[(*path, key)])
        else:
            result[key] = strategic_merge_patch(result.get(key), value, (*path, key))
    if isinstance(patch.get("$retainKeys"), list):
        result = {k: v for k, v in result.items() if k in patch["$retainKeys"]}
    return result
