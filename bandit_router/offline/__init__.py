"""Comparing policies on logged traffic: replaying it through the router, and off-policy estimates of it."""
