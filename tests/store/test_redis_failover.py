"""A Redis that is up but has become a replica (a failover promoted another): answered as an outage, not a bug."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from helpers import Routers, free_port, make_config, reward_retried
from redis.exceptions import ResponseError

from bandit_router.embedding.model import Embedder
from bandit_router.runtime.process import RouterProcess
from bandit_router.store.embedded import EmbeddedRedis
from bandit_router.store.errors import refusing
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc


async def test_a_demoted_redis_is_an_outage_route_keeps_answering_and_nothing_is_lost(
    tmp_path: Path, own_redis: EmbeddedRedis, embedder: Embedder, routers: Routers
) -> None:
    """While the router's Redis is a replica (of a master nobody runs: it keeps its data and answers reads, but
    refuses every write with READONLY, as an old master does until the client follows the failover), Route
    answers from memory and Reward says UNAVAILABLE; once it is a master again, the retried rewards are learned,
    each once."""
    config = make_config(tmp_path / "data", own_redis.url, reward={"expiry_sweep_s": 0.2})
    service = await routers(config)
    server = RouterProcess(service, "127.0.0.1:0")
    await server.start()
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            before = await stub.Route(pb.RouteRequest(query="What is 2 + 2?"))
            await stub.Reward(pb.RewardRequest(decision_id=before.decision_id, quality=1.0))
            unrewarded = await stub.Route(pb.RouteRequest(query="Name a prime number."))

            await admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
            with pytest.raises(ResponseError) as refused:
                await admin.set("probe", "1")
            assert refusing(refused.value), refused.value
            during = [await stub.Route(pb.RouteRequest(query=f"Question {i} during the failover?")) for i in range(3)]
            assert all(d.model for d in during) and len(service.outage) == 3
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Reward(pb.RewardRequest(decision_id=unrewarded.decision_id, quality=0.5))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "Redis refuses writes for now, retry" in (caught.value.details() or "")

            await admin.execute_command("REPLICAOF", "NO", "ONE")
            for d in [unrewarded, *during]:
                await reward_retried(stub, d.decision_id, 0.5, timeout=30)
            assert not len(service.outage)
            assert service.learner is not None
            await service.learner.wait_learned(5, timeout=60)
            assert service.learner.policy.learned == 5
    finally:
        await admin.aclose()
        await server.stop(1.0)


@pytest.mark.parametrize(
    ("reply", "refused"),
    [
        ("READONLY You can't write against a read only replica.", True),
        ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", True),
        ("CLUSTERDOWN The cluster is down", True),
        ("TRYAGAIN Multiple keys request during rehashing of slot", True),
        ("UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)", True),
        ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.", True),
        ("ERR unknown command 'FOO'", False),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", False),
    ],
)
def test_which_replies_are_refusals_to_wait_out(reply: str, refused: bool) -> None:
    assert refusing(ResponseError(reply)) is refused
