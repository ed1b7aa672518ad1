"""One suite every Redis a router runs on must pass: the embedded one, a master with a replica behind three
Sentinels (``redis+sentinel://``), and a Cluster of three masters (``redis+cluster://``, a hash-tag prefix); the
embedded one and the Cluster also with decisions spread over three shards (``redis.shards``). Route, Reward and the
learner, retries, expiry, quotas, the learner's lease, and a replica following the learner."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import Routers, make_config, until
from redis_servers import redis_cluster, sentinel_setup

from bandit_router.config import Config
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.errors import AlreadyExists, NotFound, ResourceExhausted
from bandit_router.serving.router import RouterService

_prefixes = itertools.count()


@pytest.fixture(
    params=[("embedded", 1), ("sentinel", 1), ("cluster", 1), ("embedded", 3), ("cluster", 3)],
    ids=lambda p: f"{p[0]}-{p[1]}-shard{'s' if p[1] > 1 else ''}",
)
async def redis(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """The URL of each kind of Redis in turn, and the shards to spread decisions over."""
    kind, shards = request.param
    if kind == "embedded":
        yield request.getfixturevalue("redis_url"), shards
    elif kind == "sentinel":
        async with sentinel_setup(tmp_path / "sentinel", sentinels=3) as watched:
            yield watched.url, shards
    else:
        async with redis_cluster(tmp_path / "cluster", masters=3) as ports:
            yield "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports), shards


def _config(tmp_path: Path, redis: tuple[str, int], **sections: object) -> Config:
    # A hash tag, which a Cluster needs and the others take as any prefix.
    config = make_config(tmp_path, **sections)  # type: ignore[arg-type]
    url, shards = redis
    return config.replace(redis={"url": url, "key_prefix": f"{{contract{next(_prefixes)}}}", "shards": shards})


async def _route(service: RouterService, i: int, **fields: object) -> str:
    decision = await service.route(RouteInput(query=f"What is {i} times {i + 1}?", **fields))  # type: ignore[arg-type]
    return decision.decision_id


async def test_routes_are_rewarded_and_learned_once(tmp_path: Path, redis: tuple[str, int], routers: Routers) -> None:
    service = await routers(_config(tmp_path, redis))
    ids = [await _route(service, i) for i in range(6)]
    # A retried Route (same request id) gets the first decision back.
    retried = await service.route(RouteInput(query="What is 1 times 2?", request_id="r-1"))
    again = await service.route(RouteInput(query="What is 1 times 2?", request_id="r-1"))
    assert again.decision_id == retried.decision_id and again.model == retried.model
    for decision_id in [*ids, retried.decision_id]:
        await service.reward(RewardInput(decision_id=decision_id, quality=0.75))
    with pytest.raises(AlreadyExists, match="was already rewarded; the first reward counts"):
        await service.reward(RewardInput(decision_id=ids[0], quality=0.1))
    assert service.learner is not None
    await service.learner.wait_learned(7, timeout=60)
    assert service.learner.policy.learned == 7
    assert await service.store.running_learner() == service.learner.name
    assert await service.store.backlog() == 0


async def test_an_unrewarded_decision_expires_with_its_default_reward(
    tmp_path: Path, redis: tuple[str, int], routers: Routers
) -> None:
    config = _config(tmp_path, redis, reward={"wait_time_s": 0.3, "expiry_sweep_s": 0.05, "on_expiry": "default"})
    service = await routers(config)
    late = await _route(service, 1)
    assert service.learner is not None
    await service.learner.wait_learned(1, timeout=60)
    with pytest.raises(NotFound, match=r"expired at .* \(rewards are accepted for 0.3 s after Route\)"):
        await service.reward(RewardInput(decision_id=late, quality=1.0))
    assert await service.expired_count() == 1


async def test_a_tenant_past_its_quota_is_refused(tmp_path: Path, redis: tuple[str, int], routers: Routers) -> None:
    """Each shard holds its share of the quota (2 here): the refusal comes once the decision's shard is full, so
    after 2 to ``quota`` decisions."""
    shards = redis[1]
    quota = 2 * shards
    service = await routers(_config(tmp_path, redis, limits={"max_pending_per_tenant": quota}))
    ids: list[str] = []
    with pytest.raises(ResourceExhausted, match="has 2 decisions waiting for a reward") as refused:
        for i in range(quota + 1):
            ids.append(await _route(service, i))
    assert 2 <= len(ids) <= quota
    if shards > 1:
        assert f"its share 2 of it (redis.shards = {shards})" in str(refused.value)
    # Rewards free their places.
    for decision_id in ids:
        await service.reward(RewardInput(decision_id=decision_id, quality=0.5))
    await _route(service, quota + 1)


async def test_a_replica_serves_what_the_learner_publishes(
    tmp_path: Path, redis: tuple[str, int], routers: Routers
) -> None:
    config = _config(tmp_path / "learner", redis, policy={"reload_poll_s": 0.5})
    learner = await routers(config)
    replica = await routers(config.replace(server={"data_dir": str(tmp_path / "replica"), "learner": False}))
    for i in range(4):
        await replica.reward(RewardInput(decision_id=await _route(replica, i), quality=1.0))
    assert learner.learner is not None
    await learner.learner.wait_learned(4, timeout=60)
    published = await learner.store.served_version()
    assert published is not None
    await until(lambda: replica.served.policy.version >= published, 60, "the replica to serve the published policy")
