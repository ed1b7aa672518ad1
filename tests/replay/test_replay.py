"""A replay through the real service: bandit feedback only, and a report whose figures add up."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest

from bandit_router.cli import main
from bandit_router.config import Config
from bandit_router.embedding import Embedder
from bandit_router.replay import report
from bandit_router.replay.run import BANDIT, SWEEP_WEIGHTS, ReplaySettings, replay
from bandit_router.replay.traffic import Outcome, Record, write_traffic

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


def test_pareto_front_keeps_the_points_nothing_beats() -> None:
    # (cost, quality): (2, 0.5) is beaten by (1, 0.6); (3, 0.6) by (1, 0.6); the rest trade off.
    points = [(2.0, 0.5), (1.0, 0.6), (3.0, 0.6), (0.5, 0.2), (4.0, 0.9)]
    assert report.pareto_front(points) == [3, 1, 4]


def test_replay_command_with_a_scenario_and_a_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    traffic = tmp_path / "traffic.jsonl"
    write_traffic(synthetic(40, seed=3), traffic)
    (tmp_path / "s.yaml").write_text("events:\n  - {at: 20, kind: remove, model: gemma-2-9b-it}\n")
    out = tmp_path / "out"
    argv = ["--log-level", "WARNING", "replay", str(traffic), "--scenario", str(tmp_path / "s.yaml"), "--sweep"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "| **bandit-router** |" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"report.json", "sweep.json", "sweep.md", "pareto.png", "regret.png"}
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["weights"] == list(SWEEP_WEIGHTS)
    assert [p["weight"] for p in summary["policies"][BANDIT]] == list(SWEEP_WEIGHTS)
    # The per-query oracle maximises quality - w x (energy and cost): a larger w never buys more quality.
    oracle = [p["mean_quality"] for p in summary["policies"]["oracle (per query)"]]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(oracle)), oracle
    # A single model's quality and cost do not depend on the weights.
    fixed = summary["policies"]["always llama-3.2-3b-instruct"]
    assert len({(p["mean_quality"], p["mean_cost_usd"]) for p in fixed}) == 1
    assert "always gemma-2-9b-it" not in summary["policies"]  # removed mid-stream
    assert (out / "pareto.png").read_bytes().startswith(b"\x89PNG")

    bad = tmp_path / "bad.yaml"
    bad.write_text("events:\n  - {at: 99, kind: remove, model: gemma-2-9b-it}\n")
    assert main(["replay", str(traffic), "--scenario", str(bad), "--out", str(out)]) == 2
    assert "at must be a step in [0, 39] (the stream has 40), got 99" in capsys.readouterr().err
