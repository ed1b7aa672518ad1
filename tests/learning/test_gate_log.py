"""What the learner logs of the gate's verdicts: a promotion with a real difference, not one a second the same."""

from __future__ import annotations

import logging

import pytest

from bandit_router.learning.learner import _promotion_level
from bandit_router.policy.gate import Verdict
from bandit_router.policy.ope import Estimate


def estimate(value: float) -> Estimate:
    return Estimate(value, value - 0.02, value + 0.02, 500)


@pytest.mark.parametrize(
    ("candidate", "serving", "level"),
    [
        (estimate(0.7758), estimate(0.7758), logging.DEBUG),  # the same policy judged again: nothing changed
        (estimate(0.7800), estimate(0.7758), logging.DEBUG),
        (estimate(0.7900), estimate(0.7758), logging.INFO),
        (estimate(0.7600), estimate(0.7758), logging.INFO),
        (None, None, logging.DEBUG),  # waved through: gate off, or its window filling
    ],
)
def test_a_promotion_is_logged_at_info_only_with_a_real_difference(
    candidate: Estimate | None, serving: Estimate | None, level: int
) -> None:
    verdict = Verdict(7, True, "judged", 500, candidate, serving)
    assert _promotion_level(verdict) == level
