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

    return await EmbeddedCluster.open(target.state)


def target_options() -> argparse.ArgumentParser:
    """The options that choose a Target, as an argparse parent parser."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("cluster (default: the embedded store)")
    group.add_argument(
        "--state",
        metavar="DIR",
        default=os.environ.get("KIDP_STATE", ".kidp"),
        help="state directory of the embedded store (default: %(default)s)",
    )
    group.add_argument(
        "--kubeconfig", metavar="PATH", help="use a real cluster from this kubeconfig"
    )
    group.add_argument("--context", metavar="NAME", help="kubeconfig context to use")
    group.add_argument(
        "--in-cluster", action="store_true", help="use the pod's service account (inside a cluster)"
    )
    return parent


def target_from_args(args: argparse.Namespace) -> Target:
    """The Target the options of `target_options()` describe."""
    return Target(
        state=args.state,
        kubeconfig=args.kubeconfig,
        context=args.context,
        in_cluster=args.in_cluster,
    )
