"""`kidp-ops` as a user runs it: real processes, real files, the embedded store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, broker_manifest


def kidp(
    *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "kidp_ops.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        input=stdin,
        env=env,
        timeout=60,
        check=False,
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def write_yaml(path: Path, *docs: object) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


# --- validate -------------------------------------------------------------------------


def test_validate_samples_passes() -> None:
    result = kidp("validate", str(REPO / "samples"))
    assert result.returncode == 0, result.stderr
    assert "object(s) valid" in result.stdout


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"endpoint": "ftp://x"}, ".spec.endpoint", '"ftp://x" must match'),
        ({"priority": 2**31}, ".spec.priority", "2147483648 is above the maximum 2147483647"),
        (
            {"capabilities": [{"providers": ["pg"]}]},
            ".spec.capabilities[0].resourceType",
            "required field is missing",
        ),
        ({"cloudProvider": "ibm"}, ".spec.cloudProvider", "allowed: azure, aws, gcp, on-prem"),
        ({"healthCheck": {"endpoint": "http://evil"}}, ".spec.healthCheck.endpoint", "must match"),
        (
            {"healthCheck": {"intervalSeconds": 10, "timeoutSeconds": 10}},
            ".spec.healthCheck.timeoutSeconds",
            "must be less than intervalSeconds (10)",
        ),
        (
            {"authentication": {"type": "api-key", "secretRef": {"name": "s", "namespace": "x"}}},
            ".spec.authentication.secretRef.namespace",
            "only from the Broker's own namespace",
        ),
        (
            {"healthCheck": {"intervalSeconds": 1e30}},
            ".spec.healthCheck.intervalSeconds",
            "1e+30 is float, expected integer",
        ),
        ({"endpiont": "http://x"}, ".spec.endpiont", "unknown field (allowed: allowedNamespaces"),
    ],
)
def test_validate_names_file_object_and_field(
    tmp_path: Path, spec: dict[str, object], field: str, words: str
) -> None:
    path = write_yaml(tmp_path / "bad.yaml", broker_manifest("bad-broker", **spec))
    result = kidp("validate", str(path))
    no_traceback(result)
    assert result.returncode == 1
    expected_prefix = f"{path}: Broker kidp-system/bad-broker: {field}: "
    lines = [line for line in result.stderr.splitlines() if line.startswith(expected_prefix)]
    assert lines, result.stderr
    assert words in lines[0]


def test_validate_quotes_hint_for_numeric_version(tmp_path: Path) -> None:
    path = tmp_path / "db.yaml"
    path.write_text(
        "apiVersion: platform.company.com/v1\nkind: Database\nmetadata: {name: d, namespace: a}\n"
        "spec: {engine: postgresql, version: 15}\n"
    )
    result = kidp("validate", str(path))
    assert result.returncode == 1
    assert f'{path}: Database a/d: .spec.version: 15 is int, expected string (quote it: "15")' in (
        result.stderr
    )


def test_malformed_yaml_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: v1\nkind: Broker\nmetadata:\n  name: [unclosed\n")
    result = kidp("validate", str(path))
    no_traceback(result)
    assert result.returncode == 1
    assert result.stderr.startswith(f"{path}: invalid YAML: line ")


def test_unknown_kind(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "x.yaml", {"apiVersion": "v1", "kind": "Gizmo", "metadata": {"name": "g"}}
    )
    result = kidp("validate", str(path))
    assert result.returncode == 1
    assert f"{path}: Gizmo default/g: .kind: unknown kind 'v1' 'Gizmo' (allowed: " in result.stderr


def test_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * (10 * 1024 * 1024) + "\n")
    result = kidp("validate", str(path))
    no_traceback(result)
    assert result.returncode == 1
    assert f"{path}: file is 10.0 MiB; manifests over 5 MiB are refused" in result.stderr


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"apiVersion: v1\nkind: Broker\n# caf\xe9\n")
    result = kidp("validate", str(path))
    no_traceback(result)
    assert result.returncode == 1
    assert f"{path}: not UTF-8 text (byte 0xe9 at offset" in result.stderr


def test_document_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    result = kidp("validate", str(path))
    assert result.returncode == 1
    assert f"{path}: document 1: is a list, expected a Kubernetes object" in result.stderr


def test_missing_path_and_stdin(tmp_path: Path) -> None:
    result = kidp("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "nope.yaml: no such file or directory" in result.stderr
    good = yaml.safe_dump(broker_manifest("from-stdin"))
    assert kidp("validate", "-", stdin=good).returncode == 0


def test_usage_errors_exit_2() -> None:
    assert kidp("validate").returncode == 2
    assert kidp("get").returncode == 2
    result = kidp("get", "brokers", "-o", "xml")
    assert result.returncode == 2
    assert "invalid choice: 'xml'" in result.stderr


# --- apply / get / delete ---------------------------------------------------------------


def test_apply_get_delete_roundtrip(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    path = write_yaml(tmp_path / "b.yaml", broker_manifest("b1"), broker_manifest("b2"))
    first = kidp("apply", "-f", str(path), "--state", state)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "broker.platform.company.com/b1 created",
        "broker.platform.company.com/b2 created",
    ]
    again = kidp("apply", "-f", str(path), "--state", state)
    assert again.stdout.splitlines()[0] == "broker.platform.company.com/b1 unchanged"
    changed = write_yaml(tmp_path / "b.yaml", broker_manifest("b1", priority=7))
    assert kidp("apply", "-f", str(changed), "--state", state).stdout.strip() == (
        "broker.platform.company.com/b1 configured"
    )

    table = kidp("get", "br", "--state", state)
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "PROVIDER", "REGION", "PHASE", "ACTIVE", "AGE"]
    assert [r.split()[:4] for r in rows] == [
        ["kidp-system", "b1", "aws", "us-east-1"],
        ["kidp-system", "b2", "aws", "us-east-1"],
    ]
    listed = json.loads(kidp("get", "brokers", "-o", "json", "--state", state).stdout)
    assert listed["kind"] == "List" and len(listed["items"]) == 2
    one = yaml.safe_load(
        kidp("get", "broker", "b1", "-n", "kidp-system", "-o", "yaml", "--state", state).stdout
    )
    assert one["kind"] == "Broker" and one["spec"]["priority"] == 7

    deleted = kidp("delete", "broker", "b1", "--state", state)
    assert deleted.stdout.strip() == 'broker.platform.company.com "b1" deleted'
    missing = kidp("get", "broker", "b1", "-n", "kidp-system", "--state", state)
    no_traceback(missing)
    assert missing.returncode == 1
    assert "NotFound" in missing.stderr and '"b1" not found' in missing.stderr


def test_apply_writes_nothing_when_any_document_is_invalid(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    good, bad = broker_manifest("good"), broker_manifest("bad", endpoint="ftp://x")
    path = write_yaml(tmp_path / "mixed.yaml", good, bad)
    result = kidp("apply", "-f", str(path), "--state", state)
    assert result.returncode == 1
    assert f"{path}: Broker kidp-system/bad: .spec.endpoint:" in result.stderr
    assert "nothing applied" in result.stderr
    listed = kidp("get", "brokers", "-o", "json", "--state", state)
    assert listed.returncode == 1 and "no store in" in listed.stderr  # not even created


def test_state_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    path = write_yaml(tmp_path / "b.yaml", broker_manifest("b1"))
    result = kidp("apply", "-f", str(path), "--state", str(blocker / "state"))
    no_traceback(result)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot create state directory {blocker / 'state'}")


def test_a_state_that_is_a_file_is_a_local_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    path = write_yaml(tmp_path / "b.yaml", broker_manifest("b1"))
    for command in (("get", "brokers"), ("apply", "-f", str(path))):
        result = kidp(*command, "--state", str(blocker))
        no_traceback(result)
        assert result.returncode == 1
        assert result.stderr == f"error: state directory {blocker} is a file, not a directory\n"


def test_reading_commands_never_create_a_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "typo"
    for command in (
        ("get", "brokers"),
        ("delete", "broker", "b1"),
        ("select", "--resource-type", "Database"),
    ):
        result = kidp(*command, "--state", str(state))
        no_traceback(result)
        assert result.returncode == 1, command
        assert result.stderr == (
            f"error: no store in {state}/ yet: `kidp-ops apply -f FILE` or `kidp-ops dev` "
            "with the same --state creates it\n"
        )
    assert not state.exists()
    path = write_yaml(tmp_path / "b.yaml", broker_manifest("b1"))
    assert kidp("apply", "-f", str(path), "--state", str(state)).returncode == 0
    assert kidp("get", "brokers", "--state", str(state)).returncode == 0


def test_a_missing_kubeconfig_is_named(tmp_path: Path) -> None:
    for config, words in (
        (tmp_path / "nope", "no such file"),
        (tmp_path, "it is a directory, not a kubeconfig file"),
    ):
        result = kidp("get", "brokers", "--kubeconfig", str(config))
        no_traceback(result)
        assert result.returncode == 1
        assert result.stderr == (
            f"error: cannot load the Kubernetes configuration from {config}: {words}\n"
        )


def test_cluster_options_may_come_before_the_command(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    path = write_yaml(tmp_path / "b.yaml", broker_manifest("b1"))
    assert kidp("--state", state, "apply", "-f", str(path)).returncode == 0
    before = kidp("--state", state, "get", "br", "-o", "json")
    assert [i["metadata"]["name"] for i in json.loads(before.stdout)["items"]] == ["b1"]
    # after the command wins, as it is the nearer one
    other = kidp("--state", state, "get", "br", "--state", str(tmp_path / "other"))
    assert other.returncode == 1 and "no store in" in other.stderr


def test_unknown_resource_type(tmp_path: Path) -> None:
    result = kidp("get", "gizmos", "--state", str(tmp_path / "s"))
    no_traceback(result)
    assert result.returncode == 1
    assert "unknown resource type 'gizmos'" in result.stderr


def test_empty_list_message(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "b.yaml", broker_manifest("b1"))
    assert kidp("apply", "-f", str(path), "--state", str(tmp_path / "s")).returncode == 0
    result = kidp("get", "databases", "-n", "team-x", "--state", str(tmp_path / "s"))
    assert result.returncode == 0
    assert result.stderr.strip() == "No resources found in team-x namespace."


def test_help_lists_every_command() -> None:
    result = kidp("--help")
    assert result.returncode == 0
    for command in ("validate", "apply", "get", "delete", "dev"):
        assert command in result.stdout


def test_cli_against_a_cluster_through_kubeconfig(tmp_path: Path) -> None:
    """apply/get/delete with --kubeconfig go through the kubernetes client over HTTP."""
    from kidp_ops.cluster.embedded import EmbeddedCluster
    from tests.support.kubeserver import running_apiserver

    async def backing() -> EmbeddedCluster:
        return await EmbeddedCluster.open(tmp_path / "server-state")

    path = write_yaml(tmp_path / "b.yaml", broker_manifest("remote"))
    with running_apiserver(backing) as server:
        kube = ["--kubeconfig", str(server.kubeconfig)]
        applied = kidp("apply", "-f", str(path), *kube)
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.strip() == "broker.platform.company.com/remote created"
        again = kidp("apply", "-f", str(path), *kube)
        assert again.stdout.strip() == "broker.platform.company.com/remote unchanged"
        listed = kidp("get", "brokers", "-n", "kidp-system", "-o", "json", *kube)
        assert [i["metadata"]["name"] for i in json.loads(listed.stdout)["items"]] == ["remote"]
        deleted = kidp("delete", "broker", "remote", "-n", "kidp-system", *kube)
        assert deleted.stdout.strip() == 'broker.platform.company.com "remote" deleted'


def test_unreachable_cluster_is_one_clear_line(tmp_path: Path) -> None:
    from tests.support.kubeserver import write_kubeconfig

    config = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9")
    result = kidp("get", "brokers", "--kubeconfig", str(config))
    no_traceback(result)
    assert result.returncode == 1
    assert "cannot reach the Kubernetes API at http://127.0.0.1:9" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_name_in_several_namespaces_needs_n(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    path = write_yaml(
        tmp_path / "b.yaml",
        broker_manifest("twin", namespace="a"),
        broker_manifest("twin", namespace="b"),
    )
    assert kidp("apply", "-f", str(path), "--state", state).returncode == 0
    for command in (("get", "broker", "twin"), ("delete", "broker", "twin")):
        result = kidp(*command, "--state", state)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            'error (Ambiguous): brokers.platform.company.com "twin" exists in several '
            "namespaces (a, b): pick one with -n"
        )
    assert kidp("delete", "broker", "twin", "-n", "a", "--state", state).returncode == 0
    left = json.loads(kidp("get", "broker", "twin", "-o", "json", "--state", state).stdout)
    assert left["metadata"]["namespace"] == "b"


def _event(name: str, obj: str, reason: str, kind: str, seen: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": "team-a", "labels": {"about": obj}},
        "involvedObject": {
            "apiVersion": "platform.company.com/v1",
            "kind": "Database",
            "name": obj,
            "namespace": "team-a",
        },
        "reason": reason,
        "type": kind,
        "message": message,
        "firstTimestamp": seen,
        "lastTimestamp": seen,
        "count": 1,
        "source": {"component": "kidp-ops"},
    }


def test_get_events_reads_like_kubectl(tmp_path: Path) -> None:
    import asyncio

    from kidp_ops.cluster.embedded import EmbeddedCluster

    state = tmp_path / "state"
    events = [  # names in the opposite order of their times: the table sorts by time
        _event("a", "orders", "Provisioned", "Normal", "2026-11-29T10:05:00Z", "ready"),
        _event("b", "orders", "Selected", "Normal", "2026-11-29T10:00:00Z", "picked aws"),
        _event("c", "ledger", "NoBrokerAvailable", "Warning", "2026-11-29T09:00:00Z", "none"),
        # the same second as "a": the one written last comes last, whatever the names
        _event("0", "orders", "Deleting", "Normal", "2026-11-29T10:05:00Z", "gone"),
    ]

    async def store() -> None:
        async with await EmbeddedCluster.open(state) as cluster:
            for event in events:
                await cluster.create(event)

    asyncio.run(store())
    listed = kidp("get", "events", "-n", "team-a", "--state", str(state))
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert [row.split()[1:4] for row in rows] == [
        ["Warning", "NoBrokerAvailable", "database/ledger"],
        ["Normal", "Selected", "database/orders"],
        ["Normal", "Provisioned", "database/orders"],
        ["Normal", "Deleting", "database/orders"],
    ]
    assert rows[1].endswith("picked aws")
    mine = kidp("get", "events", "--for", "db/orders", "-n", "team-a", "--state", str(state))
    assert [row.split()[2] for row in mine.stdout.splitlines()[1:]] == [
        "Selected",
        "Provisioned",
        "Deleting",
    ]
    warnings = kidp("get", "events", "--field-selector", "type=Warning", "--state", str(state))
    assert [row.split()[3] for row in warnings.stdout.splitlines()[1:]] == ["NoBrokerAvailable"]
    labelled = kidp("get", "events", "-l", "about=ledger", "-o", "json", "--state", str(state))
    assert [e["metadata"]["name"] for e in json.loads(labelled.stdout)["items"]] == ["c"]
    for bad, words in (
        (("--for", "orders"), "--for 'orders': give KIND/NAME"),
        (("--field-selector", "spec.x=1"), "field label not supported: spec.x"),
    ):
        result = kidp("get", "events", *bad, "--state", str(state))
        no_traceback(result)
        assert result.returncode in (1, 2) and words in result.stderr
    wrong_kind = kidp("get", "brokers", "--for", "db/orders", "--state", str(state))
    assert wrong_kind.returncode == 2
    assert "--for selects Events" in wrong_kind.stderr
