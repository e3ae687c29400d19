"""A broker's credentials, read from the Secret its `authentication.secretRef` names.

api-key -> `X-API-Key: <value>`, jwt -> `Authorization: Bearer <value>` (ARCHITECTURE §6).
The key defaults to `api-key` and `token` respectively. mTLS needs a client certificate
per broker and is reported as not supported yet.

Secrets are cached for a short time (`ttl`, default 10 s, a third of the default probe
interval): a fleet whose brokers share one Secret costs one read per TTL instead of one
per probe, concurrent probes of that Secret share a single read, and a rotated or newly
created Secret is used within seconds. A missing Secret is cached too (it is the common
steady state of a misconfigured broker); other cluster errors are not cached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kidp_ops.cluster.base import Cluster, ClusterError, NotFound
from kidp_ops.health.states import CannotProbe
from kidp_ops.model.resources import Broker

SECRET_TTL_SECONDS = 10.0
DEFAULT_KEYS = {"api-key": "api-key", "jwt": "token"}
NO_HEADERS: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class _Entry:
    data: Mapping[str, bytes] | None  # None: the Secret does not exist
    expires: float


class SecretCache:
    """Secret data by (namespace, name), read through the Cluster port, kept `ttl` seconds."""

    def __init__(
        self,
        cluster: Cluster | None,
        *,
        ttl: float = SECRET_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cluster = cluster
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def get(self, name: str, *, namespace: str) -> Mapping[str, bytes] | None:
        """The Secret's decoded data, or None when it does not exist.

        Raises ClusterError when the cluster cannot answer (not cached)."""
        key = (namespace, name)
        entry = self._entries.get(key)
        if entry is not None and entry.expires > self._clock():
            return entry.data
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one read per Secret at a time; the others find it cached
            entry = self._entries.get(key)
            if entry is not None and entry.expires > self._clock():
                return entry.data
            data = await self._read(name, namespace=namespace)
            self._entries[key] = _Entry(data, self._clock() + self._ttl)
            return data

    async def _read(self, name: str, *, namespace: str) -> Mapping[str, bytes] | None:
        if self._cluster is None:
            raise ClusterError("no cluster to read Secrets from")
        try:
            return await self._cluster.get_secret_data(name, namespace=namespace)
        except NotFound:
            return None


async def auth_headers(broker: Broker, secrets: SecretCache) -> Mapping[str, str] | CannotProbe:
    """The headers that authenticate a probe of `broker`, or why it cannot be probed."""
    auth = broker.spec.authentication
    if auth is None or auth.type == "none":
        return NO_HEADERS
    if auth.type == "mtls":
        return CannotProbe("mtls not supported yet")
    if auth.secret_ref is None:
        return CannotProbe(f"invalid spec: authentication {auth.type} needs a secretRef")
    namespace, name = broker.metadata.namespace, auth.secret_ref.name
    if auth.secret_ref.namespace not in (None, "", namespace):
        # A real cluster without our admission rules may store such a Broker: still refuse.
        return CannotProbe(
            f"invalid spec: secretRef.namespace {auth.secret_ref.namespace} is not the Broker's "
            f"namespace {namespace} (credentials are read only from the Broker's own namespace)"
        )
    key = auth.secret_ref.key or DEFAULT_KEYS[auth.type]
    where = f"secret {namespace}/{name}"
    try:
        data = await secrets.get(name, namespace=namespace)
    except ClusterError as exc:
        return CannotProbe(f"cannot read {where}: {exc.message}")
    except ValueError:  # data that is not base64
        return CannotProbe(f"cannot read {where}: data is not base64")
    if data is None:
        return CannotProbe(f"{where} not found")
    if key not in data:
        return CannotProbe(f"key {key} missing in {where}")
    value = _header_value(data[key])
    if value is None:
        return CannotProbe(f"key {key} in {where} is not a valid header value")
    if auth.type == "api-key":
        return {"X-API-Key": value}
    return {"Authorization": f"Bearer {value}"}


def _header_value(raw: bytes) -> str | None:
    """The Secret value as a header value: text without surrounding whitespace (a file
    created with `echo` ends in a newline), non-empty, no control characters."""
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if not value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return None
    return value
