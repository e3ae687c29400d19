"""The reference broker: the v1 broker contract served by FastAPI over a simulation.

It provisions nothing real: deployments become Ready (or Failed, by the failure-rate
knob) after a delay, and the result is sent as a signed callback. Knobs make it behave
like a slow, full, flapping, hanging or broken broker, at start and at runtime.

- `knobs`, `config`: what can be tuned (standard library only, used by the CLI parser);
- `simulation`: deployments, counters, background timers and callbacks;
- `callbacks`: signed callback delivery with bounded retries;
- `app`: the FastAPI app (its /openapi.json is the contract's machine-readable form);
- `server`: `running_broker(config)` in-process, `serve(...)` for the command;
- `registration`: publish the callback key on the Broker object;
- `cli`: `kidp-ops broker serve` (also `python -m kidp_ops.simbroker serve`).

Importing this package imports none of them.
"""
