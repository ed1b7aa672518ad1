"""Estimates that know their support: a near-deterministic logger with two specialists (each chosen on its own
kind of query, the other almost never) must not have either specialist ranked above the policy that routes them,
neither by ``evaluate`` nor on the dashboard; each is "not estimable", with its support and ESS."""

from __future__ import annotations

import random

import pytest

from bandit_router.config import DashboardConfig
from bandit_router.domain.records import LearningEvent
from bandit_router.observability import estimates
from bandit_router.observability.monitor import Monitor
from bandit_router.offline.evaluate import LoggedDecision, estimable, evaluate, table
from bandit_router.policy.ope import support
from bandit_router.policy.vwlines import Choice

MODELS = ["math-7b", "prose-7b"]
# Each specialist answers its own kind well and the other badly: always one of them earns about 0.55; the router,
# sending each kind to its specialist, about 0.95.
QUALITY = {
    ("math", "math-7b"): 0.95,
    ("math", "prose-7b"): 0.15,
    ("prose", "prose-7b"): 0.95,
    ("prose", "math-7b"): 0.15,
}


def logged(n: int = 880, seed: int = 3) -> list[tuple[str, list[float], int, float]]:
    """(task, logging pmf, chosen index, quality): nine decisions in ten deterministic (the rule gave the other
    model 0), one in ten exploring with 10%."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        task = "math" if i % 2 == 0 else "prose"
        best = MODELS.index(f"{task}-7b")
        pmf = [0.0, 0.0]
        pmf[best] = 1.0 if rng.random() < 0.9 else 0.9
        pmf[1 - best] = 1.0 - pmf[best]
        index = best if rng.random() < pmf[best] else 1 - best
        quality = QUALITY[(task, MODELS[index])] + rng.uniform(-0.05, 0.05)
        rows.append((task, pmf, index, quality))
    return rows


def test_evaluate_does_not_rank_a_specialist_above_the_router() -> None:
    decisions = [
        LoggedDecision(task, MODELS, index, pmf[index], quality, pmf, "", quality, 0.0, 0.0)
        for task, pmf, index, quality in logged()
    ]
    results = evaluate(decisions)
    for model in MODELS:
        dr = results[f"always {model}"]["dr"]
        assert dr.support == pytest.approx(0.55, abs=0.05) and not estimable(dr, len(decisions))
    assert estimable(results["logged policy"]["dr"], len(decisions))
    rows = table(results, len(decisions)).splitlines()[2:]
    assert rows[0].startswith("| logged policy |")
    assert all("not estimable (support 5" in r for r in rows if r.startswith("| always "))


def _event(i: int, task: str, pmf: list[float], index: int, quality: float) -> LearningEvent:
    return LearningEvent.from_json(
        {
            "decision_id": f"d{i}",
            "shared": f"|T {task}",
            "actions": [f"|A {m}" for m in MODELS],
            "energy_weight": 0.0,
            "cost_weight": 0.0,
            "model": MODELS[index],
            "task": task,
            "reward": quality,
            "quality": quality,
            "cost_usd": 0.0,
            "cost_source": "computed",
            "energy_joules": 0.0,
            "energy_source": "estimated",
            "created_at": 0.0,
            "pmf": [[m, p] for m, p in zip(MODELS, pmf, strict=True)],
            "index": index,
            "probability": pmf[index],
        }
    )


def test_the_dashboard_says_not_estimable_rather_than_a_number() -> None:
    monitor = Monitor(DashboardConfig(history=2000), clock=lambda: 1.0)
    for i, (task, pmf, index, quality) in enumerate(logged()):
        monitor.on_reward(f"d{i}", _event(i, task, pmf, index, quality))
    view = estimates.ope(monitor, 0)["policies"]
    for model in MODELS:
        entry = view[f"always {model}"]
        assert "snips" not in entry and "ips" not in entry
        assert entry["not_estimable"].startswith("not estimable (support 5")
    live = view["live policy"]
    assert live["support"] == 1.0 and live["ess"] == pytest.approx(880)
    assert live["snips"]["value"] > 0.85


def test_support_counts_every_action_the_target_may_take() -> None:
    # Uniform random needs both models possible; the second decision logged one model with probability 1.
    backing = support([[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [1.0, 0.0]], [0, 0], [0.5, 1.0])
    assert backing.share == 0.5 and backing.ess == pytest.approx((1 + 0.5) ** 2 / (1 + 0.25))


@pytest.mark.parametrize("accurate", [True, False])
def test_the_dashboard_headline_is_doubly_robust_where_the_router_kept_its_predictions(accurate: bool) -> None:
    # The router predicted each candidate's quality when it decided: the reward model of the doubly robust
    # estimate. Right or wrong (a flat 0.5), the live policy's estimate stays on its mean logged quality, since
    # the importance-weighted residuals correct the model where the policy acts.
    monitor = Monitor(DashboardConfig(history=2000), clock=lambda: 1.0)
    rows = logged()
    for i, (task, pmf, index, quality) in enumerate(rows):
        predicted = [QUALITY[(task, m)] if accurate else 0.5 for m in MODELS]
        event = _event(i, task, pmf, index, quality)
        choice = Choice.of(event.shared, event.actions, event.penalties)
        monitor.on_route(
            f"d{i}", MODELS[index], task, list(zip(MODELS, pmf, strict=True)), pmf[index], choice, "", None, predicted
        )
        monitor.on_reward(f"d{i}", event)
    view = estimates.ope(monitor, 0)
    assert view["headline"] == "dr"
    live = view["policies"]["live policy"]
    truth = sum(q for *_, q in rows) / len(rows)
    assert live["dr"]["low"] <= truth <= live["dr"]["high"]
    assert live["dr"]["value"] == pytest.approx(truth, abs=0.02)
    # No reward model makes a specialist estimable where the logger could not have chosen it.
    for model in MODELS:
        assert "dr" not in view["policies"][f"always {model}"]


def test_without_predictions_the_headline_is_snips() -> None:
    monitor = Monitor(DashboardConfig(history=2000), clock=lambda: 1.0)
    for i, (task, pmf, index, quality) in enumerate(logged(100)):
        monitor.on_reward(f"d{i}", _event(i, task, pmf, index, quality))
    view = estimates.ope(monitor, 0)
    assert view["headline"] == "snips" and "dr" not in view["policies"]["live policy"]
