"""Replay of logged traffic through the router, against baselines on the same stream."""
