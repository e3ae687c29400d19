"""The frames of the generated history, shared with tests/analysis (read-only)."""

from tests.analysis.conftest import frames

__all__ = ["frames"]
