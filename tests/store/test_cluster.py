"""A router on a Redis Cluster (``redis+cluster://``): every key under one hash tag (``redis.key_prefix = "{br}"``),
so its scripts run on one node; Route, Reward and the learner work as on one Redis. A prefix without a hash tag is
refused with a Cluster, naming the rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import make_config, routed
from redis_servers import redis_cluster

from bandit_router.config import ConfigError
from bandit_router.embedding.model import Embedder
from bandit_router.v1 import router_pb2 as pb


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[list[int]]:
    """A Redis Cluster of three masters: their ports."""
    async with redis_cluster(tmp_path / "cluster", masters=3) as ports:
        yield ports


async def test_a_router_on_a_cluster_routes_rewards_and_learns(
    tmp_path: Path, cluster: list[int], embedder: Embedder
) -> None:
    # Any one node will do to find the rest.
    url = f"redis+cluster://127.0.0.1:{cluster[1]}"
    config = make_config(tmp_path).replace(redis={"url": url, "key_prefix": "{br}"})
    async with routed(config, embedder) as (stub, service):
        decisions = [await stub.Route(pb.RouteRequest(query=f"Question {i}: what is {i} * {i}?")) for i in range(4)]
        for decision in decisions:
            await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=0.8))
        assert service.learner is not None
        await service.learner.wait_learned(4, timeout=60)
        assert service.learner.policy.learned == 4
        # Every key the router wrote carries the hash tag, so all sit in one slot.
        keys = [k async for k in service.store.client.scan_iter(match="*")]
        assert keys and all(k.startswith(b"{br}:") for k in keys)


def test_a_cluster_needs_a_hash_tag_prefix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"redis.key_prefix must be a hash tag in braces with a Redis Cluster"):
        make_config(tmp_path).replace(redis={"url": "redis+cluster://127.0.0.1:7000"})
