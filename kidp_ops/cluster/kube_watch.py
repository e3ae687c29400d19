"""A blocking `kubernetes.watch.Watch` stream in a thread, read from asyncio.

The thread reads the chunked response line by line (`Watch.stream`), reconnects from the
last resourceVersion when the server ends a segment, and hands every event to the event
loop through a queue. `stop()` never blocks: it sets a flag and shuts the socket down,
which wakes the read in flight; a lock around the open response closes the window where
the stream is being opened while `stop()` runs.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, cast

from kubernetes import watch as k8s_watch

from kidp_ops.cluster.base import EventType, WatchEvent

SEGMENT_SECONDS = 300  # a watch without timeout reconnects (from its last version) this often

Opener = Callable[[str, int], Any]  # (resourceVersion, timeoutSeconds) -> urllib3 response
_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})
_Item = WatchEvent | BaseException | None  # None: the stream ended


class _Stopped(Exception):
    """The watch was stopped while its request was being opened."""


class WatchThread:
    """One watch, read by a daemon thread; `next()` is awaited on the event loop."""

    def __init__(
        self,
        *,
        opener: Opener,
        resource_version: str,
        timeout_seconds: float | None,
        name: str,
    ) -> None:
        self._opener = opener
        self._version = resource_version
        self._deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._response: Any = None
        self._watch: Any = k8s_watch.Watch(return_type="object")  # type: ignore[no-untyped-call]
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    async def next(self) -> WatchEvent | None:
        """The next event; None when the stream ended (server timeout or our deadline)."""
        if self._deadline is None:
            item = await self._queue.get()
        else:
            remaining = self._deadline - time.monotonic()
            try:  # asyncio.timeout: wait_for may swallow a cancellation on Python 3.11
                async with asyncio.timeout(max(remaining, 0)):
                    item = await self._queue.get()
            except TimeoutError:
                return None
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        """Make the thread end soon; returns at once."""
        self._stopping.set()
        self._watch.stop()
        with self._lock:
            response = self._response
        _shutdown(response)

    # --- the thread side ----------------------------------------------------------------

    def _run(self) -> None:
        outcome: _Item = None
        try:
            self._stream()
        except BaseException as exc:  # handed to the awaiting side, which maps it
            if not self._stopping.is_set():
                outcome = exc
        self._hand_over(outcome)

    def _stream(self) -> None:
        while (seconds := self._segment_seconds()) is not None:
            events = self._watch.stream(
                self._open,
                resource_version=self._version,
                timeout_seconds=seconds,
                allow_watch_bookmarks=True,
            )
            for raw in events:
                if self._stopping.is_set():
                    return
                event = _event(raw)
                if event is not None:
                    self._version = event.resource_version or self._version
                    self._hand_over(event)

    def _segment_seconds(self) -> int | None:
        if self._stopping.is_set():
            return None
        if self._deadline is None:
            return SEGMENT_SECONDS
        remaining = self._deadline - time.monotonic()
        return math.ceil(remaining) if remaining > 0 else None

    def _open(self, **kwargs: Any) -> Any:
        """Called by Watch.stream to open one segment."""
        response = self._opener(kwargs["resource_version"], kwargs["timeout_seconds"])
        with self._lock:
            self._response = response
            stopping = self._stopping.is_set()
        if stopping:
            response.close()
            raise _Stopped
        return response

    def _hand_over(self, item: _Item) -> None:
        with suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)


def _event(raw: dict[str, Any]) -> WatchEvent | None:
    event_type, obj = raw.get("type"), raw.get("raw_object")
    if event_type not in _EVENT_TYPES or not isinstance(obj, dict):
        return None
    return WatchEvent(cast(EventType, event_type), obj)


def _shutdown(response: Any) -> None:
    """Shut the socket under a urllib3 response down, waking a blocked read."""
    connection = getattr(response, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
