"""One BrokerClient per broker, with its credentials from the Broker's Secret.

A client is rebuilt when the broker's endpoint or credentials change; the one it replaces
may still be serving a request of another reconcile, so it is retired and closed once
every request it could be serving has passed its deadline, not under that request.
Credentials come through the same SecretCache the prober uses (Cluster port).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kidp_ops.brokerapi.client import BrokerClient, Credentials
from kidp_ops.health.credentials import SecretCache, auth_headers
from kidp_ops.health.states import CannotProbe
from kidp_ops.model.resources import Broker


class CredentialsError(Exception):
    """The broker's credentials cannot be read (missing Secret, key, mtls...)."""


class BrokerClients:
    def __init__(
        self,
        secrets: SecretCache,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._secrets = secrets
        self._timeout = timeout
        self._clock = clock
        self._clients: dict[str, tuple[tuple[str, Credentials], BrokerClient]] = {}
        self._retired: list[tuple[float, BrokerClient]] = []  # (when retired, client)

    async def client_for(self, broker: Broker) -> BrokerClient:
        """The client of `broker`; CredentialsError when its Secret cannot be used. Closes
        the retired clients no request can be using any more."""
        if self._retired:
            await self._close_retired(older_than=2 * self._timeout)
        headers = await auth_headers(broker, self._secrets)
        if isinstance(headers, CannotProbe):
            raise CredentialsError(headers.reason)
        credentials = Credentials()
        if "X-API-Key" in headers:
            credentials = Credentials.api_key(headers["X-API-Key"])
        elif "Authorization" in headers:
            credentials = Credentials.bearer(headers["Authorization"].removeprefix("Bearer "))
        identity = (broker.spec.endpoint, credentials)
        cached = self._clients.get(broker.key)
        if cached is not None and cached[0] == identity:
            return cached[1]
        client = BrokerClient(broker.spec.endpoint, credentials=credentials, timeout=self._timeout)
        self._clients[broker.key] = (identity, client)
        if cached is not None:
            self._retired.append((self._clock(), cached[1]))
        return client

    async def _close_retired(self, *, older_than: float) -> None:
        horizon = self._clock() - older_than
        done = [client for when, client in self._retired if when <= horizon]
        self._retired = [(when, client) for when, client in self._retired if when > horizon]
        for client in done:
            await client.aclose()

    def retire(self, key: str) -> None:
        """The broker was deleted: its client is closed once no request can still be using
        it (at the first `client_for` after twice the timeout, or at `aclose`)."""
        cached = self._clients.pop(key, None)
        if cached is not None:
            self._retired.append((self._clock(), cached[1]))

    async def forget(self, key: str) -> None:
        cached = self._clients.pop(key, None)
        if cached is not None:
            await cached[1].aclose()

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for _, client in clients.values():
            await client.aclose()
        await self._close_retired(older_than=-1.0)
