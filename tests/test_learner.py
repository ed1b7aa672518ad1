"""The learner: events its snapshot already covers are not learned twice; a malformed event is skipped."""

from __future__ import annotations

from bandit_router.requests import RewardInput, RouteInput
from bandit_router.service import RouterService


async def reward_some(service: RouterService, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        decision = await service.route(RouteInput(query=f"What is {i} squared?"))
        await service.reward(RewardInput(decision_id=decision.decision_id, quality=0.5))


async def test_redelivered_events_in_the_snapshot_are_not_learned_again(service: RouterService) -> None:
    learner = service.learner
    assert learner is not None
    await reward_some(service, 5)
    await learner.wait_learned(5, timeout=20)
    # As after a crash between snapshot and acknowledgement: the group delivers the stream again.
    await service.store.client.xgroup_setid(service.store.events_key, "learner", id="0")
    await reward_some(service, 1, start=5)
    await learner.wait_learned(6, timeout=20)
    assert learner.skipped >= 1
    assert learner.policy.learned == 6


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
