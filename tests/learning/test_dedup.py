"""A decision's reward event appended twice (a take replayed on a new master after a failover lost its first
acknowledgement, though the learner had already learned it) is learned once."""

from __future__ import annotations

from pathlib import Path

from helpers import Routers, make_config

from bandit_router.domain.requests import RewardInput, RouteInput


async def test_a_second_event_of_a_learned_decision_is_skipped(
    tmp_path: Path, redis_url: str, routers: Routers
) -> None:
    service = await routers(make_config(tmp_path, redis_url))
    learner = service.learner
    assert learner is not None
    decision = await service.route(RouteInput(query="What is 2 + 2?"))
    event, _, _ = await service.rewards.reward(RewardInput(decision_id=decision.decision_id, quality=1.0))
    await learner.wait_learned(1, timeout=60)
    # The same event again, as a take replayed on a new master would append it, after the learner learned it.
    await service.store.client.xadd(service.store.events_key, {"event": event.dumps()})
    other = await service.route(RouteInput(query="Name a prime number."))
    await service.reward(RewardInput(decision_id=other.decision_id, quality=0.5))
    await learner.wait_learned(2, timeout=60)
    assert learner.policy.learned == 2 and learner.duplicates == 1
