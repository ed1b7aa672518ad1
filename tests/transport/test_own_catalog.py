"""Only the user's models: where the router serves as a gateway, a Route never returns a model it cannot call, and a
backend's measured latency is what a latency budget is held to."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import openai
from backends import UserBackend, catalog_of, gateway_before, user_backends
from helpers import make_config, until

from bandit_router.embedding.model import Embedder

QUESTIONS = [f"Question {i}: what is {i} + {i}?" for i in range(12)]


async def test_routes_stay_on_models_with_a_backend_even_beside_the_shipped_catalog(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    shipped = make_config(tmp_path, redis_url).models
    async with user_backends("math-7b", "prose-7b") as backends:
        models = (*shipped, *catalog_of(*backends))  # as catalog.base = "shipped" would have it
        async with gateway_before(tmp_path, redis_url, embedder, models) as served, aiohttp.ClientSession() as session:
            for question in QUESTIONS:
                async with session.post(served.url + "v1/route", json={"query": question}) as response:
                    assert (await response.json())["model"] in ("math-7b", "prose-7b")
            body = {"query": "hi", "candidates": [shipped[0].id]}
            async with session.post(served.url + "v1/route", json=body) as response:
                assert response.status == 400
                message = (await response.json())["error"]["message"]
                assert message.startswith("candidates must be catalog model ids (math-7b, prose-7b)"), message


async def test_a_slow_backends_measured_latency_holds_it_to_a_latency_budget(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    slow, fast = UserBackend("slow-7b", delay_s=1.0), UserBackend("fast-7b")
    for backend in (slow, fast):
        await backend.start()
    try:
        models = catalog_of(slow, fast)
        async with (
            gateway_before(tmp_path, redis_url, embedder, models) as served,
            openai.AsyncOpenAI(base_url=served.url + "v1", api_key="unused", max_retries=0) as client,
            aiohttp.ClientSession() as session,
        ):
            # Each model answers once, metered by the gateway, and is rewarded: the learner keeps its latency.
            for name in ("slow-7b", "fast-7b"):
                raw = await client.chat.completions.with_raw_response.create(
                    model="bandit-router",
                    messages=[{"role": "user", "content": "Hello."}],
                    extra_headers={"x-bandit-router-candidates": name},
                )
                feedback = {"decision_id": raw.headers["x-bandit-router-decision-id"], "quality": 0.9}
                async with session.post(served.url + "v1/feedback", json=feedback) as response:
                    assert response.status == 200
            learner = served.service.learner
            await learner.wait_learned(2, timeout=60)
            await until(
                lambda: all(m in served.service.serving.estimates for m in ("slow-7b", "fast-7b")),
                60,
                "both models' latency to be served",
            )
            estimates = served.service.serving.estimates
            # The scripted second makes the slow one's latency; the bound leaves a loaded machine room for the other.
            assert estimates["slow-7b"].latency_ms >= 1000 > 500 > estimates["fast-7b"].latency_ms
            budget = {"max_latency_ms": 500.0}
            for question in QUESTIONS:
                async with session.post(served.url + "v1/route", json={"query": question, "budget": budget}) as r:
                    decision = await r.json()
                    assert decision["model"] == "fast-7b" and "slow-7b" in decision["excluded"][0], decision
    finally:
        for backend in (slow, fast):
            await backend.stop()
