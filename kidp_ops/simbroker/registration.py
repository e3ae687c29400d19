"""Publish a broker's callback public key on its Broker object, through the Cluster port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from kidp_ops.cluster.base import BROKERS, Cluster, Manifest, NotFound

POLL_SECONDS = 0.5


async def register_callback_key(
    cluster: Cluster,
    *,
    namespace: str,
    name: str,
    public_key: str,
    wait_seconds: float = 0.0,
    poll_seconds: float = POLL_SECONDS,
    on_waiting: Callable[[str], None] | None = None,
) -> Manifest:
    """Set `status.callbackPublicKey` of Broker `namespace/name` to `public_key`.

    A broker may start before its manifest is applied: while the Broker does not exist,
    wait up to `wait_seconds` (telling `on_waiting` once), then raise NotFound with a
    message that says what to do.
    """
    deadline = time.monotonic() + wait_seconds
    told = False
    patch = {"status": {"callbackPublicKey": public_key}}
    while True:
        try:
            return await cluster.patch_status(BROKERS, name, patch, namespace=namespace)
        except NotFound:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waited = f" after waiting {wait_seconds:g}s" if wait_seconds > 0 else ""
                raise NotFound(
                    f"Broker {namespace}/{name} not found{waited}; apply its manifest first "
                    "(kidp-ops apply -f ...) or fix --register"
                ) from None
            if not told and on_waiting is not None:
                on_waiting(
                    f"Broker {namespace}/{name} does not exist yet; "
                    f"waiting up to {wait_seconds:g}s for it to be applied"
                )
                told = True
            await asyncio.sleep(min(poll_seconds, remaining))
