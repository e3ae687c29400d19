"""Go's `encoding/json` Marshal, for the bytes a callback is signed over (ARCHITECTURE.md §6).

The seed system's manager does not verify a callback over the bytes it received: it decodes
the body into its `CallbackRequest` struct and verifies over `json.Marshal` of that struct.
A callback verifies there only when its body *is* what Go would marshal: the struct's field
order, `omitempty` fields left out when zero, `time.Time` as RFC 3339 with trailing zeros of
the fraction trimmed and `Z` for UTC, floats as Go formats a float64, map keys sorted, and
`<`, `>`, `&`, U+2028, U+2029 escaped. Our manager verifies over the raw bytes, so a body
encoded here verifies with both.

Pure functions, standard library only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")  # what Go decodes a lone \ud800 escape into
_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_string(text: str) -> str:
    """A JSON string as Go writes it: UTF-8 as is, HTML-significant characters escaped, and
    what cannot be UTF-8 (a lone surrogate) as U+FFFD."""
    encoded = json.dumps(_SURROGATE.sub("\ufffd", text), ensure_ascii=False)
    for char, escape in _HTML.items():
        encoded = encoded.replace(char, escape)
    return encoded


def go_float(value: float) -> str:
    """A float64 as Go's encoder writes it: shortest round-trip digits, exponent form only
    below 1e-6 or from 1e21 on (`1e-07` becomes `1e-7`), no `.0` on whole numbers."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {value!r}")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    text = repr(value)
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        mantissa, _, exponent = (text if "e" in text else f"{value:e}").partition("e")
        sign = "-" if exponent.startswith("-") else "+"
        digits = exponent.lstrip("+-").lstrip("0") or "0"
        return f"{mantissa.removesuffix('.0')}e{sign}{digits}"
    if "e" in text:
        text = format(Decimal(text), "f")
    return text.removesuffix(".0")


def go_time(moment: datetime) -> str:
    """`time.Time` in JSON: RFC 3339 with nanoseconds, trailing zeros trimmed, `Z` for UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    offset = moment.utcoffset() or timedelta(0)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    if offset == timedelta(0):
        return text + "Z"
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def go_any(value: Any) -> str:
    """A value decoded into Go's `interface{}` and marshalled again: numbers are float64,
    maps have sorted keys."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return go_float(float(value))
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, Mapping):
        return go_map(value, go_any)
    if isinstance(value, Sequence):
        return "[" + ",".join(go_any(item) for item in value) + "]"
    raise TypeError(f"json: unsupported type: {type(value).__name__}")


def go_map(value: Mapping[str, Any], encode: Any) -> str:
    items = sorted(value.items())
    return "{" + ",".join(f"{go_string(k)}:{encode(v)}" for k, v in items) + "}"


# The seed's CallbackRequest, field by field: (JSON name, kind, omitempty).
CALLBACK_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("deploymentId", "string", False),
    ("resourceType", "string", False),
    ("resourceName", "string", False),
    ("namespace", "string", False),
    ("status", "string", False),
    ("phase", "string", False),
    ("message", "string", False),
    ("error", "string", True),
    ("time", "time", False),
    ("endpoint", "string", True),
    ("port", "int32", True),
    ("connectionSecret", "string", True),
    ("details", "any-map", True),
    ("additionalMetadata", "string-map", True),
    ("estimatedMonthlyCost", "float64", True),
)
_ZERO_TIME = "0001-01-01T00:00:00Z"


def marshal_callback(fields: Mapping[str, Any]) -> bytes:
    """`json.Marshal` of the seed's CallbackRequest with these field values (JSON names;
    absent means Go's zero value). `time` is a datetime; `port` an int in int32 range."""
    parts = []
    for name, kind, omitempty in CALLBACK_FIELDS:
        value = fields.get(name)
        if omitempty and not value:
            continue
        parts.append(f"{go_string(name)}:{_encode_field(kind, value)}")
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def _encode_field(kind: str, value: Any) -> str:
    if kind == "string":
        return go_string(value or "")
    if kind == "time":
        return '"' + (go_time(value) if value is not None else _ZERO_TIME) + '"'
    if kind == "int32":
        number = int(value)
        if not -(2**31) <= number < 2**31:
            raise ValueError(f"port {number} is outside int32")
        return str(number)
    if kind == "float64":
        return go_float(float(value))
    if kind == "string-map":
        return go_map(value, go_string)
    return go_map(value, go_any)
