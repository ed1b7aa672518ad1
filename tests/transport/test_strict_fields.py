"""Request fields that are misspelled or misplaced are refused with 400, naming the field and the known ones,
rather than ignored (the request would then be served as if it had not asked); OpenAI's own fields, and a backend's
own, still pass through the gateway to the backend."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from backends import Served, catalog_of, gateway_before, user_backends

from bandit_router.embedding.model import Embedder

CHAT = {"model": "bandit-router", "messages": [{"role": "user", "content": "Hello there."}]}


@pytest.fixture
async def served(tmp_path: Path, redis_url: str, embedder: Embedder) -> AsyncIterator[Served]:
    async with (
        user_backends("math-7b", "prose-7b") as backends,
        gateway_before(tmp_path, redis_url, embedder, catalog_of(*backends)) as opened,
    ):
        yield opened


async def post(served: Served, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(served.url + path, json=body) as response:
        return response.status, await response.json()


@pytest.mark.parametrize(
    ("path", "body", "match"),
    [
        (
            "v1/route",
            {"query": "hi", "candidate": ["math-7b"]},
            r"^candidate is not a field of /v1/route \(did you mean candidates\? known: baseline, budget, candidates,",
        ),
        ("v1/route", {"query": "hi", "energy_weight": 0.5}, r"^energy_weight is not a field of /v1/route \(known:"),
        (
            "v1/route",
            {"query": "hi", "budget": {"max_cost": 0.01}},
            r"^budget.max_cost is not a field of budget \(did you mean budget.max_cost_usd\? known: max_cost_usd, "
            r"max_energy_joules, max_latency_ms\), got 0.01",
        ),
        ("v1/route", {"query": "hi", "preferences": {"energy": 1}}, r"^preferences.energy is not a field of pref"),
        ("v1/feedback", {"decision_id": "x", "quality": 1, "score": 1}, r"^score is not a field of /v1/feedback"),
        ("v1/reward", {"decision_id": "x", "qualty": 1}, r"^qualty is not a field of /v1/reward \(did you mean qual"),
        ("v1/fail", {"decision_id": "x", "why": "boom"}, r"^why is not a field of /v1/fail \(known: decision_id, l"),
        ("v1/chat/completions", {**CHAT, "candidate": ["math-7b"]}, r"^candidate is not a field of the body of /v1/ch"),
        ("v1/chat/completions", {**CHAT, "energy_weight": 0.5}, r"^energy_weight is not a field of the body of"),
        ("v1/chat/completions", {**CHAT, "budget": {"max_cost": 1}}, r"^budget.max_cost is not a field of budget"),
    ],
)
async def test_an_unknown_or_misplaced_field_is_refused_naming_it(
    served: Served, path: str, body: dict[str, Any], match: str
) -> None:
    status, answer = await post(served, path, body)
    assert status == 400, answer
    assert re.search(match, answer["error"]["message"]), answer


async def test_openai_and_backend_fields_still_pass_through(served: Served) -> None:
    body = {**CHAT, "temperature": 0.2, "top_k": 5, "metadata": {"app": "x"}, "seed": 3, "user": "u1"}
    status, answer = await post(served, "v1/chat/completions", body)
    assert status == 200, answer
