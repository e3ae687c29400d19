"""A Swagger 2.0 document in the protobuf form kubectl before 1.27 asks for.

kubectl 1.20 (Debian's, what CI runs) reads `/openapi/v2` with
`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and decodes the answer
as gnostic's `openapi.v2.Document` message, with no JSON fallback. This module writes that
message for the subset of Swagger our documents use: the document's version and info, and
schema definitions (types, descriptions, properties, items, additionalProperties, allOf,
$ref, enums, defaults, bounds, required, and `x-` extensions, which gnostic carries as YAML
text: JSON is YAML). Field numbers are those of gnostic's `openapiv2/OpenAPIv2.proto`.

Hand-written on purpose: the protobuf wire format is four rules (varint, 64-bit,
length-delimited, tags), and a protobuf runtime plus generated gnostic classes would be a
dependency for one response.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable
from typing import Any

# What kube-openapi answers with; the `@` of the form clients ask for is not valid in a
# Content-Type that Go's mime.ParseMediaType (client-go) reads back.
MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

_VARINT, _FIXED64, _BYTES = 0, 1, 2


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: two's complement, ten bytes
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _bytes(field: int, payload: bytes) -> bytes:
    return _key(field, _BYTES) + _varint(len(payload)) + payload


def _string(field: int, text: str) -> bytes:
    return _bytes(field, text.encode())


def _int(field: int, value: Any) -> bytes:
    return _key(field, _VARINT) + _varint(int(value))


def _double(field: int, value: Any) -> bytes:
    return _key(field, _FIXED64) + struct.pack("<d", float(value))


def _any(field: int, value: Any) -> bytes:
    """gnostic's Any: the value as YAML text (field 2)."""
    return _bytes(field, _string(2, json.dumps(value)))


def _named(field: int, name: str, value: bytes) -> bytes:
    """A NamedSchema / NamedAny entry: name (1), value message (2)."""
    return _bytes(field, _string(1, name) + _bytes(2, value))


def _each(encode: Callable[[int, Any], bytes]) -> Callable[[int, Any], bytes]:
    return lambda field, values: b"".join(encode(field, v) for v in values)


def _additional(field: int, value: Any) -> bytes:
    if isinstance(value, bool):  # AdditionalPropertiesItem: schema (1) or boolean (2)
        return _bytes(field, _int(2, value))
    return _bytes(field, _bytes(1, schema(value)))


def _properties(field: int, value: dict[str, Any]) -> bytes:
    entries = b"".join(_named(1, name, schema(s)) for name, s in value.items())
    return _bytes(field, entries)


def _type(field: int, value: Any) -> bytes:
    names = [value] if isinstance(value, str) else list(value)
    return _bytes(field, b"".join(_string(1, n) for n in names))


def _items(field: int, value: Any) -> bytes:
    schemas = value if isinstance(value, list) else [value]
    return _bytes(field, b"".join(_bytes(1, schema(s)) for s in schemas))


_SCHEMA_FIELDS: dict[str, tuple[int, Callable[[int, Any], bytes]]] = {
    "$ref": (1, _string),
    "format": (2, _string),
    "title": (3, _string),
    "description": (4, _string),
    "default": (5, _any),
    "multipleOf": (6, _double),
    "maximum": (7, _double),
    "exclusiveMaximum": (8, _int),
    "minimum": (9, _double),
    "exclusiveMinimum": (10, _int),
    "maxLength": (11, _int),
    "minLength": (12, _int),
    "pattern": (13, _string),
    "maxItems": (14, _int),
    "minItems": (15, _int),
    "uniqueItems": (16, _int),
    "maxProperties": (17, _int),
    "minProperties": (18, _int),
    "required": (19, _each(_string)),
    "enum": (20, _each(_any)),
    "additionalProperties": (21, _additional),
    "type": (22, _type),
    "items": (23, _items),
    "allOf": (24, lambda f, schemas: b"".join(_bytes(f, schema(s)) for s in schemas)),
    "properties": (25, _properties),
}
_VENDOR_EXTENSION = 31


def schema(value: dict[str, Any]) -> bytes:
    """An `openapi.v2.Schema` message; keys it has no field for are left out."""
    out = bytearray()
    for key, item in value.items():
        if key in _SCHEMA_FIELDS:
            field, encode = _SCHEMA_FIELDS[key]
            out += encode(field, item)
        elif key.startswith("x-"):
            out += _named(_VENDOR_EXTENSION, key, _string(2, json.dumps(item)))
    return bytes(out)


def document(swagger: dict[str, Any]) -> bytes:
    """An `openapi.v2.Document`: swagger (1), info (2), definitions (9)."""
    info = swagger.get("info") or {}
    encoded_info = _string(1, info.get("title", "")) + _string(2, info.get("version", ""))
    definitions: Iterable[tuple[str, dict[str, Any]]] = (swagger.get("definitions") or {}).items()
    entries = b"".join(_named(1, name, schema(s)) for name, s in definitions)
    return _string(1, swagger.get("swagger", "2.0")) + _bytes(2, encoded_info) + _bytes(9, entries)
