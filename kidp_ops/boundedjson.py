"""JSON from untrusted bytes, with bounds on size and nesting (a leaf).

Python's `json` is recursive: a body of 100,000 `[` raises RecursionError deep in the
parser (a 500 where a 400 belongs), and a large body costs memory before anything checks
it. `loads` refuses both up front with `UntrustedJSON`, whose message is one line for the
sender: callback bodies, request bodies of the API facade and broker answers go through it.
"""

from __future__ import annotations

import json
from typing import Any

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_MAX_DEPTH = 64
_BRACKETS = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class UntrustedJSON(ValueError):
    """Bytes that are not acceptable JSON: too large, too deep, not UTF-8, or not JSON."""


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data`, brackets inside strings not
    counted. Linear, iterative: safe on any input."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        else:
            step = _BRACKETS.get(byte)
            if step is not None:
                depth += step
                deepest = max(deepest, depth)
    return deepest


def loads(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> Any:
    """The JSON document in `data`, or UntrustedJSON saying which bound it broke."""
    if len(data) > max_bytes:
        raise UntrustedJSON(f"body of {len(data)} bytes is over the {max_bytes}-byte limit")
    depth = nesting_depth(data)
    if depth > max_depth:
        raise UntrustedJSON(f"JSON nested {depth} deep; at most {max_depth} levels are accepted")
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise UntrustedJSON("body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise UntrustedJSON(f"body is not JSON: {str(exc)[:120]}") from None
