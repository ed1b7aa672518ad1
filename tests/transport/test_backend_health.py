"""A user's own backends, checked: at start (a base URL without /v1, an unset API key stop the start with the fix;
one not answering yet is not routed until it does), and while running (a breaker opens on failures, a probe brings
the restored backend back within seconds, a hanging backend is cut at its first-token timeout, /healthz says 503
while no backend answers, /metrics carries every backend's series)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest
from backends import Served, UserBackend, catalog_of, gateway_before, user_backends
from helpers import until

from bandit_router.config import ConfigError
from bandit_router.embedding.model import Embedder

# Probes every 0.1 s: a restored backend is back within a second or two on any machine.
FAST = {"probe_interval_s": 0.1, "breaker_failures": 2, "breaker_cooldown_s": 600.0}
QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture
async def backends() -> AsyncIterator[list[UserBackend]]:
    async with user_backends("math-7b", "prose-7b") as started:
        yield started


async def get(served: Served, path: str, base: str = "") -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get((base or served.url) + path) as response:
        return response.status, await response.text()


async def ask(served: Served, only: str = "") -> str:
    """The model that answered (``only``: the one candidate allowed)."""
    headers = {"x-bandit-router-candidates": only} if only else {}
    async with openai.AsyncOpenAI(base_url=served.url + "v1", api_key="unused", max_retries=0) as client:
        completion = await client.chat.completions.create(
            model="bandit-router",
            messages=QUESTION,  # type: ignore[arg-type]
            extra_headers=headers,
        )
        return completion.model


async def test_a_base_url_without_v1_stops_the_start_with_the_fix(
    tmp_path: Path, redis_url: str, embedder: Embedder, backends: list[UserBackend]
) -> None:
    models = catalog_of(*backends)
    wrong = (models[0].__class__(**{**models[0].__dict__, "base_url": models[0].base_url.removesuffix("/v1")}),)
    with pytest.raises(
        ConfigError,
        match=r"models\[math-7b\].base_url: GET http://127.0.0.1:\d+/models answered 404: "
        r"an OpenAI-compatible base URL ends in /v1: set models\[math-7b\].base_url to .*/v1",
    ):
        async with gateway_before(tmp_path, redis_url, embedder, wrong + models[1:]):
            pass


async def test_an_unset_api_key_variable_stops_the_start(
    tmp_path: Path, redis_url: str, embedder: Embedder, backends: list[UserBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MATH_BACKEND_KEY", raising=False)
    models = catalog_of(*backends, api_key_env="MATH_BACKEND_KEY")
    with pytest.raises(
        ConfigError,
        match=r"models\[math-7b\].api_key_env: the environment variable MATH_BACKEND_KEY"
        " is not set",
    ):
        async with gateway_before(tmp_path, redis_url, embedder, models):
            pass


async def test_a_breaker_opens_on_failures_and_a_probe_brings_the_restored_backend_back(
    tmp_path: Path, redis_url: str, embedder: Embedder, backends: list[UserBackend]
) -> None:
    math = backends[0]
    async with gateway_before(tmp_path, redis_url, embedder, catalog_of(*backends), http=FAST) as served:
        breakers = served.service.upstreams.breakers
        math.status = 503
        # Requests that may go to math only: each fails (502), and after http.breaker_failures (2) the breaker opens.
        for _ in range(FAST["breaker_failures"]):
            with pytest.raises(openai.APIStatusError, match="math-7b: HTTP 503"):
                await ask(served, only="math-7b")
        assert breakers.state("math-7b") == "open" and math.calls == FAST["breaker_failures"]
        with pytest.raises(openai.APIStatusError, match="breakers open: math-7b"):
            await ask(served, only="math-7b")
        calls = math.calls
        for _ in range(5):
            assert await ask(served) == "prose-7b"
        assert math.calls == calls  # an open breaker costs no request a failed attempt
        # The backend goes down, the probes find it unreachable; it comes back, a probe (not a user's request)
        # finds it, and it is routed again: its next call is the trial that closes the breaker.
        await math.stop()
        await until(lambda: breakers.is_unreachable("math-7b"), 30, "a probe to find math-7b unreachable")
        math.status = 200
        await math.start()  # on its old port
        await until(lambda: breakers.state("math-7b") == "half_open", 30, "the probe to find math-7b back")
        assert await ask(served, only="math-7b") == "math-7b"
        assert breakers.state("math-7b") == "closed"
        assert served.process.dashboard is not None
        status, text = await get(served, "metrics", served.process.dashboard.url)
        assert status == 200
        assert 'bandit_router_backend_calls_total{model="math-7b",outcome="failed"}' in text
        assert 'bandit_router_backend_breaker{model="math-7b",state="open"} 0.0' in text
        assert 'bandit_router_backend_seconds_count{model="prose-7b"}' in text


async def test_healthz_is_503_while_no_backend_answers_and_200_once_one_does(
    tmp_path: Path, redis_url: str, embedder: Embedder, backends: list[UserBackend]
) -> None:
    for backend in backends:
        await backend.stop()
    async with gateway_before(tmp_path, redis_url, embedder, catalog_of(*backends), http=FAST) as served:
        status, text = await get(served, "healthz")
        assert status == 503 and "no backend of any routable model is healthy" in text
        async with aiohttp.ClientSession() as session:
            body = {"model": "bandit-router", "messages": QUESTION}
            async with session.post(served.url + "v1/chat/completions", json=body) as response:
                assert response.status == 503
                assert "breakers open" in (await response.json())["error"]["message"]
        await backends[1].start()  # on its old port
        # Route itself needs no backend: gRPC health (what restarts a pod) stays SERVING throughout.
        assert served.service.health_problem() is None
        await until(lambda: served.service.upstreams.breakers.routable("prose-7b"), 30, "prose-7b to be found back")
        assert (await get(served, "healthz"))[0] == 200
        assert await ask(served) == "prose-7b"


async def test_a_hanging_backend_is_cut_at_its_first_token_timeout(
    tmp_path: Path, redis_url: str, embedder: Embedder, backends: list[UserBackend]
) -> None:
    math = backends[0]
    math.hang = True
    models = catalog_of(*backends, first_token_timeout_s=0.5)
    async with (
        gateway_before(tmp_path, redis_url, embedder, models, http={"backend_timeout_s": 300.0}) as served,
        openai.AsyncOpenAI(base_url=served.url + "v1", api_key="unused", max_retries=0) as client,
    ):
        with pytest.raises(openai.APIStatusError, match=r"math-7b: no answer within 0.5 s") as failed:
            await client.chat.completions.create(
                model="bandit-router",
                messages=QUESTION,  # type: ignore[arg-type]
                stream=True,
                extra_headers={"x-bandit-router-candidates": "math-7b"},
            )
        assert failed.value.status_code == 502
        # Cut by the model's own 0.5 s bound, not the gateway's 300 s: the failure says which bound fired.
        view = {v["model"]: v for v in served.service.upstreams.view()}
        assert view["math-7b"]["last_failure"] == "no answer within 0.5 s"
        stream = await client.chat.completions.create(
            model="bandit-router",
            messages=QUESTION,  # type: ignore[arg-type]
            stream=True,
        )
        chunks = [chunk async for chunk in stream]  # type: ignore[union-attr]
        assert chunks[0].model == "prose-7b"
        math.hang = False
