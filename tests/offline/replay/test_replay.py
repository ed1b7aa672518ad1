"""A replay through the real service: bandit feedback only, and a report whose figures add up."""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from streams import synthetic

from bandit_router.cli import main
from bandit_router.config import Config
from bandit_router.embedding.model import Embedder
from bandit_router.offline.replay import position, report
from bandit_router.offline.replay.run import BANDIT, SWEEP_WEIGHTS, replay
from bandit_router.offline.replay.settings import ReplaySettings
from bandit_router.traffic.format import Outcome, Record, write_traffic


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


@pytest.fixture
def free_dashboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's dashboard on a free port: 8080 may be taken on a shared machine."""
    monkeypatch.setenv("BANDIT_ROUTER_DASHBOARD_LISTEN", "127.0.0.1:0")


@pytest.mark.usefixtures("free_dashboard")
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


@pytest.mark.usefixtures("free_dashboard")
def test_replay_warm_starts_on_a_split_and_scores_the_routed_part_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    traffic = tmp_path / "traffic.jsonl"
    write_traffic(synthetic(120, seed=4), traffic)
    out = tmp_path / "out"
    argv = ["--log-level", "WARNING", "replay", str(traffic), "--split", "0.5", "--energy-weight", "0"]
    assert main([*argv, "--cost-weight", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "report.json").read_text())
    warm = result["warm_start"]
    assert warm["rows"] == 60 and warm["record_ids"] == [f"r{i}" for i in range(60)]
    assert result["records"] == 60 and result["records_routed"] == [f"r{i}" for i in range(60, 120)]
    assert warm["verdict"]["promoted"] and warm["baselines"] == "warm-started on the same rows"
    assert "Warm start before the first query: the first 60 records of" in (out / "report.md").read_text()
    # Warm-started on every outcome of a task split this plain, the router is right from the first query.
    bandit = result["policies"][BANDIT]
    oracle = result["policies"]["oracle (per query)"]
    assert bandit["mean_reward"] >= 0.95 * oracle["mean_reward"], (bandit["mean_reward"], oracle["mean_reward"])
    assert re.search(r"warm-started, 60 routed queries, .*: bandit-router beats the best single model", printed)
    assert main(["replay", str(traffic), "--split", "1.5", "--out", str(out)]) == 2
    assert "--split must be in (0, 1), got 1.5" in capsys.readouterr().err
    assert main(["replay", str(traffic), "--control-share", "0.7", "--out", str(out)]) == 2
    assert "--control-share must be in [0, 0.5], got 0.7" in capsys.readouterr().err


def test_churn_is_the_movement_of_the_action_share_between_windows() -> None:
    from bandit_router.traffic.table import churn

    assert churn([0] * 1000) == {"mean_tv": 0.0, "max_tv": 0.0, "windows": 4}
    # Waves of 200 queries on one model, then on another: every window differs wholly from the next.
    waves = [(i // 200) % 2 for i in range(1000)]
    assert churn(waves, skip=0.0) == {"mean_tv": 1.0, "max_tv": 1.0, "windows": 5}
    assert churn([0] * 300) is None


@pytest.mark.usefixtures("free_dashboard")
def test_the_demo_replays_cold_then_warm_on_disjoint_halves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-level", "WARNING", "demo", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    cold = json.loads((tmp_path / "cold" / "report.json").read_text())
    warm = json.loads((tmp_path / "warm" / "report.json").read_text())
    assert cold["records"] == 300 and "warm_start" not in cold
    assert warm["records"] == 150 and warm["warm_start"]["rows"] == 150
    assert not set(warm["warm_start"]["record_ids"]) & set(warm["records_routed"])
    # It closes with each run's position against every single model, wins and losses alike, then the sweep's.
    for how, result in (("cold-started", cold), ("warm-started", warm)):
        policies = result["policies"]
        bandit = policies[BANDIT]
        singles = {n: p for n, p in policies.items() if n.startswith("always ")}
        best = max(singles, key=lambda n: singles[n]["mean_reward"])
        verdict = "beats" if bandit["mean_reward"] > singles[best]["mean_reward"] else "loses to"
        assert (
            f"{how}, {result['records']} routed queries, energy weight 0.1, cost weight 0.1: bandit-router {verdict} "
            f"the best single model, {best.removeprefix('always ')} (reward {bandit['mean_reward']:.4f}"
        ) in printed
        for name, single in singles.items():
            quality = f"{bandit['mean_quality'] / single['mean_quality']:.0%}"
            assert f"  against {name}" in printed and f"{quality} of its quality" in printed
    summary = json.loads((tmp_path / "sweep.json").read_text())
    assert summary["weights"] == list(SWEEP_WEIGHTS)
    assert (tmp_path / "pareto.png").read_bytes().startswith(b"\x89PNG")
    assert re.search(r"  the router's path \(pareto.png\): w 0: quality 0\.\d+", printed)
    assert re.search(r"  wins at \d of 5 trade-offs", printed)
    # Its third run measures routing against a control group, as the dashboard's headline tile would live.
    control = json.loads((tmp_path / "control" / "report.json").read_text())
    group = control["control"]
    assert control["records"] == 300 and group["share"] == 0.1 and group["baseline"] == "uniform"
    # Every reward reached the monitor, each in one arm; the draw is 10% (30 of 300, sd 5.2: 10-60 is +-4 sd).
    assert group["routed"]["n"] + group["control"]["n"] == 300
    assert 10 <= group["control"]["n"] <= 60
    assert f"  {position.control_line(group)}" in printed
    assert "A live deployment has only its control group (rollout.control_share)" in printed


@pytest.mark.usefixtures("free_dashboard")
def test_a_users_own_log_replays_with_no_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Models in no catalog (an API model, a fine-tune), each outcome with its cost and tokens: the replay
    prices them from the traffic, and says their energy is unknown instead of inventing one."""
    rng = random.Random(4)
    records = []
    for i in range(60):
        hard = rng.random() < 0.5
        outcomes = {
            "acme-gpt-large": Outcome(1.0 if hard else 0.9, cost_usd=0.004, input_tokens=30, output_tokens=170),
            "acme-ft-small": Outcome(0.2 if hard else 0.9, cost_usd=0.0002, input_tokens=30, output_tokens=70),
        }
        records.append(Record(f"r{i}", f"Prove lemma {i}." if hard else f"What is {i} + 1?", "", outcomes))
    traffic = tmp_path / "mine.jsonl"
    write_traffic(records, traffic)
    assert main(["--log-level", "WARNING", "replay", str(traffic), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "report.json").read_text())
    assert sorted(result["models"]) == ["acme-ft-small", "acme-gpt-large"]
    assert sorted(result["energy_unknown_models"]) == ["acme-ft-small", "acme-gpt-large"]
    assert result["bandit_energy_sources"] == {"unknown": 60}
    # Costs are what the traffic says: the bandit's is the mean of what the models it chose cost.
    policies = result["policies"]
    assert policies["always acme-gpt-large"]["mean_cost_usd"] == pytest.approx(0.004)
    assert policies["always acme-gpt-large"]["mean_energy_joules"] == 0.0
    price = {"acme-gpt-large": 0.004, "acme-ft-small": 0.0002}
    chosen = policies[BANDIT]["arms"]
    assert len(chosen) == 60
    assert policies[BANDIT]["mean_cost_usd"] == pytest.approx(sum(price[m] for m in chosen) / 60)
    assert "Energy unknown for acme-ft-small, acme-gpt-large" in (tmp_path / "out" / "report.md").read_text()
