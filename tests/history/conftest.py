"""The generated history of tests/analysis, shared (read-only, built once)."""

from tests.analysis.conftest import frames, generated

__all__ = ["frames", "generated"]
