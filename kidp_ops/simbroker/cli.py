"""`kidp-ops broker serve`: parse the reference broker's options, then call `server.serve`.

Standard library only at import time: `kidp_ops.cli` builds this parser on every start.
Bad knob values are argparse errors (exit 2); FastAPI and uvicorn load only in `run`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kidp_ops.cluster.target import target_from_args, target_options
from kidp_ops.simbroker.config import (
    DEFAULT_NAME,
    BrokerConfig,
    parse_broker_ref,
    parse_callback_name,
)
from kidp_ops.simbroker.knobs import (
    DEFAULT_DELAY_SECONDS,
    DEFAULT_VERSION,
    HEALTH_MODE_HELP,
    Knobs,
    parse_capacity,
    parse_delay,
    parse_failure_rate,
    parse_health_mode,
    parse_version,
)

API_KEY_ENV = "KIDP_BROKER_API_KEY"
TOKEN_ENV = "KIDP_BROKER_TOKEN"
DEFAULT_REGISTER_WAIT = 30.0

SERVE_DESCRIPTION = """\
Serve the broker HTTP contract v1 (/health, /v1/provision, /v1/deprovision, /v1/status,
/v1/resources; the OpenAPI document at /openapi.json) over a simulation: deployments
become Ready, or Failed by the failure rate, after the delay, and the result is POSTed
to the request's callbackUrl, signed with the broker's Ed25519 key. Stop with Ctrl-C or
SIGTERM."""


def _serve_epilog() -> str:
    modes = "\n".join(f"  {mode:<9} {what}" for mode, what in HEALTH_MODE_HELP.items())
    return f"""\
health modes (--health-mode):
{modes}

runtime knobs:
  GET/PATCH /admin/knobs with JSON such as
  {{"delay": 0.5, "failureRate": 0.2, "deprovisionFailureRate": 0.5, "healthMode": "flap:10",
   "capacity": 3, "version": "2.0"}}
  changes the simulation while it runs (422 on a bad value).

credentials:
  With --api-key-file (or ${API_KEY_ENV}) and/or --token-file (or ${TOKEN_ENV}),
  /health, /v1/* and /admin/* need X-API-Key or Authorization: Bearer (401 otherwise);
  /readiness and /openapi.json stay open.

examples:
  kidp-ops broker serve --port 18081
  kidp-ops broker serve --port 18083 --register kidp-system/dev-aws-us-west-2 \\
      --api-key-file key.txt --delay 5 --failure-rate 0.1 --seed 7
  kidp-ops broker serve --port 0 --health-mode flap:30
"""


def _checked(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """An argparse type that keeps the parse function's message (argparse drops it)."""

    def check(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    check.__name__ = name
    return check


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"port must be 0..65535 (0: any free port), got {text!r}")
    return int(text)


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"seed must be a whole number, got {text!r}") from None


def _ref_text(text: str) -> str:
    namespace, name = parse_broker_ref(text)
    return f"{namespace}/{name}"


# size: flat argparse declarations, one per knob
def _add_serve_options(serve: argparse.ArgumentParser) -> None:
    where = serve.add_argument_group("listening and identity")
    where.add_argument(
        "--port",
        type=_checked(_port, "port"),
        required=True,
        help="TCP port to listen on; 0 picks a free one (printed at start)",
    )
    where.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    where.add_argument(
        "--name",
        metavar="NS/NAME",
        type=_checked(_ref_text, "name"),
        help="the broker's namespace/name, sent as X-KIDP-Broker-Name on "
        f"callbacks (default: the --register value, else {DEFAULT_NAME})",
    )
    where.add_argument(
        "--callback-name",
        metavar="NAME",
        type=_checked(parse_callback_name, "name"),
        help="the name sent as X-KIDP-Broker-Name: namespace/name, or a bare name as the "
        "seed's brokers send it (default: --name)",
    )
    where.add_argument(
        "--register",
        metavar="NS/NAME",
        type=_checked(parse_broker_ref, "broker"),
        help="write the callback public key to this Broker's "
        "status.callbackPublicKey, in the cluster chosen by the options above",
    )
    where.add_argument(
        "--register-wait",
        metavar="SECONDS",
        default=DEFAULT_REGISTER_WAIT,
        type=_checked(parse_delay, "seconds"),
        help="how long --register waits for the Broker to be applied before "
        "giving up with exit 1 (default: %(default)g)",
    )
    where.add_argument(
        "--key-file",
        metavar="PATH",
        help="Ed25519 private key (PEM, or base64 of the raw 32 bytes); created "
        "with mode 0600 when missing (default: a new key on every start)",
    )

    auth = serve.add_argument_group("credentials (default: none required)")
    auth.add_argument(
        "--api-key-file",
        metavar="PATH",
        help=f"require X-API-Key equal to this file's content (or ${API_KEY_ENV})",
    )
    auth.add_argument(
        "--token-file",
        metavar="PATH",
        help=f"require Authorization: Bearer with this file's content (or ${TOKEN_ENV})",
    )

    sim = serve.add_argument_group("simulation knobs (also at runtime: PATCH /admin/knobs)")
    sim.add_argument(
        "--delay",
        metavar="SECONDS",
        default=DEFAULT_DELAY_SECONDS,
        type=_checked(parse_delay, "seconds"),
        help="time a provision or deprovision takes (default: %(default)g)",
    )
    sim.add_argument(
        "--failure-rate",
        metavar="R",
        default=0.0,
        type=_checked(parse_failure_rate, "rate"),
        help="probability 0..1 that a provisioning ends Failed (default: %(default)g)",
    )
    sim.add_argument(
        "--deprovision-failure-rate",
        metavar="R",
        default=0.0,
        type=_checked(parse_failure_rate, "rate"),
        help="probability 0..1 that a deprovisioning fails (the deployment stays; the "
        "callback says failed) (default: %(default)g)",
    )
    sim.add_argument(
        "--health-mode",
        metavar="MODE",
        default="healthy",
        type=_checked(parse_health_mode, "mode"),
        help="healthy | degraded | fail | hang | garbage | huge | flap:N "
        "(default: %(default)s; see below)",
    )
    sim.add_argument(
        "--capacity",
        metavar="N",
        default=0,
        type=_checked(parse_capacity, "capacity"),
        help="most active deployments; more provisions get 429 (default: %(default)s = unlimited)",
    )
    sim.add_argument(
        "--version",
        dest="broker_version",
        metavar="V",
        default=DEFAULT_VERSION,
        type=_checked(parse_version, "version"),
        help="version reported by /health (default: %(default)s)",
    )
    sim.add_argument(
        "--seed",
        metavar="N",
        type=_checked(_seed, "seed"),
        help="seed for the failure-rate random numbers, for repeatable runs (default: unseeded)",
    )


def add_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    target_parent: argparse.ArgumentParser,
) -> None:
    """Add `broker serve` to `subparsers`; `target_parent` brings --state/--kubeconfig/..."""
    broker = subparsers.add_parser(
        "broker",
        help="run the reference broker (a simulated cloud broker)",
        description="The reference broker: the broker HTTP contract over a simulation.",
    )
    commands = broker.add_subparsers(dest="broker_command", metavar="{serve}", required=True)
    serve = commands.add_parser(
        "serve",
        parents=[target_parent],
        help="serve the broker API until Ctrl-C / SIGTERM",
        description=SERVE_DESCRIPTION,
        epilog=_serve_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_serve_options(serve)


class _Problem(Exception):
    """Bad input found after parsing (an unreadable credentials file): one line, exit 1."""


def _secret(path: str | None, env: str, what: str) -> str | None:
    if not path:
        return os.environ.get(env) or None
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise _Problem(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise _Problem(f"{what} file {path} is not text") from None
    if not value:
        raise _Problem(f"{what} file {path} is empty")
    return value


def run(args: argparse.Namespace) -> int:
    """Carry out `kidp-ops broker serve` (the only broker command)."""
    register: tuple[str, str] | None = args.register
    name = args.name or ("/".join(register) if register else DEFAULT_NAME)
    try:
        config = BrokerConfig(
            name=name,
            callback_name=args.callback_name,
            host=args.host,
            port=args.port,
            knobs=Knobs(
                delay=args.delay,
                failure_rate=args.failure_rate,
                deprovision_failure_rate=args.deprovision_failure_rate,
                health_mode=args.health_mode,
                capacity=args.capacity,
                version=args.broker_version,
            ),
            seed=args.seed,
            key_file=args.key_file,
            api_key=_secret(args.api_key_file, API_KEY_ENV, "API key"),
            token=_secret(args.token_file, TOKEN_ENV, "token"),
        )
    except _Problem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # lazy: FastAPI and uvicorn load only when a broker is really served (--help stays fast)
    from kidp_ops.simbroker.server import serve

    work = serve(
        config,
        out=sys.stdout,
        err=sys.stderr,
        register=register,
        target=target_from_args(args),
        register_wait=args.register_wait,
    )
    return asyncio.run(work)


def main(argv: list[str] | None = None) -> int:
    """`python -m kidp_ops.simbroker serve ...`: the broker alone, without the manager's CLI."""
    parser = argparse.ArgumentParser(prog="python -m kidp_ops.simbroker")
    add_parser(parser.add_subparsers(dest="command", required=True), target_options())
    args = parser.parse_args(["broker", *(sys.argv[1:] if argv is None else argv)])
    return run(args)
