"""The health prober: GET `spec.endpoint` + `healthCheck.endpoint` for many brokers at once.

    async with Prober(cluster=cluster, concurrency=256) as prober:
        outcome = await prober.probe(broker)        # ProbeSuccess | ProbeFailure | CannotProbe
        outcomes = await prober.sweep(brokers)      # {"ns/name": outcome}

Every broker problem becomes an outcome; `probe` raises only when it is cancelled.

- The target is the broker's endpoint joined with a *path*; a health endpoint that is a
  URL, or that would switch scheme, host or port, is refused (CannotProbe).
- Fair slots, so hanging brokers cannot starve healthy ones (issue 10). A probe starts in
  one of two lanes: `concurrency` slots for brokers whose last probe succeeded,
  `suspect_concurrency` for new and failing ones. A probe still running after
  `slow_after` (1 s) gives its lane slot back and holds one of `slow_concurrency` slow
  slots instead (while any is free), so hung brokers pile up in the slow slots and the
  lanes keep turning over within about a second. However many brokers hang, a healthy
  broker's probe waits only for other healthy brokers' first second. The timeout
  (`timeoutSeconds`) starts when a probe gets its lane slot and covers connect, headers
  and body.
- No redirects (a 3xx is `HTTP 302`), no cookies, no proxies from the environment, no
  compression (`Accept-Encoding: identity`; a compressed answer is a failure, so a small
  body can never inflate past the cap), body read stopped at 64 KiB.
- Transport: one aiohttp session. Measured (benchmarks/health.py): httpx's shared pool
  collapses over many distinct origins (encode/httpx#3215), aiohttp does not.
- Connections are not reused by default (as the kubelet's HTTP probes): every probe checks
  that the broker accepts connections, an idle pool never holds one socket per broker,
  and a connection the broker closed while idle cannot turn into a false failure.
  `keepalive_seconds` turns reuse on (worth it for https brokers probed every few seconds).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import logging
import re
from collections.abc import Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp
from yarl import URL

from kidp_ops.cluster.base import Cluster
from kidp_ops.health.credentials import SECRET_TTL_SECONDS, SecretCache, auth_headers
from kidp_ops.health.states import CannotProbe, ProbeFailure, ProbeOutcome, ProbeSuccess
from kidp_ops.model.resources import Broker

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 256
DEFAULT_SUSPECT_CONCURRENCY = 64
DEFAULT_SLOW_CONCURRENCY = 1024
SLOW_AFTER_SECONDS = 1.0
MAX_BODY_BYTES = 64 * 1024
USER_AGENT = "kidp-ops-prober/1"
_PATH = re.compile(r"/([^/\\\s][^\\\s]*)?")  # the CRD's pattern for healthCheck.endpoint
_REQUEST_HEADERS = {
    "User-Agent": USER_AGENT,
    "Accept": "application/json",
    "Accept-Encoding": "identity",
}


class Prober:
    """Probes brokers' health endpoints over one aiohttp session. Use `async with`."""

    def __init__(
        self,
        *,
        cluster: Cluster | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        suspect_concurrency: int = DEFAULT_SUSPECT_CONCURRENCY,
        slow_concurrency: int = DEFAULT_SLOW_CONCURRENCY,
        slow_after: float = SLOW_AFTER_SECONDS,
        secret_ttl: float = SECRET_TTL_SECONDS,
        keepalive_seconds: float | None = None,
    ) -> None:
        if min(concurrency, suspect_concurrency) < 1 or slow_concurrency < 0:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.slow_after = slow_after
        self._keepalive = keepalive_seconds
        self._secrets = SecretCache(cluster, ttl=secret_ttl)
        self._slots = asyncio.Semaphore(concurrency)
        self._suspect_slots = asyncio.Semaphore(suspect_concurrency)
        self._slow_slots = asyncio.Semaphore(slow_concurrency)
        self._connections = concurrency + suspect_concurrency + slow_concurrency
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._session is not None:
            return
        reuse = self._keepalive is not None and self._keepalive > 0
        connector = aiohttp.TCPConnector(
            limit=self._connections,
            limit_per_host=0,  # brokers sharing a host still share the one bound
            force_close=not reuse,
            keepalive_timeout=self._keepalive if reuse else None,
            ttl_dns_cache=10,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),  # asyncio.timeout covers the body too
            headers=_REQUEST_HEADERS,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            raise_for_status=False,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def sweep(self, brokers: Iterable[Broker]) -> dict[str, ProbeOutcome]:
        """Probe every broker once, `concurrency` at a time; outcomes by `namespace/name`."""
        pending = list(brokers)
        results: dict[str, ProbeOutcome] = {}
        queue = iter(pending)

        async def worker() -> None:
            for broker in queue:  # the workers share one iterator: each broker once
                results[broker.key] = await self.probe(broker)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.concurrency, len(pending))):
                group.create_task(worker())
        return results

    async def probe(self, broker: Broker, *, suspect: bool = False) -> ProbeOutcome:
        """One probe of `broker`. Never raises for a broker problem. `suspect`: its last
        probe failed, or it was never probed (the suspect lane)."""
        session = self._session
        if session is None:
            raise RuntimeError("Prober is not started: use `async with Prober(...)`")
        check = broker.spec.health_check
        target = probe_url(broker.spec.endpoint, check.endpoint)
        if isinstance(target, CannotProbe):
            return target
        headers = await auth_headers(broker, self._secrets)
        if isinstance(headers, CannotProbe):
            return headers
        lane = self._suspect_slots if suspect else self._slots
        return await self._in_lane(
            lane, lambda: self._get(session, target, headers, check.timeout_seconds)
        )

    async def _in_lane(
        self, lane: asyncio.Semaphore, request: Callable[[], Coroutine[Any, Any, ProbeOutcome]]
    ) -> ProbeOutcome:
        """Run `request()` holding a `lane` slot; after `slow_after` seconds move it to a slow
        slot when one is free, so the lane slot serves the next broker."""
        async with lane:
            running = asyncio.ensure_future(request())
            try:
                done, _ = await asyncio.wait({running}, timeout=self.slow_after)
                if done or self._slow_slots.locked():
                    return await running
                await self._slow_slots.acquire()
            except BaseException:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
                raise
        try:
            return await running
        finally:
            self._slow_slots.release()

    async def _get(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        headers: Mapping[str, str],
        timeout_seconds: float,
    ) -> ProbeOutcome:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(timeout_seconds):
                body = await _fetch(session, url, headers)
        except Exception as exc:  # every failure of the broker is an outcome
            return ProbeFailure(
                failure_reason(exc, timeout_seconds=timeout_seconds),
                latency_ms=_ms(loop.time() - started),
            )
        latency_ms = _ms(loop.time() - started)
        if isinstance(body, str):
            return ProbeFailure(body, latency_ms=latency_ms)
        return health_outcome(body, latency_ms=latency_ms)


async def _fetch(
    session: aiohttp.ClientSession, url: URL, headers: Mapping[str, str]
) -> bytes | str:
    """The body of a 2xx answer (at most 64 KiB), or the reason there is none."""
    async with session.get(url, headers=headers, allow_redirects=False) as response:
        if not 200 <= response.status < 300:
            return f"HTTP {response.status}"
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            return f"unsupported content-encoding {encoding[:40]!r}"
        length = response.content_length
        if length is not None and length > MAX_BODY_BYTES:
            return "body over 64 KiB"
        body = bytearray()
        while chunk := await response.content.read(MAX_BODY_BYTES + 1 - len(body)):
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return "body over 64 KiB"
        return bytes(body)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


# --- pure parts ----------------------------------------------------------------------


@functools.lru_cache(maxsize=16_384)
def probe_url(endpoint: str, path: str) -> URL | CannotProbe:
    """`endpoint` joined with the health `path`, or why that is not a safe target."""
    if not _PATH.fullmatch(path):
        return CannotProbe(f"invalid spec: healthCheck.endpoint {path[:80]!r} is not a path")
    try:
        base = URL(endpoint)
    except (ValueError, TypeError):
        return CannotProbe(f"invalid spec: endpoint {endpoint[:80]!r} is not a URL")
    if base.scheme not in ("http", "https") or not base.host:
        return CannotProbe(f"invalid spec: endpoint {endpoint[:80]!r} is not an http(s) URL")
    if base.raw_query_string or base.raw_fragment:
        return CannotProbe("invalid spec: endpoint must not have a query or fragment")
    try:
        url = URL(str(base).rstrip("/") + path)
    except ValueError:
        return CannotProbe(f"invalid spec: healthCheck.endpoint {path[:80]!r} is not a path")
    if (url.scheme, url.host, url.port, url.user) != (base.scheme, base.host, base.port, base.user):
        return CannotProbe("invalid spec: healthCheck.endpoint would switch host")
    return url


def health_outcome(body: bytes, *, latency_ms: float) -> ProbeSuccess | ProbeFailure:
    """Judge the body of a 2xx answer: a JSON object with `status: "healthy"`."""
    try:
        document: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ProbeFailure("invalid JSON", latency_ms=latency_ms)
    if not isinstance(document, dict):
        return ProbeFailure("invalid health body: not a JSON object", latency_ms=latency_ms)
    status = document.get("status")
    if status != "healthy":
        shown = "missing" if status is None and "status" not in document else _short(status)
        return ProbeFailure(f"status {shown}", latency_ms=latency_ms)
    version, active = document.get("version"), document.get("activeDeployments")
    problem = _body_problem(version, active)
    if problem:
        return ProbeFailure(f"invalid health body: {problem}", latency_ms=latency_ms)
    return ProbeSuccess(version=version, active_deployments=active, latency_ms=latency_ms)


def _body_problem(version: object, active: object) -> str | None:
    if version is not None and not isinstance(version, str):
        return "version is not a string"
    if active is not None and (not isinstance(active, int) or isinstance(active, bool)):
        return "activeDeployments is not an integer"
    if isinstance(active, int) and not 0 <= active < 2**31:
        return "activeDeployments is out of range"
    return None


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def failure_reason(exc: BaseException, *, timeout_seconds: float) -> str:
    """A short, stable reason for a failed request (what a person reads in the status)."""
    if isinstance(exc, TimeoutError):
        return f"timeout after {timeout_seconds:g}s"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate error: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS error"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "incomplete body"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"invalid HTTP response: {exc.message}"[:120]
    if isinstance(exc, OSError):
        return _os_reason(exc)
    log.warning("unexpected probe error", exc_info=exc)
    return f"probe error: {type(exc).__name__}"


def _os_reason(exc: OSError) -> str:
    code = exc.errno
    if code == errno.ECONNREFUSED:
        return "connection refused"
    if code == errno.ECONNRESET or isinstance(exc, ConnectionResetError):
        return "connection reset"
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "host unreachable"
    if isinstance(exc, aiohttp.ClientConnectorError):
        inner = exc.os_error
        return f"cannot connect: {inner.strerror or inner}"[:120]
    return f"connection error: {exc.strerror or exc}"[:120]
