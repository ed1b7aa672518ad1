"""The decision rule's invariants, for any qualities, widths, penalties, weights and budgets (Hypothesis)."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bandit_router.config import RewardConfig, load_config
from bandit_router.domain.pricing import Expected, penalty
from bandit_router.domain.requests import RouteInput
from bandit_router.errors import FailedPrecondition
from bandit_router.policy import rule
from bandit_router.policy.budgets import within_budget
from bandit_router.policy.rule import decide, optimistic_pmf

CATALOG = load_config(env={}).models
SCALES = RewardConfig()

unit = st.floats(min_value=0, max_value=1, allow_nan=False)
rows = st.integers(1, 9).flatmap(
    lambda n: st.tuples(
        st.lists(unit, min_size=n, max_size=n),
        st.lists(st.floats(min_value=0, max_value=2, allow_nan=False), min_size=n, max_size=n),
        st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), min_size=n, max_size=n),
    )
)
epsilons = st.floats(min_value=0, max_value=0.99, allow_nan=False)
keys = st.text(min_size=1, max_size=30)


@given(row=rows, epsilon=epsilons, key=keys, seed=st.integers(0, 2**32))
def test_the_pmf_sums_to_one_and_the_choice_has_mass(
    row: tuple[list[float], list[float], list[float]], epsilon: float, key: str, seed: int
) -> None:
    qualities, widths, penalties = row
    pick = decide(qualities, widths, penalties, epsilon=epsilon, key=key, seed=seed)
    assert sum(pick.pmf) == pytest.approx(1.0)
    assert all(p >= 0 for p in pick.pmf)
    assert pick.pmf[pick.index] > 0
    assert pick.own_probability == pick.pmf[pick.index]
    # The same decision id under the same policy takes the same action.
    assert decide(qualities, widths, penalties, epsilon=epsilon, key=key, seed=seed) == pick


@given(row=rows, epsilon=epsilons, key=keys, exploration=unit, data=st.data())
def test_apprentice_mode_keeps_a_true_pmf_and_the_policys_own_probability(
    row: tuple[list[float], list[float], list[float]],
    epsilon: float,
    key: str,
    exploration: float,
    data: st.DataObject,
) -> None:
    qualities, widths, penalties = row
    baseline = data.draw(st.integers(0, len(qualities) - 1))
    own = optimistic_pmf(qualities, widths, penalties, epsilon)
    pick = decide(
        qualities, widths, penalties, epsilon=epsilon, key=key, seed=0, baseline=baseline, exploration=exploration
    )
    assert sum(pick.pmf) == pytest.approx(1.0)
    assert pick.pmf[baseline] >= 1 - exploration - 1e-12
    assert pick.own_probability == own[pick.index]
    # Every model the policy gives a chance keeps at least ``exploration`` of it: off-policy estimates stay unbiased.
    assert all(p >= exploration * q - 1e-12 for p, q in zip(pick.pmf, own, strict=True))


@given(row=rows, epsilon=epsilons)
def test_a_model_that_cannot_win_even_answering_perfectly_gets_zero(
    row: tuple[list[float], list[float], list[float]], epsilon: float
) -> None:
    qualities, widths, penalties = row
    pmf = optimistic_pmf(qualities, widths, penalties, epsilon)
    best_expected = max(q - c for q, c in zip(qualities, penalties, strict=True))
    for q, w, c, p in zip(qualities, widths, penalties, pmf, strict=True):
        if min(q + w, 1.0) - c < best_expected - 1e-3:
            assert p == 0


@given(
    # Qualities a hundredth apart at least: closer than the rule's tie they would share the lead.
    qualities=st.lists(st.integers(0, 100).map(lambda k: k / 100), min_size=2, max_size=6, unique=True),
    energy_weight=unit,
    cost_weight=unit,
    data=st.data(),
)
def test_penalties_at_the_requests_weights_decide_who_leads(
    qualities: list[float], energy_weight: float, cost_weight: float, data: st.DataObject
) -> None:
    """With nothing left to explore (widths 0), the leader is the best quality less the penalty at *this
    request's* weights: the same qualities and figures lead elsewhere at other weights."""
    expected = [
        Expected(
            energy_joules=data.draw(st.floats(0, 5_000)), cost_usd=data.draw(st.floats(0, 0.05)), output_tokens=100,
            observed=True,
        )
        for _ in qualities
    ]  # fmt: skip
    penalties = [penalty(e, energy_weight, cost_weight, SCALES) for e in expected]
    scores = [q - c for q, c in zip(qualities, penalties, strict=True)]
    best = max(range(len(scores)), key=scores.__getitem__)
    assume(all(scores[best] - s > 1e-4 for i, s in enumerate(scores) if i != best))
    pick = decide(qualities, [0.0] * len(qualities), penalties, epsilon=0.05, key="k", seed=0)
    assert pick.pmf[best] >= 0.95
    # At weights 0/0 the penalty is nothing and the best quality leads.
    free = decide(qualities, [0.0] * len(qualities), [0.0] * len(qualities), epsilon=0.05, key="k", seed=0)
    assert free.pmf[qualities.index(max(qualities))] >= 0.95


@given(
    costs=st.lists(st.floats(min_value=0, max_value=0.01, allow_nan=False), min_size=2, max_size=8),
    limit=st.floats(min_value=0, max_value=0.01, allow_nan=False),
    qualities=st.data(),
    key=keys,
)
def test_a_model_a_budget_rules_out_gets_probability_zero(
    costs: list[float], limit: float, qualities: st.DataObject, key: str
) -> None:
    candidates = list(CATALOG[: len(costs)])
    expected = {m.id: Expected(0.0, cost, 100, observed=True) for m, cost in zip(candidates, costs, strict=False)}
    request = RouteInput("q", max_cost_usd=limit)
    fits = {m.id for m in candidates if expected[m.id].cost_usd <= limit}
    if not fits:
        with pytest.raises(FailedPrecondition, match="max_cost_usd"):
            within_budget(request, candidates, expected, {})
        return
    kept, excluded = within_budget(request, candidates, expected, {})
    assert {m.id for m in kept} == fits
    assert len(excluded) == len(candidates) - len(fits)
    q = qualities.draw(st.lists(unit, min_size=len(kept), max_size=len(kept)))
    pick = decide(q, [0.5] * len(kept), [0.0] * len(kept), epsilon=0.1, key=key, seed=0)
    probability = {m.id: p for m, p in zip(kept, pick.pmf, strict=True)}
    assert all(probability.get(m.id, 0.0) == 0.0 for m in candidates if m.id not in fits)
    assert kept[pick.index].id in fits


def test_the_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(rule)
    assert tried > 0 and failures == 0
