"""Warm start from an evaluation set or a decision log, through the gate, before any live traffic."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from helpers import Routers, make_config

from bandit_router.cli import main
from bandit_router.config import Config
from bandit_router.domain.records import LearningEvent
from bandit_router.domain.requests import RouteInput
from bandit_router.embedding.model import Embedder
from bandit_router.learning.decision_log import to_dsjson
from bandit_router.learning.warm_start import Source, WarmStartError, judge_records, read_source, warm
from bandit_router.policy.features import Featurizer
from bandit_router.policy.vw import Policy
from bandit_router.traffic.format import Outcome, Record, write_traffic

SMALL, MID, BIG = "llama-3.2-3b-instruct", "gemma-2-9b-it", "llama-3.3-70b-instruct"


def evaluation_set(n: int, seed: int = 0, flip: bool = False) -> list[Record]:
    """Proofs are for the 70B model, arithmetic for the 3B one (the other way round with ``flip``)."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        hard = rng.random() < 0.5
        query = f"Prove lemma {i} in detail, step by step." if hard else f"What is {i} + {i + 1}?"
        good = (BIG if hard else SMALL) if not flip else (SMALL if hard else BIG)
        outcomes = {
            m: Outcome(quality=1.0 if m == good else 0.2, input_tokens=20, output_tokens=50) for m in (SMALL, MID, BIG)
        }
        records.append(Record(f"e{i}", query, "proof" if hard else "arithmetic", outcomes))
    return records


def toml_for(config: Config, path: Path) -> Path:
    path.write_text(
        f"""
[server]
data_dir = "{config.server.data_dir}"
[redis]
url = "{config.redis.url}"
key_prefix = "{config.redis.key_prefix}"
[embedding]
device = "cpu"
processes = 0
[dashboard]
listen = ""
"""
    )
    return path


async def test_warm_start_serves_a_policy_that_routes_each_task_to_its_best_model_at_once(
    config: Config, embedder: Embedder, tmp_path: Path, capsys: pytest.CaptureFixture[str], routers: Routers
) -> None:
    traffic = tmp_path / "eval.jsonl"
    write_traffic(evaluation_set(80), traffic)
    status = await asyncio.to_thread(
        main, ["warm-start", str(traffic), "--config", str(toml_for(config, tmp_path / "c.toml"))]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "warm-started policy v1 from" in out and "served: the gate promoted it (nothing served yet)" in out
    assert "held-out mean reward, candidate:" in out
    service = await routers(config)
    try:
        assert service.policy_version == "v1" and service.serving.warm_starts[0].startswith("v1: ")
        for query, task, right in (
            ("Prove lemma 999 in detail, step by step.", "proof", BIG),
            ("What is 7 + 8?", "arithmetic", SMALL),
        ):
            decision = await service.route(
                RouteInput(query=query, task=task, candidates=(SMALL, MID, BIG), energy_weight=0, cost_weight=0)
            )
            assert max(decision.pmf, key=lambda a: a[1])[0] == right, decision.pmf
        # The learner continues from the warm-started checkpoint.
        assert service.learner is not None and service.learner.policy.version == 1
    finally:
        await service.close()
    gate_log = (Path(config.server.data_dir) / "decisions" / "gate.jsonl").read_text().splitlines()
    assert json.loads(gate_log[-1])["warm_start"].startswith(str(traffic))


async def test_warm_start_refuses_to_write_under_a_running_learner(
    config: Config, embedder: Embedder, tmp_path: Path, capsys: pytest.CaptureFixture[str], routers: Routers
) -> None:
    traffic = tmp_path / "eval.jsonl"
    write_traffic(evaluation_set(10), traffic)
    service = await routers(config)
    try:
        async with asyncio.timeout(30):
            while await service.store.running_learner() is None:
                await asyncio.sleep(0.05)
        status = await asyncio.to_thread(
            main, ["warm-start", str(traffic), "--config", str(toml_for(config, tmp_path / "c.toml"))]
        )
        err = capsys.readouterr().err
        assert status == 2
        assert service.learner is not None
        holder = service.learner.name
        assert err.startswith(f"error: a learner ({holder}) is running on this store and would overwrite"), err
    finally:
        await service.close()
    # Stopped, the learner no longer holds the store.
    assert await service_store_learner(config) is None


async def service_store_learner(config: Config) -> str | None:
    import redis.asyncio as aioredis

    from bandit_router.store.redis_store import Store

    client = aioredis.Redis.from_url(config.redis.url)
    try:
        return await Store(client, config.redis.key_prefix).running_learner()
    finally:
        await client.aclose()


def test_a_decision_log_warm_start_learns_the_logged_qualities(
    config: Config, embedder: Embedder, tmp_path: Path
) -> None:
    """Logged by a uniform policy of an older feature set (P and W namespaces): only T and the model are kept,
    and each logged quality is learned with its importance weight."""
    rng = random.Random(1)
    lines = []
    for i in range(300):
        task = rng.choice(["proof", "arithmetic"])
        index = rng.randrange(3)
        models = [SMALL, MID, BIG]
        good = BIG if task == "proof" else SMALL
        quality = 1.0 if models[index] == good else 0.2
        event = {
            "decision_id": f"d{i}",
            "model": models[index],
            "index": index,
            "probability": 1 / 3,
            "pmf": [[m, 1 / 3] for m in models],
            "shared": f"|T {task} |P energy:0 cost:0",
            "actions": [f"|A {m} |W penalty:0.1" for m in models],
            "reward": quality,
            "created_at": 0.0,
            "task": task,
            "quality": quality,
            "cost_usd": 0.0,
            "cost_source": "estimated",
            "energy_joules": 0.0,
            "energy_source": "estimated",
            "energy_weight": 0.0,
            "cost_weight": 0.0,
            "policy_version": "v0",
        }
        lines.append(json.dumps(to_dsjson(LearningEvent.from_json(event))))
    log = tmp_path / "log.dsjson"
    log.write_text("\n".join(lines) + "\n")
    source = read_source(log, config)
    assert len(source.logged) == 300 and source.logged[0].choice.shared.startswith("|T ")
    assert "|P" not in source.logged[0].choice.shared and source.logged[0].choice.actions[0] == f"|A {SMALL}"
    policy = Policy(config.policy, config.features, embedder.dimension)
    result = warm(
        policy, None, source, embedder, Featurizer(config.features, embedder.embed, embedder.dimension), config
    )
    assert result.verdict.promoted and result.policy.version == 1
    for task, right in (("proof", 2), ("arithmetic", 0)):
        choice = source.logged[0].choice
        qualities = policy.qualities(type(choice).of(f"|T {task}", choice.actions))
        assert max(range(3), key=lambda j: qualities[j]) == right, qualities

    bad = tmp_path / "bad.dsjson"
    bad.write_text('{"_label_cost": -1, "c": {}}\n')
    with pytest.raises(WarmStartError, match=r"bad.dsjson:1: not a decision of `bandit-router export-log`"):
        read_source(bad, config)


def test_the_gate_holds_back_a_warm_start_worse_than_the_served_policy(config: Config, embedder: Embedder) -> None:
    featurizer = Featurizer(config.features, embedder.embed, embedder.dimension)
    records = evaluation_set(60, seed=2)
    good = warm(
        Policy(config.policy, config.features, embedder.dimension),
        None,
        Source("right", records=tuple(records)),
        embedder,
        featurizer,
        config,
    ).policy
    wrong = warm(
        Policy(config.policy, config.features, embedder.dimension),
        None,
        Source("flipped", records=tuple(evaluation_set(60, seed=3, flip=True))),
        embedder,
        featurizer,
        config,
    ).policy
    held_out = evaluation_set(30, seed=4)
    embedded = embedder.embed([r.query for r in held_out])
    verdict, holdout = judge_records(7, wrong, good, held_out, embedded, featurizer, config, task_hint=True)
    assert not verdict.promoted and "beyond tolerance" in verdict.reason
    assert holdout["serving"] > holdout["candidate"]
    verdict, _ = judge_records(8, good, wrong, held_out, embedded, featurizer, config, task_hint=True)
    assert verdict.promoted


def test_an_evaluation_set_naming_models_outside_the_catalog_is_refused(tmp_path: Path) -> None:
    records = [Record("r", "q", "t", {"gpt-17": Outcome(quality=1.0)})]
    write_traffic(records, tmp_path / "e.jsonl")
    with pytest.raises(WarmStartError, match=r"models \['gpt-17'\] are not in the catalog"):
        read_source(tmp_path / "e.jsonl", make_config(tmp_path))
