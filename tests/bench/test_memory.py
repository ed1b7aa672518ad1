"""The memory bench weighs what Route and Reward leave in Redis; every per-decision key it finds expires."""

from __future__ import annotations

import pytest

from bandit_router.bench.memory import measure, per_route
from bandit_router.config import load_config


async def test_every_key_a_decision_leaves_expires_and_the_figure_adds_them_up() -> None:
    config = load_config(None).replace(reward={"wait_time_s": 300.0, "retention_s": 120.0})
    result = await measure(config, pairs=12, unrewarded=3)
    families = result["families"]
    # One summary per Route, a marker per Reward, a pending entry per Route never rewarded; nothing metered is
    # left behind (no gateway here), and each per-decision family has a time to live: none grows for good.
    assert families["decision"]["keys"] == 15
    assert families["rewarded"]["keys"] == 12
    assert families["pending"]["keys"] == 3
    grace = config.reward.sweep_grace_s
    assert 0 < families["decision"]["max_ttl_s"] <= 300 + grace
    assert 0 < families["rewarded"]["max_ttl_s"] <= 120
    per_decision = {n for n, e in families.items() if e["keys"] > 1}
    assert per_decision >= {"decision", "rewarded", "pending"}
    assert all(families[n]["max_ttl_s"] is not None for n in per_decision)
    # The figure is each family's bytes per route times how long it lives.
    expected = sum(families[n]["bytes"] / 15 * families[n]["max_ttl_s"] for n in per_decision)
    assert result["total_bytes_per_route_per_s"] == pytest.approx(expected)


def test_structures_without_a_lifetime_are_reported_as_held_not_per_route() -> None:
    families = {
        "decision": {"keys": 10, "bytes": 10_000, "max_ttl_s": 100.0},
        "events": {"keys": 1, "bytes": 5_000, "max_ttl_s": None},
        "snapshot": {"keys": 1, "bytes": 20_000, "max_ttl_s": None},
    }
    figures = per_route(families, pairs=8, unrewarded=2)
    assert figures["bytes_per_route_per_s"] == {"decision": pytest.approx(100_000.0)}
    assert figures["bytes_held"] == {"events": 5_000, "snapshot": 20_000}
