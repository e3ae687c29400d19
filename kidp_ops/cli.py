"""`kidp-ops`: parse arguments, call `kidp_ops.commands`. Nothing else lives here.

Only the standard library is imported at start-up, so `kidp-ops --help` stays fast;
each command imports what it needs.
"""

# size: every command's parser and dispatch in one place (cli only parses; the work is in commands)

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from kidp_ops.cluster.target import target_from_args, target_options
from kidp_ops.errors import ClusterError, NotConnected
from kidp_ops.kinds import kind_by_name
from kidp_ops.reporting import add_parser as add_history_parser
from kidp_ops.reporting import run as run_history
from kidp_ops.simbroker.cli import add_parser as add_broker_parser
from kidp_ops.simbroker.cli import run as run_broker
from kidp_ops.trust import DEFAULT_BROKER_NAMESPACES

DESCRIPTION = """\
kidp-ops runs the broker layer of an internal developer platform: Broker and Database
custom resources, health checks, selection and provisioning.

Every command works on the embedded store in --state (default .kidp/, or $KIDP_STATE),
or on a real cluster with --kubeconfig / --context / --in-cluster."""

EPILOG = """\
examples:
  kidp-ops validate samples/
  kidp-ops apply -f samples/dev/
  kidp-ops get brokers -o wide
  kidp-ops get databases -n team-payments -o yaml
  kidp-ops delete broker dev-onprem-local -n kidp-system
"""


def _kind_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "kind",
        metavar="TYPE",
        help="brokers (br), databases (db), secrets, leases, events, customresourcedefinitions",
    )


# size: flat argparse declarations, one statement per command and option
def build_parser() -> argparse.ArgumentParser:
    target = target_options()
    parser = argparse.ArgumentParser(
        prog="kidp-ops",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[target],  # also before the command: kidp-ops --state DIR get brokers
    )
    parser.add_argument("--version", action="version", version="kidp-ops 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = sub.add_parser(
        "validate",
        help="check manifests against the CRD schemas, offline",
        description="Check Broker and Database manifests (files or directories, multi-document "
        "YAML or JSON, - for stdin). Exit 0 when all are valid, 1 with one line per problem.",
    )
    validate.add_argument("paths", nargs="+", metavar="PATH")

    apply = sub.add_parser(
        "apply",
        parents=[target],
        help="create or update objects from manifests",
        description="Validate every document, then create or update each one. Nothing is "
        "written when any document is invalid.",
    )
    apply.add_argument(
        "-f",
        "--filename",
        dest="paths",
        action="append",
        required=True,
        metavar="PATH",
        help="file, directory or - (repeatable)",
    )

    get = sub.add_parser("get", parents=[target], help="list or show objects, like kubectl get")
    _kind_argument(get)
    get.add_argument("name", nargs="?", metavar="NAME")
    scope = get.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", metavar="NS", help="only this namespace")
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="every namespace (the default when -n is not given)",
    )
    get.add_argument("-o", "--output", choices=("table", "wide", "json", "yaml"), default="table")
    get.add_argument(
        "-l", "--selector", metavar="SELECTOR", help="label selector, e.g. -l tier=gold,env!=dev"
    )
    get.add_argument(
        "--field-selector",
        metavar="SELECTOR",
        help="field selector as kube-apiserver offers it, e.g. type=Warning for events",
    )
    get.add_argument(
        "--for",
        dest="for_object",
        metavar="KIND/NAME",
        help="events only: the Events of one object, e.g. get events --for db/orders -n team-a",
    )

    delete = sub.add_parser("delete", parents=[target], help="delete an object")
    _kind_argument(delete)
    delete.add_argument("name", metavar="NAME")
    delete.add_argument(
        "-n",
        "--namespace",
        metavar="NS",
        help="namespace (may be left out when the name is unique)",
    )

    _select_parser(sub, target)
    add_broker_parser(sub, target)

    _daemon_parser(sub, target)
    _serve_parser(sub, target)
    _tui_parser(sub, target)
    dev = sub.add_parser(
        "dev",
        parents=[target],
        help="the embedded default: everything on this machine, no cluster needed",
        description="Run kidp-ops on this machine with no cluster: the embedded store (in "
        "--state), the CRDs and dev samples, five reference brokers on 127.0.0.1:18081-18085 "
        "(one flaps, one fills up), the reconcilers, and Databases created over time, with a "
        "live view. Other terminals can use `kidp-ops get/apply/select` on the same --state.",
    )
    dev.add_argument(
        "--headless", action="store_true", help="no live view: log lines, then a summary"
    )
    dev.add_argument(
        "--duration",
        type=_positive_float,
        metavar="S",
        help="stop after S seconds (default: run until Ctrl-C)",
    )
    dev.add_argument(
        "--http-addr",
        type=_host_port,
        default=("127.0.0.1", 18080),
        metavar="HOST:PORT",
        help="metrics, health and callback server (default: 127.0.0.1:18080)",
    )
    dev.add_argument(
        "--create-every",
        type=_positive_float,
        default=4.0,
        metavar="S",
        help="create a Database every S seconds (default: %(default)s)",
    )
    _api_port_argument(dev)
    dev.add_argument(
        "--readonly", action="store_true", help="the dashboard offers no actions (cordon, ...)"
    )
    _history_argument(dev, default="the state directory")
    add_history_parser(sub, target)
    return parser


def _history_argument(parser: argparse.ArgumentParser, *, default: str) -> None:
    parser.add_argument(
        "--history",
        metavar="off|DIR",
        help="keep the history (probes, selections, Database lifecycle) in DIR/history.db, "
        f"or off (default: {default})",
    )


def _tui_parser(sub: Any, target: argparse.ArgumentParser) -> None:
    tui = sub.add_parser(
        "tui",
        parents=[target],
        help="the on-call dashboard (Textual): brokers, databases, decisions, live",
        description="The on-call dashboard against the embedded store in --state or a real "
        "cluster: live brokers and databases, describe, the selection simulator, and "
        "actions behind a confirmation. Read-only by default against a real cluster.",
    )
    tui.add_argument(
        "--readonly",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="offer no actions (default: read-only against a real cluster, not on --state)",
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT (for example 127.0.0.1:8080 or 0.0.0.0:8080)"
        )
    if host.startswith("[") and host.endswith("]"):  # an IPv6 address: [::1]:8080
        host = host[1:-1]
    return host or "0.0.0.0", int(port)


API_PORT = 18443  # kept equal to kidp_ops.cluster.serving.DEFAULT_PORT by a test


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0-65535; 0: any free port)")
    return int(text)


def _api_port_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-port",
        type=_port,
        default=API_PORT,
        metavar="PORT",
        help="serve the store as a Kubernetes API for kubectl on 127.0.0.1:PORT, with "
        "STATE/kubeconfig (default: %(default)s; 0: any free port)",
    )


def _serve_parser(sub: Any, target: argparse.ArgumentParser) -> None:
    serve = sub.add_parser(
        "serve",
        parents=[target],
        help="serve the embedded store as a Kubernetes API, for kubectl",
        description="Serve the embedded store in --state as a Kubernetes API on 127.0.0.1 "
        "(TLS with a CA of its own, a bearer token), write STATE/kubeconfig (context "
        "kidp-dev) and print the line that points kubectl at it. `kidp-ops dev` does the "
        "same; this runs nothing else.",
    )
    _api_port_argument(serve)


# size: flat argparse declarations, one per option
def _daemon_parser(sub: Any, target: argparse.ArgumentParser) -> None:
    daemon = sub.add_parser(
        "daemon",
        parents=[target],
        help="run the reconcilers (health checks, selection, provisioning) against a cluster",
        description="The headless reconcile daemon: health-checks every Broker, provisions "
        "and deprovisions Databases, serves /metrics, /healthz, /readyz and the signed "
        "broker callbacks on one HTTP port. Stops gracefully on SIGTERM or Ctrl-C.",
    )
    daemon.add_argument(
        "--http-addr",
        type=_host_port,
        default=("127.0.0.1", 8080),
        metavar="HOST:PORT",
        help="where to serve metrics, health and callbacks (default: 127.0.0.1:8080)",
    )
    daemon.add_argument(
        "--callback-url",
        metavar="URL",
        help="the URL brokers call back (default: this server's own /v1/callback)",
    )
    _broker_namespace_argument(
        daemon,
        "trust Brokers in namespace NS only (repeatable; default: kidp-system): Brokers "
        "elsewhere are neither probed nor selected and get the condition Accepted=False",
    )
    daemon.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reconcile only while holding the Lease kidp-system/kidp-ops-daemon, so two "
        "daemons on one cluster or state never both act (default: on)",
    )
    daemon.add_argument("--log-format", choices=("text", "json"), default="text")
    daemon.add_argument(
        "--lease-duration",
        type=_positive_float,
        default=15.0,
        metavar="S",
        help="how long a lease holder that stopped renewing keeps it before another "
        "daemon takes over; renewals are due within 2/3 of it (default: 15)",
    )
    _history_argument(daemon, default="the state directory, or off on a cluster")
    daemon.add_argument(
        "--poll-after",
        type=_positive_float,
        default=30.0,
        metavar="S",
        help="poll a broker's /v1/status when no callback came within S seconds (default: 30)",
    )


CLOUD_PROVIDERS = ("azure", "aws", "gcp", "on-prem")  # kept equal to the model's by a test

SELECT_EPILOG = """\
examples:
  kidp-ops select --resource-type Database --provider postgresql --cloud-provider aws --explain
  kidp-ops select --database orders-db -n team-payments --explain
  kidp-ops select -f fleet.yaml --now 2026-11-25T10:00:00Z --resource-type Database -o json

exit status: 0 a broker was selected, 1 none matches (the reasons are shown), 2 bad input.
"""


# size: flat argparse declarations, one per option
def _select_parser(sub: Any, target: argparse.ArgumentParser) -> None:
    select = sub.add_parser(
        "select",
        parents=[target],
        help="which broker would serve a request, and why (--explain)",
        description="Rank every broker for a request exactly as the reconciler would: "
        "the selected broker and its score, or the first reason each broker is rejected. "
        "Reads the brokers from the store or cluster, or offline from -f files (Broker "
        "manifests with status, e.g. saved with `kidp-ops get brokers -o yaml`).",
        epilog=SELECT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    asked = select.add_argument_group("the request (give --resource-type, or --database)")
    asked.add_argument("--resource-type", metavar="TYPE", help="e.g. Database")
    asked.add_argument("--provider", metavar="P", help="e.g. postgresql (default: any)")
    asked.add_argument(
        "--cloud-provider", choices=CLOUD_PROVIDERS, metavar="C", help="azure, aws, gcp, on-prem"
    )
    asked.add_argument("--region", metavar="R", help="e.g. us-west-2 (default: any)")
    asked.add_argument(
        "--database",
        metavar="NAME",
        help="use the criteria of this Database (its engine, provider and target)",
    )
    asked.add_argument("-n", "--namespace", metavar="NS", help="namespace of --database")
    select.add_argument(
        "-f",
        "--filename",
        dest="paths",
        action="append",
        default=[],
        metavar="PATH",
        help="offline: read Brokers (and Databases) from files instead of the cluster",
    )
    select.add_argument(
        "--now",
        metavar="RFC3339",
        help="evaluate heartbeat ages at this time (default: now), for repeatable answers",
    )
    select.add_argument(
        "--explain", action="store_true", help="show every broker with its score or rejection"
    )
    _broker_namespace_argument(
        select,
        "consider Brokers in namespace NS only, as a daemon started with the same flags "
        "would (repeatable; default: kidp-system, or every namespace with -f)",
    )
    select.add_argument("-o", "--output", choices=("table", "json"), default="table")
    select.set_defaults(usage_error=select.error)


def _kind(name: str) -> Any:
    return kind_by_name(name)


# size: one branch per command, each a call into commands
def _dispatch(args: argparse.Namespace) -> Callable[[], Coroutine[Any, Any, int]] | int:
    # lazy (start-up time): each command loads what it needs, --help loads none of it
    from kidp_ops import commands

    out, err = sys.stdout, sys.stderr
    if args.command == "validate":
        return commands.validate(args.paths, out=out, err=err)
    if args.command == "broker":
        return run_broker(args)
    target = target_from_args(args, existing=args.command in ("get", "delete", "select"))
    if args.command == "apply":
        return lambda: commands.apply(args.paths, target, out=out, err=err)
    if args.command == "get":
        request = commands.GetRequest(
            _kind(args.kind),
            args.name,
            namespace=args.namespace,
            label_selector=args.selector,
            field_selector=args.field_selector,
            for_object=args.for_object,
        )
        return lambda: commands.get(request, target, output=args.output, out=out, err=err)
    if args.command == "delete":
        return lambda: commands.delete(
            _kind(args.kind), args.name, target, namespace=args.namespace, out=out, err=err
        )
    if args.command == "select":
        return _select(args, target, args.usage_error)
    if args.command == "daemon":
        return _daemon(args, target)
    if args.command == "serve":
        return lambda: commands.serve(target, port=args.api_port, out=out, err=err)
    if args.command == "tui":
        return _frontend("tui", target, readonly=args.readonly)
    if args.command == "history":
        return run_history(args, target, out=out, err=err)
    from kidp_ops import devenv  # lazy: start-up time (the daemon, aiohttp, the store)
    from kidp_ops.history.store import history_dir  # lazy: start-up time (sqlite3)

    options = devenv.DevOptions(
        headless=args.headless,
        duration=args.duration,
        http_host=args.http_addr[0],
        http_port=args.http_addr[1],
        create_every=args.create_every,
        api_port=args.api_port,
        readonly=args.readonly,
        history=history_dir(args.history, default=target.state),
    )
    return lambda: devenv.run(target, options, out=out, err=err)


def _broker_namespace_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--broker-namespace",
        dest="broker_namespaces",
        action="append",
        type=_namespace,
        metavar="NS",
        help=help_text,
    )


def _namespace(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a namespace name (lower-case letters, digits and '-')"
        )
    return text


def _frontend(name: str, target: Any, *, readonly: bool | None) -> int:
    from kidp_ops import frontends  # lazy: start-up time (entry points, then the front-end)

    try:
        frontend = frontends.load(name)
    except frontends.FrontendMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return int(frontend.main(target, readonly=readonly))


def _daemon(args: argparse.Namespace, target: Any) -> Callable[[], Coroutine[Any, Any, int]]:
    from kidp_ops import daemon, logs  # lazy: start-up time
    from kidp_ops.history.store import history_dir  # lazy: start-up time (sqlite3)

    logs.configure(args.log_format)
    config = daemon.DaemonConfig(
        http_host=args.http_addr[0],
        http_port=args.http_addr[1],
        callback_url=args.callback_url,
        leader_elect=args.leader_elect,
        poll_after=args.poll_after,
        lease_duration=args.lease_duration,
        renew_deadline=args.lease_duration * 2 / 3,
        retry_period=args.lease_duration / 7.5,
        broker_namespaces=tuple(args.broker_namespaces or DEFAULT_BROKER_NAMESPACES),
    )
    history = history_dir(args.history, default=None if target.is_kube else target.state)
    return lambda: daemon.serve(target, config, err=sys.stderr, history=history)


def _select(
    args: argparse.Namespace, target: Any, usage_error: Callable[[str], Any]
) -> Callable[[], Coroutine[Any, Any, int]]:
    from kidp_ops import commands  # lazy: start-up time

    if bool(args.resource_type) == bool(args.database):
        usage_error("give exactly one of --resource-type or --database")
    if args.database and (args.provider or args.cloud_provider or args.region):
        usage_error("--provider, --cloud-provider and --region come from --database")
    request = commands.SelectRequest(
        resource_type=args.resource_type,
        provider=args.provider,
        cloud_provider=args.cloud_provider,
        region=args.region,
        database=args.database,
        namespace=args.namespace,
        files=tuple(args.paths),
        now=args.now,
        broker_namespaces=tuple(args.broker_namespaces or ()),
    )
    return lambda: commands.select(
        request, target, explain=args.explain, output=args.output, out=sys.stdout, err=sys.stderr
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        work = _dispatch(args)
        return work if isinstance(work, int) else asyncio.run(work())
    except NotConnected as exc:  # a problem here (state directory, kubeconfig), not a server's
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ClusterError as exc:
        prefix = "error" if exc.reason in ("Invalid", "Ambiguous") else "Error from server"
        print(f"{prefix} ({exc.reason}): {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
