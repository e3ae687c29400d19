"""Bounds on YAML before it is built into objects: alias expansion, nesting, recursion.

The file size cap (5 MiB) does not bound what YAML builds: nine levels of aliases in a
743-byte file expand to billions of nodes ("billion laughs"), a recursive alias builds a
cycle, and PyYAML's composer recurses once per nesting level (a RecursionError traceback
at a few thousand). `refusal(text)` walks the parser's event stream (libyaml's, iterative,
nothing built) and counts what the document would expand to: the size of every anchored
node, and for each alias the size of what it names. It refuses, in one line:

- aliases that would add more than ALIAS_BUDGET nodes to the file (the alias budget: real
  manifests use few aliases, usually none);
- an alias to a node that is still open (a recursive alias);
- nesting deeper than MAX_DEPTH levels.

A file that passes is then loaded as usual; one that fails costs a linear scan and a few
counters, so a bomb is refused in milliseconds with flat memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

ALIAS_BUDGET = 100_000
MAX_DEPTH = 256
_STARTS = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_ENDS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


@dataclass
class _Open:
    anchor: str | None
    nodes: int = 1


def _where(event: yaml.Event) -> str:
    mark = event.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"


def refusal(text: str) -> str | None:
    """Why `text` must not be built (one line), or None when it is within bounds.

    YAML syntax errors are not reported here: the loader reports them with their place.
    """
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return _scan(yaml.parse(text, Loader=loader))
    except yaml.YAMLError:
        return None


def _scan(events: object) -> str | None:
    count = _Count()
    for event in events:  # type: ignore[attr-defined]
        problem = count.see(event)
        if problem is not None:
            return problem
    return None


class _Count:
    """What the document built so far would weigh: open nodes and anchored sizes."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.stack: list[_Open] = []
        self.expanded = 0

    def see(self, event: yaml.Event) -> str | None:
        if isinstance(event, yaml.DocumentStartEvent):
            self.sizes.clear()
        elif isinstance(event, _STARTS):
            self.stack.append(_Open(event.anchor))
            if len(self.stack) > MAX_DEPTH:
                return f"YAML nested deeper than {MAX_DEPTH} levels ({_where(event)})"
        elif isinstance(event, _ENDS):
            done = self.stack.pop()
            if done.anchor is not None:
                self.sizes[done.anchor] = done.nodes
            self._add(done.nodes)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                self.sizes[event.anchor] = 1
            self._add(1)
        elif isinstance(event, yaml.AliasEvent):
            return self._alias(event)
        return None

    def _add(self, nodes: int) -> None:
        if self.stack:
            self.stack[-1].nodes += nodes

    def _alias(self, event: yaml.AliasEvent) -> str | None:
        if any(frame.anchor == event.anchor for frame in self.stack):
            return (
                f"recursive YAML alias *{event.anchor} at {_where(event)} "
                "(it names a node that contains it)"
            )
        size = self.sizes.get(event.anchor or "", 1)
        self.expanded += size
        if self.expanded > ALIAS_BUDGET:
            return (
                f"YAML aliases expand to over {ALIAS_BUDGET:,} nodes at {_where(event)} "
                "(the alias budget; an alias bomb?)"
            )
        self._add(size)
        return None
