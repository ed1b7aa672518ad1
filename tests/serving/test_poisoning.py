"""One tenant's extreme reports: refused when implausible, bounded in what they teach when accepted, and
never able to make a mean (gate, OPE, dashboard, export) infinite."""

from __future__ import annotations

import math

import pytest

from bandit_router.domain.pricing import catalog_energy
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.domain.reward import REWARD_FLOOR, bounded
from bandit_router.errors import FailedPrecondition, InvalidArgument
from bandit_router.learning.events import REPORT_TRUST
from bandit_router.policy.ope import ips, snips
from bandit_router.serving.router import RouterService


@pytest.mark.parametrize(
    ("field", "value"),
    [("energy_joules", 1e308), ("cost_usd", 1e308), ("energy_joules", 1e6), ("cost_usd", 50.0)],
)
async def test_an_implausible_report_is_refused_and_the_decision_stays_rewardable(
    service: RouterService, field: str, value: float
) -> None:
    decision = await service.route(RouteInput(query="Summarise the plot of Hamlet.", tenant="a"))
    with pytest.raises(
        InvalidArgument,
        match=rf"{field} must be at most 100x the largest catalog figure at \d+ input and 100 output tokens .* got ",
    ):
        await service.reward(
            RewardInput(decision_id=decision.decision_id, quality=1.0, output_tokens=100, tenant="a", **{field: value})
        )
    outcome = await service.reward(RewardInput(decision_id=decision.decision_id, quality=1.0, tenant="a"))
    assert math.isfinite(outcome.reward)


async def test_one_tenants_extreme_accepted_reports_do_not_move_another_tenants_routing(
    service: RouterService,
) -> None:
    """Tenant a reports the largest energy Reward accepts (99x the catalog's), a latency of a day and the most
    output tokens: a's pricing of the model moves (as far as REPORT_TRUST lets it), b's does not at all, and
    b's latency budget still admits the model."""
    learner = service.learner
    assert learner is not None
    model = service.config.models[0]
    before = service.serving.pricing.expected(model, "translate", 20, "b")
    for i in range(20):
        decision = await service.route(
            RouteInput(query=f"Translate sentence {i} to French.", candidates=(model.id,), task="translate", tenant="a")
        )
        catalog = catalog_energy(model, 20, 100)
        await service.reward(
            RewardInput(
                decision_id=decision.decision_id,
                quality=0.5,
                input_tokens=20,
                output_tokens=100,
                energy_joules=99 * catalog,  # just within the 100x bound
                latency_ms=86_400_000.0,
                tenant="a",
            )
        )
    await learner.wait_learned(20, timeout=60)
    pricing = service.serving.pricing
    seen_by_a = pricing.expected(model, "translate", 20, "a")
    # Reported 99x, learned for a as at most REPORT_TRUST x the catalog's figure at the predicted tokens.
    bound = REPORT_TRUST * catalog_energy(model, 20, seen_by_a.output_tokens)
    assert 0.5 * bound < seen_by_a.energy_joules <= bound + 1e-9
    # b routes with its own pricing, untouched by a's reports.
    assert pricing.expected(model, "translate", 20, "b") == before
    assert model.id not in service.serving.estimates_of("b")
    decision = await service.route(
        RouteInput(
            query="Translate 'hello'.", candidates=(model.id,), task="translate", tenant="b", max_latency_ms=1000
        )
    )
    assert decision.model == model.id and not decision.excluded
    # a's own latency budget excludes it, on a's own figures.
    with pytest.raises(FailedPrecondition, match=r"max_latency_ms=1000 excludes"):
        await service.route(
            RouteInput(
                query="Translate 'hi'.", candidates=(model.id,), task="translate", tenant="a", max_latency_ms=1000
            )
        )
    # The gate's estimates stay finite.
    for verdict in learner.verdicts:
        for estimate in (verdict.candidate, verdict.serving):
            assert estimate is None or math.isfinite(estimate.value)


def test_estimates_stay_finite_whatever_rewards_got_in() -> None:
    rewards = [-math.inf, 0.5, math.nan, 1e308]
    target, actions, propensities = [[1.0]] * 4, [0] * 4, [0.5] * 4
    assert math.isfinite(ips(target, actions, propensities, rewards).value)
    assert math.isfinite(snips(target, actions, propensities, rewards).value)
    assert bounded(-math.inf) == REWARD_FLOOR and bounded(math.nan) == REWARD_FLOOR and bounded(1e308) == 1.0
