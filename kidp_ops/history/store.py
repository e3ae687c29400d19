"""The history store in a directory: where it is, and reading it back.

    reader = open_reader(".kidp")          # a HistoryReader, or None when there is no history
    reader.probes(broker="kidp-system/b1", limit=100)

`open_reader` is what the dashboard and the notebooks call; `open_writer` is what the
daemon and `kidp-ops dev` call (`--history off|DIR`, see `history_dir`). Readers open the
file read-only and may run while a daemon writes it (WAL).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from kidp_ops.history import (
    BrokerRecord,
    HistoryError,
    LifecycleRecord,
    LifecycleStep,
    ProbeRecord,
    SelectionRecord,
)
from kidp_ops.history.blocks import UNKNOWN, Row, decode
from kidp_ops.history.sqlite import FILE_NAME, connect, from_ms, to_ms
from kidp_ops.history.writer import HistoryWriter

OFF = "off"
T = TypeVar("T")


def history_dir(option: str | None, *, default: str | Path | None) -> Path | None:
    """Where history goes for `--history VALUE`: None when off; `default` when not given
    (the state directory for the embedded store, None for a real cluster)."""
    if option is None:
        return Path(default) if default is not None else None
    if option == OFF:
        return None
    return Path(option)


def open_writer(directory: Path, **options: Any) -> HistoryWriter:
    """The daemon's sink for `directory/history.db` (created if missing)."""
    return HistoryWriter(directory, **options)


def open_reader(state_dir: str | Path) -> StoreReader | None:
    """A HistoryReader over `state_dir/history.db`, or None when there is no history there.
    Raises HistoryError (one line) when the file exists but is not a history database."""
    path = Path(state_dir) / FILE_NAME
    if not path.is_file():
        return None
    return StoreReader(path)


class StoreReader:
    """A HistoryReader over one history.db, safe to share between threads; also reads the
    brokers' specs, the phase transitions, and raw probe blocks for `history.frames`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path, readonly=True)
        self._lock = threading.Lock()
        self._names: dict[int, str] = {}

    def close(self) -> None:
        self._conn.close()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise HistoryError(f"{self.path}: cannot read history ({exc})") from None

    def name(self, id_: int | None) -> str | None:
        if not id_:
            return None
        if id_ not in self._names:
            self._names = dict(self.query("SELECT id, name FROM names"))
        return self._names.get(id_)

    def names(self) -> dict[int, str]:
        self._names = dict(self.query("SELECT id, name FROM names"))
        return self._names

    def name_id(self, name: str) -> int | None:
        found = self.query("SELECT id FROM names WHERE name = ?", (name,))
        return found[0][0] if found else None

    # --- probes -------------------------------------------------------------------------

    def blocks(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> list[tuple[int, int, int, bytes]]:
        """(t_min, t_max, rows, compressed data) of the blocks that may hold probes in
        [since, until], oldest first (or newest first)."""
        low = to_ms(since) if since else -(2**62)
        high = to_ms(until) if until else 2**62
        order = "t_max DESC" if newest_first else "t_min"
        return self.query(
            f"SELECT t_min, t_max, rows, data FROM probe_blocks "
            f"WHERE t_max >= ? AND t_min <= ? ORDER BY {order}",
            (low, high),
        )

    def probes(
        self, *, broker: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[ProbeRecord]:
        wanted = self.name_id(broker) if broker else None
        if broker and wanted is None:
            return []
        low = to_ms(since) if since else None
        rows: list[Row] = []
        for _, t_max, count, data in self.blocks(since=since, newest_first=True):
            if limit is not None and len(rows) >= limit and t_max < _kth_newest(rows, limit):
                break
            rows.extend(
                r
                for r in decode(data, count).iter_rows()
                if (wanted is None or r[1] == wanted) and (low is None or r[0] >= low)
            )
        rows.sort(key=lambda r: r[0])
        return [self._probe(r) for r in _last(rows, limit)]

    def _probe(self, r: Row) -> ProbeRecord:
        return ProbeRecord(
            time=from_ms(r[0]),
            broker=self.name(r[1]) or "",
            ok=r[4] == 0,
            phase=self.name(r[2]) or "",
            latency_ms=None if r[5] != r[5] else r[5],  # NaN: no latency
            active_deployments=None if r[6] == UNKNOWN else r[6],
            reason=self.name(r[9]) or "",
            max_concurrent_deployments=None if r[7] == UNKNOWN else r[7],
            version=self.name(r[8]),
        )

    # --- rows ---------------------------------------------------------------------------

    def _rows(
        self, table: str, where: list[str], params: list[Any], limit: int | None
    ) -> list[Any]:
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        if limit is None:
            return self.query(f"SELECT * FROM {table}{clause} ORDER BY t", tuple(params))
        newest = self.query(
            f"SELECT * FROM {table}{clause} ORDER BY t DESC LIMIT ?",
            (*params, limit),
        )
        return newest[::-1]

    def _filters(
        self, since: datetime | None, **names: str | None
    ) -> tuple[list[str], list[Any]] | None:
        where, params = [], []
        if since is not None:
            where.append("t >= ?")
            params.append(to_ms(since))
        for column, value in names.items():
            if value is not None:
                found = self.name_id(value)
                if found is None:
                    return None
                where.append(f"{column} = ?")
                params.append(found)
        return where, params

    def selections(
        self,
        *,
        request: str | None = None,
        broker: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[SelectionRecord]:
        filters = self._filters(since, request=request, broker=broker)
        if filters is None:
            return []
        return [self._selection(r) for r in self._rows("selections", *filters, limit)]

    def _selection(self, r: tuple[Any, ...]) -> SelectionRecord:
        (t, request, namespace, rtype, provider, cloud, region, broker, score) = r[:9]
        parts = None if r[9] is None else (r[9], r[10], r[11])
        return SelectionRecord(
            time=from_ms(t),
            request=self.name(request) or "",
            resource_type=self.name(rtype) or "",
            provider=self.name(provider),
            cloud_provider=self.name(cloud),
            region=self.name(region),
            broker=self.name(broker),
            score=score,
            candidates=r[12],
            eligible=r[13],
            reason=r[14],
            namespace=self.name(namespace),
            parts=parts,
            rejections=json.loads(r[15]),
        )

    def lifecycle(
        self, *, request: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[LifecycleRecord]:
        filters = self._filters(since, request=request)
        if filters is None:
            return []
        return [self._step(r) for r in self._rows("lifecycle", *filters, limit)]

    def _step(self, r: tuple[Any, ...]) -> LifecycleRecord:
        step: LifecycleStep = r[2]
        return LifecycleRecord(
            time=from_ms(r[0]),
            request=self.name(r[1]) or "",
            step=step,
            broker=self.name(r[3]),
            deployment_id=r[4],
            message=r[5],
        )

    def brokers(self) -> list[BrokerRecord]:
        """Every recorded broker spec, oldest first."""
        return [
            BrokerRecord(
                time=from_ms(t),
                broker=self.name(b) or "",
                cloud_provider=cloud,
                region=region,
                priority=priority,
                max_concurrent_deployments=limit,
                spec=json.loads(spec),
                deleted=bool(deleted),
            )
            for t, b, cloud, region, priority, limit, deleted, spec in self.query(
                "SELECT * FROM brokers ORDER BY t"
            )
        ]

    def transitions(
        self, *, since: datetime | None = None
    ) -> list[tuple[datetime, str, str | None, str]]:
        """(time, broker, old phase or None, new phase), oldest first."""
        low = to_ms(since) if since else -(2**62)
        return [
            (from_ms(t), self.name(b) or "", self.name(old), self.name(new) or "")
            for t, b, old, new in self.query(
                "SELECT * FROM transitions WHERE t >= ? ORDER BY t", (low,)
            )
        ]

    def span(self) -> tuple[datetime, datetime] | None:
        """The first and last time anything was recorded."""
        found = self.query(
            "SELECT min(a), max(b) FROM ("
            "SELECT min(t_min) a, max(t_max) b FROM probe_blocks UNION ALL "
            "SELECT min(t), max(t) FROM selections UNION ALL "
            "SELECT min(t), max(t) FROM lifecycle)"
        )
        low, high = found[0]
        return None if low is None else (from_ms(low), from_ms(high))


def _kth_newest(rows: list[Row], k: int) -> int:
    times = sorted(r[0] for r in rows)
    return times[-k]


def _last(items: list[T], limit: int | None) -> list[T]:
    return items[-limit:] if limit is not None else items
