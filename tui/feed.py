"""Where the dashboard's data comes from: watch-fed sources, the registry, the history.

A `Source` is what the dashboard reads of one kind: an `Informer` (list + watch, relist on
Gone, retries with backoff) in real use, a fixed list in the snapshot tests. The dashboard
registers a handler on each and never lists on a timer. The `BrokerRegistry` (fed by the
broker source's events) answers SCORE, the simulator and `describe` exactly as the
reconciler decides. The history reader (probes, selections, lifecycle) is optional.

`kidp-ops tui` builds a Feed over its own Cluster connection and informers (the app runs
them in a worker); `kidp-ops dev` passes the daemon's informers, registry and history sink
(reservations included), and the app runs only an Event informer of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kidp_ops.cluster.base import BROKERS, DATABASES, EVENTS, Cluster
from kidp_ops.controller.informer import Handler, Informer
from kidp_ops.history import HistoryError, HistoryReader
from kidp_ops.registry import BrokerRegistry

log = logging.getLogger("tui.feed")
Manifest = dict[str, Any]


class Source(Protocol):
    """The part of an Informer the dashboard uses."""

    def items(self) -> list[Manifest]: ...

    def get(self, key: str) -> Manifest | None: ...

    def add_handler(self, handler: Handler, *, replay: bool = True) -> None: ...

    @property
    def has_synced(self) -> bool: ...

    errors: int
    last_error: str

    def seconds_since_contact(self) -> float | None: ...


@dataclass
class Feed:
    brokers: Source
    databases: Source
    events: Source
    registry: BrokerRegistry
    history: HistoryReader | None = None
    cluster: Cluster | None = None  # None: nothing to act on (fixed data)
    target: str = ""  # what the header says we look at
    readonly: bool = False
    to_run: list[Informer] = field(default_factory=list)  # informers the app must run


def own_feed(
    cluster: Cluster,
    *,
    target: str,
    readonly: bool,
    history: HistoryReader | None,
    registry: BrokerRegistry | None = None,
) -> Feed:
    """A Feed with informers of its own over `cluster` (started by the app)."""
    brokers, databases, events = (Informer(cluster, kind) for kind in (BROKERS, DATABASES, EVENTS))
    registry = registry or BrokerRegistry()
    brokers.add_handler(registry.handle)
    return Feed(
        brokers=brokers,
        databases=databases,
        events=events,
        registry=registry,
        history=history,
        cluster=cluster,
        target=target,
        readonly=readonly,
        to_run=[brokers, databases, events],
    )


def state_history(state: Path) -> HistoryReader | None:
    """The durable history of a state directory (`kidp_ops.history.store.open_reader`);
    None when there is none (the sparkline then follows the phases the watch shows)."""
    from kidp_ops.history import store  # lazy: sqlite and the block codec, only for the tui

    try:
        return store.open_reader(state)
    except HistoryError as exc:  # not a history database: the dashboard works without it
        log.warning("cannot read the history in %s: %s", state, exc)
        return None
