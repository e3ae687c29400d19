"""The patch types the API facade turns into merge patches: JSON patch (RFC 6902) and the
strategic merge patch kubectl sends for built-in kinds."""

from __future__ import annotations

from typing import Any

import pytest

from kidp_ops.cluster.base import Invalid
from kidp_ops.cluster.patching import json_patch, merge_diff, merge_patch, strategic_merge_patch

DOC = {"spec": {"list": [1, 2, 3], "a/b": {"c~d": "x"}}, "metadata": {"name": "n"}}


@pytest.mark.parametrize(
    ("ops", "spec"),
    [
        ([{"op": "add", "path": "/spec/list/-", "value": 4}], {"list": [1, 2, 3, 4]}),
        ([{"op": "add", "path": "/spec/list/0", "value": 0}], {"list": [0, 1, 2, 3]}),
        ([{"op": "remove", "path": "/spec/list/1"}], {"list": [1, 3]}),
        ([{"op": "replace", "path": "/spec/a~1b/c~0d", "value": "y"}], {"a/b": {"c~d": "y"}}),
        ([{"op": "move", "from": "/spec/list", "path": "/spec/moved"}], {"moved": [1, 2, 3]}),
        ([{"op": "copy", "from": "/spec/list/2", "path": "/spec/three"}], {"three": 3}),
    ],
)
def test_json_patch_operations(ops: list[Any], spec: dict[str, Any]) -> None:
    patched = json_patch(DOC, ops)
    for key, value in spec.items():
        assert patched["spec"][key] == value
    assert DOC["spec"]["list"] == [1, 2, 3]  # the target is not modified


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "add", "path": "/spec/list/7", "value": 0}],
        [{"op": "add", "path": "/nope/deeper", "value": 0}],
        [{"op": "replace", "path": "", "value": {}}],
        [{"op": "add", "path": "spec", "value": 1}],
        [{"op": "move", "path": "/spec/x"}],
        [{"op": "add", "path": "/spec/x"}],
        ["not an object"],
    ],
)
def test_json_patch_refuses_what_it_cannot_do(ops: list[Any]) -> None:
    with pytest.raises(Invalid):
        json_patch(DOC, ops)


def test_strategic_merge_patch_directives() -> None:
    current = {
        "metadata": {
            "finalizers": ["a"],
            "ownerReferences": [{"uid": "1", "name": "one"}, {"uid": "2", "name": "two"}],
        },
        "data": {"k": "v", "l": "w"},
        "spec": {"keep": 1, "drop": 2},
    }
    patch = {
        "metadata": {
            "finalizers": ["a", "b"],
            "ownerReferences": [{"uid": "1", "$patch": "delete"}, {"uid": "3", "name": "three"}],
        },
        "data": {"$patch": "replace", "m": "x"},
        "spec": {"$retainKeys": ["keep", "new"], "new": 3},
    }
    assert strategic_merge_patch(current, patch) == {
        "metadata": {
            "finalizers": ["a", "b"],
            "ownerReferences": [{"uid": "2", "name": "two"}, {"uid": "3", "name": "three"}],
        },
        "data": {"m": "x"},
        "spec": {"keep": 1, "new": 3},
    }


def test_a_plain_strategic_patch_is_a_merge_patch() -> None:
    current = {"spec": {"a": 1, "b": [1, 2]}, "data": {"x": "1"}}
    patch = {"spec": {"a": None, "b": [3]}, "data": {"$patch": "delete"}}
    assert strategic_merge_patch(current, patch) == {"spec": {"b": [3]}}


def test_merge_diff_inverts_merge_patch() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}
    new = {"a": 1, "b": {"c": 4}, "e": [2], "f": "x"}
    assert merge_patch(old, merge_diff(old, new)) == new
