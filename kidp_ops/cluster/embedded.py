"""The embedded adapter: a Kubernetes-like API server in a SQLite file, in the manner of kine.

One revision log with a global, monotonically increasing resourceVersion; a table of
current objects; WAL mode so several processes (the daemon, `kidp-ops apply`, the
dashboard) share one state directory. Writes run in `BEGIN IMMEDIATE` transactions, so
the read-check-write of optimistic concurrency is atomic across processes. Watches poll
the log (another process's write shows within about 50 ms) and are woken at once by
writes made in this process.

The object semantics (server-set fields, generation, finalizers, status subresource,
schema defaulting and validation) live in `kidp_ops.cluster.storage`; this module is the
SQLite and asyncio shell around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from kidp_ops.cluster import storage
from kidp_ops.cluster.base import (
    Cluster,
    ClusterError,
    Gone,
    Manifest,
    NotConnected,
    ObjectList,
    ResourceKind,
    Unavailable,
    WatchEvent,
    kind_for_manifest,
)
from kidp_ops.cluster.fields import parse_field_selector
from kidp_ops.cluster.labels import parse_selector
from kidp_ops.model.bundled import load_crds

T = TypeVar("T")

DEFAULT_STATE_DIR = ".kidp"
DB_FILE = "store.db"
RETAINED_REVISIONS = 50_000  # log rows kept behind the head before compaction
COMPACT_EVERY = 1_000  # revisions between compactions
POLL_SECONDS = 0.05  # how often a watch looks for another process's writes
BOOKMARK_SECONDS = 5.0  # an idle watch sends a BOOKMARK this often
WATCH_BATCH = 500

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0);
CREATE TABLE IF NOT EXISTS objects (
    resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    rv INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (resource, namespace, name)
);
CREATE TABLE IF NOT EXISTS log (
    rv INTEGER PRIMARY KEY, resource TEXT NOT NULL, namespace TEXT NOT NULL,
    type TEXT NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_resource_rv ON log (resource, rv);
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class EmbeddedCluster(Cluster):
    """A Cluster in `state_dir/store.db`. Open with `await EmbeddedCluster.open(dir)`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self.path = path
        self._conn = conn
        self._executor = executor
        self._changed = asyncio.Event()
        self._schemas = storage.SchemaCache()
        self._writes = 0
        self._closed = False
        self.bookmark_seconds = BOOKMARK_SECONDS

    # --- lifecycle ---------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR,
        *,
        install_crds: bool = True,
        bookmark_seconds: float = BOOKMARK_SECONDS,
        create: bool = True,
    ) -> EmbeddedCluster:
        """Open the store in `state_dir`, creating it when needed unless `create` is False
        (then a missing store is NotConnected); install the bundled CRDs."""
        directory = Path(state_dir)
        if directory.exists() and not directory.is_dir():
            raise NotConnected(f"state directory {directory} is a file, not a directory")
        if not create and not (directory / DB_FILE).exists():
            raise NotConnected(
                f"no store in {directory}/ yet: `kidp-ops apply -f FILE` or `kidp-ops dev` "
                "with the same --state creates it"
            )
        try:
            # the store holds Secrets: a new state directory is the owner's alone
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise NotConnected(
                f"cannot create state directory {directory}: {exc.strerror or exc}"
            ) from None
        path = directory / DB_FILE
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kidp-store")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, _open_db, path)
        except ClusterError:
            executor.shutdown(wait=False)
            raise
        cluster = cls(path, conn, executor)
        cluster.bookmark_seconds = bookmark_seconds
        if install_crds:
            await cluster.install_bundled_crds()
        return cluster

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._changed.set()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)

    async def install_bundled_crds(self) -> None:
        """Create or update the CRDs shipped with kidp-ops (as `kidp-ops apply -f crds/`)."""
        for crd in load_crds():
            await self.apply(crd)

    async def apply(self, manifest: Manifest) -> tuple[str, Manifest]:
        """Create, or update in place: returns ("created"|"configured"|"unchanged", object)."""
        kind = kind_for_manifest(manifest)
        return await self._call(storage.apply_op, self._schemas, kind, manifest)

    # --- the thread side ---------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise Unavailable(f"the store {self.path} is closed")
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor, _guarded, self._conn, fn, args)
        if fn in storage.WRITES:
            self._after_write()
        return result

    def _after_write(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        self._writes += 1
        if self._writes % COMPACT_EVERY == 0:
            loop = asyncio.get_running_loop()
            loop.run_in_executor(
                self._executor, _guarded, self._conn, _compact, (RETAINED_REVISIONS,)
            )

    # --- the port ----------------------------------------------------------------------

    async def get(self, kind: ResourceKind, name: str, *, namespace: str | None = None) -> Manifest:
        return await self._call(storage.get_op, kind, name, _ns(kind, namespace))

    async def list(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList:
        labels = parse_selector(label_selector)
        fields = parse_field_selector(kind, field_selector)
        items, rv = await self._call(storage.list_op, kind, namespace if kind.namespaced else "")
        items = [i for i in items if labels(i["metadata"].get("labels") or {}) and fields(i)]
        return ObjectList(items=items, resource_version=str(rv))

    async def create(self, manifest: Manifest) -> Manifest:
        kind = kind_for_manifest(manifest)
        return await self._call(storage.create_op, self._schemas, kind, manifest)

    async def replace(self, manifest: Manifest) -> Manifest:
        kind = kind_for_manifest(manifest)
        return await self._call(storage.replace_op, self._schemas, kind, manifest)

    async def patch(
        self, kind: ResourceKind, name: str, patch: Manifest, *, namespace: str | None = None
    ) -> Manifest:
        ns = _ns(kind, namespace)
        return await self._call(storage.patch_op, self._schemas, kind, name, ns, patch, False)

    async def patch_status(
        self, kind: ResourceKind, name: str, patch: Manifest, *, namespace: str | None = None
    ) -> Manifest:
        ns = _ns(kind, namespace)
        return await self._call(storage.patch_op, self._schemas, kind, name, ns, patch, True)

    async def delete(
        self, kind: ResourceKind, name: str, *, namespace: str | None = None
    ) -> Manifest | None:
        return await self._call(storage.delete_op, kind, name, _ns(kind, namespace))

    async def watch(
        self,
        kind: ResourceKind,
        *,
        resource_version: str,
        namespace: str | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        ns = namespace if kind.namespaced else None
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        if resource_version in ("", "0"):
            listed = await self.list(kind, namespace=ns)
            for item in listed.items:
                yield WatchEvent("ADDED", item)
            resource_version = listed.resource_version
        cursor = _parse_rv(resource_version)
        last_sent = time.monotonic()
        while not self._closed:
            changed = self._changed
            rows, cursor = await self._call(storage.log_since, kind, ns, cursor, WATCH_BATCH)
            for event_type, body in rows:
                yield WatchEvent(event_type, body)
            if rows:
                last_sent = time.monotonic()
                continue
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            if now - last_sent >= self.bookmark_seconds:
                yield storage.bookmark(kind, cursor)
                last_sent = now
            wait = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - now)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that lands as the wait ends, leaving the watch running.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await changed.wait()

    # --- housekeeping ------------------------------------------------------------------

    async def current_revision(self) -> int:
        return await self._call(storage.head_revision)

    async def compact(self, retain: int = RETAINED_REVISIONS) -> int:
        """Drop log entries more than `retain` revisions behind the head; returns the floor.
        A watch from below the floor gets Gone, as after etcd's compaction."""
        return await self._call(_compact, retain)


def _ns(kind: ResourceKind, namespace: str | None) -> str:
    if not kind.namespaced:
        return ""
    return namespace or "default"


def _parse_rv(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Gone(f"resourceVersion {value!r} is not one this store issued") from None


def _private_file(path: Path) -> None:
    """Create `path` mode 0600, or narrow an existing one to 0600 (it holds Secrets).
    SQLite gives its -wal and -shm files the database file's mode."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(descriptor).st_mode & 0o077:
            os.fchmod(descriptor, 0o600)
    finally:
        os.close(descriptor)


def _open_db(path: Path) -> sqlite3.Connection:
    try:
        _private_file(path)
    except OSError as exc:
        raise Unavailable(f"cannot open the store {path}: {exc.strerror or exc}") from None
    try:
        conn = _connect(path)
        conn.executescript(_SCHEMA_SQL)
    except sqlite3.Error as exc:
        raise Unavailable(f"cannot open the store {path}: {exc}") from None
    return conn


def _guarded(conn: sqlite3.Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """Run one store operation in the store thread, mapping SQLite errors."""
    try:
        return fn(conn, *args)
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise Unavailable(f"store error: {exc}") from None
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _compact(conn: sqlite3.Connection, retain: int) -> int:
    conn.execute("BEGIN IMMEDIATE")
    head = conn.execute("SELECT value FROM meta WHERE key='revision'").fetchone()[0]
    floor = max(0, head - retain)
    if floor > 0:
        conn.execute("DELETE FROM log WHERE rv <= ?", (floor,))
        conn.execute("UPDATE meta SET value=? WHERE key='compacted' AND value < ?", (floor, floor))
    conn.execute("COMMIT")
    return int(floor)
