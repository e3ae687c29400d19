"""Kubernetes label selectors: parsing and matching (`app=web,tier!=db,env in (a,b),!legacy`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from kidp_ops.cluster.base import Invalid

Matcher = Callable[[Mapping[str, str]], bool]

_SET = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside a set's parentheses."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [t for t in terms if t.strip()]


def _term(term: str) -> Matcher:
    if m := _SET.match(term):
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _EQ.match(term):
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS.match(term):
        negate, key = m.group(1) == "!", m.group(2)
        return lambda labels: (key in labels) != negate
    raise Invalid(
        f"invalid label selector term {term.strip()!r} (allowed: k=v, k!=v, k in (a,b), "
        "k notin (a,b), k, !k)",
        field="labelSelector",
    )


def parse_selector(selector: str | None) -> Matcher:
    """A predicate over a labels mapping; an empty selector matches everything."""
    if not selector or not selector.strip():
        return lambda labels: True
    matchers = [_term(t) for t in _split_terms(selector)]
    return lambda labels: all(m(labels) for m in matchers)
