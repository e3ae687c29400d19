"""Shared fixtures and guards for the whole suite."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.history import Generated, generate

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's cluster config or state by accident."""
    for name in ("KUBECONFIG", "KIDP_STATE", "KIDP_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/nonexistent-kidp-test-home")


@pytest.fixture(autouse=True)
async def _no_task_left_behind() -> Any:
    """Every asyncio task a test starts is finished when it ends (kopf's guard)."""
    before = asyncio.all_tasks()
    yield
    leftover = [
        t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()
    ]
    for task in leftover:
        task.cancel()
    assert not leftover, f"tasks left running: {leftover}"


def load_yaml(path: str | Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((REPO / path).read_text()) if d]


def broker_manifest(
    name: str = "b1", namespace: str = "kidp-system", **spec: Any
) -> dict[str, Any]:
    """A minimal valid Broker; keyword arguments override spec fields."""
    base: dict[str, Any] = {
        "apiVersion": "platform.company.com/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "endpoint": "http://127.0.0.1:18081",
            "cloudProvider": "aws",
            "region": "us-east-1",
            "capabilities": [{"resourceType": "Database", "providers": ["postgresql"]}],
        },
    }
    base["spec"].update(copy.deepcopy(spec))
    return base


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "state"


@pytest.fixture(scope="session")
def gocheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `tests/support/gocheck` binary: real Go's encoding/json and ed25519."""
    from tests.support.golang import build_gocheck

    return build_gocheck(tmp_path_factory.mktemp("gocheck"))


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """One generated history (tests.support.history), read-only, for every test that reads
    one: analysis, history, report and notebooks (built once)."""
    return generate(Path(tmp_path_factory.mktemp("history")))
