"""The capacity bench: several replicas and one learner on a three-master Redis Cluster, measured per route; the
model's per-route Redis work (one script per Route; one read and one script, appending one stream entry, per
Reward) is what the cluster counted, and the projection names the part that runs out first."""

from __future__ import annotations

import pytest

from bandit_router.bench.capacity import project, simulate
from bandit_router.config import load_config


@pytest.mark.parametrize("shards", [1, 3])
async def test_the_loopback_deployment_does_per_route_what_the_model_says(shards: int) -> None:
    pairs, unrewarded = 20, 4
    result = await simulate(
        load_config(None), replicas=2, pairs=pairs, unrewarded=unrewarded, concurrency=4, shards=shards
    )
    routes = pairs + unrewarded
    counted = {k: v * routes for k, v in result["redis_commands_routing"].items()}
    # Route: the put script; Reward: one MGET (pending and metered) and the take script, whose XADD appends the event.
    assert counted["evalsha"] == pytest.approx(routes + pairs)
    assert counted["mget"] == pytest.approx(pairs)
    assert counted["xadd"] == pytest.approx(pairs)
    # The learner learned them all (simulate waits for it), and each decision left keys that expire.
    assert result["learner_rewards_per_s"] > 0 and result["total_bytes_per_route_per_s"] > 0
    assert {"decision", "rewarded"} <= set(result["bytes_per_route_per_s"])
    rows = project(result, rates=(1_000, 1_000_000))
    assert [row["rate"] for row in rows] == [1_000, 1_000_000]
    # Loads grow with the rate; at a million routes/s something has run out, and it is named.
    assert all(rows[1]["loads"][part] > rows[0]["loads"][part] for part in rows[0]["loads"])
    assert rows[1]["loads"][rows[1]["first"]] == max(rows[1]["loads"].values()) > 1
