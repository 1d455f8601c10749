"""Helpers for tests and benchmarks (Charter's own, and plugin authors')."""
