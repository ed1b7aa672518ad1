"""Per-request budgets filter candidates by running estimates; one policy learns a choice per preference."""

from __future__ import annotations

import random
import re

import grpc
import pytest

from bandit_router.domain.records import PendingDecision
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.serving.router import RouterService
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc

BIG, SMALL = "llama-3.3-70b-instruct", "llama-3.2-3b-instruct"


async def test_energy_budget_excludes_the_big_models(stub: router_pb2_grpc.RouterStub) -> None:
    # Catalog estimates for a short query: the 70B model ~140 J, Mixtral 8x22B ~460 J, the 3B model ~9 J.
    decision = await stub.Route(pb.RouteRequest(query="What is 2 + 2?", budget=pb.Budget(max_energy_joules=50)))
    offered = {a.model for a in decision.pmf}
    assert BIG not in offered and "mixtral-8x22b-instruct-v0.1" not in offered and SMALL in offered
    assert any(e.startswith(f"{BIG}: max_energy_joules=50 (catalog ") for e in decision.excluded)


async def test_nothing_within_budget_is_failed_precondition_naming_budgets_and_models(
    stub: router_pb2_grpc.RouterStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Route(
            pb.RouteRequest(
                query="What is 2 + 2?",
                candidates=[BIG, SMALL],
                budget=pb.Budget(max_energy_joules=1, max_cost_usd=1e-5),
            )
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = caught.value.details() or ""
    assert details.startswith("budget: no candidate fits: ")
    assert re.search(rf"max_energy_joules=1 excludes {SMALL} \([0-9.]+\), {BIG} \([0-9.]+\)", details), details
    # The small model is cheap enough; only the big one breaks the cost budget.
    assert re.search(rf"max_cost_usd=1e-05 excludes {BIG} \([0-9.e-]+\);", details), details


@pytest.mark.parametrize(
    ("budget", "match"),
    [
        ({"max_energy_joules": -1.0}, r"budget.max_energy_joules must be >= 0, got -1.0"),
        ({"max_latency_ms": float("nan")}, r"budget.max_latency_ms must be a finite number, got nan"),
        ({"max_cost_usd": float("inf")}, r"budget.max_cost_usd must be a finite number, got inf"),
    ],
)
async def test_bad_budget_is_invalid_argument(
    stub: router_pb2_grpc.RouterStub, budget: dict[str, float], match: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Route(pb.RouteRequest(query="hi", budget=pb.Budget(**budget)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(match, caught.value.details() or "")


async def test_observed_latency_and_energy_replace_the_catalog_estimate(service: RouterService) -> None:
    # SMALL turns out slow and, as reported, hungry (5x its catalog profile; reports are learned up to
    # REPORT_TRUST x); BIG fast and frugal. (The same query throughout: the input tokens of the query being
    # routed are part of its expected energy.)
    for _ in range(6):
        for model, latency, energy in ((SMALL, 900.0, 60.0), (BIG, 100.0, 5.0)):
            d = await service.route(RouteInput(query="question", candidates=(model,)))
            await service.reward(
                RewardInput(decision_id=d.decision_id, quality=1.0, latency_ms=latency, energy_joules=energy)
            )
    assert service.learner is not None
    await service.learner.wait_learned(12, timeout=20)
    decision = await service.route(
        RouteInput(query="question", candidates=(BIG, SMALL), max_latency_ms=500, max_energy_joules=50)
    )
    assert [m for m, _ in decision.pmf] == [BIG]
    assert decision.excluded == [f"{SMALL}: max_energy_joules=50 (observed 60), max_latency_ms=500 (observed 900)"]
    stats = service.stats()
    assert stats.estimates[SMALL].latency_ms == pytest.approx(900.0) and stats.estimates[BIG].observations == 6


async def test_one_policy_learns_a_different_choice_for_each_energy_preference(
    stub: router_pb2_grpc.RouterStub, service: RouterService
) -> None:
    """The big model is more accurate, the small one far more frugal: with energy weight 0 the big one
    wins, with energy weight 2 the small one does (catalog energies for typical answers: ~150 J vs ~9 J)."""
    rng = random.Random(3)
    quality = {BIG: 0.9, SMALL: 0.6}
    topics = ["rivers", "taxes", "the moon", "bridges", "tea", "volcanoes", "chess", "owls"]
    rounds = 500
    for _ in range(rounds):
        weight = rng.choice((0.0, 2.0))
        query = f"Explain {rng.choice(topics)} briefly."
        d = await stub.Route(
            pb.RouteRequest(
                query=query, candidates=[BIG, SMALL], preferences=pb.Preferences(energy_weight=weight, cost_weight=0)
            )
        )
        await stub.Reward(pb.RewardRequest(decision_id=d.decision_id, quality=quality[d.model]))
    assert service.learner is not None
    await service.learner.wait_learned(rounds, timeout=60)
    # A policy that ignored the preference would be wrong on every query of one setting.
    fresh = (
        "glaciers", "poetry", "trains", "bees", "copper", "storms", "jazz", "deserts",
        "coral", "maps", "salt", "kites", "rust", "fog", "opera", "wolves",
    )  # fmt: skip
    for weight, expected in ((0.0, BIG), (2.0, SMALL)):
        picks = []
        for topic in fresh:
            d = await stub.Route(
                pb.RouteRequest(
                    query=f"Explain {topic} briefly.",
                    candidates=[BIG, SMALL],
                    preferences=pb.Preferences(energy_weight=weight, cost_weight=0),
                )
            )
            picks.append(max(d.pmf, key=lambda a: a.probability).model)
        verdicts = [(v.version, v.promoted, v.reason) for v in service.learner.verdicts if not v.promoted]
        assert picks.count(expected) >= 12, (weight, picks, d.policy_version, service.learner.published, verdicts)


async def test_a_trade_off_never_trained_is_honoured_on_the_first_request(
    stub: router_pb2_grpc.RouterStub, service: RouterService
) -> None:
    """After training only at energy weight 0, where the big model answers better, a request at energy weight
    5 goes to the frugal model at once: quality is learned, the energy penalty is computed. (A task hint keeps
    every query in one cell, so the probes ask about the cell trained, not one the router never saw.)"""
    quality_only = pb.Preferences(energy_weight=0, cost_weight=0)
    for i in range(120):
        d = await stub.Route(
            pb.RouteRequest(
                query=f"Explain topic {i} briefly.", task="explain", candidates=[BIG, SMALL], preferences=quality_only
            )
        )
        await stub.Reward(pb.RewardRequest(decision_id=d.decision_id, quality=0.9 if d.model == BIG else 0.6))
    assert service.learner is not None
    await service.learner.wait_learned(120, timeout=60)
    probe = pb.RouteRequest(query="Explain glaciers briefly.", task="explain", candidates=[BIG, SMALL])
    probe.preferences.CopyFrom(quality_only)
    trained = await stub.Route(probe)
    assert max(trained.pmf, key=lambda a: a.probability).model == BIG, trained.pmf
    probe.preferences.CopyFrom(pb.Preferences(energy_weight=5, cost_weight=0))
    frugal = await stub.Route(probe)
    pmf = {a.model: a.probability for a in frugal.pmf}
    # At weight 5 the big model's ~150 J answer costs ~3.7 of reward, more than any quality can make up.
    assert pmf == {SMALL: 1.0, BIG: 0.0}, pmf


async def test_each_action_carries_the_penalty_its_expected_energy_and_cost_incur(service: RouterService) -> None:
    """penalty = w_E * E / 200 J + w_C * C / 0.001 USD (the shipped scales): the catalog's estimate for the
    query until a model is observed, then its running estimate; no penalty at all without a trade-off."""
    specs = {m.id: m for m in service.config.models}

    def penalties(pending: PendingDecision) -> dict[str, float]:
        # The penalties are in the order of the pmf.
        return {model: p for (model, _), p in zip(pending.decision.pmf, pending.penalties, strict=True)}

    d = await service.route(
        RouteInput(query="Explain tea briefly.", candidates=(BIG, SMALL), energy_weight=2.0, cost_weight=0.5)
    )
    pending = await service.store.get_pending(d.decision_id)
    assert pending is not None
    tokens = pending.query_tokens
    for model, penalty in penalties(pending).items():
        spec = specs[model]
        energy = tokens * spec.energy_j_per_input_token + spec.typical_output_tokens * spec.energy_j_per_output_token
        cost = (tokens * spec.input_usd_per_mtok + round(spec.typical_output_tokens) * spec.output_usd_per_mtok) / 1e6
        assert penalty == pytest.approx(2.0 * energy / 200 + 0.5 * cost / 0.001, rel=1e-3), model
    assert penalties(pending)[BIG] > 10 * penalties(pending)[SMALL] > 0

    d = await service.route(
        RouteInput(query="Explain tea briefly.", candidates=(BIG, SMALL), energy_weight=0, cost_weight=0)
    )
    pending = await service.store.get_pending(d.decision_id)
    assert pending is not None and penalties(pending) == {BIG: 0.0, SMALL: 0.0}

    # Once observed, the model's running estimate is what it is expected to incur (here reports of 5x its
    # catalog figures, within what reports are learned up to).
    small, out = specs[SMALL], round(specs[SMALL].typical_output_tokens)
    energy = 5 * (tokens * small.energy_j_per_input_token + out * small.energy_j_per_output_token)
    cost = 5 * (tokens * small.input_usd_per_mtok + out * small.output_usd_per_mtok) / 1e6
    for _ in range(2):
        d = await service.route(RouteInput(query="Explain tea briefly.", candidates=(SMALL,)))
        await service.reward(RewardInput(decision_id=d.decision_id, quality=1.0, energy_joules=energy, cost_usd=cost))
    assert service.learner is not None
    await service.learner.wait_learned(2, timeout=20)
    d = await service.route(
        RouteInput(query="Explain tea briefly.", candidates=(BIG, SMALL), energy_weight=1.0, cost_weight=1.0)
    )
    pending = await service.store.get_pending(d.decision_id)
    assert pending is not None
    assert penalties(pending)[SMALL] == pytest.approx(energy / 200 + cost / 0.001, rel=1e-3)
