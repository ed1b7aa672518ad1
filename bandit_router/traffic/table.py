"""Every model's outcome on every query of a replay, priced as the service prices it, and what a policy did."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from bandit_router.config import Config
from bandit_router.domain.pricing import Pricing, catalog_cost, catalog_energy
from bandit_router.domain.reward import Source, cost_of, energy_of, resolve_tokens, scalar_reward
from bandit_router.traffic.format import Record
from bandit_router.traffic.scenario import Scenario

Matrix = np.ndarray[Any, np.dtype[np.float64]]


@dataclasses.dataclass
class Trace:
    """What one policy did on the stream, step by step."""

    arms: list[int] = dataclasses.field(default_factory=list)
    rewards: list[float] = dataclasses.field(default_factory=list)
    qualities: list[float] = dataclasses.field(default_factory=list)
    costs: list[float] = dataclasses.field(default_factory=list)
    energies: list[float] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class OutcomeTable:
    """Every model's quality, cost, energy and reward on every record as the scenario changes them,
    priced as the service prices them; an unavailable model's reward is -inf."""

    arms: list[str]
    quality: Matrix
    cost: Matrix
    energy: Matrix
    reward: Matrix
    energy_sources: Counter[str]
    # The reward a router is told: ``reward`` except where the scenario corrupts the quality sent.
    feedback: Matrix
    # What the learner learns the pricing from: output tokens (NaN where not reported), and the cost and
    # energy residuals over the catalog's figures at the tokens priced.
    output_tokens: Matrix
    cost_residual: Matrix
    energy_residual: Matrix
    # True where a model's energy on a record is unknown (no profile, no energy in the traffic): counted as 0.
    energy_unknown: np.ndarray[Any, np.dtype[np.bool_]]

    def available(self, i: int) -> list[int]:
        return [j for j in range(len(self.arms)) if np.isfinite(self.reward[i, j])]

    def price(self, pricing: Pricing, i: int, j: int, task: str) -> None:
        """Teaches ``pricing`` what model ``j``'s answer to record ``i`` showed: its output tokens (if reported)
        and its residuals, as the learner learns them from a reward."""
        out = self.output_tokens[i, j]
        pricing.observe(
            self.arms[j],
            task,
            int(out) if np.isfinite(out) else None,
            float(self.cost_residual[i, j]),
            None if self.energy_unknown[i, j] else float(self.energy_residual[i, j]),
        )

    def step(self, trace: Trace, i: int, arm: int) -> None:
        trace.arms.append(arm)
        trace.rewards.append(float(self.reward[i, arm]))
        trace.qualities.append(float(self.quality[i, arm]))
        trace.costs.append(float(self.cost[i, arm]))
        trace.energies.append(float(self.energy[i, arm]))


def build_table(
    records: Sequence[Record], config: Config, query_tokens: Sequence[int], scenario: Scenario | None = None
) -> OutcomeTable:
    scenario = scenario or Scenario()
    models = config.model_by_id
    arms = [m.id for m in config.models]
    shape = (len(records), len(arms))

    def filled(value: float) -> Matrix:
        return np.full(shape, float(value))

    table = OutcomeTable(
        arms, filled(0), filled(0), filled(0), filled(-np.inf), Counter(), filled(-np.inf), filled(np.nan),
        filled(0), filled(0), np.zeros(shape, dtype=bool),
    )  # fmt: skip
    weights = config.reward
    for i, record in enumerate(records):
        for j, arm in enumerate(arms):
            outcome = record.outcomes.get(arm)
            if outcome is None or not scenario.available(i, arm):
                continue
            model = models[arm]
            tokens = resolve_tokens(model, outcome.input_tokens or 0, outcome.output_tokens or 0, query_tokens[i])
            cost = cost_of(model, outcome.cost_usd, tokens).value * scenario.price_factor(i, arm)
            energy = energy_of(model, outcome.energy_joules, tokens)
            quality = outcome.quality * scenario.quality_factor(i, arm)
            table.energy_sources[energy.source.value] += 1
            table.energy_unknown[i, j] = energy.source is Source.UNKNOWN
            table.quality[i, j], table.cost[i, j], table.energy[i, j] = quality, cost, energy.value
            table.reward[i, j], table.feedback[i, j] = (
                scalar_reward(q, energy.value, cost, weights.energy_weight, weights.cost_weight, weights)
                for q in (quality, 1.0 - quality if scenario.corrupted(i) else quality)
            )
            if tokens.output_reported:
                table.output_tokens[i, j] = tokens.output
            table.cost_residual[i, j] = cost - catalog_cost(model, tokens.input, tokens.output)
            table.energy_residual[i, j] = energy.value - catalog_energy(model, tokens.input, tokens.output)
    return table


def churn(arms: Sequence[int], window: int = 200, skip: float = 0.2) -> dict[str, float] | None:
    """How much a policy's action share moves: the total variation distance between the shares of
    consecutive ``window``-query windows, after the first ``skip`` of the stream (warm-up). None when the
    stream holds fewer than two windows after it. Two windows of one fixed policy differ by sampling noise
    alone, so a settled policy shows a small number, not zero."""
    start = int(len(arms) * skip)
    counts = [Counter(arms[s : s + window]) for s in range(start, len(arms) - window + 1, window)]
    if len(counts) < 2:
        return None
    distances = [0.5 * sum(abs(a[k] - b[k]) for k in set(a) | set(b)) / window for a, b in itertools.pairwise(counts)]
    return {"mean_tv": float(np.mean(distances)), "max_tv": float(np.max(distances)), "windows": len(counts)}
