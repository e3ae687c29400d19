"""Each command function (`kidp_ops/commands.py`) called in-process on a real embedded store
in a temporary directory: exit codes, what goes to stdout and to stderr, what is stored.
(`tests/test_cli.py` runs the same commands as a user does, through processes.)"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kidp_ops import commands
from kidp_ops.cluster.base import BROKERS, CRDS, DATABASES, SECRETS, NotFound
from kidp_ops.cluster.embedded import EmbeddedCluster
from kidp_ops.cluster.target import Target
from kidp_ops.commands import SelectRequest
from tests.conftest import broker_manifest
from tests.test_cli import write_yaml

NOW = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)


class Streams:
    """stdout and stderr of one command."""

    def __init__(self) -> None:
        self.out, self.err = io.StringIO(), io.StringIO()

    @property
    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()

    @property
    def errors(self) -> list[str]:
        return self.err.getvalue().splitlines()


@pytest.fixture
def target(tmp_path: Path) -> Target:
    return Target(state=str(tmp_path / "state"))


def database(name: str = "db1", namespace: str = "team-x", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "platform.company.com/v1",
        "kind": "Database",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "engine": "postgresql",
            "target": "aws-us-east-1",
            "owner": {"kind": "Team", "name": "x"},
            **spec,
        },
    }


def secret(name: str = "creds", namespace: str = "kidp-system") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"api-key": "s3cret"},
    }


def ready(manifest: dict[str, Any], *, heartbeat_age: float = 10) -> dict[str, Any]:
    """A Broker manifest with the status of a healthy broker at NOW."""
    beat = (NOW - timedelta(seconds=heartbeat_age)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**manifest, "status": {"phase": "Ready", "lastHeartbeat": beat}}


async def apply(target: Target, tmp_path: Path, *docs: dict[str, Any]) -> Streams:
    streams = Streams()
    path = write_yaml(tmp_path / "apply.yaml", *docs)
    code = await commands.apply([str(path)], target, out=streams.out, err=streams.err)
    assert code == commands.OK, streams.err.getvalue()
    return streams


async def get(
    target: Target,
    kind: Any,
    name: str | None = None,
    *,
    output: str = "table",
    **selection: Any,
) -> Streams:
    streams = Streams()
    request = commands.GetRequest(kind, name, **selection)
    code = await commands.get(request, target, output=output, out=streams.out, err=streams.err)
    assert code == commands.OK
    return streams


# --- validate -------------------------------------------------------------------------


def test_validate_counts_valid_objects(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "ok.yaml", broker_manifest("b1"), database())
    streams = Streams()
    assert commands.validate([str(path)], out=streams.out, err=streams.err) == commands.OK
    assert streams.lines == ["2 object(s) valid"] and streams.errors == []


def test_validate_names_each_problem_and_exits_1(tmp_path: Path) -> None:
    bad = broker_manifest("b1", endpoint="ftp://x")
    path = write_yaml(tmp_path / "bad.yaml", bad, broker_manifest("b2"))
    streams = Streams()
    assert commands.validate([str(path)], out=streams.out, err=streams.err) == commands.FAILED
    problem, total = streams.errors
    assert problem.startswith(f"{path}: Broker kidp-system/b1: .spec.endpoint: ")
    assert total == "1 problem(s) in 2 object(s)"
    assert streams.lines == []


# --- apply ----------------------------------------------------------------------------


async def test_apply_writes_in_dependency_order_and_reports_each_object(
    target: Target, tmp_path: Path
) -> None:
    streams = await apply(target, tmp_path, database(), broker_manifest("b1"), secret())
    assert streams.lines == [
        "secret/creds created",
        "broker.platform.company.com/b1 created",
        "database.platform.company.com/db1 created",
    ]
    again = await apply(target, tmp_path, database(), broker_manifest("b1", priority=7), secret())
    assert again.lines == [
        "secret/creds unchanged",
        "broker.platform.company.com/b1 configured",
        "database.platform.company.com/db1 unchanged",
    ]
    async with await EmbeddedCluster.open(target.state) as cluster:
        stored = await cluster.get(BROKERS, "b1", namespace="kidp-system")
    assert stored["spec"]["priority"] == 7


async def test_apply_writes_nothing_when_a_document_is_invalid(
    target: Target, tmp_path: Path
) -> None:
    path = write_yaml(
        tmp_path / "mixed.yaml", broker_manifest("good"), broker_manifest("bad", priority=2**31)
    )
    streams = Streams()
    code = await commands.apply([str(path)], target, out=streams.out, err=streams.err)
    assert code == commands.FAILED
    assert streams.errors[0].startswith(f"{path}: Broker kidp-system/bad: .spec.priority: ")
    assert streams.errors[-1] == "nothing applied: 1 problem(s)"
    assert streams.lines == []
    async with await EmbeddedCluster.open(target.state) as cluster:
        assert (await cluster.list(BROKERS)).items == []


async def test_apply_goes_on_past_an_object_the_store_refuses(
    target: Target, tmp_path: Path
) -> None:
    held = database(name="held")
    held["metadata"]["finalizers"] = ["test/hold"]
    await apply(target, tmp_path, held)
    async with await EmbeddedCluster.open(target.state) as cluster:
        await cluster.delete(DATABASES, "held", namespace="team-x")  # marked, held
    held["metadata"]["finalizers"] = ["test/hold", "test/more"]  # refused while deleting
    path = write_yaml(tmp_path / "two.yaml", held, database(name="other"))
    streams = Streams()
    code = await commands.apply([str(path)], target, out=streams.out, err=streams.err)
    assert code == commands.FAILED
    assert streams.lines == ["database.platform.company.com/other created"]
    [refused] = streams.errors
    assert refused.startswith(f"{path}: Database team-x/held: .metadata.finalizers: ")
    assert "no new finalizers can be added" in refused


# --- get ------------------------------------------------------------------------------


async def test_get_lists_a_table_with_namespaces_unless_one_is_asked(
    target: Target, tmp_path: Path
) -> None:
    await apply(target, tmp_path, broker_manifest("b2", namespace="team-y"), broker_manifest("b1"))
    everywhere = (await get(target, BROKERS)).lines
    assert everywhere[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [row.split()[:2] for row in everywhere[1:]] == [
        ["kidp-system", "b1"],
        ["team-y", "b2"],
    ]
    narrowed = (await get(target, BROKERS, namespace="team-y")).lines
    assert narrowed[0].split()[0] == "NAME"
    assert [row.split()[0] for row in narrowed[1:]] == ["b2"]


async def test_get_json_of_a_list_is_a_v1_list_with_the_listed_version(
    target: Target, tmp_path: Path
) -> None:
    await apply(target, tmp_path, broker_manifest("b1"), broker_manifest("b2"))
    listed = json.loads((await get(target, BROKERS, output="json")).out.getvalue())
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["b1", "b2"]
    async with await EmbeddedCluster.open(target.state) as cluster:
        head = (await cluster.list(BROKERS)).resource_version
    assert listed["metadata"]["resourceVersion"] == head


async def test_get_one_by_name_finds_its_namespace(target: Target, tmp_path: Path) -> None:
    await apply(target, tmp_path, database(namespace="team-z"))
    one = yaml.safe_load((await get(target, DATABASES, "db1", output="yaml")).out.getvalue())
    assert one["kind"] == "Database" and one["metadata"]["namespace"] == "team-z"
    crd = json.loads(
        (await get(target, CRDS, "brokers.platform.company.com", output="json")).out.getvalue()
    )
    assert crd["kind"] == "CustomResourceDefinition"  # cluster-scoped: no namespace to find


async def test_get_by_name_refuses_to_guess_or_to_invent(target: Target, tmp_path: Path) -> None:
    await apply(target, tmp_path, database(namespace="team-a"), database(namespace="team-b"))
    with pytest.raises(commands.Ambiguous) as caught:
        await get(target, DATABASES, "db1")
    assert caught.value.message == (
        'databases.platform.company.com "db1" exists in several namespaces (team-a, team-b): '
        "pick one with -n"
    )
    assert (await get(target, DATABASES, "db1", namespace="team-b")).lines[1].startswith("db1")
    with pytest.raises(NotFound, match="not found in any namespace"):
        await get(target, DATABASES, "nope")


async def test_get_nothing_says_so_on_stderr(target: Target, tmp_path: Path) -> None:
    await apply(target, tmp_path, secret())
    everywhere = await get(target, BROKERS)
    assert everywhere.lines == []
    assert everywhere.errors == ["No resources found in any namespace."]
    assert (await get(target, SECRETS, namespace="team-x")).errors == [
        "No resources found in team-x namespace."
    ]
    listed = json.loads((await get(target, BROKERS, output="json")).out.getvalue())
    assert listed["items"] == []  # json and yaml always print a document


# --- delete ---------------------------------------------------------------------------


async def test_delete_removes_or_marks_and_says_which(target: Target, tmp_path: Path) -> None:
    held = broker_manifest("held")
    held["metadata"]["finalizers"] = ["test/one", "test/two"]
    await apply(target, tmp_path, broker_manifest("b1"), held)
    gone, marked = Streams(), Streams()
    code = await commands.delete(BROKERS, "b1", target, namespace=None, out=gone.out, err=gone.err)
    assert code == commands.OK
    assert gone.lines == ['broker.platform.company.com "b1" deleted']
    code = await commands.delete(
        BROKERS, "held", target, namespace="kidp-system", out=marked.out, err=marked.err
    )
    assert code == commands.OK
    assert marked.lines == [
        'broker.platform.company.com "held" marked for deletion '
        "(waiting for finalizers: test/one, test/two)"
    ]
    async with await EmbeddedCluster.open(target.state) as cluster:
        with pytest.raises(NotFound):
            await cluster.get(BROKERS, "b1", namespace="kidp-system")
        still = await cluster.get(BROKERS, "held", namespace="kidp-system")
    assert "deletionTimestamp" in still["metadata"]


async def test_delete_of_a_missing_object_is_not_found(target: Target, tmp_path: Path) -> None:
    await apply(target, tmp_path, secret())
    streams = Streams()
    with pytest.raises(NotFound):
        await commands.delete(
            BROKERS, "nope", target, namespace=None, out=streams.out, err=streams.err
        )
    assert streams.lines == []


# --- select ---------------------------------------------------------------------------


def fleet(tmp_path: Path) -> str:
    """Three brokers with status: two eligible for postgresql in aws (high wins), one in gcp."""
    docs = [
        ready(broker_manifest("low", priority=100)),
        ready(broker_manifest("high", priority=150)),
        ready(broker_manifest("gcp", cloudProvider="gcp", region="europe-west1")),
    ]
    return str(write_yaml(tmp_path / "fleet.yaml", *docs))


async def select(
    target: Target,
    *,
    explain: bool = False,
    output: str = "table",
    **request: Any,
) -> tuple[int, Streams]:
    streams = Streams()
    request = {"now": "2026-11-25T10:00:00Z", **request}
    code = await commands.select(
        SelectRequest(**request),
        target,
        explain=explain,
        output=output,
        out=streams.out,
        err=streams.err,
    )
    return code, streams


async def test_select_from_files_prints_the_winner(target: Target, tmp_path: Path) -> None:
    files = (fleet(tmp_path),)
    code, streams = await select(
        target, files=files, resource_type="Database", provider="postgresql", cloud_provider="aws"
    )
    assert code == commands.OK
    [summary] = streams.lines
    assert summary.startswith(
        "Database (provider postgresql, cloud aws): selected kidp-system/high, score "
    )
    assert summary.endswith("; 2 of 3 brokers eligible")
    code, explained = await select(
        target, files=files, resource_type="Database", cloud_provider="aws", explain=True
    )
    assert code == commands.OK
    assert explained.lines[0].startswith("Database (cloud aws): selected kidp-system/high")
    assert explained.lines[1] == ""
    rows = {line.split()[0]: line for line in explained.lines[3:]}
    assert rows["kidp-system/high"].endswith("selected")
    assert rows["kidp-system/low"].endswith("eligible")
    assert "rejected: " in rows["kidp-system/gcp"]


async def test_select_json_is_the_decision(target: Target, tmp_path: Path) -> None:
    code, streams = await select(
        target, files=(fleet(tmp_path),), resource_type="Database", output="json"
    )
    assert code == commands.OK
    decision = json.loads(streams.out.getvalue())
    assert decision["selected"]["name"] == "high"
    assert sorted(c["name"] for c in decision["candidates"]) == ["gcp", "high", "low"]
    assert decision["candidates"][0]["name"] == "high"


async def test_select_with_no_match_exits_1_and_shows_why(target: Target, tmp_path: Path) -> None:
    code, streams = await select(target, files=(fleet(tmp_path),), resource_type="Cache")
    assert code == commands.FAILED
    assert streams.lines[0] == "Cache (any provider): no broker matches (3 rejected)"
    assert len(streams.lines) == 2 + 1 + 3  # the table of reasons, even without --explain
    assert all("rejected: " in row for row in streams.lines[3:])


@pytest.mark.parametrize(
    ("now", "words"),
    [
        ("yesterday", "--now 'yesterday' is not an RFC 3339 time with a zone"),
        ("2026-11-25T10:00:00", "is not an RFC 3339 time with a zone"),
    ],
)
async def test_select_refuses_a_time_without_a_zone(
    target: Target, tmp_path: Path, now: str, words: str
) -> None:
    code, streams = await select(
        target, files=(fleet(tmp_path),), resource_type="Database", now=now
    )
    assert code == commands.USAGE
    assert words in streams.err.getvalue() and streams.lines == []


async def test_select_refuses_bad_or_repeated_brokers(target: Target, tmp_path: Path) -> None:
    twice = write_yaml(tmp_path / "twice.yaml", broker_manifest("b1"), broker_manifest("b1"))
    code, streams = await select(target, files=(str(twice),), resource_type="Database")
    assert code == commands.USAGE
    assert streams.errors == ["error: Broker kidp-system/b1 is defined twice in the input"]
    bad = write_yaml(tmp_path / "bad.yaml", broker_manifest("b1", priority=2**31))
    code, streams = await select(target, files=(str(bad),), resource_type="Database")
    assert code == commands.USAGE
    assert streams.errors[0].startswith(f"{bad}: Broker kidp-system/b1: .spec.priority: ")


async def seed(target: Target, tmp_path: Path, *databases: dict[str, Any]) -> None:
    """The fleet in the store, its status written as the health reconciler would."""
    docs = list(yaml.safe_load_all(Path(fleet(tmp_path)).read_text()))
    await apply(target, tmp_path, *docs, *databases)
    async with await EmbeddedCluster.open(target.state) as cluster:
        for doc in docs:
            name = doc["metadata"]["name"]
            patch = {"status": doc["status"]}
            await cluster.patch_status(BROKERS, name, patch, namespace="kidp-system")


async def test_select_for_a_database_in_the_store(target: Target, tmp_path: Path) -> None:
    await seed(
        target,
        tmp_path,
        database("orders"),
        database("ledger", engine="mysql"),
        database("far", target="gcp-europe-west1"),
    )
    code, streams = await select(target, database="orders")
    assert code == commands.OK
    assert streams.lines[0].startswith(
        "Database (provider postgresql, cloud aws, region us-east-1): selected kidp-system/high"
    )
    code, streams = await select(target, database="far", namespace="team-x")
    assert code == commands.OK
    assert "selected kidp-system/gcp" in streams.lines[0]
    code, streams = await select(target, database="ledger")
    assert code == commands.FAILED  # the fleet offers postgresql only
    assert "no broker matches" in streams.lines[0]


async def test_select_for_a_database_it_cannot_read(target: Target, tmp_path: Path) -> None:
    await seed(
        target,
        tmp_path,
        database("twin", namespace="team-a"),
        database("twin", namespace="team-b"),
        database("lost", target="mars-olympus-1"),
    )
    cases = {
        "nope": 'error: database "nope" not found (any namespace)',
        "twin": 'error: database "twin" found in several namespaces: pick one with -n '
        "(any namespace)",
    }
    for name, message in cases.items():
        code, streams = await select(target, database=name)
        assert (code, streams.errors) == (commands.USAGE, [message])
    code, streams = await select(target, database="twin", namespace="team-c")
    assert streams.errors == ['error: database "twin" not found (namespace team-c)']
    code, streams = await select(target, database="lost")
    assert code == commands.USAGE
    [error] = streams.errors
    assert error.startswith("error: Database team-x/lost: .spec.target: ")
