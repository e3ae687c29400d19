"""Frozen dataclasses <-> manifest dicts, by field type, with camelCase JSON names.

Written once for every resource type: a field `max_concurrent_deployments` is the JSON key
`maxConcurrentDeployments` unless its metadata names another (`field(metadata={"json":
"x"})`). Supported field types: str, int, float, bool, datetime (RFC 3339), nested
dataclasses, `tuple[X, ...]`, `Mapping[str, X]` and `X | None` of those.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from kidp_ops.times import format_time, parse_time

T = TypeVar("T")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_FIELDS: dict[type, tuple[tuple[str, str, Any], ...]] = {}


def _fields(cls: type) -> tuple[tuple[str, str, Any], ...]:
    """(attribute, JSON key, type) of each field of a dataclass, computed once per class."""
    found = _FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = tuple(
            (f.name, f.metadata.get("json", camel(f.name)), hints[f.name])
            for f in dataclasses.fields(cls)
        )
        _FIELDS[cls] = found
    return found


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON tree (dicts, lists, scalars), several times faster than
    `copy.deepcopy`, which also handles what JSON never holds (cycles, objects)."""
    if isinstance(value, dict):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_copy(v) for v in value]
    return value


def _strip_optional(tp: Any) -> Any:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


Loader = Callable[[Any], Any]
_LOADERS: dict[Any, Loader] = {}
_LOAD_FIELDS: dict[type, tuple[tuple[str, str, Loader], ...]] = {}


def _same(value: Any) -> Any:
    return value


def _loader(tp: Any) -> Loader:
    """How a JSON value becomes a `tp`, worked out once per type (the informer converts
    every changed object, so the per-value cost is what a fleet's updates pay)."""
    found = _LOADERS.get(tp)
    if found is None:
        found = _LOADERS[tp] = _make_loader(_strip_optional(tp))
    return found


def _make_loader(tp: Any) -> Loader:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        cls = typing.cast(type, tp)
        return lambda value: from_json(cls, value)
    if origin is tuple:
        (item_type, _) = typing.get_args(tp)
        item = _loader(item_type)
        return lambda value: tuple(None if v is None else item(v) for v in value)
    if origin in (Mapping, dict, typing.Mapping):
        _, item_type = typing.get_args(tp)
        entry = _loader(item_type)
        return lambda value: types.MappingProxyType(
            {k: None if v is None else entry(v) for k, v in value.items()}
        )
    if tp is datetime:
        return parse_time
    if tp is float:
        return float
    return _same


def _load_fields(cls: type) -> tuple[tuple[str, str, Loader], ...]:
    found = _LOAD_FIELDS.get(cls)
    if found is None:
        found = tuple((name, key, _loader(tp)) for name, key, tp in _fields(cls))
        _LOAD_FIELDS[cls] = found
    return found


def from_json(cls: type[T], data: Mapping[str, Any] | None) -> T:
    """Build `cls` from a JSON-shaped mapping; absent keys take the dataclass defaults."""
    if not data:
        return cls()
    kwargs = {}
    for name, key, load in _load_fields(cls):
        value = data.get(key)
        if value is not None:
            kwargs[name] = load(value)
    return cls(**kwargs)


def _dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(value)
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return format_time(value)
    return value


def to_json(obj: Any) -> dict[str, Any]:
    """The JSON shape of a dataclass; None, empty tuples and empty mappings are left out."""
    out: dict[str, Any] = {}
    for name, key, _ in _fields(type(obj)):
        value = getattr(obj, name)
        if value is None or (isinstance(value, tuple | Mapping) and not value):
            continue
        out[key] = _dump(value)
    return out
