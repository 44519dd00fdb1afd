"""Segments' use cases (being built)."""
