"""A router on a Redis Cluster (``redis+cluster://``): every key under one hash tag (``redis.key_prefix = "{br}"``),
so its scripts run on one node; Route, Reward and the learner work as on one Redis. A prefix without a hash tag is
refused with a Cluster, naming the rule."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from helpers import make_config, routed
from redis_servers import redis_server

from bandit_router.config import ConfigError
from bandit_router.embedding.model import Embedder
from bandit_router.v1 import router_pb2 as pb


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[int]:
    """A one-node Redis Cluster holding every slot: its port."""
    folder = tmp_path / "cluster"

    def args(port: int) -> list[str]:
        return ["--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file",
                str(folder / "nodes.conf"), "--save", "", "--appendonly", "no"]  # fmt: skip

    async with redis_server(folder, args) as (_, port):
        admin = aioredis.Redis(port=port, decode_responses=True)
        try:
            await admin.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
            deadline = time.monotonic() + 30
            while "cluster_state:ok" not in await admin.execute_command("CLUSTER", "INFO"):
                assert time.monotonic() < deadline, "the cluster did not come up within 30 s"
                await asyncio.sleep(0.05)
        finally:
            await admin.aclose()
        yield port


async def test_a_router_on_a_cluster_routes_rewards_and_learns(
    tmp_path: Path, cluster: int, embedder: Embedder
) -> None:
    url = f"redis+cluster://127.0.0.1:{cluster}"
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
