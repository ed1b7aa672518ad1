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


def test_an_unreported_output_count_is_estimated_from_the_answer_seen() -> None:
    tokens = resolve_tokens(MODEL, 30, 0, query_tokens=42, answer_chars=41)
    assert (tokens.input, tokens.output, tokens.output_reported, tokens.output_from_length) == (30, 11, False, True)
    cost = cost_of(MODEL, None, tokens)
    assert cost.source is Source.ESTIMATED and "answer's length at 4 characters per token" in cost.basis
    # A reported count wins over the length.
    assert resolve_tokens(MODEL, 30, 7, query_tokens=42, answer_chars=41).output == 7


def test_counts_from_the_models_tokenizer_come_after_reported_ones_and_before_any_estimate() -> None:
    counted = resolve_tokens(MODEL, 0, 0, query_tokens=42, answer_chars=41, counted=(25, 13))
    assert (counted.input, counted.output) == (25, 13) and counted.input_counted and counted.output_known
    assert not (counted.input_reported or counted.output_reported or counted.output_from_length)
    cost = cost_of(MODEL, None, counted)
    assert cost.source is Source.COMPUTED and "13 output tokens (counted with the model's tokenizer)" in cost.basis
    # Reported counts win; a count for one side only leaves the other an estimate.
    assert resolve_tokens(MODEL, 30, 7, query_tokens=42, answer_chars=41, counted=(25, 13)).output == 7
    half = resolve_tokens(MODEL, 0, 0, query_tokens=42, answer_chars=41, counted=(0, 13))
    assert (half.input, half.output, half.input_counted) == (42, 13, False)
    assert cost_of(MODEL, None, half).source is Source.ESTIMATED
