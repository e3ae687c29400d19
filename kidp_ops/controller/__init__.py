"""A small controller runtime: informers, a work queue, leader election (ARCHITECTURE.md §7)."""
