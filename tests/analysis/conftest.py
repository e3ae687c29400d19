"""The frames of the generated history (tests/conftest.py `generated`), built once."""

from __future__ import annotations

import pytest

from kidp_ops.history.frames import HistoryFrames, load
from tests.support.history import Generated


@pytest.fixture(scope="session")
def frames(generated: Generated) -> HistoryFrames:
    return load(generated.directory)
