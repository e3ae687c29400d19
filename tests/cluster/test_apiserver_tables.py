"""Table responses of the API facade: what `kubectl get` prints comes from here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kidp_ops.cluster import apiserver_tables as tables
from kidp_ops.cluster.base import BROKERS, Manifest
from kidp_ops.model.bundled import load_crds
from tests.support.facade import BROKERS_URL, NS, Api, broker, get_json, lines

TABLE_V1 = "application/json;as=Table;v=v1;g=meta.k8s.io"
KUBECTL_ACCEPT = f"{TABLE_V1},application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
BROKER_COLUMNS = [
    "Name",
    "Provider",
    "Region",
    "Phase",
    "Active",
    "Age",
    "Priority",
    "Max",
    "Version",
    "Heartbeat",
    "Endpoint",
]


def bundled_crd(resource: str) -> Manifest:
    return next(dict(c) for c in load_crds() if c["metadata"]["name"] == resource)


async def store_broker_crd(api: Api) -> None:
    await api.cluster.create(bundled_crd("brokers.platform.company.com"))


async def test_a_list_is_a_table_with_the_crd_printer_columns(api: Api) -> None:
    await store_broker_crd(api)
    five_minutes_ago = (datetime.now(UTC) - timedelta(minutes=5, seconds=30)).isoformat()
    created = await api.cluster.create(
        broker("b1", labels={"tier": "gold"}, creationTimestamp=five_minutes_ago)
    )
    status = {"status": {"phase": "Ready", "activeDeployments": 3}}
    await api.cluster.patch_status(BROKERS, "b1", status, namespace=NS)
    table = await get_json(api, BROKERS_URL, Accept=KUBECTL_ACCEPT)
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert table["metadata"]["resourceVersion"]
    columns = table["columnDefinitions"]
    assert [c["name"] for c in columns] == BROKER_COLUMNS
    assert [c["name"] for c in columns if c["priority"] == 0] == BROKER_COLUMNS[:6]
    assert columns[0]["format"] == "name"
    assert columns[4]["type"] == "integer" and columns[5]["type"] == "date"
    [row] = table["rows"]
    name, provider, region, phase, active, age, *wide = row["cells"]
    assert (name, provider, region, phase, active) == ("b1", None, None, "Ready", 3)
    assert age == "5m30s"
    assert wide == [None, None, None, None, "http://127.0.0.1:1"]  # no defaulting in memory
    assert row["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {**created["metadata"], "resourceVersion": "3"},
    }


@pytest.mark.parametrize(
    ("include", "expected"),
    [("Object", "Broker"), ("Metadata", "PartialObjectMetadata"), ("None", None)],
)
async def test_include_object(api: Api, include: str, expected: str | None) -> None:
    await api.cluster.create(broker("b1"))
    params = {"includeObject": include}
    async with api.http.get(BROKERS_URL, params=params, headers={"Accept": TABLE_V1}) as response:
        row = (await response.json())["rows"][0]
    assert (row.get("object") or {}).get("kind") == expected


async def test_a_bad_include_object_is_400(api: Api) -> None:
    params = {"includeObject": "Everything"}
    async with api.http.get(BROKERS_URL, params=params, headers={"Accept": TABLE_V1}) as response:
        assert response.status == 400
        assert "includeObject must be one of" in (await response.json())["message"]


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", "meta.k8s.io/v1beta1 Table"),
        ("application/json", "platform.company.com/v1 BrokerList"),
        ("*/*", "platform.company.com/v1 BrokerList"),
        ("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io, application/json",
         "platform.company.com/v1 BrokerList"),
    ],
)  # fmt: skip
async def test_the_answer_follows_accept(api: Api, accept: str, kind: str) -> None:
    body = await get_json(api, BROKERS_URL, Accept=accept)
    assert f"{body['apiVersion']} {body['kind']}" == kind


async def test_nothing_acceptable_is_406(api: Api) -> None:
    headers = {"Accept": "application/vnd.kubernetes.protobuf"}
    async with api.http.get(BROKERS_URL, headers=headers) as response:
        assert response.status == 406
        assert (await response.json())["reason"] == "NotAcceptable"


async def test_without_its_crd_a_custom_kind_has_name_and_age(api: Api) -> None:
    await api.cluster.create(broker("b1"))
    table = await get_json(api, BROKERS_URL, Accept=TABLE_V1)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age"]


async def test_one_object_is_a_table_of_one_row(api: Api) -> None:
    await store_broker_crd(api)
    await api.cluster.create(broker("b1"))
    table = await get_json(api, f"{BROKERS_URL}/b1", Accept=KUBECTL_ACCEPT)
    assert table["kind"] == "Table"
    assert [r["cells"][0] for r in table["rows"]] == ["b1"]


async def test_events_have_kube_apiservers_columns(api: Api) -> None:
    now = datetime.now(UTC)
    involved = {"apiVersion": "platform.company.com/v1", "kind": "Database"}
    involved["metadata"] = {"name": "db1", "namespace": NS, "uid": "u1"}
    await api.cluster.create_event(
        involved=involved,
        reason="BrokerSelected",
        message=" picked aws \n",
        now=(now - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    table = await get_json(api, f"/api/v1/namespaces/{NS}/events", Accept=TABLE_V1)
    columns = [(c["name"], c["priority"]) for c in table["columnDefinitions"]]
    assert [name for name, priority in columns if priority == 0] == [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Message",
    ]
    cells = dict(zip((name for name, _ in columns), table["rows"][0]["cells"], strict=True))
    assert cells["Last Seen"] == cells["First Seen"] == "3m"
    assert (cells["Type"], cells["Reason"], cells["Object"]) == (
        "Normal",
        "BrokerSelected",
        "database/db1",
    )
    assert (cells["Message"], cells["Source"], cells["Count"]) == ("picked aws", "kidp-ops", 1)
    assert cells["Name"].startswith("db1.")


async def test_secrets_show_type_and_data_count(api: Api) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": NS}}
    secret |= {"data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "y", "c": "z"}}
    await api.cluster.create(secret)
    table = await get_json(api, f"/api/v1/namespaces/{NS}/secrets", Accept=TABLE_V1)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Type", "Data", "Age"]
    assert table["rows"][0]["cells"][:3] == ["s", "Opaque", 3]


async def test_namespaces_are_a_table_too(api: Api) -> None:
    table = await get_json(api, "/api/v1/namespaces", Accept=TABLE_V1)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert table["rows"][0]["cells"] == ["default", "Active", "<unknown>"]


async def test_a_watch_for_tables_sends_one_row_tables(api: Api) -> None:
    await store_broker_crd(api)
    params = {"watch": "true", "timeoutSeconds": "5", "allowWatchBookmarks": "true"}
    headers = {"Accept": KUBECTL_ACCEPT}
    async with api.http.get(BROKERS_URL, params=params, headers=headers) as response:
        await api.cluster.create(broker("b1"))
        api.cluster.bookmark(BROKERS)
        added, bookmark = await lines(response, count=2)
    assert added["type"] == "ADDED"
    assert added["object"]["kind"] == "Table"
    assert [c["name"] for c in added["object"]["columnDefinitions"]] == BROKER_COLUMNS
    assert [r["cells"][0] for r in added["object"]["rows"]] == ["b1"]
    assert bookmark["type"] == "BOOKMARK" and bookmark["object"]["kind"] == "Broker"


# --- cells, as apiextensions-apiserver renders them ----------------------------------------------


def cells(column_type: str, value: Any, *, now: datetime | None = None) -> Any:
    crd = {
        "spec": {
            "versions": [
                {
                    "name": "v1",
                    "additionalPrinterColumns": [
                        {"name": "X", "type": column_type, "jsonPath": ".spec.x"}
                    ],
                }
            ]
        }
    }
    columns = tables.crd_columns(crd, "v1")
    obj = {"metadata": {"name": "o"}, "spec": {"x": value}}
    now = now or datetime(2026, 1, 1, tzinfo=UTC)
    table = tables.table(
        [obj], columns, resource_version="1", table_version="v1", include="None", now=now
    )
    return table["rows"][0]["cells"][1]


@pytest.mark.parametrize(
    ("column_type", "value", "cell"),
    [
        ("integer", 3, 3),
        ("integer", 2.0, 2),
        ("integer", "3", None),
        ("integer", True, None),
        ("number", 1, 1.0),
        ("boolean", False, False),
        ("boolean", "true", None),
        ("string", "eu", "eu"),
        ("string", True, "true"),
        ("string", 7, "7"),
        ("string", {"a": [1]}, '{"a":[1]}'),
        ("string", None, None),
        ("date", "2025-12-31T23:55:00Z", "5m"),
        ("date", "2026-01-01T00:00:30Z", "<invalid>"),
        ("date", "yesterday", "<invalid>"),
        ("date", 12, None),
    ],
)
def test_cells_have_their_columns_type(column_type: str, value: Any, cell: Any) -> None:
    assert cells(column_type, value) == cell
