"""Actions on the cluster, each behind a confirmation, none when read-only:

- cordon / uncordon a Broker: `spec.unschedulable` true / false (merge patch);
- probe now: the annotation `platform.company.com/probe-now: <RFC 3339 now>` on the Broker
  (the BrokerReconciler probes at once when it changes);
- delete a Database (its broker deprovisions it; the finalizer holds it until confirmed).

The writes run in workers; their outcome is a notification (one line).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kidp_ops.cluster.base import BROKERS, DATABASES, ClusterError
from kidp_ops.times import format_time
from tui.screens.confirm_screen import ConfirmScreen
from tui.views.base import meta

if TYPE_CHECKING:
    from tui.app import DashboardApp

PROBE_NOW = "platform.company.com/probe-now"


@dataclass(frozen=True, slots=True)
class Write:
    """One action as the cluster sees it."""

    verb: str  # "patch" or "delete"
    kind: Any
    name: str
    namespace: str
    patch: Mapping[str, Any] | None = None


ON = {"cordon": "brokers", "uncordon": "brokers", "probe": "brokers", "delete": "databases"}
QUESTIONS = {
    "cordon": "Cordon broker {key}? No new Database will be placed on it.",
    "uncordon": "Uncordon broker {key}? It may be selected again.",
    "probe": "Probe broker {key} now?",
    "delete": "Delete Database {key}? Its broker deprovisions it.",
}
DONE = {
    "cordon": "cordoned {key}",
    "uncordon": "uncordoned {key}",
    "probe": "asked for a probe of {key}",
    "delete": "deleting {key}",
}


def write_for(action: str, obj: Mapping[str, Any], *, now: str) -> Write:
    m = meta(obj)
    name, namespace = str(m.get("name")), str(m.get("namespace"))
    if action in ("cordon", "uncordon"):
        patch = {"spec": {"unschedulable": action == "cordon"}}
        return Write("patch", BROKERS, name, namespace, patch)
    if action == "probe":
        return Write(
            "patch", BROKERS, name, namespace, {"metadata": {"annotations": {PROBE_NOW: now}}}
        )
    return Write("delete", DATABASES, name, namespace)


class Actions:
    def __init__(self, app: DashboardApp) -> None:
        self.app = app

    def confirm(self, action: str, kind: str, obj: Mapping[str, Any]) -> None:
        key = f"{meta(obj).get('namespace')}/{meta(obj).get('name')}"
        if ON[action] != kind:
            self.app.notify(f"{action} works on {ON[action]}, not {kind}", severity="warning")
            return
        if self.app.feed.readonly or self.app.feed.cluster is None:
            self.app.notify(f"read-only: cannot {action} {key}", severity="warning")
            return
        write = write_for(action, obj, now=format_time(self.app.clock()))

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.run_worker(
                    self.perform(write, DONE[action].format(key=key)), group="actions"
                )

        self.app.push_screen(ConfirmScreen(QUESTIONS[action].format(key=key)), answered)

    async def perform(self, write: Write, done: str) -> None:
        cluster = self.app.feed.cluster
        assert cluster is not None
        try:
            if write.verb == "delete":
                await cluster.delete(write.kind, write.name, namespace=write.namespace)
            else:
                await cluster.patch(
                    write.kind, write.name, dict(write.patch or {}), namespace=write.namespace
                )
        except ClusterError as exc:
            self.app.notify(f"{done.split(maxsplit=1)[0]} failed: {exc}", severity="error")
            return
        self.app.notify(done)
