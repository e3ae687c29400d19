"""kubectl itself against the embedded store, served as `kidp-ops serve` serves it.

A real kubectl process per command, over real TLS on 127.0.0.1 with the bearer token from
the kubeconfig (tests/support/kubeserver.py), against an EmbeddedCluster. Every command the
issue names is here: discovery, api-resources, apply (client-side: last-applied and merge
patch), get with printer columns and -o wide, describe with Events, field and label
selectors, get -w, edit, delete (also one held by a finalizer), patch (merge, JSON, the
status subresource), explain, errors as kubectl's usual lines, and the refusals of a
wrong token or an unknown CA. Which kubectl: see tests/support/kubectl.py.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kidp_ops.cluster.base import BROKERS, DATABASES
from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.cluster.serving import make_credentials
from tests.conftest import REPO, broker_manifest
from tests.support.kubectl import KUBECTL, Kubectl, Streaming, client_minor
from tests.support.kubeserver import RunningApiServer, running_apiserver
from tests.test_cli import kidp

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

NS = "kidp-system"
TEAM = "team-k"
Server = RunningApiServer[EmbeddedCluster]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    state = tmp_path / "state"
    with running_apiserver(lambda: EmbeddedCluster.open(state)) as running:
        yield running


@pytest.fixture(scope="session")
def minor() -> int:
    assert KUBECTL is not None
    return client_minor(KUBECTL)


@pytest.fixture
def kubectl(server: Server, tmp_path: Path, minor: int) -> Kubectl:
    assert KUBECTL is not None
    return Kubectl(KUBECTL, server.kubeconfig, tmp_path / "kube-cache", minor)


def database(name: str, namespace: str = TEAM, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "platform.company.com/v1",
        "kind": "Database",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"engine": "postgresql", "owner": {"kind": "Team", "name": "k"}, **spec},
    }


def columns(table: str) -> list[str]:
    """The header of kubectl's table, split on its column gaps."""
    return re.split(r"\s{2,}", table.splitlines()[0].strip())


# --- discovery ------------------------------------------------------------------------------


def test_version_and_api_resources(kubectl: Kubectl) -> None:
    assert "v1.30.0-kidp" in kubectl.ok("version")
    resources = kubectl.ok("api-resources")
    assert columns(resources)[:2] == ["NAME", "SHORTNAMES"]
    rows = {line.split()[0]: line.split() for line in resources.splitlines()[1:]}
    assert rows["brokers"] == ["brokers", "br", "platform.company.com/v1", "true", "Broker"]
    assert rows["databases"][:2] == ["databases", "db"]
    assert {"events", "secrets", "leases", "customresourcedefinitions", "namespaces"} <= set(rows)
    ours = kubectl.ok("api-resources", "--api-group=platform.company.com", "-o", "name").split()
    assert sorted(ours) == ["brokers.platform.company.com", "databases.platform.company.com"]


def test_the_kidp_category_lists_brokers_and_databases(kubectl: Kubectl, server: Server) -> None:
    server.call(lambda c: c.create(broker_manifest("b1")))
    server.call(lambda c: c.create(database("db1")))
    assert sorted(kubectl.ok("get", "kidp", "-A", "-o", "name").split()) == [
        "broker.platform.company.com/b1",
        "database.platform.company.com/db1",
    ]


# --- apply, then kidp-ops sees it ------------------------------------------------------------


def test_apply_samples_then_kidp_ops_get(kubectl: Kubectl, tmp_path: Path) -> None:
    applied = kubectl.ok("apply", "-f", str(REPO / "samples"))
    assert "broker.platform.company.com/local-broker created" in applied
    assert "database.platform.company.com/my-postgres created" in applied
    state = str(tmp_path / "state")  # the server's store: kidp-ops reads it beside it
    listed = kidp("get", "brokers", "-o", "json", "--state", state)
    assert listed.returncode == 0, listed.stderr
    names = sorted(i["metadata"]["name"] for i in json.loads(listed.stdout)["items"])
    assert names == ["aws-us-east-1", "azure-eastus", "local-broker"]
    shown = kidp("get", "db", "my-postgres", "--state", state)
    assert "my-postgres" in shown.stdout and "postgresql" in shown.stdout
    again = kubectl.ok("apply", "-f", str(REPO / "samples"))
    assert again.count("unchanged") == len(applied.splitlines())


def test_apply_is_a_three_way_merge_that_keeps_status_and_others_fields(
    kubectl: Kubectl, server: Server, tmp_path: Path
) -> None:
    manifest = broker_manifest("b1")
    manifest["metadata"]["labels"] = {"tier": "gold", "team": "x"}
    path = tmp_path / "b1.yaml"
    path.write_text(yaml.safe_dump(manifest))
    assert kubectl.ok("apply", "-f", str(path)).strip() == (
        "broker.platform.company.com/b1 created"
    )
    status = {"status": {"phase": "Ready"}}
    server.call(lambda c: c.patch_status(BROKERS, "b1", status, namespace=NS))
    server.call(
        lambda c: c.patch(BROKERS, "b1", {"metadata": {"annotations": {"x": "y"}}}, namespace=NS)
    )
    manifest["metadata"]["labels"] = {"tier": "gold"}  # `team` dropped from the manifest
    manifest["spec"]["priority"] = 120
    path.write_text(yaml.safe_dump(manifest))
    assert kubectl.ok("apply", "-f", str(path)).strip() == (
        "broker.platform.company.com/b1 configured"
    )
    stored = server.call(lambda c: c.get(BROKERS, "b1", namespace=NS))
    assert stored["metadata"]["labels"] == {"tier": "gold"}
    assert stored["spec"]["priority"] == 120
    assert stored["status"] == {"phase": "Ready"}
    annotations = stored["metadata"]["annotations"]
    assert annotations["x"] == "y"  # another writer's field stays
    last = json.loads(annotations["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["priority"] == 120


# --- get, describe, selectors, watch ----------------------------------------------------------


def test_get_prints_the_crd_printer_columns(kubectl: Kubectl, server: Server) -> None:
    server.call(lambda c: c.create(broker_manifest("b1", priority=130)))
    server.call(
        lambda c: c.patch_status(
            BROKERS, "b1", {"status": {"phase": "Ready", "activeDeployments": 2}}, namespace=NS
        )
    )
    table = kubectl.ok("get", "brokers", "-n", NS)
    assert columns(table) == ["NAME", "PROVIDER", "REGION", "PHASE", "ACTIVE", "AGE"]
    assert table.splitlines()[1].split()[:5] == ["b1", "aws", "us-east-1", "Ready", "2"]
    wide = kubectl.ok("get", "br", "-n", NS, "-o", "wide")
    assert columns(wide)[6:] == ["PRIORITY", "MAX", "VERSION", "HEARTBEAT", "ENDPOINT"]
    assert "130" in wide.splitlines()[1] and "http://127.0.0.1:18081" in wide
    server.call(lambda c: c.create(database("db1", target="aws-us-east-1")))
    everywhere = kubectl.ok("get", "db", "-A")
    assert columns(everywhere)[:3] == ["NAMESPACE", "NAME", "ENGINE"]
    assert everywhere.splitlines()[1].split()[:3] == [TEAM, "db1", "postgresql"]


def test_describe_shows_the_objects_events_only(kubectl: Kubectl, server: Server) -> None:
    db = server.call(lambda c: c.create(database("db1")))
    other = server.call(lambda c: c.create(database("db2")))
    now = "2026-01-01T00:00:00Z"
    server.call(
        lambda c: c.create_event(
            involved=db, reason="BrokerSelected", message="picked aws", now=now
        )
    )
    server.call(
        lambda c: c.create_event(involved=other, reason="Elsewhere", message="not db1", now=now)
    )
    described = kubectl.ok("describe", "db", "db1", "-n", TEAM)
    events = described[described.index("Events:") :]
    assert "BrokerSelected" in events and "picked aws" in events and "kidp-ops" in events
    assert "Elsewhere" not in events
    listed = kubectl.ok("get", "events", "-n", TEAM, "--field-selector", "involvedObject.name=db2")
    assert columns(listed) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert "database/db2" in listed and "database/db1" not in listed


def test_label_and_field_selectors(kubectl: Kubectl, server: Server) -> None:
    gold = broker_manifest("gold")
    gold["metadata"]["labels"] = {"tier": "gold"}
    server.call(lambda c: c.create(gold))
    server.call(lambda c: c.create(broker_manifest("plain")))
    assert kubectl.ok("get", "br", "-n", NS, "-l", "tier=gold", "-o", "name").split() == [
        "broker.platform.company.com/gold"
    ]
    by_name = kubectl.ok("get", "br", "-A", "--field-selector", "metadata.name!=gold", "-o", "name")
    assert by_name.split() == ["broker.platform.company.com/plain"]
    refused = kubectl.fails("get", "br", "-n", NS, "--field-selector", "spec.region=x")
    assert "field label not supported: spec.region" in refused


def test_get_watch_prints_new_rows(kubectl: Kubectl, server: Server) -> None:
    server.call(lambda c: c.create(broker_manifest("first")))
    watching = Streaming(kubectl, "get", "br", "-n", NS, "-w")
    try:
        assert watching.wait_for("first").split()[:3] == ["first", "aws", "us-east-1"]
        assert "PROVIDER" in watching.lines[0]
        server.call(lambda c: c.create(broker_manifest("second", region="eu-west-1")))
        assert watching.wait_for("second").split()[:3] == ["second", "aws", "eu-west-1"]
        server.call(
            lambda c: c.patch_status(
                BROKERS, "second", {"status": {"phase": "Ready"}}, namespace=NS
            )
        )
        assert watching.wait_for("Ready").split()[0] == "second"
    finally:
        watching.stop()


# --- edit, patch, delete ------------------------------------------------------------------------


def test_edit_goes_through_the_editor_and_a_patch(
    kubectl: Kubectl, server: Server, tmp_path: Path
) -> None:
    server.call(lambda c: c.create(broker_manifest("b1")))
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import pathlib, sys\n"
        "path = pathlib.Path(sys.argv[1])\n"
        "path.write_text(path.read_text().replace('priority: 100', 'priority: 140'))\n"
    )
    edited = kubectl.ok(
        "edit", "br", "b1", "-n", NS, env={"KUBE_EDITOR": f"{sys.executable} {editor}"}
    )
    assert "broker.platform.company.com/b1 edited" in edited
    stored = server.call(lambda c: c.get(BROKERS, "b1", namespace=NS))
    assert stored["spec"]["priority"] == 140
    assert stored["metadata"]["generation"] == 2


def test_patch_merge_and_json(kubectl: Kubectl, server: Server) -> None:
    server.call(lambda c: c.create(broker_manifest("b1")))
    merge = kubectl.ok(
        "patch", "br", "b1", "-n", NS, "--type=merge", "-p", '{"spec":{"region":"eu"}}'
    )
    assert merge.strip() == "broker.platform.company.com/b1 patched"
    ops = '[{"op":"replace","path":"/spec/priority","value":7}]'
    kubectl.ok("patch", "br", "b1", "-n", NS, "--type=json", "-p", ops)
    stored = server.call(lambda c: c.get(BROKERS, "b1", namespace=NS))
    assert (stored["spec"]["region"], stored["spec"]["priority"]) == ("eu", 7)


def test_patch_the_status_subresource(kubectl: Kubectl, server: Server, minor: int) -> None:
    if minor < 24:
        pytest.skip(f"kubectl 1.{minor} has no patch --subresource (1.24+)")
    server.call(lambda c: c.create(broker_manifest("b1")))
    status = '{"status":{"phase":"Ready","activeDeployments":4}}'
    kubectl.ok("patch", "br", "b1", "-n", NS, "--subresource=status", "--type=merge", "-p", status)
    assert kubectl.ok("get", "br", "b1", "-n", NS).splitlines()[1].split()[3:5] == ["Ready", "4"]
    bad = '{"status":{"phase":"Sleeping"}}'
    refused = kubectl.fails(
        "patch", "br", "b1", "-n", NS, "--subresource=status", "--type=merge", "-p", bad
    )
    assert 'The Broker "b1" is invalid' in refused and "status.phase" in refused


def test_delete_and_a_delete_that_waits_for_finalizers(kubectl: Kubectl, server: Server) -> None:
    server.call(lambda c: c.create(broker_manifest("b1")))
    deleted = kubectl.ok("delete", "br", "b1", "-n", NS)
    assert deleted.strip() == 'broker.platform.company.com "b1" deleted'
    assert server.call(lambda c: c.list(BROKERS)).items == []
    held = database("held")
    held["metadata"]["finalizers"] = ["platform.company.com/database-cleanup"]
    server.call(lambda c: c.create(held))
    waiting = Streaming(kubectl, "delete", "db", "held", "-n", TEAM)
    try:
        waiting.wait_for('"held" deleted')
        assert waiting.process.poll() is None  # kubectl waits until the object is gone
        marked = server.call(lambda c: c.get(DATABASES, "held", namespace=TEAM))
        assert marked["metadata"]["deletionTimestamp"]
        release = {"metadata": {"finalizers": None}}
        server.call(lambda c: c.patch(DATABASES, "held", release, namespace=TEAM))
        assert waiting.finish() == 0
    finally:
        waiting.stop()
    assert server.call(lambda c: c.list(DATABASES)).items == []


# --- explain, errors, refusals ----------------------------------------------------------------


def test_explain_reads_the_crd_schemas(kubectl: Kubectl) -> None:
    explained = kubectl.ok("explain", "brokers.spec.healthCheck")
    assert "intervalSeconds" in explained and "Seconds between probes" in explained
    engine = kubectl.ok("explain", "database.spec.engine")
    assert "Database" in engine and "engine" in engine.lower()


def test_errors_are_kubectls_usual_lines(kubectl: Kubectl, server: Server, tmp_path: Path) -> None:
    missing = kubectl.fails("get", "br", "nope", "-n", NS)
    assert missing.startswith(
        'Error from server (NotFound): brokers.platform.company.com "nope" not found'
    )
    bad = broker_manifest("bad", priority=2**31)
    invalid = kubectl.fails("apply", "-f", "-", stdin=json.dumps(bad))
    assert 'The Broker "bad" is invalid' in invalid and "spec.priority" in invalid
    server.call(lambda c: c.create(broker_manifest("b1")))
    strategic = kubectl.fails("patch", "br", "b1", "-n", NS, "-p", '{"spec":{"region":"x"}}')
    assert "accepted media types include: application/json-patch+json" in strategic
    path = tmp_path / "b1.yaml"
    path.write_text(yaml.safe_dump(broker_manifest("b1")))
    server_side = kubectl.fails("apply", "--server-side", "-f", str(path))
    assert "server-side apply is not supported by the kidp-ops API" in server_side


def test_a_wrong_token_or_an_unknown_ca_is_refused(kubectl: Kubectl, tmp_path: Path) -> None:
    wrong = kubectl.fails("get", "br", "--token=not-the-token")
    assert "error: You must be logged in to the server" in wrong  # then (Unauthorized) or so
    config = yaml.safe_load(kubectl.kubeconfig.read_text())
    stranger = base64.b64encode(_a_strangers_ca()).decode()
    config["clusters"][0]["cluster"]["certificate-authority-data"] = stranger
    untrusting = tmp_path / "stranger.kubeconfig"
    untrusting.write_text(yaml.safe_dump(config))
    other = Kubectl(kubectl.binary, untrusting, kubectl.cache, kubectl.minor)
    refused = other.fails("get", "br")
    assert "certificate signed by unknown authority" in refused or "x509" in refused


def _a_strangers_ca() -> bytes:
    return make_credentials().ca_pem


def test_secrets_have_kube_apiservers_columns(kubectl: Kubectl, server: Server) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": NS}}
    server.call(lambda c: c.create({**secret, "data": {"k": "dg=="}}))
    table = kubectl.ok("get", "secrets", "-n", NS)
    assert columns(table) == ["NAME", "TYPE", "DATA", "AGE"]
    assert table.splitlines()[1].split()[:3] == ["s", "Opaque", "1"]
