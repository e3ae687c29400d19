"""Broker callbacks: who may send them, and what they change (ARCHITECTURE.md §6).

A callback is trusted only when its Ed25519 signature over `timestamp + "." + raw body`
verifies with the key in the *sending Broker's* `status.callbackPublicKey` (never a key sent
with the request), its timestamp is within +-5 minutes of our clock, and the same
signature was not seen before (replay). Then the Database is found through an index on
`status.deploymentId` (not a list scan) and must name the sender in `status.brokerRef`.

`CallbackGate.check` is the whole decision, without I/O; `handle_callback` is the glue an
HTTP handler calls (the daemon's and the tests'): ask the gate, then hand an accepted result
to the DatabaseReconciler, which writes it.

A callback can overtake the write of its own deploymentId (the broker may answer the
provision request and call back at almost the same moment). The gate then answers 503, so
the broker retries, when the Database the payload names is waiting for a deploymentId
from this very broker; a deploymentId nobody knows otherwise is a 404.
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from kidp_ops.brokerapi.signing import (
    HEADER_BROKER_NAME,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    verify,
)
from kidp_ops.cluster.base import ClusterError, NotFound
from kidp_ops.reconcilers.provisioning import DeploymentResult, broker_ref

if TYPE_CHECKING:
    from kidp_ops.model.resources import Broker

CLOCK_SKEW = timedelta(minutes=5)
REPLAY_MEMORY = 100_000
MAX_BODY = 256 * 1024


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one callback: HTTP status, a reason, and what it is about when accepted."""

    status: int
    reason: str
    broker: str = ""
    database: str = ""
    deployment_id: str = ""
    result: DeploymentResult | None = None
    signature: str = ""  # of an accepted callback, remembered against replays

    @property
    def accepted(self) -> bool:
        return self.status < 300


class DeploymentIndex:
    """deploymentId -> Database key, kept by the Database informer's events."""

    def __init__(self) -> None:
        self._by_deployment: dict[str, str] = {}
        self._by_database: dict[str, str] = {}

    def handle(self, event_type: str, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        old = self._by_database.pop(key, None)
        if old is not None:
            self._by_deployment.pop(old, None)
        deployment_id = (obj.get("status") or {}).get("deploymentId")
        if event_type != "DELETED" and deployment_id:
            self._by_deployment[deployment_id] = key
            self._by_database[key] = deployment_id

    def database_for(self, deployment_id: str) -> str | None:
        return self._by_deployment.get(deployment_id)

    def deployment_of(self, database: str) -> str | None:
        return self._by_database.get(database)

    def __len__(self) -> int:
        return len(self._by_deployment)


class CallbackGate:
    """Verifies callbacks; remembers accepted signatures for replay detection."""

    def __init__(
        self,
        *,
        public_key_for: Callable[[str], str | None],
        broker_ref_of: Callable[[str], str | None],
        index: DeploymentIndex,
        memory: int = REPLAY_MEMORY,
    ) -> None:
        # "ns/name" -> callbackPublicKey; "" for a known broker without one; None: unknown
        self._public_key_for = public_key_for
        self._broker_ref_of = broker_ref_of  # Database key -> "ns/name" of its brokerRef
        self._index = index
        self._seen: OrderedDict[str, datetime] = OrderedDict()
        self._memory = memory

    def check(self, headers: Mapping[str, str], body: bytes, *, now: datetime) -> Verdict:
        broker = headers.get(HEADER_BROKER_NAME, "")
        stamp = headers.get(HEADER_TIMESTAMP, "")
        signature = headers.get(HEADER_SIGNATURE, "")
        if not broker or not stamp or not signature:
            missing = [
                name
                for name, value in (
                    (HEADER_BROKER_NAME, broker),
                    (HEADER_TIMESTAMP, stamp),
                    (HEADER_SIGNATURE, signature),
                )
                if not value
            ]
            return Verdict(400, f"missing header {', '.join(missing)}")
        if len(body) > MAX_BODY:
            return Verdict(413, f"body over {MAX_BODY // 1024} KiB", broker)
        key = self._public_key_for(broker)
        if key is None:
            return Verdict(403, f"unknown broker {broker}")
        if not key:  # known, but its key is not registered yet: worth a retry
            return Verdict(503, f"broker {broker} has no callbackPublicKey in its status yet")
        when = _parse_stamp(stamp)
        if when is None:
            return Verdict(400, f"{HEADER_TIMESTAMP} {stamp!r} is not RFC 3339", broker)
        if abs(now - when) > CLOCK_SKEW:
            return Verdict(401, f"timestamp {stamp} outside +-5 minutes of {now:%H:%M:%SZ}", broker)
        if not verify(key, stamp, body, signature):
            return Verdict(401, f"signature does not verify with broker {broker}'s key", broker)
        if signature in self._seen:
            return Verdict(409, "replayed callback (signature already seen)", broker)
        verdict = self._payload(broker, body)
        if verdict.accepted:
            self._remember(signature, when, now)
            return dataclasses.replace(verdict, signature=signature)
        return verdict

    def forget(self, signature: str) -> None:
        """Un-remember an accepted callback that could not be applied, so that the
        broker's retry (which may carry the same signature) is not taken for a replay."""
        self._seen.pop(signature, None)

    def _payload(self, broker: str, body: bytes) -> Verdict:
        try:
            payload = json.loads(body)
        except ValueError:
            return Verdict(400, "body is not JSON", broker)
        if not isinstance(payload, dict) or not isinstance(payload.get("deploymentId"), str):
            return Verdict(400, "body has no deploymentId", broker)
        deployment_id = payload["deploymentId"]
        database = self._index.database_for(deployment_id)
        if database is None:
            named = f"{payload.get('namespace')}/{payload.get('resourceName')}"
            if self._index.deployment_of(named) is None and self._broker_ref_of(named) == broker:
                return Verdict(
                    503, f"deployment {deployment_id} of {named} not recorded yet; retry", broker
                )
            return Verdict(404, f"no Database has deployment {deployment_id}", broker)
        if self._broker_ref_of(database) != broker:
            return Verdict(
                403, f"deployment {deployment_id} was not provisioned by broker {broker}", broker
            )
        result = result_of(payload)
        return Verdict(202, "accepted", broker, database, deployment_id, result)

    def _remember(self, signature: str, when: datetime, now: datetime) -> None:
        self._seen[signature] = when
        horizon = now - 2 * CLOCK_SKEW
        while self._seen and (
            len(self._seen) > self._memory or next(iter(self._seen.values())) < horizon
        ):
            self._seen.popitem(last=False)


def _parse_stamp(stamp: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def result_of(payload: Mapping[str, Any]) -> DeploymentResult | None:
    """What a callback says about provisioning; None for deprovisioning news."""
    phase = str(payload.get("phase", ""))
    if phase in ("Deprovisioning", "Deprovisioned"):
        return None
    status = payload.get("status")
    port = payload.get("port")
    message = str(payload.get("message") or "")
    deployment_id = str(payload.get("deploymentId") or "") or None
    if status == "success":
        return DeploymentResult(
            "Ready",
            message,
            payload.get("endpoint") or None,
            port if isinstance(port, int) and not isinstance(port, bool) else None,
            payload.get("connectionSecret") or None,
            deployment_id=deployment_id,
        )
    if status == "failed":
        return DeploymentResult(
            "Failed", str(payload.get("error") or message), deployment_id=deployment_id
        )
    return DeploymentResult("Provisioning", message, deployment_id=deployment_id)


# --- the glue an HTTP handler calls --------------------------------------------------------


class ResultWriter(Protocol):
    """What the callback glue needs from the DatabaseReconciler."""

    def current(self, key: str) -> Mapping[str, Any] | None: ...

    async def apply_result(
        self, obj: Mapping[str, Any], result: DeploymentResult | None
    ) -> None: ...


class BrokerLookup(Protocol):
    def get(self, key: str) -> Broker | None: ...


def callback_gate(
    *, brokers: BrokerLookup, databases: ResultWriter, index: DeploymentIndex
) -> CallbackGate:
    """A gate that trusts the keys in the registry's Brokers and the brokerRef of the
    Databases as the reconciler last wrote them (its own writes before the watch shows them)."""

    def public_key_for(key: str) -> str | None:
        broker = brokers.get(key)
        if broker is None:
            return None
        return broker.status.callback_public_key or ""  # "": known, no key yet

    def broker_ref_of(key: str) -> str | None:
        obj = databases.current(key)
        ref = broker_ref(obj) if obj is not None else None
        return ref.key if ref is not None else None

    return CallbackGate(public_key_for=public_key_for, broker_ref_of=broker_ref_of, index=index)


async def handle_callback(
    gate: CallbackGate,
    databases: ResultWriter,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
) -> Verdict:
    """Check one callback and, when accepted, write its result on the Database.

    The answer's status is what to send back: 2xx accepted; 503 (write failed, or the
    deployment not recorded yet) asks the broker to retry; other 4xx refuse for good.
    """
    verdict = gate.check(headers, body, now=now)
    if not verdict.accepted or verdict.result is None:
        return verdict
    obj = databases.current(verdict.database)
    if obj is None:
        gate.forget(verdict.signature)
        return dataclasses.replace(verdict, status=404, reason=f"{verdict.database} is gone")
    try:
        await databases.apply_result(obj, verdict.result)
    except NotFound:
        gate.forget(verdict.signature)
        return dataclasses.replace(verdict, status=404, reason=f"{verdict.database} is gone")
    except ClusterError as exc:
        gate.forget(verdict.signature)
        return dataclasses.replace(verdict, status=503, reason=f"cannot write status: {exc}")
    return verdict
