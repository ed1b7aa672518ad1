"""Redis with Sentinel, as users run it past one machine: the router finds the master through the Sentinels
(``redis+sentinel://``), and after a failover follows the new master; a reward acknowledged before the failover
stays learned once, and one retried across it is learned once."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from helpers import decision_logs, make_config, reward_retried, routed
from redis_servers import Watched, sentinel_setup

from bandit_router.embedding.model import Embedder
from bandit_router.store.embedded import redacted, sentinel_client
from bandit_router.v1 import router_pb2 as pb

SERVICE = "mymaster"


@pytest.fixture
async def sentinel(tmp_path: Path) -> AsyncIterator[Watched]:
    """A master, its replica and one Sentinel (quorum 1)."""
    async with sentinel_setup(tmp_path, sentinels=1, service=SERVICE) as watched:
        yield watched


@pytest.fixture
async def quorum(tmp_path: Path) -> AsyncIterator[Watched]:
    """A master, its replica and three Sentinels (quorum 2)."""
    async with sentinel_setup(tmp_path, sentinels=3, service=SERVICE) as watched:
        yield watched


async def master_port(watcher: int) -> int:
    client = aioredis.Redis(port=watcher, decode_responses=True)
    try:
        _, port = await client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
        return int(port)
    finally:
        await client.aclose()


def gaps(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bandit_router.serving.rewards"]


def test_a_sentinel_url_is_read_and_its_password_never_shown() -> None:
    url = "redis+sentinel://app:s3cret@10.0.0.1:26379,10.0.0.2/main/2"
    client = sentinel_client(url)
    pool = client.connection_pool
    assert pool.service_name == "main" and pool.connection_kwargs["db"] == 2  # type: ignore[attr-defined]
    assert pool.connection_kwargs["password"] == "s3cret"  # type: ignore[attr-defined]
    hosts = [
        (c.connection_pool.connection_kwargs["host"], c.connection_pool.connection_kwargs["port"])
        for c in pool.sentinel_manager.sentinels
    ]  # type: ignore[attr-defined]
    assert hosts == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    assert redacted(url) == "redis+sentinel://app:***@10.0.0.1:26379,10.0.0.2/main/2"
    for bad in ("redis+sentinel://h:1", "redis+sentinel://h:x/main", "redis+sentinel://h/main/a"):
        with pytest.raises(ValueError, match=r"redis\+sentinel://\[\[USER\]:PASSWORD@\]HOST"):
            sentinel_client(bad)


async def test_the_router_follows_a_failover_and_learns_every_reward_once(
    tmp_path: Path, sentinel: Watched, embedder: Embedder
) -> None:
    master, replica, watcher = sentinel.master, sentinel.replica, sentinel.watchers[0]
    url = f"redis+sentinel://127.0.0.1:{watcher}/{SERVICE}"
    config = make_config(tmp_path / "data", url, reward={"expiry_sweep_s": 0.2})
    async with routed(config, embedder) as (stub, service):
        rewarded = await stub.Route(pb.RouteRequest(query="What is 2 + 2?"))
        await stub.Reward(pb.RewardRequest(decision_id=rewarded.decision_id, quality=1.0))
        pending = await stub.Route(pb.RouteRequest(query="Name a prime number."))
        old = aioredis.Redis(port=master)
        try:
            # Both reached the replica before the failover (a failover loses what had not).
            assert await old.execute_command("WAIT", 1, 10_000) == 1
        finally:
            await old.aclose()
        admin = aioredis.Redis(port=watcher)
        try:
            await admin.execute_command("SENTINEL", "FAILOVER", SERVICE)
        finally:
            await admin.aclose()
        deadline = time.monotonic() + 60
        while await master_port(watcher) != replica:
            assert time.monotonic() < deadline, "the Sentinel did not promote the replica within 60 s"
            await asyncio.sleep(0.1)
        # The pending decision is rewarded on the new master; Route goes on as before.
        await reward_retried(stub, pending.decision_id, 0.5, timeout=60)
        after = await stub.Route(pb.RouteRequest(query="Write a haiku."))
        await reward_retried(stub, after.decision_id, 0.7, timeout=60)
        assert service.learner is not None
        await service.learner.wait_learned(3, timeout=60)
        assert service.learner.policy.learned == 3
        # The decision rewarded before the failover is still known as rewarded, on the new master.
        assert await service.store.was_rewarded(rewarded.decision_id)


async def test_with_wait_replicas_a_reward_is_answered_only_once_a_replica_holds_it(
    tmp_path: Path, sentinel: Watched, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    replica, watcher = sentinel.replica, sentinel.watchers[0]
    url = f"redis+sentinel://127.0.0.1:{watcher}/{SERVICE}"
    config = make_config(tmp_path / "data", url, redis={"wait_replicas": 1, "wait_timeout_ms": 300})
    caplog.set_level(logging.WARNING, "bandit_router.serving.rewards")
    copy = aioredis.Redis(port=replica)
    async with routed(config, embedder) as (stub, _):
        try:
            held = await stub.Route(pb.RouteRequest(query="What is 2 + 2?"))
            await stub.Reward(pb.RewardRequest(decision_id=held.decision_id, quality=1.0))
            # Answered only once the replica held it: the replica already knows it was rewarded.
            assert await copy.exists(f"{config.redis.key_prefix}:rewarded:{held.decision_id}")
            assert not gaps(caplog)
            # A replica that cannot keep up (stopped): the reward is on the master only, and is not acknowledged.
            gap = await stub.Route(pb.RouteRequest(query="Name a prime number."))
            os.kill(sentinel.replica_pid, signal.SIGSTOP)
            try:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.Reward(pb.RewardRequest(decision_id=gap.decision_id, quality=0.5))
            finally:
                os.kill(sentinel.replica_pid, signal.SIGCONT)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert refused.value.details() == (
                f"decision_id {gap.decision_id!r}: the reward is on the Redis master but 0 of redis.wait_replicas=1 "
                "replicas confirmed it within 300 ms; retry (a retry answered ALREADY_EXISTS means this reward was "
                "kept)"
            )
            (record,) = gaps(caplog)
            assert record.getMessage().startswith(f"reward of {gap.decision_id} held by 0 of 1 replicas after 300 ms")
            # The retry, once the replica is back, finds the first reward kept, and on the replica.
            assert await reward_retried(stub, gap.decision_id, 0.5, timeout=60, refused=True) == "kept"
            assert await copy.exists(f"{config.redis.key_prefix}:rewarded:{gap.decision_id}")
        finally:
            await copy.aclose()


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_master_killed_under_load_loses_no_acknowledged_reward(
    tmp_path: Path, quorum: Watched, embedder: Embedder, seed: int
) -> None:
    """Route and Reward from eight clients; SIGKILL of the master at a seeded random point; the Sentinels promote
    the replica. With redis.wait_replicas = 1 a reward is acknowledged (OK, or ALREADY_EXISTS on a retry after
    UNAVAILABLE: the earlier try was kept) only once the replica holds it, so every acknowledged reward is learned,
    and exactly once: none lost with the master, none learned twice when a take is replayed on the new one."""
    data = tmp_path / "data"
    config = make_config(data, quorum.url, redis={"wait_replicas": 1})
    total = 160
    kill_after = random.Random(seed).randrange(20, 120)
    acknowledged: list[str] = []
    killed = asyncio.Event()
    async with routed(config, embedder) as (stub, service):

        async def client(worker: int) -> None:
            for i in range(worker, total, 8):
                while True:
                    try:
                        decision = await stub.Route(pb.RouteRequest(query=f"client {worker} question {i}?"))
                        break
                    except grpc.aio.AioRpcError as exc:
                        assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                        await asyncio.sleep(0.2)
                await reward_retried(stub, decision.decision_id, (i % 5) / 4, timeout=120)
                acknowledged.append(decision.decision_id)
                if len(acknowledged) >= kill_after and not killed.is_set():
                    killed.set()
                    os.kill(quorum.master_pid, signal.SIGKILL)

        await asyncio.gather(*(client(w) for w in range(8)))
        assert killed.is_set()
        # The Sentinels moved the master to the replica.
        assert await master_port(quorum.watchers[0]) == quorum.replica
        learner = service.learner
        assert learner is not None
        await learner.wait_learned(total, timeout=120)
        assert learner.policy.learned == total, (learner.policy.learned, learner.duplicates)
    assert len(set(acknowledged)) == total
    learned = [
        json.loads(line)["decision_id"] for path in decision_logs(data) for line in path.read_text().splitlines()
    ]
    assert set(learned) == set(acknowledged)
