"""A real Redis process stops and starts again: Route keeps answering, Reward says UNAVAILABLE meanwhile,
and the router recovers by itself, losing nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from helpers import Routers, make_config, reward_retried

from bandit_router.embedding.model import Embedder
from bandit_router.runtime.process import RouterProcess
from bandit_router.store.embedded import EmbeddedRedis
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc


async def test_route_answers_through_an_outage_and_nothing_is_lost(
    tmp_path: Path, own_redis: EmbeddedRedis, embedder: Embedder, routers: Routers
) -> None:
    config = make_config(tmp_path / "data", own_redis.url, reward={"expiry_sweep_s": 0.2})
    service = await routers(config)
    server = RouterProcess(service, "127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            before = await stub.Route(pb.RouteRequest(query="What is 2 + 2?"))
            await stub.Reward(pb.RewardRequest(decision_id=before.decision_id, quality=1.0))
            unrewarded = await stub.Route(pb.RouteRequest(query="Name a prime number."))

            await asyncio.to_thread(own_redis.stop)
            during = [await stub.Route(pb.RouteRequest(query=f"Question {i} while Redis is down?")) for i in range(5)]
            assert all(d.model for d in during)
            for decision_id in (during[0].decision_id, unrewarded.decision_id):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Reward(pb.RewardRequest(decision_id=decision_id, quality=0.5))
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "Redis is unreachable, retry" in (caught.value.details() or "")
            stats = await stub.GetStats(pb.GetStatsRequest())
            assert stats.policy_version

            await asyncio.to_thread(own_redis.start)  # the same data directory: its append-only file
            # The client retries, as UNAVAILABLE tells it to; the router reconnects by itself.
            for d in [unrewarded, *during]:
                await reward_retried(stub, d.decision_id, 0.5, timeout=30)
            assert not len(service.outage)
            assert service.learner is not None
            await service.learner.wait_learned(7, timeout=30)
            assert service.learner.policy.learned == 7
            after = await stub.Route(pb.RouteRequest(query="And after?"))
            await stub.Reward(pb.RewardRequest(decision_id=after.decision_id, quality=1.0))
    finally:
        await server.stop(1.0)
