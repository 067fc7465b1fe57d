"""Benchmarks: each prints measurements next to a baseline measured in the same run."""
