"""The service over real gRPC and Redis: idempotent Route, restart, health, reflection and the catalog."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from helpers import Routers, make_config

from bandit_router.config import load_config
from bandit_router.domain.requests import RewardInput, RouteInput
from bandit_router.embedding.model import Embedder
from bandit_router.runtime.process import RouterProcess
from bandit_router.serving.router import RouterService
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc


async def test_retried_route_with_a_request_id_returns_the_same_decision(
    stub: router_pb2_grpc.RouterStub, service: RouterService
) -> None:
    first = await stub.Route(pb.RouteRequest(query="Translate 'cat' to German", request_id="req-42"))
    again = await stub.Route(pb.RouteRequest(query="Translate 'cat' to German", request_id="req-42"))
    assert first.decision_id == again.decision_id == "req-42"
    assert (again.model, list(again.pmf), again.replayed) == (first.model, list(first.pmf), True)
    assert not first.replayed
    await stub.Reward(pb.RewardRequest(decision_id="req-42", quality=1.0))
    # Still the same decision after its reward, and still only one reward.
    assert (
        await stub.Route(pb.RouteRequest(query="Translate 'cat' to German", request_id="req-42"))
    ).model == first.model
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Reward(pb.RewardRequest(decision_id="req-42", quality=1.0))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_route_response_describes_the_decision(stub: router_pb2_grpc.RouterStub) -> None:
    decision = await stub.Route(
        pb.RouteRequest(
            query="Compose a haiku about rain",
            candidates=["gemma-2-9b-it", "llama-3.3-70b-instruct"],
            preferences=pb.Preferences(energy_weight=0.7),
            task="Poetry",
            metadata={"tenant": "docs"},
        )
    )
    assert [a.model for a in decision.pmf] == ["gemma-2-9b-it", "llama-3.3-70b-instruct"]
    assert decision.model in {"gemma-2-9b-it", "llama-3.3-70b-instruct"}
    assert decision.probability == next(a.probability for a in decision.pmf if a.model == decision.model)
    assert (decision.task, decision.task_source) == ("poetry", "hint")
    # Unset cost weight takes the server default; the set energy weight is kept.
    assert (decision.energy_weight, decision.cost_weight) == (0.7, load_config(env={}).reward.cost_weight)
    assert decision.estimated_energy_joules > 0 and decision.estimated_cost_usd > 0
    assert decision.policy_version == "v0"


async def test_reward_reports_sources(stub: router_pb2_grpc.RouterStub) -> None:
    decision = await stub.Route(
        pb.RouteRequest(query="Who painted the Mona Lisa?", candidates=["llama-3.1-8b-instruct"])
    )
    estimated = await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=1.0))
    assert (estimated.cost_source, estimated.energy_source) == (pb.SOURCE_ESTIMATED, pb.SOURCE_ESTIMATED)
    assert "ML.ENERGY" in estimated.energy_basis

    decision = await stub.Route(
        pb.RouteRequest(query="Who painted the Mona Lisa?", candidates=["llama-3.1-8b-instruct"])
    )
    computed = await stub.Reward(
        pb.RewardRequest(decision_id=decision.decision_id, quality=1.0, input_tokens=1000, output_tokens=1000)
    )
    assert computed.cost_source == pb.SOURCE_COMPUTED
    assert computed.cost_usd == pytest.approx(2000 * 0.2 / 1e6)
    assert computed.energy_joules == pytest.approx(1000 * 0.1186 + 1000 * 0.00624)

    decision = await stub.Route(
        pb.RouteRequest(query="Who painted the Mona Lisa?", candidates=["llama-3.1-8b-instruct"])
    )
    reported = await stub.Reward(
        pb.RewardRequest(decision_id=decision.decision_id, quality=0.5, energy_joules=400.0, cost_usd=0.002)
    )
    assert (reported.cost_source, reported.energy_source) == (pb.SOURCE_REPORTED, pb.SOURCE_REPORTED)
    defaults = load_config(env={}).reward
    expected = (
        0.5
        - defaults.energy_weight * 400 / defaults.energy_scale_joules
        - defaults.cost_weight * 0.002 / defaults.cost_scale_usd
    )
    assert reported.reward == pytest.approx(expected)


async def test_health_reflection_and_catalog(server: RouterProcess, stub: router_pb2_grpc.RouterStub) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "bandit_router.v1.Router"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        async for answer in reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        ):
            names = {s.name for s in answer.list_services_response.service}
            assert {"bandit_router.v1.Router", "grpc.health.v1.Health"} <= names
    listed = await stub.ListModels(pb.ListModelsRequest())
    catalog = load_config(env={}).models
    assert [m.id for m in listed.models] == [m.id for m in catalog]
    assert all(m.energy_profile_source.startswith(("measured", "estimated")) for m in listed.models)


async def test_restart_brings_back_the_policy_and_pending_decisions(
    embedder: Embedder, tmp_path: Path, routers: Routers
) -> None:
    """With the embedded Redis: learn, stop, start again from the same data directory."""
    config = make_config(tmp_path, redis_url="")
    service = await routers(config)
    for i in range(40):
        decision = await service.route(
            RouteInput(query=f"What is {i} plus {i + 3}?", candidates=("gemma-2-9b-it", "llama-3.2-3b-instruct"))
        )
        await service.reward(
            RewardInput(decision_id=decision.decision_id, quality=float(decision.model == "llama-3.2-3b-instruct"))
        )
    assert service.learner is not None
    await service.learner.wait_learned(40, timeout=30)
    probe = RouteInput(
        query="What is 5 plus 9?", candidates=("gemma-2-9b-it", "llama-3.2-3b-instruct"), request_id="probe-before"
    )
    before = await service.route(probe)
    waiting = await service.route(RouteInput(query="A decision rewarded only after the restart"))
    await service.close()

    service = await routers(config)
    try:
        assert service.policy_version == before.policy_version != "v0"
        after = await service.route(
            RouteInput(query=probe.query, candidates=probe.candidates, request_id="probe-after")
        )
        # Same policy, so the same pmf for the same context.
        assert after.pmf == before.pmf
        outcome = await service.reward(RewardInput(decision_id=waiting.decision_id, quality=1.0))
        assert outcome.model == waiting.model
        await service.learner.wait_learned(41, timeout=30)  # type: ignore[union-attr]
    finally:
        await service.close()


async def test_corrupt_snapshot_in_redis_falls_back_to_disk(
    embedder: Embedder, redis_url: str, tmp_path: Path, routers: Routers
) -> None:
    config = make_config(tmp_path, redis_url)
    service = await routers(config)
    decision = await service.route(RouteInput(query="hello there"))
    await service.reward(RewardInput(decision_id=decision.decision_id, quality=1.0))
    await service.learner.wait_learned(1, timeout=10)  # type: ignore[union-attr]
    version = service.policy_version
    await service.close()
    # Truncate the copy in Redis: the one on disk must be used.
    client = redis.Redis.from_url(redis_url)
    key = f"{config.redis.key_prefix}:snapshot"
    client.set(key, client.get(key)[:-10])
    client.close()
    service = await routers(config)
    try:
        assert service.policy_version == version
    finally:
        await service.close()
