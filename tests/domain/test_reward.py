"""Reward arithmetic and the precedence of reported, computed and estimated figures."""

from __future__ import annotations

import pytest

from bandit_router.config import ModelSpec, RewardConfig
from bandit_router.domain.reward import Source, cost_of, energy_of, resolve_tokens, scalar_reward

MODEL = ModelSpec(
    "m", 1.0, 3.0, 8.0, energy_j_per_output_token=0.2, energy_j_per_input_token=0.01, typical_output_tokens=100
)


def test_reported_beats_computed_beats_estimated() -> None:
    reported = resolve_tokens(MODEL, 1000, 500, query_tokens=42)
    assert cost_of(MODEL, 0.5, reported).source is Source.REPORTED
    computed = cost_of(MODEL, None, reported)
    assert computed.source is Source.COMPUTED
    assert computed.value == pytest.approx((1000 * 1.0 + 500 * 3.0) / 1e6)
    assert energy_of(MODEL, 12.0, reported).source is Source.REPORTED
    assert energy_of(MODEL, None, reported).source is Source.ESTIMATED

    guessed = resolve_tokens(MODEL, 0, 0, query_tokens=42)
    assert (guessed.input, guessed.output) == (42, 100)
    estimated = cost_of(MODEL, None, guessed)
    assert estimated.source is Source.ESTIMATED
    assert "estimated from the query's word pieces" in estimated.basis
    assert energy_of(MODEL, None, guessed).value == pytest.approx(42 * 0.01 + 100 * 0.2)


def test_scalar_reward_trades_quality_against_energy_and_cost() -> None:
    config = RewardConfig(energy_scale_joules=100.0, cost_scale_usd=0.01)
    assert scalar_reward(0.8, 50.0, 0.005, 0.0, 0.0, config) == pytest.approx(0.8)
    assert scalar_reward(0.8, 50.0, 0.005, 0.2, 0.4, config) == pytest.approx(0.8 - 0.2 * 0.5 - 0.4 * 0.5)
