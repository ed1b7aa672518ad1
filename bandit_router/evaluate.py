"""``bandit-router evaluate``: off-policy estimates, from an exported DSJSON log, of candidate policies.

Candidates: the logged policy itself, uniform random, each single model, and VW policies with other
arguments trained progressively on the log (each decision is predicted before it is learned, so no policy
is scored on what it has already seen). The doubly robust reward model is the running mean reward of each
(task, model) over the decisions before the one being scored.

The log keeps each decision's quality, cost and energy, so every candidate can also be scored under other
reward weights than the ones it was logged with (:func:`reweighted`): the trade-off to deploy, chosen
offline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from vowpal_wabbit_next import DSJsonFormatParser, Workspace

from bandit_router.config import RewardConfig
from bandit_router.ope import Estimate, doubly_robust, ips, snips
from bandit_router.reward import scalar_reward


@dataclasses.dataclass(frozen=True)
class LoggedDecision:
    task: str
    models: list[str]
    action: int
    probability: float
    reward: float
    pmf: list[float]
    line: str
    quality: float
    cost_usd: float
    energy_joules: float


def read_dsjson(path: str | Path) -> list[LoggedDecision]:
    decisions = []
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            row = json.loads(text)
            models = row["_bandit_router"]["models"]
            pmf = [0.0] * len(models)
            for action, p in zip(row["a"], row["p"], strict=True):
                pmf[action - 1] = p
            if len(row["c"]["_multi"]) != len(models):
                raise ValueError(
                    f"{path}:{number}: _multi has {len(row['c']['_multi'])} actions, models names {len(models)}"
                )
            decisions.append(
                LoggedDecision(
                    row["_bandit_router"]["task"],
                    models,
                    int(row["_labelIndex"]),
                    float(row["_label_probability"]),
                    -float(row["_label_cost"]),
                    pmf,
                    text,
                    float(row["_bandit_router"]["quality"]),
                    float(row["_bandit_router"]["cost_usd"]),
                    float(row["_bandit_router"]["energy_joules"]),
                )
            )
    if not decisions:
        raise ValueError(f"{path}: holds no decisions")
    return decisions


def reweighted(
    decisions: Sequence[LoggedDecision], energy_weight: float, cost_weight: float, scales: RewardConfig
) -> list[LoggedDecision]:
    """The decisions with the reward they would have had under other weights (same quality, cost and
    energy), their DSJSON label changed to match, so progressive VW candidates learn that reward."""
    result = []
    for d in decisions:
        reward = scalar_reward(d.quality, d.energy_joules, d.cost_usd, energy_weight, cost_weight, scales)
        row = json.loads(d.line)
        row["_label_cost"] = -reward
        result.append(dataclasses.replace(d, reward=reward, line=json.dumps(row)))
    return result


def reward_model(decisions: Sequence[LoggedDecision]) -> list[list[float]]:
    """Predicted reward of every action of every decision: the running (task, model) mean before it."""
    sums: dict[tuple[str, str], float] = {}
    counts: dict[tuple[str, str], int] = {}
    predicted = []
    for d in decisions:
        predicted.append([sums.get((d.task, m), 0.0) / max(counts.get((d.task, m), 0), 1) for m in d.models])
        key = (d.task, d.models[d.action])
        sums[key] = sums.get(key, 0.0) + d.reward
        counts[key] = counts.get(key, 0) + 1
    return predicted


def progressive_vw(decisions: Sequence[LoggedDecision], args: Sequence[str]) -> list[list[float]]:
    """The pmf a VW policy with ``args`` gives each decision, having learned every earlier one."""
    workspace = Workspace([*args, "--quiet"])
    parser = DSJsonFormatParser(workspace)
    targets = []
    for d in decisions:
        examples = parser.parse_json(d.line)
        pmf = [0.0] * len(d.models)
        for index, p in cast(list[tuple[int, float]], workspace.predict_one(examples)):
            pmf[index] = float(p)
        targets.append(pmf)
        workspace.learn_one(examples)
    return targets


def evaluate(
    decisions: Sequence[LoggedDecision], vw_candidates: Sequence[Sequence[str]] = (), z: float = 1.96
) -> dict[str, dict[str, Estimate]]:
    """Every candidate's IPS, SNIPS and DR estimates, with intervals of ``z`` standard errors."""
    models = decisions[0].models
    if any(d.models != models for d in decisions):
        raise ValueError("every decision in the log must offer the same models, in the same order")
    actions = [d.action for d in decisions]
    propensities = [d.probability for d in decisions]
    rewards = [d.reward for d in decisions]
    predicted = reward_model(decisions)
    n, k = len(decisions), len(models)
    candidates: dict[str, Any] = {
        "logged policy": [d.pmf for d in decisions],
        "uniform random": np.full((n, k), 1.0 / k),
    }
    for j, model in enumerate(models):
        target = np.zeros((n, k))
        target[:, j] = 1.0
        candidates[f"always {model}"] = target
    for args in vw_candidates:
        candidates["vw " + " ".join(args)] = progressive_vw(decisions, args)
    results: dict[str, dict[str, Estimate]] = {}
    for name, target in candidates.items():
        results[name] = {
            "ips": ips(target, actions, propensities, rewards, z=z),
            "dr": doubly_robust(target, actions, propensities, rewards, predicted, z=z),
        }
        # A candidate that never takes a logged action gets no SNIPS: it would say nothing about it.
        with contextlib.suppress(ValueError):
            results[name]["snips"] = snips(target, actions, propensities, rewards, z=z)
    return results


def table(results: dict[str, dict[str, Estimate]]) -> str:
    rows = ["| policy | IPS [95% CI] | SNIPS [95% CI] | DR [95% CI] |", "| --- | --- | --- | --- |"]
    for name, estimates in sorted(results.items(), key=lambda item: -item[1]["dr"].value):
        cells = []
        for key in ("ips", "snips", "dr"):
            e = estimates.get(key)
            cells.append(f"{e.value:.4f} [{e.low:.4f}, {e.high:.4f}]" if e else "undefined")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
