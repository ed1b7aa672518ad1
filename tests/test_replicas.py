"""Two routing replicas and one learner on one Redis: every reward learned once, and both replicas serve
each new policy soon after the learner publishes it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
from conftest import make_config

from bandit_router.embedding import Embedder
from bandit_router.learner_process import run_learner
from bandit_router.policy import Snapshot
from bandit_router.server import Server
from bandit_router.service import RouterService
from bandit_router.store import Store
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc


async def test_two_replicas_one_learner(tmp_path: Path, redis_url: str, embedder: Embedder) -> None:
    base = make_config(tmp_path / "learner", redis_url)
    prefix = base.redis.key_prefix
    learner_stop = asyncio.Event()
    learner = asyncio.create_task(run_learner(base, learner_stop))
    replicas: list[Server] = []
    for name in ("a", "b"):
        config = base.replace(
            server={"data_dir": str(tmp_path / name), "learner": False}, policy={"reload_poll_s": 30.0}
        )
        service = await RouterService.open(config, embedder=embedder)
        replicas.append(Server(service, "127.0.0.1:0"))
        await replicas[-1].start()
    rewarded: list[str] = []
    try:

        async def traffic(server: Server, n: int) -> None:
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = router_pb2_grpc.RouterStub(channel)
                for i in range(n):
                    d = await stub.Route(pb.RouteRequest(query=f"{server.address} question {i}?"))
                    await stub.Reward(pb.RewardRequest(decision_id=d.decision_id, quality=float(i % 2)))
                    rewarded.append(d.decision_id)

        await asyncio.gather(*(traffic(r, 60) for r in replicas))
        store = Store(replicas[0].service.store.client, prefix)
        # The learner's served snapshot covers all 120, and both replicas swap to it (poll is 30 s: the
        # announcement did it).
        deadline = time.monotonic() + 30
        while True:
            raw = await store.load_served()
            served = Snapshot.decode(raw) if raw else None
            if served is not None and served.learned == 120:
                break
            assert time.monotonic() < deadline, "the learner did not learn the 120 rewards in 30 s"
            await asyncio.sleep(0.05)
        published = time.monotonic()
        while any(r.service.policy_version != f"v{served.version}" for r in replicas):
            assert time.monotonic() - published < 5, [r.service.policy_version for r in replicas]
            await asyncio.sleep(0.02)
        assert all(r.service.learner is None for r in replicas)
    finally:
        for r in replicas:
            await r.stop(0)
        learner_stop.set()
        await learner
    # Learned once each: the learner's decision log holds each of the 120 decisions once.
    logged = [
        json.loads(line)["decision_id"]
        for path in (tmp_path / "learner" / "decisions").glob("decisions-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert sorted(logged) == sorted(rewarded) and len(set(logged)) == 120
