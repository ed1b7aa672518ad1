"""A replay through the real service: bandit feedback only, and a report whose figures add up."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from bandit_router.config import Config
from bandit_router.embedding import Embedder
from bandit_router.replay import report
from bandit_router.replay.run import BANDIT, ReplaySettings, replay
from bandit_router.replay.traffic import Outcome, Record

MODELS = ("llama-3.2-3b-instruct", "gemma-2-9b-it", "llama-3.3-70b-instruct")


def synthetic(n: int, seed: int) -> list[Record]:
    """The 70B model answers hard (long) questions, the small ones easy (short) ones."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        hard = rng.random() < 0.5
        query = f"Prove the following statement in detail, step by step: lemma {i}." if hard else f"What is {i} + 1?"
        quality = {
            "llama-3.2-3b-instruct": 0.0 if hard else 1.0,
            "gemma-2-9b-it": 0.3,
            "llama-3.3-70b-instruct": 1.0 if hard else 0.6,
        }
        outcomes = {m: Outcome(quality=quality[m], input_tokens=20, output_tokens=50, latency_ms=100.0) for m in MODELS}
        records.append(Record(f"r{i}", query, "proof" if hard else "arithmetic", outcomes))
    return records


async def test_replay_report_adds_up(config: Config, embedder: Embedder, tmp_path: Path) -> None:
    records = synthetic(240, seed=1)
    result = await replay(
        records, config, ReplaySettings(energy_weight=0.1, cost_weight=0.0, seed=5), embedder, show_progress=False
    )
    policies = result["policies"]
    oracle = next(p for n, p in policies.items() if n.startswith("oracle"))
    for name, p in policies.items():
        assert len(p["arms"]) == 240, name
        assert p["mean_reward"] <= oracle["mean_reward"] + 1e-9, name
        assert np.all(np.diff(p["regret_curve"]) >= -1e-9), name  # nothing beats the oracle on any query
    best = next(p for n, p in policies.items() if n.startswith("best single model"))
    assert best["mean_reward"] == max(p["mean_reward"] for n, p in policies.items() if n.startswith("always "))
    # Only the chosen model's outcome went back: the service learned exactly one reward per query.
    assert result["bandit_policy_version"] != "v0"
    assert sum(result["bandit_energy_sources"].values()) == 240 == sum(result["bandit_cost_sources"].values())
    assert result["bandit_cost_sources"] == {"computed": 240}
    assert result["energy_source"] == "estimated"
    # The task split is easy to learn: the bandit must beat random and every single model's reward.
    bandit = policies[BANDIT]
    assert bandit["mean_reward"] > policies["random"]["mean_reward"]
    assert bandit["mean_reward"] > best["mean_reward"], (bandit["mean_reward"], best["mean_reward"])
    written = report.write(result, tmp_path, "test")
    assert {p.name for p in written} == {"report.json", "report.md", "regret.png", "action_share.png"}
    assert json.loads((tmp_path / "report.json").read_text())["records"] == 240
    assert f"| **{BANDIT}** |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "regret.png").read_bytes().startswith(b"\x89PNG")
