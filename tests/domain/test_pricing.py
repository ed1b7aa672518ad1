"""Expected energy and cost: catalog rates at known and predicted tokens, corrected by observation."""

from __future__ import annotations

import pytest

from bandit_router.config import ModelSpec, RewardConfig
from bandit_router.domain.pricing import HORIZON, PRIOR_WEIGHT, Pricing, catalog_cost, catalog_energy, penalty

MODEL = ModelSpec(
    id="m",
    input_usd_per_mtok=1.0,
    output_usd_per_mtok=3.0,
    parameters_b=8,
    energy_j_per_output_token=0.2,
    energy_j_per_input_token=0.01,
    typical_output_tokens=100.0,
)


def test_an_unobserved_model_is_priced_from_the_catalog_at_this_query_and_its_typical_answer() -> None:
    expected = Pricing().expected(MODEL, "math", input_tokens=40)
    assert expected.energy_joules == pytest.approx(40 * 0.01 + 100 * 0.2)
    assert expected.cost_usd == pytest.approx((40 * 1.0 + 100 * 3.0) / 1e6)
    assert (expected.output_tokens, expected.observed) == (100.0, False)
    # The penalty is linear in the weights and the scales: w_E E / E_scale + w_C C / C_scale.
    scales = RewardConfig(energy_scale_joules=200.0, cost_scale_usd=0.001)
    assert penalty(expected, 2.0, 0.5, scales) == pytest.approx(2 * 20.4 / 200 + 0.5 * 340e-6 / 0.001)


def test_output_tokens_are_learned_per_task_and_shrunk_to_the_models_mean() -> None:
    pricing = Pricing()
    for _ in range(10):
        pricing.observe("m", "math", 300, 0.0, 0.0)
    for _ in range(10):
        pricing.observe("m", "chat", 50, 0.0, 0.0)
    overall = (300 + 50) / 2
    math_tokens = (10 * 300 + PRIOR_WEIGHT * overall) / (10 + PRIOR_WEIGHT)
    assert pricing.expected(MODEL, "math", 40).output_tokens == pytest.approx(math_tokens)
    # A task never seen takes the model's own mean.
    assert pricing.expected(MODEL, "code", 40).output_tokens == pytest.approx(overall)
    assert pricing.expected(MODEL, "math", 40).energy_joules == pytest.approx(catalog_energy(MODEL, 40, math_tokens))


def test_what_the_catalog_misses_is_learned_as_a_residual() -> None:
    """A provider billing twice the catalog price, NVML measuring 5 J more than the profile: the residuals
    carry the difference, and the input tokens of the query being routed still count."""
    pricing = Pricing()
    for _ in range(4):
        billed = 2 * catalog_cost(MODEL, 40, 100)
        pricing.observe("m", "math", None, billed - catalog_cost(MODEL, 40, 100), 5.0)
    expected = pricing.expected(MODEL, "math", input_tokens=80)
    assert expected.observed and expected.output_tokens == 100.0  # no output tokens were reported
    assert expected.cost_usd == pytest.approx(catalog_cost(MODEL, 80, 100) + catalog_cost(MODEL, 40, 100))
    assert expected.energy_joules == pytest.approx(catalog_energy(MODEL, 80, 100) + 5.0)


def test_a_price_change_is_followed_within_the_horizon() -> None:
    pricing = Pricing()
    for _ in range(HORIZON):
        pricing.observe("m", "t", None, 0.0, 0.0)
    for _ in range(2 * HORIZON):
        pricing.observe("m", "t", None, 1e-3, 0.0)
    # A plain mean would sit at 2/3 of the new residual; the running one is within a few percent of it.
    assert pricing.expected(MODEL, "t", 0).cost_usd - catalog_cost(MODEL, 0, 100) > 0.85e-3
    copy = Pricing.from_json(pricing.to_json())
    assert copy.expected(MODEL, "t", 7) == pricing.expected(MODEL, "t", 7)
