"""The pmf rule: optimism by evidence, penalties applied exactly, epsilon only where a model could still win."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandit_router.policy.exploration import Evidence, InFlight
from bandit_router.policy.rule import optimistic_pmf

unit = st.floats(min_value=0.0, max_value=1.0)


@given(
    st.lists(st.tuples(unit, st.floats(0.0, 2.0), st.floats(0.0, 1e6)), min_size=1, max_size=12),
    st.floats(0.0, 0.99),
)
def test_pmf_is_a_distribution_whose_leader_gets_the_most(rows: list[tuple[float, float, float]], eps: float) -> None:
    qualities, widths, penalties = (list(c) for c in zip(*rows, strict=True))
    pmf = optimistic_pmf(qualities, widths, penalties, eps)
    assert sum(pmf) == pytest.approx(1.0) and all(p >= 0 for p in pmf)
    optimistic = [min(q + w, 1.0) - c for q, w, c in rows]
    best_expected = max(q - c for q, _, c in rows)
    for p, u in zip(pmf, optimistic, strict=True):
        if u < best_expected - 1e-6:
            assert p == 0.0  # cannot win even at its optimistic quality
    leader = max(range(len(rows)), key=lambda i: optimistic[i])
    assert pmf[leader] == max(pmf)


def test_ties_share_and_epsilon_goes_to_the_plausible_only() -> None:
    assert optimistic_pmf([0.5, 0.5], [0.1, 0.1], [0.0, 0.0], 0.1) == pytest.approx([0.5, 0.5])
    # b's optimistic 0.45 reaches a's expected 0.4; c's 0.2 does not.
    pmf = optimistic_pmf([0.4, 0.35, 0.1], [0.2, 0.1, 0.1], [0.0, 0.0, 0.0], 0.1)
    assert pmf == pytest.approx([0.9 + 0.05, 0.05, 0.0])
    assert optimistic_pmf([], [], [], 0.1) == []


def test_widths_narrow_with_evidence_and_with_trials_in_flight() -> None:
    evidence = Evidence()
    untried = evidence.width("m", ["T:math"], 0.5, 0.3)
    assert untried == pytest.approx((0.25 + 0.09) ** 0.5)
    for _ in range(8):
        evidence.add("m", ["T:math"])
    seen = evidence.width("m", ["T:math"], 0.5, 0.3)
    assert seen == pytest.approx((0.25 / 9 + 0.09 / 9) ** 0.5)
    # A task the model was never tried on keeps its cell's optimism, not the model's.
    assert seen < evidence.width("m", ["T:code"], 0.5, 0.3) < untried
    pending = Evidence()
    pending.add("m", ["T:math"], weight=3)
    assert evidence.width("m", ["T:math"], 0.5, 0.3, pending) == pytest.approx((0.25 / 12 + 0.09 / 12) ** 0.5)
    copy = Evidence.from_json(evidence.to_json())
    assert copy.width("m", ["T:math"], 0.5, 0.3) == seen


def test_in_flight_trials_leave_as_they_are_learned_or_grow_old() -> None:
    in_flight = InFlight(max_age_s=10.0)
    for t, model in enumerate(["a", "a", "b"]):
        in_flight.add(model, ["T:x"], now=float(t))
    assert (in_flight.evidence.count("a"), in_flight.evidence.count("b", "T:x")) == (2, 1)
    in_flight.learned(1)  # the oldest first
    assert (in_flight.evidence.count("a"), len(in_flight)) == (1, 2)
    in_flight.add("c", [], now=11.5)  # the trials from t = 0 and 1 are older than 10 s
    assert in_flight.evidence.count("a") == 0 and in_flight.evidence.count("b") == 1 and len(in_flight) == 2
    in_flight.learned(99)
    assert len(in_flight) == 0 and in_flight.evidence.model_to_count == {}
