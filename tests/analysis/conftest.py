"""One generated history for every analysis test (read-only, so built once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kidp_ops.history.frames import HistoryFrames, load
from tests.support.history import Generated, generate


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    return generate(Path(tmp_path_factory.mktemp("history")))


@pytest.fixture(scope="session")
def frames(generated: Generated) -> HistoryFrames:
    return load(generated.directory)
