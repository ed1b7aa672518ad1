"""Apprentice mode's evidence: the IPS terms, the anytime-valid confidence sequence that promotes a tenant, and
the ledger's round trip through a snapshot."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from bandit_router.config import RolloutConfig
from bandit_router.policy.apprentice import Apprentices, Ledger, margin

ROLLOUT = RolloutConfig(mode="apprentice", auto_promote=True, promote_min_rewards=50, promote_horizon=1000)
# Asks for enough rewards that a clearly better policy is decisive by then.
PATIENT = dataclasses.replace(ROLLOUT, promote_min_rewards=400)


def test_the_terms_are_the_policy_and_baseline_ips_estimates() -> None:
    ledger = Ledger()
    # Served the baseline with probability 0.9; the policy alone would have given it 0.5.
    ledger.observe(0.6, 0.9, 0.5, served_baseline=True)
    # Served another model with probability 0.05; the policy alone would have given it 0.5.
    ledger.observe(1.0, 0.05, 0.5, served_baseline=False)
    assert ledger.n == 2
    assert ledger.policy_sum == pytest.approx(0.5 / 0.9 * 0.6 + 0.5 / 0.05 * 1.0)
    assert ledger.baseline_sum == pytest.approx(0.6 / 0.9)
    assert ledger.difference == pytest.approx((ledger.policy_sum - ledger.baseline_sum) / 2)


def test_the_margin_shrinks_with_evidence_and_grows_with_spread() -> None:
    assert margin(1, 1.0, 0.05, 1000) == math.inf
    widths = [margin(n, 1.0, 0.05, 1000) for n in (10, 100, 1000, 10000)]
    assert widths == sorted(widths, reverse=True)
    assert margin(500, 2.0, 0.05, 1000) == pytest.approx(2 * margin(500, 1.0, 0.05, 1000))
    # Wider than a fixed-n 95% interval: it has to hold at every n at once.
    assert margin(1000, 1.0, 0.05, 1000) > 1.645 / math.sqrt(1000)


def _false_promotions(rng: np.random.Generator, runs: int, length: int, fixed_n: bool) -> float:
    """Share of runs of a policy exactly as good as its baseline that a test checked after every reward
    promotes. The terms are IPS-like: mostly small, now and then a large one (exploration 5%)."""
    promoted = 0
    alpha = 1 - ROLLOUT.promote_confidence
    for _ in range(runs):
        explored = rng.random(length) < 0.05
        # Both parts have mean 0: the policy is exactly as good as the baseline.
        terms = np.where(explored, rng.uniform(-10.0, 10.0, length), rng.normal(0.0, 0.3, length))
        n = np.arange(1, length + 1)
        mean = np.cumsum(terms) / n
        squares = np.cumsum(terms * terms)
        sd = np.sqrt(np.maximum(0.0, (squares - n * mean * mean) / np.maximum(n - 1, 1)))
        if fixed_n:
            lower = mean - 1.645 * sd / np.sqrt(n)
        else:
            spread = [margin(int(k), float(s), alpha, ROLLOUT.promote_horizon) for k, s in zip(n, sd, strict=True)]
            lower = mean - np.array(spread)
        promoted += bool(np.any(lower[ROLLOUT.promote_min_rewards :] > 0))
    return promoted / runs


def test_checking_after_every_reward_keeps_false_promotions_within_the_confidence() -> None:
    # Any promotion here is false. Checked after each of 2,000 rewards, a fixed-n 95% interval promotes far more
    # often than 5%; the confidence sequence stays within it.
    rng = np.random.default_rng(7)
    naive = _false_promotions(rng, 200, 2000, fixed_n=True)
    anytime = _false_promotions(rng, 200, 2000, fixed_n=False)
    assert anytime <= 0.05 + 0.03, f"confidence sequence promoted {anytime:.0%} of equal policies"
    assert naive > anytime, f"fixed-n {naive:.0%}, confidence sequence {anytime:.0%}"


def _better(ledger: Ledger, rng: np.random.Generator, count: int, exploration: float = 0.2) -> None:
    """Apprentice rewards of a policy that answers 0.9 where the baseline answers 0.2; the policy never picks the
    baseline itself."""
    for _ in range(count):
        if rng.random() < exploration:
            ledger.observe(0.9, exploration, 1.0, served_baseline=False)
        else:
            ledger.observe(0.2, 1 - exploration, 0.0, served_baseline=True)


def test_a_clearly_better_policy_is_promoted_once_enough_rewards_are_in_and_stays_promoted() -> None:
    rng = np.random.default_rng(3)
    ledger = Ledger()
    _better(ledger, rng, PATIENT.promote_min_rewards - 1)
    assert ledger.lower(PATIENT) > 0, "the setup should be decisive before the minimum"
    assert not ledger.review(PATIENT), "no promotion before promote_min_rewards"
    _better(ledger, rng, 1)
    assert ledger.review(PATIENT) and ledger.promoted_at == PATIENT.promote_min_rewards
    # Kept, even if later evidence turns: a tenant never falls back by itself.
    for _ in range(400):
        ledger.observe(0.9, 0.8, 0.0, served_baseline=True)
    assert ledger.lower(PATIENT) < 0
    assert not ledger.review(PATIENT) and ledger.promoted_at == PATIENT.promote_min_rewards


def test_a_worse_policy_is_never_promoted() -> None:
    rng = np.random.default_rng(5)
    ledger = Ledger()
    for _ in range(3000):
        if rng.random() < 0.2:
            ledger.observe(0.2, 0.2, 1.0, served_baseline=False)
        else:
            ledger.observe(0.9, 0.8, 0.0, served_baseline=True)
        assert not ledger.review(ROLLOUT)
    view = ledger.view(ROLLOUT)
    assert view["policy"] == pytest.approx(0.2, abs=0.05) and view["baseline"] == pytest.approx(0.9, abs=0.05)
    assert view["upper"] < 0 and not view["promoted_at"]


def test_the_ledgers_round_trip_and_say_who_is_promoted() -> None:
    apprentices = Apprentices()
    _better(apprentices.ledger("acme"), np.random.default_rng(1), PATIENT.promote_min_rewards)
    assert apprentices.ledger("acme").review(PATIENT)
    apprentices.ledger("beta").observe(0.5, 0.9, 0.1, served_baseline=True)
    again = Apprentices.from_json(apprentices.to_json())
    assert again.promoted() == {"acme"}
    assert again.tenant_to_ledger == apprentices.tenant_to_ledger


def test_a_policy_whose_evidence_rests_on_a_few_explored_decisions_is_not_estimable_and_not_promoted() -> None:
    # Exploration 2%: the policy's weight is 50 on each explored decision and 0 elsewhere, so its estimate rests on
    # about n / 50 decisions. After 400 rewards (about 8 explored) the difference can look decisive, yet the ESS says
    # it rests on a handful; the dashboard shows why instead of a figure.
    thin = dataclasses.replace(ROLLOUT, exploration=0.02, promote_min_ess=30)
    ledger = Ledger()
    rng = np.random.default_rng(11)
    for _ in range(400):
        if rng.random() < 0.02:
            ledger.observe(1.0, 0.02, 1.0, served_baseline=False)
        else:
            ledger.observe(0.2, 0.98, 0.0, served_baseline=True)
    assert ledger.ess < 30
    assert not ledger.review(thin) and not ledger.promoted_at
    view = ledger.view(thin)
    assert view["not_estimable"] == f"not estimable (support 100%, ESS {ledger.ess:.0f})"
    assert view["policy"] is None and view["lower"] is None and view["support"] == 1.0
    # With enough explored decisions the same evidence is a figure.
    assert "not_estimable" not in ledger.view(dataclasses.replace(thin, promote_min_ess=ledger.ess))
