"""The policy learns from rewards sent through the real gRPC server, and a decision can be replayed."""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path

from helpers import Routers, make_config

from bandit_router.domain.requests import RouteInput
from bandit_router.embedding.model import Embedder
from bandit_router.policy.rule import sample_index
from bandit_router.serving.router import RouterService
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc

ARITHMETIC = ("What is {a} plus {b}?", "Compute {a} * {b}.", "Calculate {a} minus {b}.", "What is {a} divided by {b}?")
POEMS = (
    "Write a poem about {t}.",
    "Compose a short verse about {t}.",
    "Write a haiku on {t}.",
    "Write a sonnet about {t}.",
)
TOPICS = (
    "the sea",
    "autumn",
    "a lost cat",
    "the moon",
    "winter mornings",
    "a lighthouse",
    "old friends",
    "rain",
    "the desert",
    "a city at night",
    "spring flowers",
    "the mountains",
    "a river",
    "childhood",
    "the stars",
)
MATH_MODEL = "llama-3.2-3b-instruct"
POEM_MODEL = "mixtral-8x7b-instruct-v0.1"


def make_query(rng: random.Random, kind: str, topics: tuple[str, ...]) -> str:
    if kind == "math":
        return rng.choice(ARITHMETIC).format(a=rng.randint(2, 999), b=rng.randint(2, 999))
    return rng.choice(POEMS).format(t=rng.choice(topics))


async def play(stub: router_pb2_grpc.RouterStub, rng: random.Random, rounds: int, topics: tuple[str, ...]) -> None:
    """Routes and rewards: quality 1 when the model suits the kind of query, else 0."""
    prefs = pb.Preferences(energy_weight=0.0, cost_weight=0.0)

    async def one(kind: str, query: str) -> None:
        decision = await stub.Route(pb.RouteRequest(query=query, preferences=prefs))
        right = MATH_MODEL if kind == "math" else POEM_MODEL
        await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=float(decision.model == right)))

    for start in range(0, rounds, 16):
        kinds = [rng.choice(("math", "poem")) for _ in range(min(16, rounds - start))]
        await asyncio.gather(*(one(k, make_query(rng, k, topics)) for k in kinds))


async def test_policy_learns_which_model_suits_which_queries(
    stub: router_pb2_grpc.RouterStub, service: RouterService
) -> None:
    rng = random.Random(11)
    train_topics, fresh_topics = TOPICS[:10], TOPICS[10:]
    rounds = 600
    await play(stub, rng, rounds, train_topics)
    assert service.learner is not None
    await service.learner.wait_learned(rounds, timeout=60)

    # The policy's pick is the pmf's most probable model; the sampled model also carries the logged
    # exploration (epsilon, shared by the models that could still be best), so it gets a looser bound.
    fresh = 50
    for kind, right in (("math", MATH_MODEL), ("poem", POEM_MODEL)):
        picked = sampled = 0
        for _ in range(fresh):
            query = make_query(rng, kind, fresh_topics)
            decision = await stub.Route(
                pb.RouteRequest(query=query, preferences=pb.Preferences(energy_weight=0, cost_weight=0))
            )
            picked += max(decision.pmf, key=lambda a: a.probability).model == right
            sampled += decision.model == right
        assert picked >= 0.9 * fresh, (kind, picked, sampled)
        assert sampled >= 0.8 * fresh, (kind, picked, sampled)


async def test_same_decision_id_and_policy_give_the_same_action(
    service: RouterService, embedder: Embedder, redis_url: str, tmp_path: Path, routers: Routers
) -> None:
    """A second, independent service with the same policy takes the same action for each decision id."""
    twin = await routers(make_config(tmp_path / "twin", redis_url))
    try:
        models = set()
        for i in range(30):
            request = RouteInput(
                query=f"Tell me fact number {i} about owls", request_id=f"owl-{i}", energy_weight=0, cost_weight=0
            )
            first, second = await service.route(request), await twin.route(request)
            assert (first.model, first.pmf) == (second.model, second.pmf)
            models.add(first.model)
        # Before learning, and with no penalty, every model ties: the pmf is uniform, so 30 ids must spread
        # over several models.
        assert len(models) > 1
    finally:
        await twin.close()


def test_sampling_follows_the_pmf() -> None:
    pmf = [0.7, 0.2, 0.1]
    counts = [0, 0, 0]
    for i in range(5000):
        counts[sample_index(pmf, f"decision-{i}", seed=3)] += 1
    # Binomial standard deviations are at most 33 draws; 4 of them is a generous bound.
    for p, n in zip(pmf, counts, strict=True):
        assert abs(n - 5000 * p) < 4 * math.sqrt(5000 * p * (1 - p)), counts
    assert sample_index([0.0, 1.0, 0.0], "x", seed=0) == 1
