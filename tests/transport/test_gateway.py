"""The official ``openai`` client against the gateway, in front of a scripted OpenAI-compatible backend: answers,
streams, metering, the decision id round trip, feedback learned, fallbacks, pass-through and bad requests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from helpers import decision_logs, make_config
from transformers import AutoTokenizer

from bandit_router.bench.backend import Script, ScriptedBackend
from bandit_router.config import Config
from bandit_router.config.checks import ConfigError
from bandit_router.embedding.model import Embedder, bundled_model_path
from bandit_router.runtime.process import RouterProcess
from bandit_router.runtime.root import open_router
from bandit_router.serving.router import RouterService

SMALL, LARGE = "gemma-2-9b-it", "llama-3.3-70b-instruct"
QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]


@dataclasses.dataclass
class Gateway:
    url: str
    service: RouterService
    backend: ScriptedBackend
    # The backend's answer per upstream model name (a model's id unless the catalog renames it).
    scripts: dict[str, Script]
    client: openai.AsyncOpenAI
    data_dir: Path
    dashboard_url: str

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + path, json=body, headers=headers) as response,
        ):
            return response.status, await response.json()


def backed(config: Config, url: str, upstream: dict[str, str] | None = None, tokenizer: str = "") -> Config:
    """``config`` with only the two test models, both behind ``url`` (and both counted with ``tokenizer``)."""
    names = upstream or {}
    models = [
        dataclasses.replace(m, base_url=url, upstream_model=names.get(m.id, ""), tokenizer=tokenizer)
        for m in config.models
        if m.id in (SMALL, LARGE)
    ]
    return config.replace(models=tuple(models))


@contextlib.asynccontextmanager
async def open_gateway(
    tmp_path: Path, redis_url: str, embedder: Embedder, tokenizer: str = "", **sections: Any
) -> AsyncIterator[Gateway]:
    """A router serving the gateway in front of a scripted backend that answers each model as ``scripts`` says."""
    scripts: dict[str, Script] = {}
    backend = ScriptedBackend(lambda model, prompt: scripts.get(model, Script()))
    url = await backend.start()
    http = {"backend_timeout_s": 5.0, **sections.pop("http", {})}
    config = backed(make_config(tmp_path, redis_url, http=http, **sections), url, None, tokenizer)
    service = await open_router(config, embedder=embedder)
    server = RouterProcess(service, "127.0.0.1:0")
    try:
        await server.start()
        assert server.http is not None
        client = openai.AsyncOpenAI(base_url=server.http.url + "v1", api_key="not-checked", max_retries=0)
        assert server.dashboard is not None
        yield Gateway(server.http.url, service, backend, scripts, client, tmp_path, server.dashboard.url)
        await client.close()
    finally:
        await server.stop(0)
        await backend.stop()


@pytest.fixture
async def gateway(tmp_path: Path, redis_url: str, embedder: Embedder) -> AsyncIterator[Gateway]:
    async with open_gateway(tmp_path, redis_url, embedder) as opened:
        yield opened


def learned_events(data_dir: Path) -> list[dict[str, Any]]:
    paths = decision_logs(data_dir)
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


async def test_a_chat_is_routed_answered_metered_and_its_feedback_learned(gateway: Gateway) -> None:
    for model in (SMALL, LARGE):
        gateway.scripts[model] = Script(text="Paris.", prompt_tokens=17, completion_tokens=3, delay_s=0.05)
    raw = await gateway.client.chat.completions.with_raw_response.create(model="bandit-router", messages=QUESTION)
    completion = raw.parse()
    decision_id = raw.headers["x-bandit-router-decision-id"]
    assert completion.model in (SMALL, LARGE)
    assert completion.choices[0].message.content == "Paris."
    assert completion.usage is not None and completion.usage.prompt_tokens == 17
    extension = (completion.model_extra or {})["bandit_router"]
    assert extension["decision_id"] == decision_id and extension["model"] == completion.model
    assert 0 < extension["probability"] <= 1
    # The backend was asked for the chosen model by its upstream name, with the router's own fields left out.
    path, sent, _ = gateway.backend.received[-1]
    assert path == "/v1/chat/completions" and sent["model"] == completion.model and "candidates" not in sent
    await gateway.service.after_answer.settled(decision_id)  # written after the answer went
    metered = await gateway.service.store.get_metered(decision_id)
    assert metered is not None and (metered.input_tokens, metered.output_tokens) == (17, 3)
    assert metered.latency_ms >= 50 and metered.first_token_ms is None

    status, reward = await gateway.post("v1/feedback", {"decision_id": decision_id, "quality": 0.75})
    assert status == 200 and reward["decision_id"] == decision_id and reward["model"] == completion.model
    assert gateway.service.learner is not None
    await gateway.service.learner.wait_learned(1, timeout=60)
    await gateway.service.close()
    (event,) = learned_events(gateway.data_dir)
    assert event["decision_id"] == decision_id and event["quality"] == 0.75
    # What the gateway measured completed the reward: the application sent only the quality.
    assert (event["input_tokens"], event["output_tokens"], event["output_tokens_reported"]) == (17, 3, True)
    assert event["latency_ms"] >= 50


async def test_a_streamed_chat_relays_every_chunk_and_meters_the_first_token(gateway: Gateway) -> None:
    for model in (SMALL, LARGE):
        gateway.scripts[model] = Script(text="one two three four", delay_s=0.02, chunk_delay_s=0.02)
    stream = await gateway.client.chat.completions.create(model="bandit-router", messages=QUESTION, stream=True)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert {c.model for c in chunks} <= {SMALL, LARGE} and len({c.model for c in chunks}) == 1
    # The usage chunk the gateway asked for is not relayed to a caller that did not ask for it.
    assert all(c.usage is None for c in chunks)
    decision_id = (chunks[0].model_extra or {})["bandit_router"]["decision_id"]
    await gateway.service.after_answer.settled(decision_id)  # written after the answer went
    metered = await gateway.service.store.get_metered(decision_id)
    assert metered is not None and metered.output_tokens == 4
    assert metered.first_token_ms is not None and 20 <= metered.first_token_ms <= metered.latency_ms


async def test_a_stream_asked_with_usage_gets_it(gateway: Gateway) -> None:
    gateway.scripts.update({m: Script(text="a b", prompt_tokens=9) for m in (SMALL, LARGE)})
    stream = await gateway.client.chat.completions.create(
        model="bandit-router", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    usages = [c.usage for c in [c async for c in stream] if c.usage is not None]
    assert [(u.prompt_tokens, u.completion_tokens) for u in usages] == [(9, 2)]


async def test_without_usage_from_the_backend_the_output_is_estimated_from_the_answer(gateway: Gateway) -> None:
    gateway.scripts.update({m: Script(text="x" * 40, usage=False) for m in (SMALL, LARGE)})
    raw = await gateway.client.chat.completions.with_raw_response.create(model="bandit-router", messages=QUESTION)
    decision_id = raw.headers["x-bandit-router-decision-id"]
    await gateway.service.after_answer.settled(decision_id)  # written after the answer went
    metered = await gateway.service.store.get_metered(decision_id)
    assert metered is not None and (metered.output_tokens, metered.answer_chars) == (0, 40)
    status, reward = await gateway.post("v1/feedback", {"decision_id": decision_id, "quality": 0.5})
    assert status == 200 and reward["cost_source"] == "estimated"
    assert "10 output tokens (estimated from the answer's length" in reward["cost_basis"]


async def test_without_usage_the_models_tokenizer_counts_prompt_and_answer(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    # all-MiniLM-L6-v2's tokenizer stands in for a model's own: any tokenizer directory works the same way.
    path = bundled_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    answer = "Paris, the capital of France, counts roughly 2,100,000 inhabitants (2023)."
    expected_in = sum(len(tokenizer.encode(m["content"], add_special_tokens=False)) for m in QUESTION)
    expected_out = len(tokenizer.encode(answer, add_special_tokens=False))
    assert expected_out != -(-len(answer) // 4), "the count should differ from the length estimate"
    async with open_gateway(tmp_path, redis_url, embedder, tokenizer=path) as gateway:
        gateway.scripts.update({m: Script(text=answer, usage=False) for m in (SMALL, LARGE)})
        for stream in (False, True):
            if stream:
                chunks = [
                    c
                    async for c in await gateway.client.chat.completions.create(
                        model="bandit-router", messages=QUESTION, stream=True, stream_options={"include_usage": True}
                    )
                ]
                decision_id = (chunks[0].model_extra or {})["bandit_router"]["decision_id"]
                # The caller asked for usage the backend did not send: it gets the gateway's count.
                usage = chunks[-1].usage
                assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (
                    expected_in,
                    expected_out,
                )
                assert not chunks[-1].choices
            else:
                raw = await gateway.client.chat.completions.with_raw_response.create(
                    model="bandit-router", messages=QUESTION
                )
                decision_id = raw.headers["x-bandit-router-decision-id"]
            await gateway.service.after_answer.settled(decision_id)  # written after the answer went
            metered = await gateway.service.store.get_metered(decision_id)
            assert metered is not None and (metered.input_tokens, metered.output_tokens) == (0, 0)
            assert (metered.input_counted, metered.output_counted) == (expected_in, expected_out), stream
            status, reward = await gateway.post("v1/feedback", {"decision_id": decision_id, "quality": 0.5})
            assert status == 200 and reward["cost_source"] == "computed"
            assert (
                f"{expected_in} input tokens (counted with the model's tokenizer), "
                f"{expected_out} output tokens (counted with the model's tokenizer)"
            ) in reward["cost_basis"]
        # A usage the backend reports is taken over any count.
        gateway.scripts.update({m: Script(text=answer, prompt_tokens=9) for m in (SMALL, LARGE)})
        raw = await gateway.client.chat.completions.with_raw_response.create(model="bandit-router", messages=QUESTION)
        decision_id = raw.headers["x-bandit-router-decision-id"]
        await gateway.service.after_answer.settled(decision_id)  # written after the answer went
        metered = await gateway.service.store.get_metered(decision_id)
        assert (
            metered is not None
            and metered.input_tokens == 9
            and (metered.input_counted, metered.output_counted) == (0, 0)
        )


async def test_a_tokenizer_that_cannot_be_loaded_stops_the_start_naming_the_model(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    missing = str(tmp_path / "no-tokenizer-here")
    with pytest.raises(
        ConfigError, match=rf"models\[{SMALL}\]\.tokenizer must be a local directory.*no-tokenizer-here"
    ):
        async with open_gateway(tmp_path, redis_url, embedder, tokenizer=missing):
            pass


async def test_a_completion_is_routed_too(gateway: Gateway) -> None:
    completion = await gateway.client.completions.create(model="bandit-router", prompt="Once upon a time")
    assert completion.model in (SMALL, LARGE) and completion.choices[0].text == Script().text
    assert gateway.backend.received[-1][0] == "/v1/completions"


async def test_the_trade_off_in_the_model_name_and_the_candidates_in_the_body_are_honoured(gateway: Gateway) -> None:
    raw = await gateway.client.chat.completions.with_raw_response.create(
        model="bandit-router:energy=5,cost=0", messages=QUESTION, extra_body={"candidates": [LARGE], "task": "qa"}
    )
    summary = await gateway.service.store.get_summary(raw.headers["x-bandit-router-decision-id"])
    assert summary is not None
    decision = summary.decision
    assert (
        decision.model == LARGE and decision.task == "qa" and (decision.energy_weight, decision.cost_weight) == (5, 0)
    )


@pytest.mark.parametrize("failure", [Script(status=500), Script(status=429), Script(hang=True)])
async def test_a_failing_backend_falls_back_and_learns_the_failure(gateway: Gateway, failure: Script) -> None:
    gateway.scripts[LARGE] = failure
    gateway.scripts[SMALL] = Script(text="Fallback answer.")
    failures = 0
    # The policy may choose either model first: ask until it chose the failing one a few times.
    for _ in range(20):
        completion = await gateway.client.chat.completions.create(
            model="bandit-router:energy=0,cost=0", messages=QUESTION, extra_body={"candidates": [LARGE, SMALL]}
        )
        # Every request is answered, by the healthy model.
        assert completion.model == SMALL and completion.choices[0].message.content == "Fallback answer."
        failed_before = (completion.model_extra or {})["bandit_router"]["failed_before"]
        assert [f["model"] for f in failed_before] in ([], [LARGE])
        failures += len(failed_before)
        if failures == 2:
            break
    assert failures == 2
    health = {b["model"]: b for b in gateway.service.upstreams.view()}
    assert health[LARGE]["failures"] == 2 and health[LARGE]["last_failure"]
    assert gateway.service.learner is not None
    await gateway.service.learner.wait_learned(2, timeout=60)
    await gateway.service.close()
    events = learned_events(gateway.data_dir)
    assert [(e["model"], e["quality"], bool(e["failure"])) for e in events] == [(LARGE, 0.0, True)] * 2


async def test_every_backend_failing_answers_502_naming_each(gateway: Gateway) -> None:
    gateway.scripts.update({SMALL: Script(status=503), LARGE: Script(status=500)})
    with pytest.raises(openai.APIStatusError) as caught:
        await gateway.client.chat.completions.create(model="bandit-router", messages=QUESTION)
    assert caught.value.status_code == 502
    message = caught.value.message
    assert SMALL in message and LARGE in message and "HTTP 503" in message and "HTTP 500" in message


async def test_a_concrete_model_passes_through_without_a_decision(gateway: Gateway) -> None:
    raw = await gateway.client.chat.completions.with_raw_response.create(model=SMALL, messages=QUESTION)
    assert raw.parse().model == SMALL and "x-bandit-router-decision-id" not in raw.headers
    assert gateway.backend.received[-1][1]["model"] == SMALL
    assert {b["model"]: b["calls"] for b in gateway.service.upstreams.view()} == {SMALL: 1}
    # The dashboard shows each backend's health.
    async with aiohttp.ClientSession() as session, session.get(gateway.dashboard_url + "api/backends") as response:
        (shown,) = (await response.json())["backends"]
    assert shown["model"] == SMALL and shown["calls"] == 1 and shown["failures"] == 0 and shown["latency_ms"] > 0


async def test_models_lists_the_router_and_each_backed_model(gateway: Gateway) -> None:
    ids = [m.id async for m in gateway.client.models.list()]
    assert ids == ["bandit-router", SMALL, LARGE]


@pytest.mark.parametrize(
    ("body", "status", "param", "match"),
    [
        ({"messages": QUESTION}, 400, "model", "model is required"),
        ({"model": "gpt-9", "messages": QUESTION}, 404, "model", "does not exist"),
        ({"model": "bandit-router:speed=1", "messages": QUESTION}, 400, "model", "energy=W,cost=W"),
        ({"model": "bandit-router", "messages": []}, 400, "messages", "non-empty list"),
        ({"model": "bandit-router", "messages": [{"role": "system", "content": "x"}]}, 400, "messages", "user message"),
        ({"model": "bandit-router", "messages": QUESTION, "candidates": "all"}, 400, "candidates", "list of strings"),
        ({"model": "bandit-router", "messages": QUESTION, "candidates": ["gpt-9"]}, 400, "candidates", "catalog"),
        ({"model": "bandit-router:energy=-1", "messages": QUESTION}, 400, "preferences.energy_weight", "in [0, 1000]"),
        ({"model": "bandit-router", "messages": QUESTION, "stream": "yes"}, 400, "stream", "true or false"),
    ],
)
async def test_bad_requests_get_openai_errors_naming_the_field(
    gateway: Gateway, body: dict[str, Any], status: int, param: str, match: str
) -> None:
    got, answer = await gateway.post("v1/chat/completions", body)
    assert got == status and answer["error"]["param"] == param and match in answer["error"]["message"]
    # The server keeps serving.
    assert (await gateway.client.chat.completions.create(model="bandit-router", messages=QUESTION)).choices


async def test_the_openai_client_raises_the_gateway_errors(gateway: Gateway) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        await gateway.client.chat.completions.create(model="gpt-9", messages=QUESTION)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="messages"):
        await gateway.client.chat.completions.create(model="bandit-router", messages=[])


async def test_with_feedback_the_gateway_learns_which_backend_answers_which_kind(gateway: Gateway) -> None:
    """Two kinds of query, each answered well by a different model: after a few hundred requests with feedback,
    the gateway sends each kind to its better model."""
    kinds = {
        "translation": ("Translate into French: {}", SMALL),
        "math": ("Prove that the sum of the first {} odd numbers is a square.", LARGE),
    }

    async def ask(kind: str, i: int, feedback: bool) -> str:
        template, better = kinds[kind]
        completion = await gateway.client.chat.completions.create(
            model="bandit-router:energy=0,cost=0",
            messages=[{"role": "user", "content": template.format(i)}],
            extra_headers={"x-bandit-router-task": kind},
        )
        if feedback:
            decision_id = (completion.model_extra or {})["bandit_router"]["decision_id"]
            quality = 0.9 if completion.model == better else 0.2
            status, _ = await gateway.post("v1/feedback", {"decision_id": decision_id, "quality": quality})
            assert status == 200
        return completion.model

    rounds = 300
    for start in range(0, rounds, 10):
        await asyncio.gather(*(ask(("translation", "math")[i % 2], i, True) for i in range(start, start + 10)))
    assert gateway.service.learner is not None
    await gateway.service.learner.wait_learned(rounds, timeout=120)
    chosen = {kind: [await ask(kind, 1000 + i, False) for i in range(30)] for kind in kinds}
    for kind, (_, better) in kinds.items():
        share = chosen[kind].count(better) / len(chosen[kind])
        assert share >= 0.8, f"{kind}: {better} chosen {share:.0%} of the time after {rounds} rewards"


async def test_in_apprentice_mode_a_concrete_model_is_routed_as_the_baseline(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    async with open_gateway(tmp_path, redis_url, embedder, rollout={"mode": "apprentice", "exploration": 0.1}) as gw:
        served = []
        for i in range(20):
            raw = await gw.client.chat.completions.with_raw_response.create(
                model=SMALL, messages=[{"role": "user", "content": f"Question {i}?"}]
            )
            summary = await gw.service.store.get_summary(raw.headers["x-bandit-router-decision-id"])
            assert summary is not None and summary.decision.mode == "apprentice"
            assert dict(summary.decision.pmf)[SMALL] >= 0.9
            served.append(raw.parse().model)
        assert served.count(SMALL) >= 12


async def test_a_stream_of_garbage_is_a_backend_failure_and_the_next_model_answers(gateway: Gateway) -> None:
    """A backend that answers 200 with no chunk that parses gave the caller nothing: the gateway falls back and
    learns the failure, rather than relaying an empty answer as a success."""
    gateway.scripts[LARGE] = Script(garbage=True)
    gateway.scripts[SMALL] = Script(text="A real answer.")
    failures = 0
    for _ in range(20):
        stream = await gateway.client.chat.completions.create(
            model="bandit-router:energy=0,cost=0",
            messages=QUESTION,
            stream=True,
            extra_body={"candidates": [LARGE, SMALL]},
        )
        chunks = [c async for c in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "A real answer." and chunks[0].model == SMALL
        failed_before = (chunks[0].model_extra or {})["bandit_router"]["failed_before"]
        failures += len(failed_before)
        if failed_before:
            assert failed_before[0]["model"] == LARGE and "no chunk that parses" in failed_before[0]["reason"]
            break
    assert failures == 1
    health = {b["model"]: b for b in gateway.service.upstreams.view()}
    assert health[LARGE]["failures"] == 1
    assert gateway.service.learner is not None
    await gateway.service.learner.wait_learned(1, timeout=60)


async def test_a_stream_without_end_is_cut_at_the_deadline_and_learned_as_a_failure(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    async with open_gateway(tmp_path, redis_url, embedder, http={"deadline_s": 2.0}) as gateway:
        gateway.scripts.update({SMALL: Script(endless=True, chunk_delay_s=0.05), LARGE: Script(endless=True)})
        raw = await gateway.client.chat.completions.with_raw_response.create(
            model="bandit-router", messages=QUESTION, stream=True
        )
        chunks = [c async for c in raw.parse()]
        assert len(chunks) > 5  # it streamed, then it was cut
        assert gateway.service.learner is not None
        await gateway.service.learner.wait_learned(1, timeout=60)
        await gateway.service.close()
        (event,) = learned_events(gateway.data_dir)
    assert event["decision_id"] == raw.headers["x-bandit-router-decision-id"]
    assert event["failure"].startswith("the stream ran past http.deadline_s ("), event


async def test_backend_health_is_each_tenants_own_and_never_shows_what_a_backend_said(
    tmp_path: Path, redis_url: str, embedder: Embedder
) -> None:
    """A backend whose errors echo the prompt: beta's prompt must not reach alpha through /v1/backends (alpha sees
    its own calls only), nor anyone through any health view (a failure shows its status, the text goes to the
    log); the admin tenant and the dashboard token see every tenant's calls pooled."""
    tokens = ("alpha:alpha-token-0123456789", "beta:beta-token-0123456789ab", "ops:ops-token-0123456789ab")
    auth = {"tokens": tokens, "admin_tenants": ("ops",), "dashboard_token": "dashboard-token-0123456789"}
    async with open_gateway(tmp_path, redis_url, embedder, auth=auth) as gateway:
        gateway.scripts.update({LARGE: Script(status=500, echo_error=True), SMALL: Script(text="Fine.")})
        secret = [{"role": "user", "content": "beta-secret-7731: what is our merger price?"}]
        beta = openai.AsyncOpenAI(base_url=gateway.url + "v1", api_key="beta-token-0123456789ab", max_retries=0)
        try:
            for _ in range(3):
                await beta.chat.completions.create(model=LARGE, messages=secret)  # type: ignore[arg-type]
        except openai.APIStatusError:
            pass  # passed through to the failing backend: 502
        finally:
            await beta.close()
        views = {}
        async with aiohttp.ClientSession() as session:
            for who, token in (("alpha", "alpha-token-0123456789"), ("beta", "beta-token-0123456789ab"),
                               ("ops", "ops-token-0123456789ab")):  # fmt: skip
                headers = {"Authorization": f"Bearer {token}"}
                async with session.get(gateway.url + "v1/backends", headers=headers) as response:
                    assert response.status == 200
                    views[who] = await response.json()
            headers = {"Authorization": "Bearer dashboard-token-0123456789"}
            async with session.get(gateway.dashboard_url + "api/backends", headers=headers) as response:
                views["dashboard"] = await response.json()
    assert views["alpha"] == {"backends": []}
    for who in ("beta", "ops", "dashboard"):
        (large,) = [b for b in views[who]["backends"] if b["model"] == LARGE]
        assert large["failures"] >= 1 and large["last_failure"] == "HTTP 500", views[who]
    assert "beta-secret" not in json.dumps(views)
