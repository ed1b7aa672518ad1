"""Offline tools: replay, evaluation, benchmarks and the soak test."""
