"""Which Brokers the daemon trusts: those in its broker namespaces (a leaf, pure).

A Broker anywhere else is neither probed nor selected: a team that may create a Broker in
its own namespace must not receive other teams' provision requests, nor make the daemon
call addresses of its choosing. Such a Broker gets `Accepted=False`, reason
NamespaceNotTrusted (ARCHITECTURE.md §7; the security model is docs/security.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_BROKER_NAMESPACES = ("kidp-system",)
ACCEPTED = "Accepted"
NOT_TRUSTED = "NamespaceNotTrusted"


@dataclass(frozen=True, slots=True)
class BrokerTrust:
    """The namespaces whose Brokers are trusted; None trusts every one (offline tools)."""

    namespaces: frozenset[str] | None

    @classmethod
    def of(cls, namespaces: Iterable[str] | None) -> BrokerTrust:
        """Trust `namespaces`; None or nothing given: the default, kidp-system."""
        given = frozenset(namespaces or ())
        return cls(given or frozenset(DEFAULT_BROKER_NAMESPACES))

    @classmethod
    def everywhere(cls) -> BrokerTrust:
        return cls(None)

    def trusts(self, namespace: str | None) -> bool:
        return self.namespaces is None or (namespace or "default") in self.namespaces

    def describe(self) -> str:
        if self.namespaces is None:
            return "every namespace"
        return ", ".join(sorted(self.namespaces))

    def refusal(self, namespace: str) -> str:
        """Why a Broker in `namespace` is ignored, for its status and for people."""
        return (
            f"namespace {namespace} is not a broker namespace of this daemon "
            f"(--broker-namespace: {self.describe()}): this Broker is neither probed nor "
            "selected"
        )
