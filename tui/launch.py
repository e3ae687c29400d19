"""The entry points `kidp-ops` loads by name (`kidp_ops.frontends: tui`).

- `main(target, readonly=)`: `kidp-ops tui`, on a state directory or a real cluster
  (read-only by default there); returns the exit status.
- `run_in_dev(...)`: `kidp-ops dev`'s view, on the daemon running in the same process:
  its informers, registry (with reservations) and history sink; returns when the user
  quits or `stop` is set, with the terminal restored either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from kidp_ops.cluster.base import EVENTS, Cluster, ClusterError
from kidp_ops.cluster.target import Target, connect
from kidp_ops.controller.informer import Informer
from kidp_ops.history import HistoryReader
from tui.app import create_app
from tui.feed import Feed, own_feed, state_history


def main(target: Target, *, readonly: bool | None = None) -> int:
    try:
        return asyncio.run(_main(target, readonly=target.is_kube if readonly is None else readonly))
    except ClusterError as exc:
        print(f"error: cannot open {target.describe()}: {exc}", file=sys.stderr)
        return 1


async def _main(target: Target, *, readonly: bool) -> int:
    # Until the app owns the terminal, and while it does, nothing may log onto it.
    root = logging.getLogger()
    saved, root.handlers[:] = root.handlers[:], [logging.NullHandler()]
    root.setLevel(logging.INFO)
    try:
        async with await connect(target) as cluster:
            history = None if target.is_kube else state_history(Path(target.state))
            feed = own_feed(cluster, target=_label(target), readonly=readonly, history=history)
            app = create_app(feed)
            await app.run_async()
            return int(app.return_code or 0)
    finally:
        root.handlers[:] = saved


def _label(target: Target) -> str:
    if target.in_cluster:
        return "in-cluster"
    if target.is_kube:
        return f"context {target.context}" if target.context else f"kubeconfig {target.kubeconfig}"
    return f"state {target.state}"


async def run_in_dev(
    *,
    cluster: Cluster,
    daemon: Any,
    history: HistoryReader,
    stop: asyncio.Event,
    readonly: bool = False,
    kubectl: str = "",
) -> None:
    events = Informer(cluster, EVENTS)
    feed = Feed(
        brokers=daemon.brokers,
        databases=daemon.databases,
        events=events,
        registry=daemon.registry,
        history=history,
        cluster=cluster,
        target="dev (daemon in this process)",
        readonly=readonly,
        to_run=[events],
    )
    app = create_app(feed)
    running = asyncio.create_task(app.run_async(), name="dashboard")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not running.done():
            app.exit(0)  # dev is stopping: leave the screen as it was found
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(running)
