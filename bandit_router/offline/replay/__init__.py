"""Replaying logged traffic through the router, with baselines, scenarios and reports."""
