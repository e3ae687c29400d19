"""Probes as columnar blocks: many probes in one SQLite row, one array per column.

A row per probe costs ~2.7 s to fetch a million of them through `sqlite3` on our machine
(~5.8 s with `pandas.read_sql`), over the 2 s the issue allows for a DataFrame. A block is a
zlib-compressed run of fixed-width columns (the standard library's `array`, so the daemon
needs no numpy): a reader with numpy turns it into columns without a Python object per
value. Strings (broker, phase, version, reason) are ids of the store's `names` table; 0
means none. Blocks are little-endian on disk whatever the machine.

Columns (`COLUMNS`, in this order):

| column | type | meaning |
| --- | --- | --- |
| `t` | int64 | milliseconds since the epoch, UTC (an aggregate: its minute's start) |
| `broker`, `phase` | int32 | name ids |
| `n` | int32 | probes in the row: 1 for a raw probe, the count for a per-minute aggregate |
| `failures` | int32 | how many of them failed |
| `latency` | float64 | ms, the mean of those that measured one; NaN when none did |
| `active`, `max` | int32 | activeDeployments and maxConcurrentDeployments; -1 unknown |
| `version`, `reason` | int32 | name ids (the last failure's reason in an aggregate) |
"""

from __future__ import annotations

import math
import sys
import zlib
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

COLUMNS: tuple[tuple[str, str], ...] = (
    ("t", "q"),
    ("broker", "i"),
    ("phase", "i"),
    ("n", "i"),
    ("failures", "i"),
    ("latency", "d"),
    ("active", "i"),
    ("max", "i"),
    ("version", "i"),
    ("reason", "i"),
)
NUMPY_TYPES = {"q": "<i8", "i": "<i4", "d": "<f8"}
MINUTE_MS = 60_000
UNKNOWN = -1
_SWAP = sys.byteorder != "little"
assert array("i").itemsize == 4 and array("q").itemsize == 8  # the block layout

Row = tuple[int, int, int, int, int, float, int, int, int, int]


@dataclass(frozen=True, slots=True)
class Block:
    """Decoded columns of one block (parallel arrays, `rows` long)."""

    columns: dict[str, array]  # type: ignore[type-arg]
    rows: int

    def iter_rows(self) -> Iterable[Row]:
        return zip(*(self.columns[name] for name, _ in COLUMNS), strict=True)


def encode(rows: Sequence[Row]) -> bytes:
    """Rows (in `COLUMNS` order) as one compressed block."""
    parts = []
    for index, (_, code) in enumerate(COLUMNS):
        column = array(code, (row[index] for row in rows))
        if _SWAP:
            column.byteswap()
        parts.append(column.tobytes())
    return zlib.compress(b"".join(parts), 1)


def decode(data: bytes, rows: int) -> Block:
    raw = zlib.decompress(data)
    columns, offset = {}, 0
    for name, code in COLUMNS:
        column = array(code)
        size = column.itemsize * rows
        column.frombytes(raw[offset : offset + size])
        if _SWAP:
            column.byteswap()
        columns[name] = column
        offset += size
    return Block(columns, rows)


def offsets(rows: int) -> list[tuple[str, str, int, int]]:
    """(name, numpy dtype, start, end) of each column in a decompressed block."""
    found, offset = [], 0
    for name, code in COLUMNS:
        size = array(code).itemsize * rows
        found.append((name, NUMPY_TYPES[code], offset, offset + size))
        offset += size
    return found


def aggregate(rows: Iterable[Row]) -> list[Row]:
    """Per-minute aggregates per broker, oldest first: counts add up, latency is the mean
    weighted by probes, phase/active/max/version are the minute's last known, reason the
    last failure's."""
    buckets: dict[tuple[int, int], list[Row]] = {}
    for row in sorted(rows, key=lambda r: r[0]):
        buckets.setdefault((row[0] // MINUTE_MS * MINUTE_MS, row[1]), []).append(row)
    return [_fold(minute, broker, found) for (minute, broker), found in sorted(buckets.items())]


def _fold(minute: int, broker: int, rows: list[Row]) -> Row:
    measured = [(r[5], r[3]) for r in rows if not math.isnan(r[5])]
    weight = sum(n for _, n in measured)
    latency = sum(v * n for v, n in measured) / weight if weight else math.nan
    last = rows[-1]

    def last_known(index: int, unknown: int) -> int:
        return int(next((r[index] for r in reversed(rows) if r[index] != unknown), unknown))

    return (
        minute,
        broker,
        last[2],
        sum(r[3] for r in rows),
        sum(r[4] for r in rows),
        latency,
        last_known(6, UNKNOWN),
        last_known(7, UNKNOWN),
        last_known(8, 0),
        last_known(9, 0),
    )
