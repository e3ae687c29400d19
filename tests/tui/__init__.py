"""Tests of the dashboard (tui/)."""
