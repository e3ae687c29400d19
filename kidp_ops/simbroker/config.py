"""How one reference broker is started: `BrokerConfig`, and the callback retry policy.

Standard library only (the CLI builds a config before importing FastAPI).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kidp_ops.simbroker.knobs import Knobs

DEFAULT_NAME = "kidp-system/simbroker"
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_DNS_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"


def parse_callback_name(text: str) -> str:
    """What `X-KIDP-Broker-Name` carries: `NAMESPACE/NAME` or a bare `NAME` (as the seed's
    brokers send it); ValueError if it is not made of Kubernetes names."""
    if "/" in text:
        return "/".join(parse_broker_ref(text))
    name = text.strip()
    if not (re.fullmatch(_DNS_SUBDOMAIN, name) and len(name) <= 253):
        raise ValueError(
            f"expected NAME or NAMESPACE/NAME with lower-case Kubernetes names, got {text!r}"
        )
    return name


def parse_broker_ref(text: str) -> tuple[str, str]:
    """`NAMESPACE/NAME` -> (namespace, name), both valid Kubernetes names; ValueError if not."""
    namespace, slash, name = text.strip().partition("/")
    if (
        not slash
        or not re.fullmatch(_DNS_LABEL, namespace)
        or not (re.fullmatch(_DNS_SUBDOMAIN, name) and len(name) <= 253)
    ):
        raise ValueError(f"expected NAMESPACE/NAME with lower-case Kubernetes names, got {text!r}")
    return namespace, name


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Callback delivery: `attempts` tries, exponential backoff between them, bounded."""

    attempts: int = 4
    first_backoff: float = 0.2
    factor: float = 2.0
    max_backoff: float = 2.0
    timeout: float = 5.0  # per attempt

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (2, 3, ...)."""
        return min(self.first_backoff * self.factor ** max(attempt - 2, 0), self.max_backoff)


def worth_retrying(status: int | None) -> bool:
    """Retry after no answer (None), a timeout-ish status or a server error; not after a
    rejection such as 400/401/403/404 (the receiver will not change its mind)."""
    return status is None or status in (408, 425, 429) or status >= 500


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Everything `running_broker` needs. Port 0 picks a free port."""

    name: str = DEFAULT_NAME  # namespace/name: its deploymentIds are derived from it
    callback_name: str | None = None  # X-KIDP-Broker-Name (bare or namespace/name); None: name
    host: str = "127.0.0.1"
    port: int = 0
    knobs: Knobs = field(default_factory=Knobs)
    seed: int | None = None  # seeds the failure-rate RNG; None: unpredictable
    key_file: str | None = None  # Ed25519 key (created, mode 0600, if missing); None: fresh key
    api_key: str | None = None  # when set, requests need X-API-Key: <api_key>
    token: str | None = None  # when set, requests need Authorization: Bearer <token>
    callback_retry: RetryPolicy = field(default_factory=RetryPolicy)

    def auth_description(self) -> str:
        kinds = [k for k, v in (("api-key", self.api_key), ("bearer token", self.token)) if v]
        return " or ".join(kinds) if kinds else "none"

    def __repr__(self) -> str:  # never print the secrets
        return (
            f"BrokerConfig(name={self.name!r}, host={self.host!r}, port={self.port}, "
            f"knobs={self.knobs!r}, seed={self.seed!r}, auth={self.auth_description()!r})"
        )
