"""See tui/__init__.py."""
