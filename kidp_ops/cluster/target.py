"""Which cluster a command talks to, and opening its adapter: the one place that chooses
between the embedded store and a real cluster (the daemon, the commands, `kidp-ops dev` and
the reference broker's key registration all open their Cluster here).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kidp_ops.cluster.base import Cluster


@dataclass(frozen=True, slots=True)
class Target:
    """Which cluster a command talks to: the embedded store in `state`, or a kubeconfig."""

    state: str = ".kidp"
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    existing: bool = False  # the embedded store must exist already (get, delete, select)

    @property
    def is_kube(self) -> bool:
        return bool(self.kubeconfig or self.context or self.in_cluster)

    def describe(self) -> str:
        if self.in_cluster:
            return "the in-cluster API server"
        if self.is_kube:
            return f"the cluster of kubeconfig {self.kubeconfig or '~/.kube/config'}" + (
                f" (context {self.context})" if self.context else ""
            )
        return f"the embedded store in {self.state}/"


async def connect(target: Target) -> Cluster:
    """Open the target's Cluster adapter (importing the kubernetes client only when needed)."""
    if target.is_kube:
        # lazy: the kubernetes client costs ~340 ms to import; the embedded store needs none of it
        from kidp_ops.cluster.kube import KubeCluster

        return await KubeCluster.connect(
            kubeconfig=target.kubeconfig, context=target.context, in_cluster=target.in_cluster
        )
    # lazy: the reference broker imports this module and never opens a store unless asked
    from kidp_ops.cluster.embedded import EmbeddedCluster

    return await EmbeddedCluster.open(target.state, create=not target.existing)


def target_options() -> argparse.ArgumentParser:
    """The options that choose a Target, as an argparse parent parser. They may be given
    before the command too (`kidp-ops --state DIR get brokers`): nothing is set unless
    given (SUPPRESS), so a value after the command wins and defaults come from
    `target_from_args`."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("cluster (default: the embedded store)")
    group.add_argument(
        "--state",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"state directory of the embedded store (default: {default_state()}, or $KIDP_STATE)",
    )
    group.add_argument(
        "--kubeconfig",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="use a real cluster from this kubeconfig",
    )
    group.add_argument(
        "--context", metavar="NAME", default=argparse.SUPPRESS, help="kubeconfig context to use"
    )
    group.add_argument(
        "--in-cluster",
        action="store_true",
        default=argparse.SUPPRESS,
        help="use the pod's service account (inside a cluster)",
    )
    return parent


def default_state() -> str:
    return os.environ.get("KIDP_STATE") or ".kidp"


def target_from_args(args: argparse.Namespace, *, existing: bool = False) -> Target:
    """The Target the options of `target_options()` describe; `existing`: a command that
    only reads or deletes, which must not create a state directory."""
    return Target(
        state=getattr(args, "state", None) or default_state(),
        kubeconfig=getattr(args, "kubeconfig", None),
        context=getattr(args, "context", None),
        in_cluster=bool(getattr(args, "in_cluster", False)),
        existing=existing,
    )
