"""Broker callbacks: who may send them, and what they change (ARCHITECTURE.md §6).

A callback is trusted only when its Ed25519 signature over `timestamp + "." + raw body`
verifies with the sending Broker's key: `spec.callbackPublicKey` (pinned by its operator)
or else `status.callbackPublicKey` (registered by the broker), never a key sent with the
request (the seed's brokers send `X-KIDP-Public-Key`; it is ignored). The sender names
itself in `X-KIDP-Broker-Name` as `namespace/name`, or by its bare name as seed brokers
do, which must then name exactly one Broker. Its timestamp must be within +-5 minutes of
our clock. The Database is found through an index on `status.deploymentId` (not a list
scan) and must name the sender in `status.brokerRef`.

Replays. A callback may only move a Database forward: the time it was signed at (and a
digest of what was signed) is recorded on the Database (`status.lastCallback`) in the same
write that applies it, and any callback not newer than that is refused (409, nothing
changed), on whichever replica it arrives and however often the daemon restarted
(`reconcilers/outcomes.is_stale`). A memory of accepted signatures, keyed on the decoded
signature bytes (base64 has several spellings of one signature), refuses most replays
before any work; it is only a fast path.

`CallbackGate.check` is the whole decision about the request, without I/O;
`handle_callback` is the glue the daemon's HTTP handler calls: ask the gate, then hand an
accepted result to the DatabaseReconciler, which applies it (or refuses a stale one).

A callback can overtake the write of its own deploymentId (the broker may answer the
provision request and call back at almost the same moment). The gate then answers 503, so
the broker retries, when the Database the payload names is waiting for a deploymentId from
this very broker. A callback about a deployment whose Database was deleted since (its
deprovisioned callback arriving after a status poll confirmed it) is expected: 200, nothing
to do. A deploymentId nobody knows otherwise is a 404.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from kidp_ops import boundedjson
from kidp_ops.brokerapi.signing import (
    HEADER_BROKER_NAME,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    signed_message,
    verify,
)
from kidp_ops.cluster.base import ClusterError
from kidp_ops.kinds import object_key
from kidp_ops.model.resources import Broker
from kidp_ops.reconcilers.outcomes import Applied, CallbackStamp, DeploymentResult, from_callback
from kidp_ops.reconcilers.provisioning import broker_ref

CLOCK_SKEW = timedelta(minutes=5)
REPLAY_MEMORY = 100_000
FINISHED_MEMORY = 10_000
MAX_BODY = 256 * 1024
MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one callback: HTTP status, a reason, and what it is about when accepted."""

    status: int
    reason: str
    broker: str = ""
    database: str = ""
    deployment_id: str = ""
    result: DeploymentResult | None = None
    stamp: CallbackStamp | None = None
    signature: bytes = b""  # decoded, of an accepted callback (the replay memory's key)

    @property
    def accepted(self) -> bool:
        return self.status < 300


class DeploymentIndex:
    """deploymentId -> Database key, kept by the Database informer's events; and the
    deployments of Databases deleted lately (their late callbacks are expected)."""

    def __init__(self, *, finished_memory: int = FINISHED_MEMORY) -> None:
        self._by_deployment: dict[str, str] = {}
        self._by_database: dict[str, str] = {}
        self._finished: OrderedDict[str, str] = OrderedDict()  # deploymentId -> broker key
        self._finished_memory = finished_memory

    def handle(self, event_type: str, obj: Mapping[str, Any]) -> None:
        key = object_key(obj)
        old = self._by_database.pop(key, None)
        if old is not None:
            self._by_deployment.pop(old, None)
        deployment_id = (obj.get("status") or {}).get("deploymentId")
        if not deployment_id:
            return
        if event_type != "DELETED":
            self._by_deployment[deployment_id] = key
            self._by_database[key] = deployment_id
            return
        ref = broker_ref(obj)
        if ref is not None:
            self._finished[deployment_id] = ref.key
            while len(self._finished) > self._finished_memory:
                self._finished.popitem(last=False)

    def database_for(self, deployment_id: str) -> str | None:
        return self._by_deployment.get(deployment_id)

    def deployment_of(self, database: str) -> str | None:
        return self._by_database.get(database)

    def finished_by(self, deployment_id: str) -> str | None:
        """The broker key of a deployment whose Database was deleted lately, else None."""
        return self._finished.get(deployment_id)

    def __len__(self) -> int:
        return len(self._by_deployment)


class BrokerLookup(Protocol):
    def get(self, key: str) -> Broker | None: ...

    def named(self, name: str) -> list[Broker]: ...


def resolve_sender(brokers: BrokerLookup, name: str) -> Broker | str:
    """The Broker an `X-KIDP-Broker-Name` names, or why none: `namespace/name` names one; a
    bare name (as seed brokers send it) must name exactly one Broker in the registry."""
    if "/" in name:
        return brokers.get(name) or f"unknown broker {name}"
    found = brokers.named(name)
    if len(found) == 1:
        return found[0]
    if not found:
        return f"unknown broker {name}"
    where = ", ".join(b.key for b in found)
    return f"ambiguous broker name {name} ({where}); send namespace/name"


def public_key_of(broker: Broker) -> str:
    """The key callbacks from `broker` verify with: pinned in its spec, else registered in
    its status; "" when it has none yet."""
    return broker.spec.callback_public_key or broker.status.callback_public_key or ""


def _signature_bytes(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


class CallbackGate:
    """Verifies callbacks; remembers accepted signatures (the replay fast path)."""

    def __init__(
        self,
        *,
        brokers: BrokerLookup,
        broker_ref_of: Callable[[str], str | None],
        index: DeploymentIndex,
        memory: int = REPLAY_MEMORY,
    ) -> None:
        self._brokers = brokers
        self._broker_ref_of = broker_ref_of  # Database key -> "ns/name" of its brokerRef
        self._index = index
        self._seen: OrderedDict[bytes, datetime] = OrderedDict()
        self._memory = memory

    def check(self, headers: Mapping[str, str], body: bytes, *, now: datetime) -> Verdict:
        wanted = (HEADER_BROKER_NAME, HEADER_TIMESTAMP, HEADER_SIGNATURE)
        name, stamp, signature = (headers.get(header, "") for header in wanted)
        missing = [header for header in wanted if not headers.get(header)]
        if missing:
            return Verdict(400, f"missing header {', '.join(missing)}")
        if len(body) > MAX_BODY:
            return Verdict(413, f"body over {MAX_BODY // 1024} KiB")
        sender = resolve_sender(self._brokers, name)
        if isinstance(sender, str):
            return Verdict(401 if sender.startswith("ambiguous") else 403, sender)
        broker, key = sender.key, public_key_of(sender)
        if not key:  # known, but its key is not registered yet: worth a retry
            return Verdict(503, f"broker {broker} has no callbackPublicKey yet")
        when = _parse_stamp(stamp)
        if when is None:
            return Verdict(400, f"{HEADER_TIMESTAMP} is not RFC 3339", broker)
        if abs(now - when) > CLOCK_SKEW:
            return Verdict(401, f"timestamp outside +-5 minutes of {now:%H:%M:%SZ}", broker)
        raw = _signature_bytes(signature)
        if raw is None or not verify(key, stamp, body, signature):
            return Verdict(401, f"signature does not verify with broker {broker}'s key", broker)
        if raw in self._seen:
            return Verdict(409, "replayed callback (signature already accepted)", broker)
        digest = hashlib.sha256(signed_message(stamp, body)).hexdigest()  # what was signed
        verdict = self._payload(broker, body)
        if verdict.accepted and verdict.result is not None:
            self._remember(raw, when, now)
            return dataclasses.replace(
                verdict, stamp=CallbackStamp(stamp, when, digest), signature=raw
            )
        return verdict

    def forget(self, signature: bytes) -> None:
        """Un-remember an accepted callback that could not be applied, so that the
        broker's retry (which may carry the same signature) is not taken for a replay."""
        self._seen.pop(signature, None)

    def _payload(self, broker: str, body: bytes) -> Verdict:
        try:
            payload = boundedjson.loads(body, max_bytes=MAX_BODY, max_depth=MAX_DEPTH)
        except boundedjson.UntrustedJSON as exc:
            return Verdict(400, str(exc), broker)
        if not isinstance(payload, dict) or not isinstance(payload.get("deploymentId"), str):
            return Verdict(400, "body has no deploymentId", broker)
        deployment_id = payload["deploymentId"]
        database = self._index.database_for(deployment_id)
        if database is None:
            return self._unknown(broker, deployment_id, payload)
        if self._broker_ref_of(database) != broker:
            return Verdict(
                403, f"deployment {deployment_id} was not provisioned by broker {broker}", broker
            )
        return Verdict(202, "accepted", broker, database, deployment_id, from_callback(payload))

    def _unknown(self, broker: str, deployment_id: str, payload: Mapping[str, Any]) -> Verdict:
        if self._index.finished_by(deployment_id) == broker:
            return Verdict(200, "its Database is deleted already; nothing to do", broker)
        named = f"{payload.get('namespace')}/{payload.get('resourceName')}"
        if self._index.deployment_of(named) is None and self._broker_ref_of(named) == broker:
            return Verdict(503, "deployment not recorded yet; retry", broker)
        return Verdict(404, f"no Database has deployment {deployment_id}", broker)

    def _remember(self, signature: bytes, when: datetime, now: datetime) -> None:
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


# --- the glue an HTTP handler calls --------------------------------------------------------


class ResultWriter(Protocol):
    """What the callback glue needs from the DatabaseReconciler."""

    def current(self, key: str) -> Mapping[str, Any] | None: ...

    async def apply_callback(
        self, key: str, result: DeploymentResult, stamp: CallbackStamp
    ) -> Applied: ...


def callback_gate(
    *, brokers: BrokerLookup, databases: ResultWriter, index: DeploymentIndex
) -> CallbackGate:
    """A gate that trusts the keys of the registry's Brokers and the brokerRef of the
    Databases as the reconciler last wrote them (its own writes before the watch shows them)."""

    def broker_ref_of(key: str) -> str | None:
        obj = databases.current(key)
        ref = broker_ref(obj) if obj is not None else None
        return ref.key if ref is not None else None

    return CallbackGate(brokers=brokers, broker_ref_of=broker_ref_of, index=index)


async def handle_callback(
    gate: CallbackGate,
    databases: ResultWriter,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
) -> Verdict:
    """Check one callback and, when accepted, apply its result on the Database.

    The answer's status is what to send back: 2xx accepted; 409 a replay or an older
    callback (nothing changed); 503 (write failed, or the deployment not recorded yet)
    asks the broker to retry; other 4xx refuse for good.
    """
    verdict = gate.check(headers, body, now=now)
    if not verdict.accepted or verdict.result is None or verdict.stamp is None:
        return verdict
    try:
        applied = await databases.apply_callback(verdict.database, verdict.result, verdict.stamp)
    except ClusterError as exc:
        gate.forget(verdict.signature)
        return dataclasses.replace(verdict, status=503, reason=f"cannot write status: {exc}")
    if applied is Applied.STALE:
        return dataclasses.replace(
            verdict, status=409, reason="not newer than the last callback applied to it"
        )
    if applied is Applied.GONE:
        gate.forget(verdict.signature)
        return dataclasses.replace(verdict, status=404, reason=f"{verdict.database} is gone")
    return verdict
