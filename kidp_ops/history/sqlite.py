"""The history database: one SQLite file (`history.db`, WAL), apart from the cluster store.

Tables (times are integer milliseconds since the epoch, UTC; text that repeats is an id of
`names`, 0 or NULL for none):

- `probe_blocks`: every probe, as columnar blocks (`history.blocks`); `agg` 1 for
  per-minute aggregates (old probes, downsampled by `maintain`);
- `transitions`: every phase change of a broker (from NULL: the first probe seen);
- `selections`: every selection decision, its score parts and rejections by filter (JSON);
- `lifecycle`: every step of every Database (created, scheduled, accepted, ready, ...);
- `brokers`: each broker's spec whenever it changed (region, provider, priority, capacity,
  and the whole spec as JSON for what-if replays).

Only `HistoryWriter` writes (one thread); readers open their own read-only connections.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kidp_ops.history import (
    BrokerRecord,
    HistoryError,
    LifecycleRecord,
    ProbeRecord,
    SelectionRecord,
)
from kidp_ops.history.blocks import UNKNOWN, Row, aggregate, decode, encode

FILE_NAME = "history.db"
SCHEMA_VERSION = "1"
HOUR_MS = 3_600_000
Record = ProbeRecord | SelectionRecord | LifecycleRecord | BrokerRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS names(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS probe_blocks(
  id INTEGER PRIMARY KEY, t_min INTEGER NOT NULL, t_max INTEGER NOT NULL,
  rows INTEGER NOT NULL, agg INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS probe_blocks_t ON probe_blocks(t_max);
CREATE TABLE IF NOT EXISTS transitions(
  t INTEGER NOT NULL, broker INTEGER NOT NULL, old INTEGER, new INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS transitions_t ON transitions(t);
CREATE TABLE IF NOT EXISTS selections(
  t INTEGER NOT NULL, request INTEGER NOT NULL, namespace INTEGER,
  resource_type INTEGER NOT NULL, provider INTEGER, cloud_provider INTEGER, region INTEGER,
  broker INTEGER, score REAL, priority REAL, load REAL, heartbeat REAL,
  candidates INTEGER NOT NULL, eligible INTEGER NOT NULL, reason TEXT NOT NULL,
  rejections TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS selections_t ON selections(t);
CREATE TABLE IF NOT EXISTS lifecycle(
  t INTEGER NOT NULL, request INTEGER NOT NULL, step TEXT NOT NULL, broker INTEGER,
  deployment_id TEXT, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS lifecycle_t ON lifecycle(t);
CREATE TABLE IF NOT EXISTS brokers(
  t INTEGER NOT NULL, broker INTEGER NOT NULL, cloud_provider TEXT NOT NULL,
  region TEXT NOT NULL, priority INTEGER NOT NULL, max INTEGER NOT NULL,
  deleted INTEGER NOT NULL, spec TEXT NOT NULL);
"""


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def connect(path: Path, *, readonly: bool, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit); a clear HistoryError
    when the file is not a history database."""
    try:
        if readonly:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
            )
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except (sqlite3.Error, OSError) as exc:
        raise HistoryError(f"{path}: not a readable kidp-ops history database ({exc})") from None
    if found is None or found[0] != SCHEMA_VERSION:
        conn.close()
        version = found[0] if found else "none"
        raise HistoryError(
            f"{path}: history schema {version}; this kidp-ops reads schema {SCHEMA_VERSION}"
        )
    return conn


class HistoryDB:
    """The writing side: batches of records in one transaction each, and maintenance."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = connect(path, readonly=False)
        self._ids: dict[str, int] = {}
        self._phase: dict[int, int] = dict(
            self.conn.execute(
                "SELECT broker, new FROM transitions GROUP BY broker HAVING t = max(t)"
            ).fetchall()
        )

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        phases = dict(self._phase)
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._ids.clear()  # names of the rolled-back transaction are gone
            self._phase = phases
            raise

    def _id(self, name: str | None) -> int:
        if not name:
            return 0
        found = self._ids.get(name)
        if found is None:
            self.conn.execute("INSERT OR IGNORE INTO names(name) VALUES (?)", (name,))
            found = self.conn.execute("SELECT id FROM names WHERE name = ?", (name,)).fetchone()[0]
            self._ids[name] = found
        return found

    def _nid(self, name: str | None) -> int | None:
        return self._id(name) or None

    def write(self, records: Sequence[Record]) -> None:
        """All of `records` in one transaction (or none of them: sqlite3.Error)."""
        with self._transaction():
            probes = [r for r in records if isinstance(r, ProbeRecord)]
            if probes:
                self._write_probes(probes)
            self._write_rows(records)

    def _write_probes(self, probes: Sequence[ProbeRecord]) -> None:
        rows: list[Row] = []
        changes = []
        for probe in sorted(probes, key=lambda p: p.time):
            broker, phase, t = self._id(probe.broker), self._id(probe.phase), to_ms(probe.time)
            if self._phase.get(broker) != phase:
                changes.append((t, broker, self._phase.get(broker), phase))
                self._phase[broker] = phase
            rows.append(_probe_row(probe, t, broker, phase, self._id))
        self.conn.executemany("INSERT INTO transitions VALUES (?, ?, ?, ?)", changes)
        self._insert_block(rows, agg=False)

    def _insert_block(self, rows: Sequence[Row], *, agg: bool) -> None:
        if not rows:
            return
        self.conn.execute(
            "INSERT INTO probe_blocks(t_min, t_max, rows, agg, data) VALUES (?, ?, ?, ?, ?)",
            (min(r[0] for r in rows), max(r[0] for r in rows), len(rows), int(agg), encode(rows)),
        )

    def _write_rows(self, records: Iterable[Record]) -> None:
        selections, steps, brokers = [], [], []
        for r in records:
            if isinstance(r, SelectionRecord):
                selections.append(self._selection_row(r))
            elif isinstance(r, LifecycleRecord):
                steps.append(
                    (
                        to_ms(r.time),
                        self._id(r.request),
                        r.step,
                        self._nid(r.broker),
                        r.deployment_id,
                        r.message,
                    )
                )
            elif isinstance(r, BrokerRecord):
                brokers.append(
                    (
                        to_ms(r.time),
                        self._id(r.broker),
                        r.cloud_provider,
                        r.region,
                        r.priority,
                        r.max_concurrent_deployments,
                        int(r.deleted),
                        json.dumps(dict(r.spec)),
                    )
                )
        self.conn.executemany(f"INSERT INTO selections VALUES ({_marks(16)})", selections)
        self.conn.executemany(f"INSERT INTO lifecycle VALUES ({_marks(6)})", steps)
        self.conn.executemany(f"INSERT INTO brokers VALUES ({_marks(8)})", brokers)

    def _selection_row(self, r: SelectionRecord) -> tuple[Any, ...]:
        parts = r.parts or (None, None, None)
        return (
            to_ms(r.time),
            self._id(r.request),
            self._nid(r.namespace),
            self._id(r.resource_type),
            self._nid(r.provider),
            self._nid(r.cloud_provider),
            self._nid(r.region),
            self._nid(r.broker),
            r.score,
            *parts,
            r.candidates,
            r.eligible,
            r.reason,
            json.dumps(dict(r.rejections), sort_keys=True),
        )

    # --- maintenance --------------------------------------------------------------------

    def maintain(
        self, *, now: datetime, retention: timedelta, raw_for: timedelta, compact_after: timedelta
    ) -> None:
        """Drop what is older than `retention`; downsample probes older than `raw_for` to
        per-minute aggregates; merge small raw blocks older than `compact_after`."""
        cutoff = to_ms(now - retention)
        with self._transaction() as conn:
            conn.execute("DELETE FROM probe_blocks WHERE t_max < ?", (cutoff,))
            straddling = conn.execute(
                "SELECT id, rows, agg, data FROM probe_blocks WHERE t_min < ?", (cutoff,)
            ).fetchall()
            for block, count, agg, data in straddling:  # keep the part within retention
                kept = [r for r in decode(data, count).iter_rows() if r[0] >= cutoff]
                conn.execute("DELETE FROM probe_blocks WHERE id = ?", (block,))
                self._insert_block(kept, agg=bool(agg))
            for table in ("transitions", "selections", "lifecycle"):
                conn.execute(f"DELETE FROM {table} WHERE t < ?", (cutoff,))
        self._rewrite(older_than=to_ms(now - raw_for), downsample=True)
        self._rewrite(older_than=to_ms(now - compact_after), downsample=False)

    def _rewrite(self, *, older_than: int, downsample: bool, small: int = 4096) -> None:
        """Raw blocks before `older_than` become per-minute aggregates (`downsample`) or
        fewer, larger raw blocks (compaction of the writer's small per-flush blocks)."""
        limit = "" if downsample else f" AND rows < {small}"
        with self._transaction() as conn:
            found = conn.execute(
                f"SELECT id, rows, data FROM probe_blocks WHERE agg = 0 AND t_max < ?{limit}",
                (older_than,),
            ).fetchall()
            if len(found) < (1 if downsample else 2):
                return
            rows = [row for _, count, data in found for row in decode(data, count).iter_rows()]
            rows = aggregate(rows) if downsample else sorted(rows, key=lambda r: r[0])
            conn.executemany("DELETE FROM probe_blocks WHERE id = ?", [(i,) for i, _, _ in found])
            for chunk in _chunks(rows, per_hour=downsample):
                self._insert_block(chunk, agg=downsample)


def _chunks(rows: list[Row], *, per_hour: bool, most: int = 65_536) -> list[list[Row]]:
    """Sorted rows in blocks of at most `most`; aggregates one block per hour, so that
    retention drops them hour by hour."""
    chunks: list[list[Row]] = []
    for row in rows:
        if (
            not chunks
            or len(chunks[-1]) >= most
            or (per_hour and row[0] // HOUR_MS != chunks[-1][0][0] // HOUR_MS)
        ):
            chunks.append([])
        chunks[-1].append(row)
    return chunks


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _probe_row(probe: ProbeRecord, t: int, broker: int, phase: int, intern: Any) -> Row:
    latency = probe.latency_ms if probe.latency_ms is not None else float("nan")
    active = probe.active_deployments
    limit = probe.max_concurrent_deployments
    return (
        t,
        broker,
        phase,
        1,
        0 if probe.ok else 1,
        float(latency),
        UNKNOWN if active is None else active,
        UNKNOWN if limit is None else limit,
        intern(probe.version),
        intern(probe.reason),
    )
