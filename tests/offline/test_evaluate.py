"""evaluate: off-policy estimates of candidate policies from a log the real service wrote."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from helpers import Routers

from bandit_router.cli import main
from bandit_router.config import Config
from bandit_router.domain.requests import MAX_WEIGHT, RewardInput, RouteInput
from bandit_router.embedding.model import Embedder
from bandit_router.learning.decision_log import export
from bandit_router.offline.evaluate import LogError, evaluate, judged, read_dsjson, reweighted
from bandit_router.serving.router import RouterService

GOOD, BAD = "gemma-2-9b-it", "llama-3.2-3b-instruct"


async def test_estimates_cover_the_known_values_of_candidates(
    service: RouterService, config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Quality 1 from GOOD, 0 from BAD, no energy or cost penalty: "always GOOD" is worth exactly 1.
    for i in range(160):
        d = await service.route(
            RouteInput(query=f"Question {i} about birds", candidates=(GOOD, BAD), energy_weight=0.0, cost_weight=0.0)
        )
        await service.reward(RewardInput(decision_id=d.decision_id, quality=float(d.model == GOOD)))
    assert service.learner is not None
    await service.learner.wait_learned(160, timeout=30)
    log = tmp_path / "log.dsjson"
    assert export(config.server.data_path / "decisions", log) == 160

    decisions = read_dsjson(log)
    # 99.9% intervals: the log differs from run to run, and a 95% one would miss now and then by design.
    results = evaluate(decisions, [["--cb_explore_adf", "--epsilon", "0.1"]], z=3.29)
    good, bad = results[f"always {GOOD}"], results[f"always {BAD}"]
    for estimate in (good["ips"], good["dr"]):
        assert estimate.low <= 1.0 <= estimate.high, estimate
    assert good["snips"].value == pytest.approx(1.0)
    assert bad["ips"].value == pytest.approx(0.0) and bad["dr"].high < 0.5
    # On-policy, IPS is the mean logged reward.
    assert results["logged policy"]["ips"].value == pytest.approx(sum(d.reward for d in decisions) / 160)
    # An epsilon-greedy VW policy trained on the log mostly takes GOOD.
    assert results["vw --cb_explore_adf --epsilon 0.1"]["dr"].value > results["uniform random"]["dr"].value

    assert (
        main(["evaluate", str(log), "--vw", "--cb_explore_adf --epsilon 0.1", "--json", str(tmp_path / "e.json")]) == 0
    )
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0] == "Estimates of reward." and lines[1].startswith("| policy | IPS [95% CI]")
    assert f"| always {GOOD} |" in printed
    assert set(json.loads((tmp_path / "e.json").read_text())["as logged"][f"always {GOOD}"]) == {"ips", "snips", "dr"}

    # Under other weights, each decision's reward is rebuilt from its logged quality, energy and cost.
    frugal = reweighted(decisions, 1.0, 2.0, config.reward)
    for d, f in zip(decisions, frugal, strict=True):
        row = json.loads(d.line)["_bandit_router"]
        expected = (
            row["quality"]
            - row["energy_joules"] / config.reward.energy_scale_joules
            - 2.0 * row["cost_usd"] / config.reward.cost_scale_usd
        )
        assert f.reward == pytest.approx(expected) and json.loads(f.line)["_label_cost"] == pytest.approx(-expected)
        assert f.reward < d.reward  # every model costs energy and money
    # A deterministic policy's SNIPS is the mean reward of the logged decisions that took its action.
    taken = [f.reward for f in frugal if f.models[f.action] == GOOD]
    assert evaluate(frugal)[f"always {GOOD}"]["snips"].value == pytest.approx(sum(taken) / len(taken))
    assert main(["evaluate", str(log), "--weights", "1,2", "--json", str(tmp_path / "w.json")]) == 0
    assert "Reward energy weight 1, cost weight 2:" in capsys.readouterr().out
    both = json.loads((tmp_path / "w.json").read_text())
    assert set(both) == {"as logged", "energy weight 1, cost weight 2"}
    assert both["energy weight 1, cost weight 2"][f"always {GOOD}"]["snips"]["value"] == pytest.approx(
        sum(taken) / len(taken)
    )
    assert main(["evaluate", str(log), "--weights", "1;2"]) == 2
    assert "--weights must be two numbers >= 0 as ENERGY,COST, got '1;2'" in capsys.readouterr().err


async def test_a_log_whose_decisions_offer_different_models_is_evaluated(
    config: Config, embedder: Embedder, tmp_path: Path, capsys: pytest.CaptureFixture[str], routers: Routers
) -> None:
    """Candidates narrow some decisions, a budget others, and a model is added to the catalog mid-log: each
    decision's probabilities are over what it offered, and "always M" is scored where M was offered."""
    third = "qwen2.5-7b-instruct"
    service = await routers(config)
    try:
        for i in range(150):
            candidates = (GOOD, BAD) if i % 3 == 0 else (GOOD, BAD, third)
            d = await service.route(
                RouteInput(
                    query=f"Question {i} about rivers", candidates=candidates, energy_weight=0.0, cost_weight=0.0
                )
            )
            await service.reward(RewardInput(decision_id=d.decision_id, quality=float(d.model == GOOD)))
        # A budget between the cheapest and the dearest expected cost narrows the choice further.
        costs = {
            m.id: service.serving.pricing.expected(m, "", 12).cost_usd
            for m in config.models
            if m.id in (GOOD, BAD, third)
        }
        budget = sorted(costs.values())[1] * 1.0001
        narrowed = 0
        for i in range(40):
            d = await service.route(
                RouteInput(
                    query=f"Budget question {i} about rivers",
                    candidates=(GOOD, BAD, third),
                    energy_weight=0.0,
                    cost_weight=0.0,
                    max_cost_usd=budget,
                )
            )
            narrowed += bool(d.excluded)
            await service.reward(RewardInput(decision_id=d.decision_id, quality=float(d.model == GOOD)))
        assert service.learner is not None
        await service.learner.wait_learned(190, timeout=60)
    finally:
        await service.close()
    assert narrowed > 0
    # The same store and log, with an API model added to the catalog.
    added = dataclasses.replace(config.models[0], id="acme-api", parameters_b=None)
    service = await routers(config.replace(models=(*config.models, added)), embedder=embedder)
    try:
        for i in range(40):
            d = await service.route(
                RouteInput(
                    query=f"Late question {i}", candidates=(GOOD, "acme-api"), energy_weight=0.0, cost_weight=0.0
                )
            )
            await service.reward(RewardInput(decision_id=d.decision_id, quality=float(d.model == GOOD)))
        assert service.learner is not None
        # "In all": this learner started from the first one's 190 events.
        await service.learner.wait_learned(230, timeout=60)
    finally:
        await service.close()
    log = tmp_path / "varying.dsjson"
    assert export(config.server.data_path / "decisions", log) == 230

    decisions = read_dsjson(log)
    assert len({tuple(d.models) for d in decisions}) >= 3
    results = evaluate(decisions, z=3.29)
    # GOOD was offered everywhere and always answers perfectly: its value is exactly 1.
    good = results[f"always {GOOD}"]
    assert good["snips"].value == pytest.approx(1.0) and good["ips"].low <= 1.0 <= good["ips"].high
    assert good["dr"].n == 230
    # The added model was offered on the last 40 decisions only, and never answered well.
    assert results["always acme-api"]["dr"].n == 40
    assert results["always acme-api"]["dr"].value < good["dr"].value
    assert main(["evaluate", str(log), "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "| always acme-api |" in out and "40 of 230 (offered; else as logged)" in out
    assert (tmp_path / "ev" / "evaluate.png").read_bytes().startswith(b"\x89PNG")
    assert "| always acme-api |" in (tmp_path / "ev" / "evaluate.md").read_text()


async def test_a_log_of_several_tenants_is_judged_on_quality_unless_one_tenant_is_named(
    service: RouterService, config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Beta asks for the largest weights, so its rewards are far below anything alpha's are: pooled, they would
    decide every estimate. Pooled estimates are of quality (GOOD answers 1 for both); --tenant gives a tenant's
    own reward."""
    for i in range(120):
        tenant = "beta" if i % 2 else "alpha"
        weight = MAX_WEIGHT if tenant == "beta" else 0.0
        d = await service.route(
            RouteInput(
                query=f"Question {i} about birds",
                candidates=(GOOD, BAD),
                energy_weight=weight,
                cost_weight=weight,
                tenant=tenant,
            )
        )
        await service.reward(RewardInput(decision_id=d.decision_id, quality=float(d.model == GOOD), tenant=tenant))
    assert service.learner is not None
    await service.learner.wait_learned(120, timeout=60)
    log = tmp_path / "log.dsjson"
    assert export(config.server.data_path / "decisions", log) == 120
    decisions = read_dsjson(log)
    assert {d.tenant for d in decisions} == {"alpha", "beta"}
    assert min(d.reward for d in decisions if d.tenant == "beta") < -10

    pooled, what = judged(decisions, None)
    assert what.startswith("quality, pooled over 2 tenants")
    assert evaluate(pooled)[f"always {GOOD}"]["snips"].value == pytest.approx(1.0)
    # The DSJSON label says the same, so a --vw candidate learns what is estimated.
    assert all(json.loads(d.line)["_label_cost"] == -d.quality for d in pooled)
    beta, what = judged(decisions, "beta")
    assert what == "tenant 'beta''s reward" and len(beta) == 60 and all(d.tenant == "beta" for d in beta)
    assert evaluate(beta)["logged policy"]["ips"].value < -10
    with pytest.raises(
        LogError, match=r"--tenant 'gamma': the log holds no decision of it \(tenants: \['alpha', 'beta'\]\)"
    ):
        judged(decisions, "gamma")

    assert main(["evaluate", str(log)]) == 0
    assert capsys.readouterr().out.startswith("Estimates of quality, pooled over 2 tenants")
