"""Benchmarks that are part of the tool: `textcls bench attention` (attention.py)."""
