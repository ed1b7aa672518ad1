"""The learner: events its snapshot already covers are not learned twice; a backlog is read once; a
malformed event is skipped; stopping drains the stream."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from helpers import Routers, make_config, reward_some

from bandit_router.config import Config
from bandit_router.embedding.model import Embedder
from bandit_router.policy.vw import Snapshot
from bandit_router.runtime.process import run_learner
from bandit_router.serving.router import RouterService
from bandit_router.store.embedded import SOCKET_TIMEOUT_S
from bandit_router.store.lease import Fence
from bandit_router.store.redis_store import Store


async def test_redelivered_events_in_the_snapshot_are_not_learned_again(
    service: RouterService, monkeypatch: pytest.MonkeyPatch
) -> None:
    learner = service.learner
    assert learner is not None
    client = service.store.client

    async def lost(*args: Any, **kwargs: Any) -> None:
        return None

    # As after a crash between snapshot and acknowledgement: the snapshot holds the events, the stream
    # still has them unacknowledged, and the group delivers them again. (tests/learning/test_crash.py kills a
    # real router process at a random point; this makes the one window certain.)
    monkeypatch.setattr(service.store, "acknowledge", lost)
    await reward_some(service, 5)
    await learner.wait_learned(5, timeout=20)
    monkeypatch.undo()
    assert await client.xlen(service.store.events_key) == 5
    await client.xgroup_setid(service.store.events_key, "learner", id="0")
    await reward_some(service, 1, start=5)
    await learner.wait_learned(6, timeout=20)
    assert learner.skipped == 5
    assert learner.policy.learned == 6
    # Acknowledged and trimmed this time: nothing of it is left to deliver again.
    assert await client.xlen(service.store.events_key) == 0


async def test_a_backlog_delivered_before_a_crash_is_read_once(
    config: Config, embedder: Embedder, monkeypatch: pytest.MonkeyPatch, routers: Routers
) -> None:
    replica = await routers(config.replace(server={"learner": False}))
    try:
        await reward_some(replica, 3)
        store = replica.store
        await store.ensure_group()
        # Delivered to the learner, then neither learned nor acknowledged: it died right after the read.
        await store.client.xreadgroup(Store.GROUP, "learner-0", {store.events_key: ">"}, count=10)
        acknowledged: list[str] = []
        acknowledge = Store.acknowledge

        async def recording(store: Store, fence: Fence, ids: list[str], keep_from: str, shard: int = 0) -> None:
            acknowledged.extend(ids)
            await acknowledge(store, fence, ids, keep_from, shard)

        monkeypatch.setattr(Store, "acknowledge", recording)
        learner = await routers(config)
        try:
            assert learner.learner is not None
            await learner.learner.wait_learned(3, timeout=20)
        finally:
            await learner.close()
    finally:
        await replica.close()
    # Each once: reading the backlog from its start again would hand the same events over and over.
    assert len(acknowledged) == 3 and len(set(acknowledged)) == 3


async def test_a_malformed_event_is_logged_and_skipped(service: RouterService) -> None:
    learner = service.learner
    assert learner is not None
    await service.store.client.xadd(service.store.events_key, {"event": b"{not json"})
    await reward_some(service, 2)
    await learner.wait_learned(2, timeout=20)
    assert learner.failures == 1
    assert learner.policy.learned == 2
    pending = await service.store.client.xpending(service.store.events_key, "learner")
    assert pending["pending"] == 0


async def test_a_learner_stopped_as_it_starts_still_learns_what_is_in_the_stream(
    config: Config, embedder: Embedder, routers: Routers
) -> None:
    # Replicas were quicker than the learner: their rewards wait in the stream when the stop comes.
    replica = await routers(config.replace(server={"learner": False}))
    try:
        await reward_some(replica, 3)
        stop = asyncio.Event()
        stop.set()
        await run_learner(config, stop)
        snapshot = Snapshot.decode(await replica.store.client.get(replica.store.snapshot_key))
    finally:
        await replica.close()
    assert snapshot.learned == 3


async def test_the_learner_goes_on_after_a_step_fails(service: RouterService, monkeypatch: pytest.MonkeyPatch) -> None:
    learner = service.learner
    assert learner is not None
    judge = learner.gate.judge
    failed: list[int] = []

    def once(*args: Any) -> Any:
        if not failed:
            failed.append(1)
            raise ValueError("the gate could not judge")
        return judge(*args)

    monkeypatch.setattr(learner.gate, "judge", once)
    await reward_some(service, 40)
    await learner.wait_learned(40, timeout=30)
    assert failed and learner.failures == 1 and learner.policy.learned == 40


async def test_an_idle_learner_with_a_long_snapshot_interval_keeps_health_steady(
    tmp_path: Path, redis_url: str, routers: Routers
) -> None:
    """policy.snapshot_interval_s = 10 once made the learner's blocking read 5 s, the Redis socket timeout: an
    idle router then read as having lost Redis (NOT_SERVING, an ERROR logged) every few seconds. Watched for
    longer than the socket timeout, health never wavers."""
    service = await routers(make_config(tmp_path, redis_url, policy={"snapshot_interval_s": 10.0}))
    problems: list[str] = []
    deadline = asyncio.get_running_loop().time() + SOCKET_TIMEOUT_S * 1.5
    while asyncio.get_running_loop().time() < deadline:
        problem = service.health_problem()
        if problem is not None:
            problems.append(problem)
        await asyncio.sleep(0.1)
    assert problems == []
    assert service.learner is not None and service.learner.failures == 0
