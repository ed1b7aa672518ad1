"""One learner at a time: the lease and its fencing token, a standby that waits, and one that takes over from a
learner killed with SIGKILL, every reward learned once."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from helpers import Routers, free_port, make_config, reward_some, until

from bandit_router.config import Config
from bandit_router.embedding.model import Embedder
from bandit_router.learning.learner import Learner
from bandit_router.policy.vw import Snapshot
from bandit_router.runtime.root import build_learner
from bandit_router.store.lease import Lease, fenced
from bandit_router.store.redis_store import Store


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_the_lease_has_one_holder_and_a_new_token_each_time_it_changes_hands(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    prefix = make_config(tmp_path).redis.key_prefix
    lease = Lease(client, prefix)
    first = await lease.hold("a", 30.0)
    assert first is not None and first.token == 1
    assert await lease.hold("b", 30.0) is None
    assert await lease.holder() == "a"
    # Renewed, the token stays.
    renewed = await lease.hold("a", 30.0, first)
    assert renewed == first
    # Another's release lets go of nothing.
    await lease.release(dataclasses.replace(first, token=7))
    assert await lease.holder() == "a"
    await lease.release(first)
    second = await lease.hold("b", 30.0)
    assert second is not None and second.token == 2
    # The old holder's renewal does not take it back.
    assert await lease.hold("a", 30.0, first) is None


async def test_writes_under_a_lost_lease_are_refused(client: aioredis.Redis, tmp_path: Path) -> None:
    prefix = make_config(tmp_path).redis.key_prefix
    store = Store(client, prefix)
    await store.ensure_group()
    old = await store.lease.hold("a", 0.05)
    assert old is not None
    await client.xadd(store.events_key, {"event": "x"})
    # The lease lapses and another learner takes it: the old token no longer reads, trims or publishes.
    await until(_lapsed(store), 10, "the lease to lapse")
    new = await store.lease.hold("b", 30.0)
    assert new is not None
    refused = [
        store.read_events(old, "learner-0", None, 10, None),
        store.acknowledge(old, [], keep_from="0-1"),
        store.save_snapshot(b"stale", 9, old),
        store.save_served(b"stale", 9, old),
    ]
    for write in refused:
        with pytest.raises(aioredis.ResponseError) as info:
            await write
        assert fenced(info.value), info.value
        assert "lease held by b 2" in str(info.value)
    assert await store.load_snapshot() is None and await store.load_served() == (None, {})
    # Nothing was delivered to the group under the old token: the new holder reads the event.
    assert [text for _, text in await store.read_events(new, "learner-0", None, 10, None)] == ["x"]


async def test_with_shards_each_shard_holds_a_copy_of_the_lease_that_fences_it(
    client: aioredis.Redis, tmp_path: Path
) -> None:
    prefix = make_config(tmp_path).redis.key_prefix
    store = Store(client, prefix, shards=3)
    await store.ensure_group()
    old = await store.lease.hold("a", 0.05)
    assert old is not None and await store.claim_shards(old)
    await until(_lapsed(store), 10, "the lease to lapse")
    new = await store.lease.hold("b", 30.0)
    assert new is not None and await store.claim_shards(new)
    for shard in range(3):
        await client.xadd(store.shards[shard].events_key, {"event": f"x{shard}"})
        with pytest.raises(aioredis.ResponseError) as info:
            await store.read_events(old, "learner-0", None, 10, None, shard)
        assert fenced(info.value), info.value
        assert [t for _, t in await store.read_events(new, "learner-0", None, 10, None, shard)] == [f"x{shard}"]
    # The old holder cannot put its token back on the shards either.
    assert not await store.claim_shards(old)


async def test_two_learners_started_together_one_learns_the_other_waits(
    tmp_path: Path, redis_url: str, embedder: Embedder, routers: Routers
) -> None:
    config = make_config(tmp_path / "replica", redis_url, server={"learner": False})
    replica = await routers(config)
    learners: list[Learner] = []
    for name in ("one", "two"):
        own = config.replace(server={"data_dir": str(tmp_path / name)})
        learners.append(await build_learner(own, replica.store, embedder.dimension, lambda p: None, None, None))
    for learner in learners:
        learner.start()
    try:
        await reward_some(replica, 40)
        await until(lambda: any(learner.published >= 40 for learner in learners), 60, "40 rewards learned")
        active = [learner for learner in learners if learner.role == "active"]
        standby = [learner for learner in learners if learner.role == "standby"]
        assert len(active) == 1 and len(standby) == 1
        assert active[0].policy.learned == 40 and standby[0].policy.learned == 0
        assert await replica.store.running_learner() == active[0].name
    finally:
        for learner in learners:
            await learner.stop(30)


def _learner_process(config: Config, data_dir: Path, health: str) -> subprocess.Popen[bytes]:
    """``bandit-router learner`` on ``config``'s Redis, prefix and shards, probed on ``health``."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "REDIS_URL": config.redis.url,
        "BANDIT_ROUTER_REDIS_KEY_PREFIX": config.redis.key_prefix,
        "BANDIT_ROUTER_REDIS_SHARDS": str(config.redis.shards),
        "BANDIT_ROUTER_SERVER_DATA_DIR": str(data_dir),
        "BANDIT_ROUTER_SERVER_LEARNER_HEALTH_LISTEN": health,
        "BANDIT_ROUTER_EMBEDDING_DEVICE": "cpu",
        # Snapshots often, so that the kill lands with events learned and not yet published.
        "BANDIT_ROUTER_POLICY_SNAPSHOT_EVERY_EVENTS": "8",
        "BANDIT_ROUTER_POLICY_SNAPSHOT_INTERVAL_S": "0.2",
        "BANDIT_ROUTER_POLICY_LEASE_S": "4",
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "learner.log", "ab")  # noqa: SIM115 - the child keeps it open
    return subprocess.Popen([sys.executable, "-m", "bandit_router", "learner"], env=env, stdout=log, stderr=log)


async def _probe(url: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


@pytest.mark.parametrize("shards", [1, 3])
async def test_a_standby_takes_over_from_a_killed_learner_and_learns_every_reward_once(
    tmp_path: Path, redis_url: str, embedder: Embedder, routers: Routers, shards: int
) -> None:
    """With one stream, and with decisions over three shards (three streams, the lease copied onto each)."""
    config = make_config(tmp_path / "replica", redis_url, server={"learner": False}, redis={"shards": shards})
    replica = await routers(config)
    store = replica.store
    ports = [free_port(), free_port()]
    processes = [
        _learner_process(config, tmp_path / f"learner{i}", f"127.0.0.1:{port}") for i, port in enumerate(ports)
    ]
    try:
        for port in ports:

            async def ready(port: int = port) -> bool:
                try:
                    status, state = await _probe(f"http://127.0.0.1:{port}/readyz")
                except aiohttp.ClientError:
                    return False
                return status == 200 and state["role"] in ("active", "standby")

            await until(ready, 120, f"the learner on port {port} to be ready")
        await until(store.running_learner, 60, "a learner to take the lease")
        holder = await store.running_learner()
        assert holder is not None
        pids = [p.pid for p in processes]
        active = pids.index(int(holder.split(":")[1]))
        await reward_some(replica, 30)
        await until(lambda: _learned(store, at_least=1), 60, "a first checkpoint")
        # Killed while the rewards keep coming: some are learned and not yet published, or delivered and not
        # learned, and are the standby's to learn.
        traffic = asyncio.create_task(reward_some(replica, 30, start=30))
        await until(lambda: _learned(store, at_least=31), 60, "the second batch's first rewards learned")
        _, killed = await _probe(f"http://127.0.0.1:{ports[active]}/readyz")
        processes[active].send_signal(signal.SIGKILL)
        await traffic

        async def taken_over() -> bool:
            holder = await store.running_learner()
            return holder is not None and int(holder.split(":")[1]) == pids[1 - active]

        # The killed learner's lease lapses first (it may have learned all 60 before the kill landed).
        await until(taken_over, 120, "the standby to take the lease")
        await until(lambda: _learned(store, at_least=60), 120, "all 60 rewards learned after the takeover")
        checkpoint = Snapshot.decode(await store.load_snapshot() or b"")
        assert checkpoint.learned == 60
        new_holder = await store.running_learner()
        assert new_holder is not None and int(new_holder.split(":")[1]) == pids[1 - active]

        async def says_active() -> bool:
            status, state = await _probe(f"http://127.0.0.1:{ports[1 - active]}/readyz")
            return status == 200 and state["role"] == "active"

        # Its probe says so once its takeover (the reload of the newest checkpoint) is done, a moment after the lease.
        await until(says_active, 60, "the new holder's readiness probe to say active")
        status, state = await _probe(f"http://127.0.0.1:{ports[1 - active]}/readyz")
        # A newer token than the killed learner's, which can therefore no longer write.
        assert isinstance(killed["token"], int) and isinstance(state["token"], int)
        assert state["token"] > killed["token"]
        status, _ = await _probe(f"http://127.0.0.1:{ports[1 - active]}/livez")
        assert status == 200
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            await asyncio.to_thread(process.wait, 60)


def _lapsed(store: Store) -> Callable[[], Awaitable[bool]]:
    async def lapsed() -> bool:
        return await store.running_learner() is None

    return lapsed


async def _learned(store: Store, at_least: int) -> bool:
    raw = await store.load_snapshot()
    return raw is not None and Snapshot.decode(raw).learned >= at_least
