"""Every bad input gets the right status code and a message naming the field, the rule and the value;
the server keeps serving and no other pending decision is touched."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Any

import grpc
import pytest
from helpers import ManualClock, make_config, routed

from bandit_router.embedding.model import Embedder
from bandit_router.runtime.process import RouterProcess
from bandit_router.serving.router import RouterService
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc

INVALID = grpc.StatusCode.INVALID_ARGUMENT

ROUTE_CASES: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
    ({"query": ""}, INVALID, r"query must not be empty or whitespace, got ''"),
    ({"query": " \t\n "}, INVALID, r"query must not be empty or whitespace"),
    ({"query": "x" * 100_001}, INVALID, r"query must be at most 100000 characters, got '100001 characters'"),
    ({"query": "hi", "candidates": ["gpt-9"]}, INVALID, r"candidates must be catalog model ids .*got \['gpt-9'\]"),
    (
        {"query": "hi", "candidates": ["gemma-2-9b-it", "gemma-2-9b-it"]},
        INVALID,
        r"candidates must not repeat a model, got \['gemma-2-9b-it'\]",
    ),
    (
        {"query": "hi", "preferences": {"energy_weight": -0.5}},
        INVALID,
        r"preferences.energy_weight must be in \[0, 1000\], got -0.5",
    ),
    (
        {"query": "hi", "preferences": {"cost_weight": -1}},
        INVALID,
        r"preferences.cost_weight must be in \[0, 1000\], got -1.0",
    ),
    (
        {"query": "hi", "preferences": {"cost_weight": 1e300}},
        INVALID,
        r"preferences.cost_weight must be in \[0, 1000\], got 1e\+300",
    ),
    (
        {"query": "hi", "preferences": {"energy_weight": math.nan}},
        INVALID,
        r"preferences.energy_weight must be a finite number, got nan",
    ),
    (
        {"query": "hi", "preferences": {"cost_weight": math.inf}},
        INVALID,
        r"preferences.cost_weight must be a finite number, got inf",
    ),
    ({"query": "hi", "request_id": "has space"}, INVALID, r"request_id must match .*got 'has space'"),
    ({"query": "hi", "request_id": "a" * 129}, INVALID, r"request_id must be at most 128 characters"),
    ({"query": "hi", "request_id": "../etc"}, INVALID, r"request_id must match"),
    ({"query": "hi", "request_id": "abc\n"}, INVALID, r"request_id must match"),
    ({"query": "hi", "task": "math\n"}, INVALID, r"task must match"),
    ({"query": "hi", "task": "math problems!"}, INVALID, r"task must match .*got 'math problems!'"),
]

REWARD_CASES: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
    ({"quality": 1.7}, INVALID, r"quality must be in \[0, 1\], got 1.7"),
    ({"quality": -0.1}, INVALID, r"quality must be in \[0, 1\], got -0.1"),
    ({"quality": math.nan}, INVALID, r"quality must be a finite number, got nan"),
    ({"quality": -math.inf}, INVALID, r"quality must be a finite number, got -inf"),
    ({}, INVALID, r"quality is required, got None"),
    ({"quality": 1, "input_tokens": -5}, INVALID, r"input_tokens must be in \[0, 1e\+07\], got -5"),
    ({"quality": 1, "output_tokens": -1}, INVALID, r"output_tokens must be in \[0, 1e\+07\], got -1"),
    ({"quality": 1, "output_tokens": 2**62}, INVALID, r"output_tokens must be in \[0, 1e\+07\]"),
    ({"quality": 1, "latency_ms": math.nan}, INVALID, r"latency_ms must be a finite number, got nan"),
    ({"quality": 1, "energy_joules": -3.0}, INVALID, r"energy_joules must be >= 0, got -3.0"),
    ({"quality": 1, "energy_joules": math.inf}, INVALID, r"energy_joules must be a finite number, got inf"),
    ({"quality": 1, "cost_usd": math.nan}, INVALID, r"cost_usd must be a finite number, got nan"),
]

BAD_IDS: list[tuple[str, grpc.StatusCode, str]] = [
    ("", INVALID, r"decision_id is required, got ''"),
    ("not a valid id", INVALID, r"decision_id must match .*got 'not a valid id'"),
    ("x" * 200, INVALID, r"decision_id must be at most 161 characters"),  # 128 + a tenant prefix
    ("trailing-newline\n", INVALID, r"decision_id must match .*got 'trailing-newline\\n'"),
    ("never-made-0001", grpc.StatusCode.NOT_FOUND, r"decision_id 'never-made-0001' is unknown"),
]


async def _route(stub: router_pb2_grpc.RouterStub, fields: dict[str, Any]) -> pb.RouteResponse:
    prefs = fields.pop("preferences", None)
    request = pb.RouteRequest(**fields)
    if prefs:
        request.preferences.CopyFrom(pb.Preferences(**prefs))
    return await stub.Route(request)


async def _assert_still_pending(service: RouterService, decision_id: str) -> None:
    assert await service.store.get_pending(decision_id) is not None


@pytest.mark.parametrize(("fields", "code", "match"), ROUTE_CASES)
async def test_bad_route_is_rejected(
    stub: router_pb2_grpc.RouterStub, service: RouterService, fields: dict[str, Any], code: grpc.StatusCode, match: str
) -> None:
    bystander = await stub.Route(pb.RouteRequest(query="An unrelated query that stays pending"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _route(stub, dict(fields))
    assert caught.value.code() == code
    assert caught.value.details() is not None
    assert re.search(match, caught.value.details()), caught.value.details()
    await _assert_still_pending(service, bystander.decision_id)
    # Still serving.
    assert (await stub.Route(pb.RouteRequest(query="still there?"))).model


@pytest.mark.parametrize(("fields", "code", "match"), REWARD_CASES)
async def test_bad_reward_is_rejected_and_the_decision_stays_pending(
    stub: router_pb2_grpc.RouterStub, service: RouterService, fields: dict[str, Any], code: grpc.StatusCode, match: str
) -> None:
    decision = await stub.Route(pb.RouteRequest(query="What is the capital of Peru?"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, **fields))
    assert caught.value.code() == code
    assert re.search(match, caught.value.details() or ""), caught.value.details()
    # The rejected reward took nothing: the right one is still accepted.
    await _assert_still_pending(service, decision.decision_id)
    assert (
        await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=0.5))
    ).decision_id == decision.decision_id


@pytest.mark.parametrize(("decision_id", "code", "match"), BAD_IDS)
async def test_bad_decision_id_is_rejected(
    stub: router_pb2_grpc.RouterStub, service: RouterService, decision_id: str, code: grpc.StatusCode, match: str
) -> None:
    bystander = await stub.Route(pb.RouteRequest(query="Another query that stays pending"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Reward(pb.RewardRequest(decision_id=decision_id, quality=1.0))
    assert caught.value.code() == code
    assert re.search(match, caught.value.details() or ""), caught.value.details()
    await _assert_still_pending(service, bystander.decision_id)


async def test_second_reward_gets_already_exists_and_the_first_counts(stub: router_pb2_grpc.RouterStub) -> None:
    decision = await stub.Route(
        pb.RouteRequest(query="Write a limerick about a cat", candidates=["llama-3.2-3b-instruct"])
    )
    first = await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=0.9))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=0.1))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert f"decision_id {decision.decision_id!r} was already rewarded" in (caught.value.details() or "")
    assert first.reward > 0.8


async def test_concurrent_rewards_for_one_decision_are_learned_once(
    stub: router_pb2_grpc.RouterStub, service: RouterService
) -> None:
    decision = await stub.Route(pb.RouteRequest(query="Summarize the plot of Hamlet"))
    results = await asyncio.gather(
        *(stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=1.0)) for _ in range(8)),
        return_exceptions=True,
    )
    accepted = [r for r in results if isinstance(r, pb.RewardResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(accepted) == 1
    assert {r.code() for r in refused} == {grpc.StatusCode.ALREADY_EXISTS}
    assert service.learner is not None
    await service.learner.wait_learned(1, timeout=10)
    assert service.learner.policy.learned == 1


async def test_nothing_left_after_filtering_is_failed_precondition(
    embedder: Embedder, redis_url: str, tmp_path: Path
) -> None:
    base = make_config(tmp_path, redis_url)
    models = tuple(m if m.id != "gemma-2-9b-it" else type(m)(**{**m.__dict__, "enabled": False}) for m in base.models)
    async with routed(base.replace(models=models), embedder) as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Route(pb.RouteRequest(query="hello", candidates=["gemma-2-9b-it"]))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no model left after filtering; disabled in the catalog: gemma-2-9b-it" in (caught.value.details() or "")
        listed = await stub.ListModels(pb.ListModelsRequest())
        assert "gemma-2-9b-it" not in [m.id for m in listed.models]
        decision = await stub.Route(pb.RouteRequest(query="hello"))
        assert decision.model != "gemma-2-9b-it"
        assert "gemma-2-9b-it" not in [a.model for a in decision.pmf]


async def test_expired_decision_gets_not_found_naming_the_expiry(
    embedder: Embedder, redis_url: str, tmp_path: Path
) -> None:
    config = make_config(tmp_path, redis_url, reward={"wait_time_s": 30.0})
    clock = ManualClock()
    async with routed(config, embedder, clock=clock) as (stub, _):
        decision = await stub.Route(pb.RouteRequest(query="What is 6 times 7?"))
        clock.advance(30.1)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=1.0))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert f"decision_id {decision.decision_id!r} expired at" in (caught.value.details() or "")
        assert "accepted for 30 s after Route" in (caught.value.details() or "")


@pytest.mark.parametrize("method", ["Route", "Reward", "GetStats"])
async def test_a_malformed_protobuf_is_invalid_argument_and_the_server_keeps_serving(
    server: RouterProcess, method: str
) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = channel.unary_unary(f"/bandit_router.v1.Router/{method}")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(b"\xff\xff\xff\xff\x0f")  # a field key with no valid wire type or value after it
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"request: must be a valid /bandit_router.v1.Router/{method} message" in (caught.value.details() or "")
        stub = router_pb2_grpc.RouterStub(channel)
        assert (await stub.Route(pb.RouteRequest(query="Still there?"))).model


async def test_a_request_id_reused_for_another_request_is_already_exists(
    stub: router_pb2_grpc.RouterStub, service: RouterService
) -> None:
    first = await stub.Route(pb.RouteRequest(query="What is the capital of France?", request_id="req-1"))
    # The same request again (a retry) gets the same decision, marked replayed.
    again = await stub.Route(pb.RouteRequest(query="What is the capital of France?", request_id="req-1"))
    assert again.decision_id == first.decision_id and again.replayed
    for changed in (
        {"query": "What is the capital of Spain?"},
        {"query": "What is the capital of France?", "task": "geography"},
        {"query": "What is the capital of France?", "candidates": ["gemma-2-9b-it"]},
        {"query": "What is the capital of France?", "preferences": pb.Preferences(energy_weight=0.9)},
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Route(pb.RouteRequest(request_id="req-1", **changed))
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS, changed
        assert "request_id 'req-1' was already used for a different request" in (caught.value.details() or "")
    # The first decision is untouched, still pending, and rewardable.
    await _assert_still_pending(service, first.decision_id)
    reply = await stub.Reward(pb.RewardRequest(decision_id=first.decision_id, quality=1.0))
    assert reply.model == first.model
