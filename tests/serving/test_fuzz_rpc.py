"""Fuzzing every RPC through the real gRPC server: any input gets a proper status, never a crash, and the
pending store stays consistent (each decision pending or rewarded, each accepted reward learned once)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandit_router.runtime.process import RouterProcess
from bandit_router.v1 import router_pb2 as pb
from bandit_router.v1 import router_pb2_grpc

# What a bad input may get back; INTERNAL or UNKNOWN would be a server fault.
EXPECTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}
# Unicode as protobuf carries it: any code point but the lone surrogates UTF-8 cannot encode.
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
huge = st.integers(100_000, 400_000).map(lambda n: "ä" * n)
floats = st.one_of(st.none(), st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 1e308, 0.0]))
ids = st.one_of(text, st.binary(max_size=64).map(lambda b: b.decode("latin-1")), st.from_regex(r"[a-z0-9]{1,12}"))
MODELS = ["gemma-2-9b-it", "llama-3.2-3b-instruct", "no-such-model", ""]


def optional(message: Any, **fields: float | None) -> Any:
    for name, value in fields.items():
        if value is not None:
            setattr(message, name, value)
    return message


route_requests = st.builds(
    lambda query, request_id, candidates, energy, cost, task, metadata, budget: pb.RouteRequest(
        query=query,
        request_id=request_id,
        candidates=candidates,
        preferences=optional(pb.Preferences(), energy_weight=energy, cost_weight=cost),
        task=task,
        metadata=metadata,
        budget=optional(pb.Budget(), max_cost_usd=budget[0], max_energy_joules=budget[1], max_latency_ms=budget[2]),
    ),
    query=st.one_of(text, huge, st.sampled_from(["What is 2 + 2?", "Write a haiku about rain."])),
    request_id=st.one_of(st.just(""), ids),
    candidates=st.lists(st.one_of(st.sampled_from(MODELS), text), max_size=5),
    energy=floats,
    cost=floats,
    task=st.one_of(st.just(""), text),
    metadata=st.dictionaries(text, text, max_size=4),
    budget=st.tuples(floats, floats, floats),
)


# Mostly valid requests too, so that the accepted path is fuzzed as hard as the refused one.
valid_routes = st.builds(
    lambda query, task, metadata, energy: pb.RouteRequest(
        query=query, task=task, metadata=metadata, preferences=pb.Preferences(energy_weight=energy)
    ),
    query=text.filter(str.strip),
    task=st.from_regex(r"[a-z_]{0,20}", fullmatch=True),
    metadata=st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), text.map(lambda t: t[:50]), max_size=3),
    energy=st.floats(0, 10),
)
fuzzed_reward = st.fixed_dictionaries(
    {
        "quality": floats,
        "input_tokens": st.integers(-(2**63), 2**63 - 1),
        "output_tokens": st.integers(-(2**63), 2**63 - 1),
        "latency_ms": st.floats(),
        "energy_joules": floats,
        "cost_usd": floats,
    }
)
valid_reward = st.fixed_dictionaries(
    {
        "quality": st.floats(0, 1),
        "input_tokens": st.integers(0, 100_000),
        "output_tokens": st.integers(0, 100_000),
        "latency_ms": st.floats(0, 1e6),
        # Within what Reward finds plausible for a short query (a few joules and cents), so that most are accepted.
        "energy_joules": st.one_of(st.none(), st.floats(0, 50)),
        "cost_usd": st.one_of(st.none(), st.floats(0, 0.01)),
    }
)


def check(call: Any, request: Any) -> tuple[grpc.StatusCode, Any]:
    try:
        return grpc.StatusCode.OK, call(request, timeout=30)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details()
        assert code in EXPECTED, (code, details, request)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert " must " in details or " is required" in details or "unknown" in details, details
        return code, None


async def test_fuzzed_rpcs_get_proper_statuses_and_lose_nothing(server: RouterProcess) -> None:
    decided: list[str] = []
    rewarded: list[str] = []
    refused: list[grpc.StatusCode] = []

    def fuzz() -> None:
        with grpc.insecure_channel(server.address) as channel:
            stub = router_pb2_grpc.RouterStub(channel)

            # Derandomized: the same 200 examples on every run, so the counts below are the same everywhere.
            @settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
            @given(
                route=st.one_of(route_requests, valid_routes),
                reward_id=st.one_of(st.none(), st.none(), ids),
                # Valid rewards twice as often: the accepted path is fuzzed as hard as the refused one.
                fields=st.one_of(fuzzed_reward, valid_reward, valid_reward),
                again=st.booleans(),
            )
            def one(route: Any, reward_id: str | None, fields: dict[str, Any], again: bool) -> None:
                _, decision = check(stub.Route, route)
                if decision is not None and not decision.replayed:
                    decided.append(decision.decision_id)
                # Reward either the decision just made or a fuzzed id.
                target = decision.decision_id if decision is not None and reward_id is None else (reward_id or "")
                request = optional(
                    pb.RewardRequest(
                        decision_id=target,
                        input_tokens=fields["input_tokens"],
                        output_tokens=fields["output_tokens"],
                        latency_ms=fields["latency_ms"],
                    ),
                    quality=fields["quality"],
                    energy_joules=fields["energy_joules"],
                    cost_usd=fields["cost_usd"],
                )
                code, reply = check(stub.Reward, request)
                if reply is None:
                    refused.append(code)
                else:
                    rewarded.append(target)
                    if again:  # a second reward of the same decision: the first counts
                        assert check(stub.Reward, request)[0] == grpc.StatusCode.ALREADY_EXISTS
                check(stub.GetStats, pb.GetStatsRequest())
                check(stub.ListModels, pb.ListModelsRequest())

            one()
            # Both paths were exercised by the fuzzing itself, not only refusals and not only acceptances
            # (derandomized, this run gives 105 decisions, 13 accepted rewards and over 100 refusals).
            assert len(decided) >= 50 and len(rewarded) >= 10, (len(decided), len(rewarded))
            assert refused.count(grpc.StatusCode.INVALID_ARGUMENT) >= 50, refused
            # Still serving normally.
            decision = stub.Route(pb.RouteRequest(query="Is the router still up?"), timeout=30)
            stub.Reward(pb.RewardRequest(decision_id=decision.decision_id, quality=1.0), timeout=30)
            decided.append(decision.decision_id)
            rewarded.append(decision.decision_id)

    await asyncio.to_thread(fuzz)
    assert len(rewarded) == len(set(rewarded))
    store = server.service.store
    for decision_id in decided:
        pending = await store.get_pending(decision_id) is not None
        assert pending != await store.was_rewarded(decision_id), decision_id
        assert (decision_id in rewarded) == (not pending), decision_id
    learner = server.service.learner
    assert learner is not None
    await learner.wait_learned(len(rewarded), timeout=60)
    assert learner.policy.learned == len(rewarded) and learner.failures == 0
