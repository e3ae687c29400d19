"""kubectl against `kidp-ops dev`, as the README shows it: `export KUBECONFIG=...`, then
`kubectl get brokers -o wide`, `kubectl describe db`, `kubectl apply`, `kubectl delete`,
with the daemon and the reference brokers of dev doing their work behind the API.

A `kubectl delete` of a Database must reach the broker: kubectl waits for the object to
be gone, which happens only once the broker confirmed the deployment gone (its
deprovisioned callback, or a poll); by then its inventory no longer holds the deployment.
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.support.kubectl import KUBECTL, Kubectl, client_minor
from tests.support.waiting import collect_lines, until_sync
from tests.test_cli import kidp
from tests.test_dev import ports_free, start_dev

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed"),
]
TEAM = "team-payments"
LEDGER_BROKER = "http://127.0.0.1:18081"  # dev-azure-eastus serves payments-ledger


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    if not ports_free():
        pytest.fail("ports 18081-18085 are taken: is a `kidp-ops dev` running on this machine?")
    process = start_dev(tmp_path / "state", "--create-every", "3600")
    try:
        assert process.stdout is not None
        lines, _ = collect_lines(process.stdout)

        def printed() -> bool:
            return any("export KUBECONFIG" in x for x in lines) or process.poll() is not None

        until_sync(printed, 60, 0.05, what="kidp-ops dev printing the kubeconfig line")
        assert any("export KUBECONFIG" in x for x in lines), lines
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(20)


def eventually(check: Callable[[], Any], what: str, timeout: float = 45.0) -> Any:
    return until_sync(check, timeout, 0.2, what=what)


def inventory() -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{LEDGER_BROKER}/v1/resources?namespace={TEAM}") as answer:
        resources: list[dict[str, Any]] = json.load(answer)["resources"]
        return resources


def test_kubectl_against_kidp_ops_dev(
    dev: tuple[subprocess.Popen[str], list[str]], tmp_path: Path
) -> None:
    process, lines = dev
    state = tmp_path / "state"
    assert f"export KUBECONFIG={state / 'kubeconfig'}" in lines
    assert KUBECTL is not None
    kubectl = Kubectl(KUBECTL, state / "kubeconfig", tmp_path / "cache", client_minor(KUBECTL))

    def brokers_ready() -> bool:
        table = kubectl.ok("get", "brokers", "-o", "wide")  # context namespace: kidp-system
        rows = [line.split() for line in table.splitlines()[1:] if line.startswith("dev-")]
        return len(rows) == 5 and sum(row[3] == "Ready" for row in rows) >= 4

    eventually(brokers_ready, "kubectl get brokers -o wide: the dev brokers Ready")

    def ledger_ready() -> str:
        jsonpath = "{.status.phase} {.status.deploymentId}"
        shown = kubectl.ok("get", "db", "payments-ledger", "-n", TEAM, "-o", f"jsonpath={jsonpath}")
        return shown if shown.startswith("Ready ") else ""

    deployment = eventually(ledger_ready, "payments-ledger Ready").split()[1]
    described = kubectl.ok("describe", "db", "payments-ledger", "-n", TEAM)
    events = described[described.index("Events:") :]
    assert "Selected" in events and "Provisioned" in events, described
    assert [r["deploymentId"] for r in inventory() if r["resourceName"] == "payments-ledger"] == [
        deployment
    ]

    # kubectl apply, then kidp-ops sees it (and the daemon provisions it).
    applied = kubectl.ok("apply", "-f", str(REPO / "samples" / "database.yaml"))
    assert applied.strip() == "database.platform.company.com/my-postgres created"
    listed = kidp("get", "db", "my-postgres", "-n", "my-app", "--state", str(state), "-o", "json")
    assert json.loads(listed.stdout)["metadata"]["name"] == "my-postgres"

    # kubectl delete reaches the broker through the daemon, and waits for it.
    deleted = subprocess.run(
        kubectl.command("delete", "db", "payments-ledger", "-n", TEAM, "--timeout=60s"),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == 'database.platform.company.com "payments-ledger" deleted'
    # The finalizer went only after the broker confirmed: nothing is held any more.
    assert [r for r in inventory() if r["deploymentId"] == deployment] == []
    gone = kubectl.fails("get", "db", "payments-ledger", "-n", TEAM)
    assert "NotFound" in gone

    process.send_signal(signal.SIGINT)  # Ctrl-C
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    assert "Traceback" not in out
