"""The gateway as users call it from the clients they already have: the official ``openai`` SDK, LiteLLM and
LangChain, each with the feedback round trip (the decision id from the answer, the quality back to /v1/feedback),
against a user's own backend that speaks the real protocol over HTTP."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from backends import Served, catalog_of, gateway_before, user_backends

from bandit_router.embedding.model import Embedder

# LiteLLM fetches its model price map from GitHub when imported, unless told to use the copy it ships.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

QUESTION = "What is the capital of France?"


@pytest.fixture
async def served(tmp_path: Path, redis_url: str, embedder: Embedder) -> AsyncIterator[Served]:
    async with (
        user_backends("math-7b", "prose-7b", reply="Paris.") as backends,
        gateway_before(tmp_path, redis_url, embedder, catalog_of(*backends)) as opened,
    ):
        yield opened


async def feedback(served: Served, decision_id: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(served.url + "v1/feedback", json={"decision_id": decision_id, "quality": 1.0}) as response,
    ):
        assert response.status == 200, await response.text()
        return dict(await response.json())


async def test_the_openai_sdk(served: Served) -> None:
    import openai

    async with openai.AsyncOpenAI(base_url=served.url + "v1", api_key="unused") as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="bandit-router", messages=[{"role": "user", "content": QUESTION}]
        )
    completion = raw.parse()
    decision_id = raw.headers["x-bandit-router-decision-id"]
    assert completion.choices[0].message.content == "Paris."
    assert (await feedback(served, decision_id))["model"] == completion.model


async def test_litellm(served: Served) -> None:
    import litellm

    response = await litellm.acompletion(
        model="openai/bandit-router",
        api_base=served.url + "v1",
        api_key="unused",
        messages=[{"role": "user", "content": QUESTION}],
    )
    assert response.choices[0].message.content == "Paris."
    decision_id = response._hidden_params["additional_headers"]["llm_provider-x-bandit-router-decision-id"]
    assert (await feedback(served, decision_id))["model"] in ("math-7b", "prose-7b")


async def test_langchain(served: Served) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        model="bandit-router", base_url=served.url + "v1", api_key="unused", include_response_headers=True
    )  # type: ignore[call-arg]
    message = await chat.ainvoke(QUESTION)
    assert message.content == "Paris."
    decision_id = message.response_metadata["headers"]["x-bandit-router-decision-id"]
    assert (await feedback(served, decision_id))["model"] == message.response_metadata["model_name"]
