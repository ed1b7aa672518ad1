"""Decisions never rewarded expire: dropped, or learned with the default reward; a late reward is refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from helpers import ManualClock, Routers, decision_logs, make_config, until

from bandit_router.domain.metered import Metered
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.embedding.model import Embedder
from bandit_router.errors import NotFound
from bandit_router.serving.expiry import Expiry
from bandit_router.serving.router import RouterService

WAIT_S = 60.0  # reward.wait_time_s: deadlines pass when the test advances the router's clock past it


async def open_service(
    routers: Routers, tmp_path: Path, redis_url: str, clock: ManualClock | None = None, **reward: object
) -> RouterService:
    # A sweep interval far beyond the test: the test sweeps by hand, when it wants to.
    config = make_config(tmp_path, redis_url, reward={"wait_time_s": WAIT_S, "expiry_sweep_s": 1000.0, **reward})
    return await routers(config, clock=clock or ManualClock())


async def test_a_late_reward_is_refused_naming_the_expiry_and_the_decision_is_dropped(
    tmp_path: Path, redis_url: str, embedder: Embedder, routers: Routers
) -> None:
    clock = ManualClock()
    service = await open_service(routers, tmp_path, redis_url, clock)
    try:
        decision = await service.route(RouteInput(query="What is the capital of France?"))
        assert await service.sweep_expired() == 0  # not yet due
        clock.advance(WAIT_S + 0.1)
        # Past its deadline, before any sweep: refused.
        with pytest.raises(NotFound, match=r"expired at \d{4}-\d\d-\d\dT.*accepted for 60 s after Route"):
            await service.reward(RewardInput(decision_id=decision.decision_id, quality=1.0))
        assert await service.sweep_expired() == 1
        assert await service.sweep_expired() == 0  # once
        assert await service.store.expired_count() == 1
        assert await service.store.get_pending(decision.decision_id) is None
        with pytest.raises(NotFound, match="expired at"):
            await service.reward(RewardInput(decision_id=decision.decision_id, quality=1.0))
        assert service.learner is not None and service.learner.policy.learned == 0
    finally:
        await service.close()


async def test_the_default_reward_is_learned_for_expired_decisions(
    tmp_path: Path, redis_url: str, embedder: Embedder, routers: Routers
) -> None:
    clock = ManualClock()
    service = await open_service(routers, tmp_path, redis_url, clock, on_expiry="default", default_quality=0.25)
    try:
        decisions = [await service.route(RouteInput(query=f"Question {i}?")) for i in range(3)]
        answered = await service.reward(RewardInput(decision_id=decisions[0].decision_id, quality=1.0))
        clock.advance(WAIT_S + 0.1)
        assert await service.sweep_expired() == 2
        assert service.learner is not None
        await service.learner.wait_learned(3, timeout=20)
    finally:
        await service.close()
    paths = decision_logs(tmp_path)
    events = [json.loads(line) for path in paths for line in path.read_text().splitlines()]
    by_id = {e["decision_id"]: e for e in events}
    assert set(by_id) == {d.decision_id for d in decisions}
    assert by_id[decisions[0].decision_id]["reward"] == pytest.approx(answered.reward)
    for d in decisions[1:]:
        event = by_id[d.decision_id]
        assert event["expired"] is True and event["quality"] == 0.25
        assert event["energy_source"] == "estimated" and event["reward"] < 0.25  # energy and cost still count


async def test_the_sweep_goes_on_after_one_fails(
    tmp_path: Path, redis_url: str, embedder: Embedder, monkeypatch: pytest.MonkeyPatch, routers: Routers
) -> None:
    calls: list[float] = []

    async def flaky(self: Expiry) -> int:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) == 1:
            raise ValueError("a decision could not be read")
        return 0

    monkeypatch.setattr(Expiry, "sweep", flaky)
    service = await open_service(routers, tmp_path, redis_url, expiry_sweep_s=0.05)
    try:
        await until(lambda: len(calls) >= 3, 60, "the sweep to run again after it failed")
    finally:
        await service.close()


async def test_one_sweep_expires_every_due_decision_beyond_a_batch(
    tmp_path: Path, redis_url: str, embedder: Embedder, routers: Routers
) -> None:
    clock = ManualClock()
    service = await open_service(routers, tmp_path, redis_url, clock)
    try:
        # More than one batch of the store's due() (256): a routing rate above that per sweep interval must
        # not let the deadlines pile up.
        for i in range(300):
            await service.route(RouteInput(query=f"Question number {i}?"))
        assert await service.sweep_expired() == 0
        clock.advance(WAIT_S + 0.1)
        assert await service.sweep_expired() == 300
        assert await service.store.client.zcard(service.store.deadlines_key) == 0
    finally:
        await service.close()


async def test_a_done_decision_leaves_only_a_small_marker_for_the_retention(
    tmp_path: Path, redis_url: str, embedder: Embedder, routers: Routers
) -> None:
    """Redis memory per route is bounded: once a decision is rewarded or expired, its pending entry and what the
    gateway metered go at once; its summary (a retried Route's answer) lapses with the reward wait; only a marker
    of about 100 bytes stays for ``reward.retention_s``, and still tells a late reward that the decision expired,
    and when, after the summary is gone."""
    clock = ManualClock()
    service = await open_service(routers, tmp_path, redis_url, clock, retention_s=120.0)
    client, prefix = service.store.client, service.config.redis.key_prefix
    try:
        rewarded, expired = [await service.route(RouteInput(query=f"Question {i}?")) for i in range(2)]
        for decision in (rewarded, expired):
            service.keep_answered(decision.decision_id, Metered(decision.model, 10, 20, 5.0, None))
            await service.after_answer.settled(decision.decision_id)
        await service.reward(RewardInput(decision_id=rewarded.decision_id, quality=1.0))
        clock.advance(WAIT_S + 0.1)
        assert await service.sweep_expired() == 1
        for decision in (rewarded, expired):
            for family in ("pending", "metered"):
                assert not await client.exists(f"{prefix}:{family}:{decision.decision_id}"), family
            # The summary lives through the reward wait and the sweep's grace, never the retention besides.
            lives_s = WAIT_S + service.config.reward.sweep_grace_s
            assert 0 < await client.pttl(f"{prefix}:decision:{decision.decision_id}") <= lives_s * 1000
        assert 0 < await client.pttl(f"{prefix}:rewarded:{rewarded.decision_id}") <= 120_000
        assert 0 < await client.pttl(f"{prefix}:expired:{expired.decision_id}") <= 120_000
        assert await client.memory_usage(f"{prefix}:expired:{expired.decision_id}") < 200
        with pytest.raises(NotFound, match="expired at") as with_summary:
            await service.reward(RewardInput(decision_id=expired.decision_id, quality=1.0))
        await client.delete(f"{prefix}:decision:{expired.decision_id}")  # as its time to live ends it
        with pytest.raises(NotFound, match="expired at") as with_marker:
            await service.reward(RewardInput(decision_id=expired.decision_id, quality=1.0))
        assert str(with_marker.value) == str(with_summary.value)
        await client.delete(f"{prefix}:expired:{expired.decision_id}")
        with pytest.raises(NotFound, match="unknown: no Route made it, or it was rewarded or expired over 120 s ago"):
            await service.reward(RewardInput(decision_id=expired.decision_id, quality=1.0))
    finally:
        await service.close()
