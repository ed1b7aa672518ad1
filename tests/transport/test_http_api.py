"""The HTTP/JSON API: Route and Reward with the gRPC API's fields and errors, failures learned, tokens and tenants."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import make_config

from bandit_router.config import Config
from bandit_router.embedding.model import Embedder
from bandit_router.runtime.process import RouterProcess
from bandit_router.runtime.root import open_router

TOKENS = ("alpha:alpha-token-0123456789", "beta:beta-token-0123456789ab")


class Api:
    def __init__(self, url: str, server: RouterProcess) -> None:
        self.url = url
        self.server = server

    async def call(self, path: str, body: Any = None, token: str = "", raw: bytes | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as session:
            if raw is not None:
                headers["Content-Type"] = "application/json"
                request = session.post(self.url + path, data=raw, headers=headers)
            else:
                request = session.post(self.url + path, json=body, headers=headers)
            async with request as response:
                return response.status, await response.json()


async def serve(config: Config, embedder: Embedder) -> AsyncIterator[Api]:
    service = await open_router(config, embedder=embedder)
    server = RouterProcess(service, "127.0.0.1:0")
    try:
        await server.start()
        assert server.http is not None
        yield Api(server.http.url, server)
    finally:
        await server.stop(0)


@pytest.fixture
async def api(config: Config, embedder: Embedder) -> AsyncIterator[Api]:
    async for served in serve(config, embedder):
        yield served


@pytest.fixture
async def tenants_api(tmp_path: Path, redis_url: str, embedder: Embedder) -> AsyncIterator[Api]:
    async for served in serve(make_config(tmp_path, redis_url, auth={"tokens": TOKENS}), embedder):
        yield served


async def test_route_then_reward_over_json(api: Api) -> None:
    status, decision = await api.call(
        "v1/route",
        {"query": "Translate 'good morning' to French", "preferences": {"energy_weight": 0.5}, "task": "translate"},
    )
    assert status == 200 and decision["task"] == "translate" and decision["energy_weight"] == 0.5
    assert decision["ranked"][0] == decision["model"] and sorted(decision["ranked"]) == sorted(
        p["model"] for p in decision["pmf"]
    )
    assert sum(p["probability"] for p in decision["pmf"]) == pytest.approx(1.0)
    status, reward = await api.call(
        "v1/reward", {"decision_id": decision["decision_id"], "quality": 0.8, "input_tokens": 12, "output_tokens": 30}
    )
    assert status == 200 and reward["model"] == decision["model"] and reward["cost_source"] == "computed"
    status, again = await api.call("v1/reward", {"decision_id": decision["decision_id"], "quality": 0.8})
    assert status == 409 and "already rewarded" in again["error"]["message"]


async def test_a_retried_route_with_its_request_id_answers_the_same_decision(api: Api) -> None:
    body = {"query": "What is 2 + 2?", "request_id": "req-42"}
    _, first = await api.call("v1/route", body)
    _, second = await api.call("v1/route", body)
    assert second["decision_id"] == first["decision_id"] and second["model"] == first["model"] and second["replayed"]
    status, other = await api.call("v1/route", {**body, "query": "Something else"})
    assert status == 409 and "request_id" in other["error"]["message"]


async def test_a_failed_call_is_learned_with_the_failure_quality(api: Api) -> None:
    _, decision = await api.call("v1/route", {"query": "Summarise this"})
    status, reward = await api.call("v1/fail", {"decision_id": decision["decision_id"], "reason": "timeout after 30 s"})
    assert status == 200 and reward["reward"] <= 0.0
    service = api.server.service
    assert service.learner is not None
    await service.learner.wait_learned(1, timeout=60)


@pytest.mark.parametrize(
    ("path", "body", "status", "param", "match"),
    [
        ("v1/route", {"query": ""}, 400, "query", "must not be empty"),
        ("v1/route", {"query": 5}, 400, "query", "must be a string, got 5"),
        ("v1/route", {"query": "q", "candidates": ["gpt-9"]}, 400, "candidates", "catalog model ids"),
        ("v1/route", {"query": "q", "preferences": {"cost_weight": "high"}}, 400, "preferences.cost_weight", "number"),
        ("v1/route", {"query": "q", "budget": {"max_cost_usd": -1}}, 400, "budget.max_cost_usd", ">= 0"),
        ("v1/route", [1, 2], 400, "body", "JSON object"),
        ("v1/reward", {"decision_id": "x", "quality": 1.7}, 400, "quality", "must be in [0, 1], got 1.7"),
        ("v1/reward", {"decision_id": "x"}, 400, "quality", "is required"),
        ("v1/reward", {"decision_id": "nope", "quality": 0.5}, 404, None, "unknown"),
        ("v1/reward", {"decision_id": "x", "quality": 0.5, "output_tokens": 1.5}, 400, "output_tokens", "integer"),
        ("v1/fail", {"decision_id": "x", "reason": "r" * 600}, 400, "reason", "at most 500"),
        ("v1/nowhere", {}, 404, None, "no such endpoint"),
    ],
)
async def test_bad_input_names_the_field_the_rule_and_the_value(
    api: Api, path: str, body: Any, status: int, param: str | None, match: str
) -> None:
    got, answer = await api.call(path, body)
    assert got == status and answer["error"]["param"] == param and match in answer["error"]["message"]
    assert (await api.call("v1/route", {"query": "still serving?"}))[0] == 200


async def test_a_body_that_is_not_json_is_refused(api: Api) -> None:
    status, answer = await api.call("v1/route", raw=b"{not json")
    assert status == 400 and answer["error"]["param"] == "body"


async def test_tokens_name_the_tenant_and_tenants_see_only_their_own_decisions(tenants_api: Api) -> None:
    alpha, beta = (t.split(":", 1)[1] for t in TOKENS)
    status, answer = await tenants_api.call("v1/route", {"query": "q"})
    assert status == 401 and answer["error"]["code"] == "invalid_api_key"
    assert (await tenants_api.call("v1/route", {"query": "q"}, token="wrong-token-0123456789"))[0] == 401
    _, decision = await tenants_api.call("v1/route", {"query": "q"}, token=alpha)
    assert decision["decision_id"].startswith("alpha.")
    status, _ = await tenants_api.call("v1/reward", {"decision_id": decision["decision_id"], "quality": 1}, token=beta)
    assert status == 404
    status, _ = await tenants_api.call("v1/reward", {"decision_id": decision["decision_id"], "quality": 1}, token=alpha)
    assert status == 200


async def test_health_needs_no_token_and_follows_the_router(tenants_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(tenants_api.url + "healthz") as response:
            assert response.status == 200 and (await response.json())["status"] == "SERVING"
        monkeypatch.setattr(tenants_api.server.service, "health_problem", lambda: "the embedded Redis is restarting")
        async with session.get(tenants_api.url + "healthz") as response:
            body = await response.json()
        assert response.status == 503 and body == {
            "status": "NOT_SERVING",
            "reason": "the embedded Redis is restarting",
        }


async def test_a_taken_http_port_fails_the_start_with_the_setting_named(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = await open_router(
            make_config(tmp_path, redis_url, http={"listen": f"127.0.0.1:{port}"}), embedder=embedder
        )
        server = RouterProcess(service, "127.0.0.1:0")
        try:
            with pytest.raises(OSError, match=f"http.listen: cannot bind 127.0.0.1:{port}"):
                await server.start()
        finally:
            await server.stop(0)
    assert server.http is not None and server.http.backends.session is not None and server.http.backends.session.closed
