"""Conversation affinity through the gateway, with the official ``openai`` client in front of a user's own
backends: a chat stays on the model its first turn was routed to, feedback for any turn rewards that one decision,
and a backend that fails mid-conversation moves it once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from backends import Served, UserBackend, catalog_of, gateway_before, user_backends

from bandit_router.embedding.model import Embedder

# Turns that, alone, would be routed as different kinds of query.
TURNS = [
    "Write a short poem about the sea at night.",
    "Now solve 37 * 41 and show the steps.",
    "Perfect.",
    "Explain how you got it.",
    "Make the poem rhyme.",
    "Thanks.",
]


@pytest.fixture
async def backends() -> AsyncIterator[list[UserBackend]]:
    async with user_backends("math-7b", "prose-7b") as started:
        yield started


async def chat(
    client: openai.AsyncOpenAI, turns: list[str], headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Plays ``turns`` as one conversation (each answer kept in the history); what the gateway said of each."""
    messages: list[dict[str, str]] = [{"role": "system", "content": "You are helpful."}]
    said = []
    for turn in turns:
        messages.append({"role": "user", "content": turn})
        completion = await client.chat.completions.create(
            model="bandit-router",
            messages=messages,  # type: ignore[arg-type]
            extra_headers=headers or {},
        )
        messages.append({"role": "assistant", "content": completion.choices[0].message.content or ""})
        said.append((completion.model_extra or {})["bandit_router"])
    return said


async def feedback(served: Served, decision_id: str, quality: float) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(served.url + "v1/feedback", json={"decision_id": decision_id, "quality": quality}) as answer,
    ):
        return answer.status


def client_of(served: Served) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=served.url + "v1", api_key="unused", max_retries=0)


async def test_a_six_turn_chat_of_mixed_content_stays_on_one_model_and_is_learned_once(
    tmp_path: Path, redis_url: str, embedder: Embedder, backends: list[UserBackend]
) -> None:
    async with gateway_before(tmp_path, redis_url, embedder, catalog_of(*backends)) as served:
        client = client_of(served)
        said = await chat(client, TURNS)
        await client.close()
        assert len({s["model"] for s in said}) == 1, said
        assert len({s["decision_id"] for s in said}) == 1
        assert [s["mode"] for s in said] == ["online"] + ["sticky"] * 5
        assert all(s["probability"] == 1.0 for s in said[1:]) and 0 < said[0]["probability"] <= 1
        # Feedback for any turn rewards the conversation's one decision; the first counts.
        assert await feedback(served, said[3]["decision_id"], 0.9) == 200
        assert await feedback(served, said[5]["decision_id"], 0.1) == 409
        learner = served.service.learner
        await learner.wait_learned(1, timeout=60)
        assert served.service.monitor.metrics.sticky._value.get() == 5


async def test_a_backend_failing_mid_conversation_moves_it_once(
    tmp_path: Path, redis_url: str, embedder: Embedder, backends: list[UserBackend]
) -> None:
    async with gateway_before(tmp_path, redis_url, embedder, catalog_of(*backends)) as served:
        client = client_of(served)
        messages: list[dict[str, str]] = []
        models: list[str] = []
        for i, turn in enumerate(TURNS):
            if i == 3:
                # The conversation's model starts failing.
                next(b for b in backends if b.model == models[0]).status = 503
            messages.append({"role": "user", "content": turn})
            raw = await client.chat.completions.with_raw_response.create(
                model="bandit-router",
                messages=messages,  # type: ignore[arg-type]
            )
            completion = raw.parse()
            messages.append({"role": "assistant", "content": completion.choices[0].message.content or ""})
            models.append(completion.model)
        await client.close()
        first, other = models[0], next(b.model for b in backends if b.model != models[0])
        assert models == [first] * 3 + [other] * 3
        assert next(b for b in backends if b.model == first).calls == 4  # three answers, then the one failure


async def test_explicit_ids_keep_conversations_with_the_same_opening_apart_and_affinity_can_be_off(
    tmp_path: Path, redis_url: str, embedder: Embedder, backends: list[UserBackend]
) -> None:
    async with gateway_before(tmp_path, redis_url, embedder, catalog_of(*backends)) as served:
        client = client_of(served)
        one = await chat(client, TURNS[:3], {"x-bandit-router-conversation": "conv-1"})
        two = await chat(client, TURNS[:3], {"x-bandit-router-conversation": "conv-2"})
        await client.close()
        # With an explicit id the first turn is already looked up, finds no pin, and is routed.
        assert [s["mode"] for s in one] == [s["mode"] for s in two] == ["online", "sticky", "sticky"]
        assert one[0]["decision_id"] != two[0]["decision_id"]
    async with gateway_before(tmp_path, redis_url, embedder, catalog_of(*backends), http={"affinity": False}) as off:
        client = client_of(off)
        said = await chat(client, TURNS[:3])
        await client.close()
        assert [s["mode"] for s in said] == ["online"] * 3
        assert len({s["decision_id"] for s in said}) == 3
