"""Writing history without ever making probing wait.

`HistoryWriter` is a `HistorySink`: `record_*` puts the record on a bounded queue and
returns (a few microseconds; no I/O on the event loop). One thread takes everything queued
every `flush_every` seconds and writes it in one transaction (`HistoryDB.write`). When the
queue is full (the disk is slow, or the database locked) a record is dropped and counted in
`dropped`; when a write fails (disk full, I/O error) its batch is dropped and counted the
same way, with a warning at most once a minute. The daemon exports both counts
(`kidp_history_dropped_records_total`). Every `maintain_every` seconds the thread applies
retention, downsampling and compaction (`HistoryDB.maintain`).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType

from kidp_ops.clock import utc_now
from kidp_ops.history import BrokerRecord, LifecycleRecord, ProbeRecord, SelectionRecord
from kidp_ops.history.sqlite import FILE_NAME, HistoryDB, Record

log = logging.getLogger("kidp_ops.history")

KINDS: dict[type, str] = {
    ProbeRecord: "probe",
    SelectionRecord: "selection",
    LifecycleRecord: "lifecycle",
    BrokerRecord: "broker",
}
WARN_EVERY = 60.0


class HistoryWriter:
    """A HistorySink writing `DIR/history.db` from a thread of its own; close() to finish."""

    def __init__(
        self,
        directory: Path,
        *,
        capacity: int = 100_000,
        flush_every: float = 1.0,
        retention: timedelta = timedelta(days=7),
        raw_for: timedelta = timedelta(days=1),
        compact_after: timedelta = timedelta(minutes=10),
        maintain_every: float = 600.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.path = Path(directory) / FILE_NAME
        self.db = HistoryDB(self.path)  # opened here: a bad file fails the start, not later
        self.flush_every = flush_every
        self.retention, self.raw_for, self.compact_after = retention, raw_for, compact_after
        self.maintain_every = maintain_every
        self.clock = clock
        self.dropped: Counter[str] = Counter()
        self.written: Counter[str] = Counter()
        self.write_errors = 0
        self._queue: queue.Queue[Record] = queue.Queue(maxsize=capacity)
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._warned_at = -WARN_EVERY
        self._thread = threading.Thread(target=self._run, name="kidp-history", daemon=True)
        self._thread.start()

    # --- HistorySink --------------------------------------------------------------------

    def record_probe(self, record: ProbeRecord) -> None:
        self._offer(record)

    def record_selection(self, record: SelectionRecord) -> None:
        self._offer(record)

    def record_lifecycle(self, record: LifecycleRecord) -> None:
        self._offer(record)

    def record_broker(self, record: BrokerRecord) -> None:
        self._offer(record)

    def _offer(self, record: Record) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped[KINDS[type(record)]] += 1

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    # --- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        next_maintenance = time.monotonic() + self.maintain_every
        while True:
            self._write(self._drain())
            if time.monotonic() >= next_maintenance:
                self._maintain()
                next_maintenance = time.monotonic() + self.maintain_every
            if self._closing.is_set() and self._queue.empty():
                break
            self._wake.wait(self.flush_every)  # pacing: one transaction per interval
            self._wake.clear()
        self.db.close()

    def _drain(self, most: int = 50_000) -> list[Record]:
        batch: list[Record] = []
        while len(batch) < most:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, batch: list[Record]) -> None:
        if not batch:
            return
        kinds = Counter(KINDS[type(r)] for r in batch)
        try:
            self.db.write(batch)
            self.written.update(kinds)
        except sqlite3.Error as exc:
            self.dropped.update(kinds)
            self.write_errors += 1
            self._warn(f"cannot write {len(batch)} history records to {self.path}: {exc}")
        finally:
            for _ in batch:
                self._queue.task_done()

    def _maintain(self) -> None:
        try:
            self.db.maintain(
                now=self.clock(),
                retention=self.retention,
                raw_for=self.raw_for,
                compact_after=self.compact_after,
            )
        except sqlite3.Error as exc:
            self._warn(f"history maintenance of {self.path} failed: {exc}")

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning("%s (records are dropped, never waited for)", message)

    # --- the owner's side ---------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (or dropped); False on timeout."""
        self._wake.set()
        done = self._queue.all_tasks_done
        with done:
            return done.wait_for(lambda: self._queue.unfinished_tasks == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, stop the thread; after `timeout` give up with a warning."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "history writer did not finish in %.0fs; %d records not written",
                timeout,
                self.queued,
            )

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
