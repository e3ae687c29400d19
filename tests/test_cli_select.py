"""`kidp-ops select`: offline from files, against the store, and over a kubeconfig."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kidp_ops import cli
from kidp_ops.cluster.base import BROKERS
from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.model.resources import CLOUD_PROVIDERS
from tests.conftest import REPO, broker_manifest

OWNER = {"kind": "Team", "name": "payments"}
FLEET = str(REPO / "samples" / "fleet")
NOW = "2026-11-25T10:00:00Z"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out, captured.err


def test_explain_on_the_fleet_sample_reads_well(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        *("select", "-f", FLEET, "--now", NOW, "--resource-type", "Database"),
        *("--provider", "postgresql", "--cloud-provider", "aws", "--explain"),
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        "Database (provider postgresql, cloud aws): selected kidp-system/aws-us-west-2-a, "
        "score 270.0 (priority 150 + load 70 + heartbeat 50); 3 of 9 brokers eligible"
    )
    rows = {line.split()[0]: line for line in lines[3:]}
    assert rows["kidp-system/aws-us-west-2-a"].endswith("selected")
    assert "267.5 = priority 150 + load 92.5 + heartbeat 25" in rows["kidp-system/aws-us-west-2-b"]
    assert rows["kidp-system/aws-us-west-2-c"].endswith("rejected: at capacity (25/25 active)")
    assert rows["kidp-system/aws-canary"].endswith("rejected: cordoned (unschedulable)")
    assert rows["kidp-system/aws-us-east-1"].endswith("rejected: phase Unhealthy (not Ready)")
    assert rows["kidp-system/azure-eastus-2"].endswith("cloud provider azure, asked aws")
    # Eligible first (best first), then rejected by name.
    assert [line.split()[0] for line in lines[3:6]] == [
        "kidp-system/aws-us-west-2-a",
        "kidp-system/aws-us-west-2-b",
        "kidp-system/aws-global",
    ]


def test_without_explain_only_the_answer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "select", "-f", FLEET, "--now", NOW, "--resource-type", "Database")
    assert code == 0
    assert len(out.splitlines()) == 1
    assert "selected kidp-system/aws-us-west-2-a" in out


def test_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        *("select", "-f", FLEET, "--now", NOW, "--resource-type", "Database"),
        *("--cloud-provider", "aws", "--region", "us-east-1", "-o", "json"),
    )
    assert code == 0
    doc = json.loads(out)
    # us-east-1 broker is Unhealthy; the region-less global broker lists us-east-1.
    assert doc["selected"] == {"namespace": "kidp-system", "name": "aws-global", "score": 210.0}
    by_name = {c["name"]: c for c in doc["candidates"]}
    assert set(by_name["aws-global"]) == {"namespace", "name", "score", "parts", "rejected"}
    assert by_name["aws-global"]["parts"] == {"priority": 100.0, "load": 60.0, "heartbeat": 50.0}
    assert by_name["aws-global"]["rejected"] is None
    assert by_name["aws-us-west-2-a"] == {
        "namespace": "kidp-system",
        "name": "aws-us-west-2-a",
        "score": None,
        "parts": None,
        "rejected": "region us-west-2, asked us-east-1",
    }
    assert len(doc["candidates"]) == 9


def test_no_match_exits_1_with_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        *("select", "-f", FLEET, "--now", NOW, "--resource-type", "Database"),
        *("--cloud-provider", "gcp"),
    )
    assert code == 1
    assert out.splitlines()[0] == "Database (cloud gcp): no broker matches (9 rejected)"
    assert "rejected: phase Offline (not Ready)" in out
    code, out, _ = run(
        capsys, "select", "-f", FLEET, "--now", NOW, "--resource-type", "Queue", "-o", "json"
    )
    assert code == 1
    doc = json.loads(out)
    assert doc["selected"] is None
    assert {c["rejected"] for c in doc["candidates"]} >= {"no Queue capability"}


def test_heartbeat_age_follows_now(capsys: pytest.CaptureFixture[str]) -> None:
    later = "2026-11-25T10:10:00Z"  # every heartbeat is now over 5 minutes old
    code, out, _ = run(
        capsys, "select", "-f", FLEET, "--now", later, "--resource-type", "Database", "-o", "json"
    )
    assert code == 0
    assert {c["parts"]["heartbeat"] for c in json.loads(out)["candidates"] if c["parts"]} == {0.0}


def test_database_criteria_from_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = {
        "apiVersion": "platform.company.com/v1",
        "kind": "Database",
        "metadata": {"name": "orders", "namespace": "team-payments"},
        "spec": {"engine": "postgresql", "target": "aws-us-west-2-prod", "owner": OWNER},
    }
    path = tmp_path / "db.yaml"
    path.write_text(yaml.safe_dump(db))
    code, out, _ = run(
        capsys,
        *("select", "-f", FLEET, "-f", str(path), "--now", NOW, "--database", "orders"),
    )
    assert code == 0
    assert out.startswith(
        "Database (provider postgresql, cloud aws, region us-west-2): "
        "selected kidp-system/aws-us-west-2-a"
    )


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--resource-type", "Database", "--now", "yesterday"], "--now 'yesterday' is not"),
        (["--resource-type", "Database", "--now", "2026-11-25T10:00:00"], "with a zone"),
        ([], "give exactly one of --resource-type or --database"),
        (["--resource-type", "Database", "--database", "x"], "exactly one"),
        (["--database", "x", "--region", "r"], "come from --database"),
        (["--resource-type", "Database", "--cloud-provider", "ibm"], "invalid choice: 'ibm'"),
        (["--database", "nope"], 'database "nope" not found (any namespace)'),
    ],
)
def test_bad_input_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    code, _, err = run(capsys, "select", "-f", FLEET, *argv)
    assert code == 2
    assert words in err


def test_bad_files_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(broker_manifest("x", priority=2**31)))
    code, _, err = run(capsys, "select", "-f", str(bad), "--resource-type", "Database")
    assert code == 2
    assert ".spec.priority" in err
    twice = tmp_path / "twice.yaml"
    twice.write_text(yaml.safe_dump_all([broker_manifest("x"), broker_manifest("x")]))
    code, _, err = run(capsys, "select", "-f", str(twice), "--resource-type", "Database")
    assert code == 2
    assert "Broker kidp-system/x is defined twice" in err


def test_unparseable_database_target_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = {
        "apiVersion": "platform.company.com/v1",
        "kind": "Database",
        "metadata": {"name": "odd", "namespace": "t"},
        "spec": {"engine": "redis", "target": "mars-olympus", "owner": OWNER},
    }
    (tmp_path / "db.yaml").write_text(yaml.safe_dump(db))
    code, _, err = run(capsys, "select", "-f", FLEET, "-f", str(tmp_path), "--database", "odd")
    assert code == 2
    assert "Database t/odd: .spec.target: 'mars-olympus' does not start with" in err


def test_cloud_provider_choices_match_the_model() -> None:
    assert cli.CLOUD_PROVIDERS == CLOUD_PROVIDERS


def _ready(broker: dict[str, Any], active: int) -> dict[str, Any]:
    return {
        "status": {
            "phase": "Ready",
            "activeDeployments": active,
            "lastHeartbeat": broker["metadata"]["creationTimestamp"],
        }
    }


async def _seed_store(state: Path) -> None:
    async with await EmbeddedCluster.open(state) as cluster:
        for name, active in (("east", 9), ("west", 1)):
            stored = await cluster.create(broker_manifest(name, maxConcurrentDeployments=10))
            await cluster.patch_status(
                BROKERS, name, _ready(stored, active), namespace="kidp-system"
            )
        await cluster.create(
            {
                "apiVersion": "platform.company.com/v1",
                "kind": "Database",
                "metadata": {"name": "ledger", "namespace": "team-payments"},
                "spec": {"engine": "mysql", "target": "aws-us-east-1-prod", "owner": OWNER},
            }
        )


def test_against_the_store(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    state = tmp_path / "state"
    asyncio.run(_seed_store(state))
    code, out, _ = run(
        capsys, "select", "--state", str(state), "--resource-type", "Database", "--explain"
    )
    assert code == 0
    assert "selected kidp-system/west" in out.splitlines()[0]
    assert "2 of 2 brokers eligible" in out
    code, out, _ = run(capsys, "select", "--state", str(state), "--database", "ledger")
    assert code == 1  # the brokers offer postgresql only
    assert out.splitlines()[0] == (
        "Database (provider mysql, cloud aws, region us-east-1): no broker matches (2 rejected)"
    )
    assert "Database capability lacks provider mysql (has: postgresql)" in out


def test_against_a_cluster_over_http(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tests.support.kubeserver import running_apiserver

    state = tmp_path / "state"
    asyncio.run(_seed_store(state))
    with running_apiserver(lambda: EmbeddedCluster.open(state)) as server:
        code, out, _ = run(
            capsys,
            *("select", "--kubeconfig", str(server.kubeconfig), "--resource-type", "Database"),
            *("-o", "json"),
        )
    assert code == 0
    assert json.loads(out)["selected"]["name"] == "west"


def test_offline_considers_every_broker_unless_broker_namespaces_are_given(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    docs = yaml.safe_load_all((REPO / "samples" / "fleet" / "brokers-with-status.yaml").read_text())
    fleet = [item for doc in docs if doc for item in doc.get("items", [doc])]
    best = next(b for b in fleet if b["metadata"]["name"] == "aws-us-west-2-a")
    tenant = json.loads(json.dumps(best))  # the best broker, copied into a team namespace
    tenant["metadata"] = {"name": "greedy", "namespace": "team-x"}
    tenant["spec"]["priority"] = 1_000_000
    path = tmp_path / "tenant.yaml"
    path.write_text(yaml.safe_dump(tenant))
    asked = ("--now", NOW, "--resource-type", "Database", "--cloud-provider", "aws")
    code, out, err = run(capsys, "select", "-f", FLEET, "-f", str(path), *asked)
    assert code == 0 and "selected team-x/greedy" in out  # offline: what it is given
    assert err == ""
    code, out, err = run(
        capsys,
        *("select", "-f", FLEET, "-f", str(path), *asked),
        *("--broker-namespace", "kidp-system", "--explain"),
    )
    assert code == 0 and "selected kidp-system/aws-us-west-2-a" in out
    assert "greedy" not in out
    assert err == (
        "note: 1 Broker(s) outside the broker namespaces (kidp-system) not considered: "
        "team-x/greedy (--broker-namespace NS to include)\n"
    )
    code, _, err = run(capsys, "select", "-f", FLEET, *asked, "--broker-namespace", "Bad_NS")
    assert code == 2 and "Bad_NS" in err
