"""Off-policy estimators on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from bandit_router.policy.ope import doubly_robust, ips, snips


def logged(n: int, seed: int, arms: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Uniform logging over ``arms``; arm k pays Bernoulli(0.2 + 0.3 k)."""
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, arms, size=n)
    propensities = np.full(n, 1.0 / arms)
    means = 0.2 + 0.3 * np.arange(arms)
    rewards = (rng.random(n) < means[actions]).astype(float)
    return actions, propensities, rewards, means


def always(arm: int, n: int, arms: int = 3) -> np.ndarray:
    target = np.zeros((n, arms))
    target[:, arm] = 1.0
    return target


def test_on_policy_estimates_are_the_logged_mean() -> None:
    actions, propensities, rewards, _ = logged(500, seed=1)
    uniform = np.full((500, 3), 1 / 3)
    assert ips(uniform, actions, propensities, rewards).value == pytest.approx(rewards.mean())
    assert snips(uniform, actions, propensities, rewards).value == pytest.approx(rewards.mean())


@pytest.mark.parametrize("arm", [0, 1, 2])
def test_estimates_cover_the_true_value_of_a_different_policy(arm: int) -> None:
    actions, propensities, rewards, means = logged(6000, seed=arm)
    target = always(arm, 6000)
    for estimate in (ips(target, actions, propensities, rewards), snips(target, actions, propensities, rewards)):
        assert estimate.low <= means[arm] <= estimate.high, (estimate, means[arm])
        assert estimate.high - estimate.low < 0.1


def test_doubly_robust_with_a_perfect_reward_model_has_no_variance_from_noise_free_rewards() -> None:
    actions, propensities, _, means = logged(300, seed=4)
    rewards = means[actions]  # the expected rewards themselves
    predicted = np.tile(means, (300, 1))
    estimate = doubly_robust(always(2, 300), actions, propensities, rewards, predicted)
    assert estimate.value == pytest.approx(means[2]) and estimate.high - estimate.low == pytest.approx(0.0, abs=1e-12)


def test_doubly_robust_corrects_a_wrong_reward_model() -> None:
    actions, propensities, rewards, means = logged(8000, seed=5)
    wrong = np.zeros((8000, 3))  # predicts 0 for everything
    estimate = doubly_robust(always(1, 8000), actions, propensities, rewards, wrong)
    assert estimate.low <= means[1] <= estimate.high


@pytest.mark.parametrize(
    ("propensities", "match"),
    [
        ([0.0, 0.5], r"propensities must be in \(0, 1\], got min 0"),
        ([0.5, 1.5], r"propensities must be in \(0, 1\], got min 0.5 and max 1.5"),
    ],
)
def test_bad_logs_are_refused(propensities: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ips([[1.0, 0.0], [1.0, 0.0]], [0, 1], propensities, [1.0, 0.0])


def test_snips_is_undefined_when_the_target_never_takes_a_logged_action() -> None:
    with pytest.raises(ValueError, match="SNIPS is undefined"):
        snips([[0.0, 1.0], [0.0, 1.0]], [0, 0], [0.5, 0.5], [1.0, 0.0])


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match=r"must have one equal, non-zero length, got \[2, 1, 2, 2\]"):
        ips([[1.0], [1.0]], [0], [1.0, 1.0], [1.0, 0.0])
