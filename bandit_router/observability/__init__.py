"""Observability: the monitor behind the dashboard, Prometheus metrics and colours."""
