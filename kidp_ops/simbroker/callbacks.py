"""Signed callback delivery, broker -> manager (ARCHITECTURE.md §6).

`deliver` never raises (except cancellation): a receiver that is down, slow or
rejecting costs at most `attempts` tries with bounded backoff, logged once, and the
broker keeps serving. Each attempt is signed afresh, so its timestamp is current.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kidp_ops.brokerapi.models import CallbackPayload, rfc3339
from kidp_ops.brokerapi.signing import HEADER_PUBLIC_KEY, callback_headers, public_key_b64
from kidp_ops.clock import utc_now
from kidp_ops.simbroker.config import RetryPolicy, worth_retrying

log = logging.getLogger(__name__)

RECENT_DELIVERIES = 200
USER_AGENT = "kidp-ops-simbroker/1"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one callback: delivered or not, after how many attempts."""

    url: str
    deployment_id: str
    delivered: bool
    attempts: int
    last_status: int | None  # None: no HTTP answer
    error: str = ""


class CallbackSender:
    """Posts signed callbacks; owns one HTTP client. Close with `aclose()`."""

    def __init__(
        self,
        *,
        broker_name: str,
        private_key: Ed25519PrivateKey,
        policy: RetryPolicy | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.broker_name = broker_name
        self.policy = policy or RetryPolicy()
        self._key = private_key
        self._public_key = public_key_b64(private_key)
        self._now = now
        self._http = httpx.AsyncClient(timeout=self.policy.timeout, follow_redirects=False)
        self.recent: collections.deque[Delivery] = collections.deque(maxlen=RECENT_DELIVERIES)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def deliver(self, url: str, payload: CallbackPayload) -> Delivery:
        body = payload.to_json_bytes()
        status: int | None = None
        error = ""
        attempt = 0
        for attempt in range(1, self.policy.attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.policy.backoff(attempt))
            status, error = await self._attempt(url, body)
            if status is not None and 200 <= status < 300:
                break
            if not worth_retrying(status):
                break
        delivered = status is not None and 200 <= status < 300
        result = Delivery(url, payload.deployment_id, delivered, attempt, status, error)
        self.recent.append(result)
        if not delivered:
            log.warning(
                "callback for %s to %s not delivered after %d attempt(s): %s",
                payload.deployment_id,
                url,
                attempt,
                error,
            )
        return result

    async def _attempt(self, url: str, body: bytes) -> tuple[int | None, str]:
        """(status, error) of one signed POST; the response body is not read."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            **callback_headers(
                self._key, broker_name=self.broker_name, timestamp=rfc3339(self._now()), body=body
            ),
            # As the seed's brokers send it: its manager uses this key only while the
            # Broker has no status.callbackPublicKey. kidp-ops never trusts it.
            HEADER_PUBLIC_KEY: self._public_key,
        }
        try:
            async with self._http.stream("POST", url, content=body, headers=headers) as response:
                status = response.status_code
        except Exception as exc:  # a bad receiver must never crash the broker
            return None, f"{type(exc).__name__}: {exc}".rstrip(": ")
        return status, "" if 200 <= status < 300 else f"HTTP {status}"
