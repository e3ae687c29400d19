"""Broker health: the pure state machine (`states`) and the async prober (`probing`).

`kidp_ops.health.probing` imports aiohttp; import it where probes are made, so that code
which only folds outcomes into states (and the CLI) stays light.
"""

from kidp_ops.health.states import (
    CannotProbe,
    HealthState,
    ProbeFailure,
    ProbeOutcome,
    ProbeSuccess,
    advance,
    ready_condition,
    status_patch,
)

__all__ = [
    "CannotProbe",
    "HealthState",
    "ProbeFailure",
    "ProbeOutcome",
    "ProbeSuccess",
    "advance",
    "ready_condition",
    "status_patch",
]
