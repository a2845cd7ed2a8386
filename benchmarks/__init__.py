"""Benchmarks: run as modules from the repository root (not part of the tests)."""
