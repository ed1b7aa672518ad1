"""``bandit_router.Client`` and ``AsyncClient`` against a real router: Route, Reward, failures, errors, retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from helpers import free_port

import bandit_router
from bandit_router.client import AlreadyRewarded, AsyncClient, Client, Conflict, InvalidRequest, NotFound, Unavailable
from bandit_router.runtime.process import RouterProcess
from bandit_router.serving.router import RouterService


@pytest.fixture
async def url(server: RouterProcess) -> AsyncIterator[str]:
    assert server.http is not None
    yield server.http.url


async def test_the_async_client_routes_rewards_and_fails(url: str, service: RouterService) -> None:
    async with bandit_router.AsyncClient(url) as client:
        decision = await client.route("Write a haiku about autumn", energy_weight=2.0, task="creative_writing")
        assert decision.model in decision.pmf and decision.ranked[0] == decision.model
        assert decision.energy_weight == 2.0 and decision.task == "creative_writing"
        result = await client.reward(decision.decision_id, 0.9, output_tokens=40, latency_ms=800.0)
        assert result.model == decision.model and result.energy_source in ("estimated", "measured")
        with pytest.raises(AlreadyRewarded):
            await client.reward(decision.decision_id, 0.9)
        failed = await client.fail((await client.route("Another question")).decision_id, "HTTP 500 from the model")
        assert failed.reward <= 0.0
    assert service.learner is not None
    await service.learner.wait_learned(2, timeout=60)


async def test_a_route_is_idempotent_by_request_id(url: str) -> None:
    async with AsyncClient(url) as client:
        first = await client.route("Same question", request_id="retry-1")
        second = await client.route("Same question", request_id="retry-1")
    assert second.decision_id == first.decision_id and second.replayed and not first.replayed


async def test_the_sync_client_raises_the_api_errors_by_kind(url: str) -> None:
    def calls() -> None:
        with Client(url) as client:
            decision = client.route("What is the boiling point of water?")
            with pytest.raises(InvalidRequest) as caught:
                client.reward(decision.decision_id, 1.7)
            assert caught.value.param == "quality" and "got 1.7" in caught.value.message
            with pytest.raises(NotFound):
                client.reward("never-made", 0.5)
            assert client.reward(decision.decision_id, 0.5).decision_id == decision.decision_id

    # The server runs on this test's event loop: the blocking client runs beside it.
    await asyncio.to_thread(calls)


async def test_an_unreachable_router_is_retried_then_unavailable() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", retries=2, backoff_s=0.01, timeout_s=2.0) as client:
        with pytest.raises(Unavailable, match="after 3 attempts"):
            await client.route("anyone there?")


async def test_a_request_id_reused_for_another_query_is_a_conflict_not_a_reward(url: str) -> None:
    async with AsyncClient(url) as client:
        await client.route("First question", request_id="reused-1")
        with pytest.raises(Conflict) as caught:
            await client.route("A different question", request_id="reused-1")
    assert not isinstance(caught.value, AlreadyRewarded) and "request_id" in caught.value.message
