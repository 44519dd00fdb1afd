"""Duplicate scans' use cases (being built)."""
