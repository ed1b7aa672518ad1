"""A model with no parameter count or energy profile (an API model) added to the shipped catalog: its energy is
unknown, never invented, and the energy weight and budgets treat it so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from helpers import make_config, routed

from bandit_router.config import Config, load_config
from bandit_router.embedding.model import Embedder
from bandit_router.serving.router import RouterService
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc

API = "gpt-4o"


@pytest.fixture
def api_config(tmp_path: Path, redis_url: str) -> Config:
    path = tmp_path / "router.toml"
    path.write_text(f"[[models]]\nid = '{API}'\ninput_usd_per_mtok = 2.5\noutput_usd_per_mtok = 10.0\n")
    return make_config(tmp_path, redis_url).replace(models=load_config(path, env={}).models)


@pytest.fixture
async def api_stub(
    api_config: Config, embedder: Embedder
) -> AsyncIterator[tuple[router_pb2_grpc.RouterStub, RouterService]]:
    async with routed(api_config, embedder) as pair:
        yield pair


async def test_an_api_models_energy_is_unknown_and_not_weighed(
    api_stub: tuple[router_pb2_grpc.RouterStub, RouterService], api_config: Config
) -> None:
    stub, _ = api_stub
    listed = {m.id: m for m in (await stub.ListModels(pb.ListModelsRequest())).models}
    assert len(listed) == 9
    assert not listed[API].HasField("parameters_b") and not listed[API].HasField("energy_j_per_output_token")
    assert listed["gemma-2-9b-it"].HasField("energy_j_per_output_token")

    decision = await stub.Route(
        pb.RouteRequest(
            query="Name three moons of Jupiter", candidates=[API], preferences=pb.Preferences(energy_weight=1.0)
        )
    )
    assert decision.model == API and decision.estimated_energy_joules == 0.0
    reply = await stub.Reward(
        pb.RewardRequest(decision_id=decision.decision_id, quality=0.8, input_tokens=100, output_tokens=200)
    )
    assert reply.energy_source == pb.SOURCE_UNKNOWN and reply.energy_joules == 0.0
    assert f"the catalog has no energy profile for {API}" in reply.energy_basis
    assert "the energy weight does not apply" in reply.energy_basis
    cost = (100 * 2.5 + 200 * 10.0) / 1e6
    assert reply.cost_usd == pytest.approx(cost)
    # Only quality and cost: no energy term at energy weight 1.
    scales = api_config.reward
    assert reply.reward == pytest.approx(0.8 - decision.cost_weight * cost / scales.cost_scale_usd)


async def test_an_energy_budget_excludes_a_model_whose_energy_is_unknown_until_it_is_reported(
    api_stub: tuple[router_pb2_grpc.RouterStub, RouterService],
) -> None:
    stub, service = api_stub
    budget = pb.Budget(max_energy_joules=1000.0)
    decision = await stub.Route(
        pb.RouteRequest(query="Translate 'cat' to French", candidates=[API, "gemma-2-9b-it"], budget=budget)
    )
    assert decision.model == "gemma-2-9b-it"
    assert list(decision.excluded) == [f"{API}: max_energy_joules=1000 (energy unknown)"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Route(pb.RouteRequest(query="Translate 'dog' to French", candidates=[API], budget=budget))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"max_energy_joules=1000 excludes {API} (energy unknown)" in (caught.value.details() or "")

    # A reported energy makes it known: the learner's pricing now has a figure for it.
    chosen = await stub.Route(pb.RouteRequest(query="Translate 'bird' to French", candidates=[API]))
    await stub.Reward(
        pb.RewardRequest(
            decision_id=chosen.decision_id, quality=1.0, input_tokens=10, output_tokens=20, energy_joules=6.0
        )
    )
    assert service.learner is not None
    await service.learner.wait_learned(1, timeout=30)
    spec = service.config.model_by_id[API]
    expected = service.learner.policy.pricing.expected(spec, chosen.task, 10)
    assert expected.energy_known and expected.energy_joules > 0
