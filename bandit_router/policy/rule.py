"""The decision rule: each candidate's estimated quality, width and penalty in; the pmf and the choice out.

For each candidate the policy knows an estimated quality q (learned), a width w (from how many rewards of
that model it has seen, overall and in this query's cells: :mod:`bandit_router.policy.exploration`) and a
penalty c (its expected energy and cost at the request's weights, computed, not learned:
:func:`bandit_router.domain.pricing.penalty`). Quality lies in [0, 1], so a model's optimistic score is
``min(q + w, 1) - c`` and its expected score ``q - c``. The leaders (the best optimistic score; ties share)
take ``1 - epsilon``; ``epsilon`` is shared by every model whose optimistic score reaches the best expected
score. A model that cannot be the best even if it answered perfectly gets probability 0: what is known rules
it out without a trial. A model a budget rules out never reaches the rule
(:func:`bandit_router.policy.budgets.within_budget`). In apprentice mode the baseline takes ``1 - exploration``
of the mass and the policy's pmf the rest. The action is drawn from the pmf with a number derived from the
decision id, so the logged probability is the true one and a decision can be replayed.

>>> decide([0.9, 0.5], [0.0, 0.0], [0.0, 0.0], epsilon=0.1, key="d-1", seed=0)  # the second cannot win
Pick(pmf=[1.0, 0.0], index=0, own_probability=1.0)
>>> decide([0.9, 0.5], [0.0, 0.0], [0.6, 0.0], epsilon=0.1, key="d-1", seed=0).pmf  # at a weight that costs
[0.0, 1.0]
>>> decide([0.9, 0.5], [0.0, 0.5], [0.0, 0.0], epsilon=0.1, key="d-1", seed=0).pmf  # the second barely seen
[0.05, 0.9500000000000001]
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

# Scores closer than this count as a tie (VW computes in float32).
TIE = 1e-6


@dataclasses.dataclass(frozen=True)
class Pick:
    """What the rule decided: the pmf the action was drawn from (the logged probabilities), the action's index,
    and the policy's own probability of it (the same but in apprentice mode, where the baseline takes most)."""

    pmf: list[float]
    index: int
    own_probability: float


def decide(
    qualities: Sequence[float],
    widths: Sequence[float],
    penalties: Sequence[float],
    *,
    epsilon: float,
    key: str,
    seed: int,
    baseline: int | None = None,
    exploration: float = 0.0,
) -> Pick:
    """The rule (see the module docstring): the pmf over the candidates in their order, and the action drawn
    from it for ``key`` (the decision id) and ``seed``; with a ``baseline`` index, apprentice mode's pmf."""
    own = optimistic_pmf(qualities, widths, penalties, epsilon)
    pmf = own if baseline is None else apprentice_pmf(own, baseline, exploration)
    index = sample_index(pmf, key, seed)
    return Pick(pmf, index, own[index])


def optimistic_pmf(
    qualities: Sequence[float], widths: Sequence[float], penalties: Sequence[float], epsilon: float
) -> list[float]:
    """The pmf over candidates, in their order (see the module docstring)."""
    if not qualities:
        return []
    expected = [q - c for q, c in zip(qualities, penalties, strict=True)]
    optimistic = [min(q + w, 1.0) - c for q, w, c in zip(qualities, widths, penalties, strict=True)]
    top = max(optimistic)
    leaders = [i for i, u in enumerate(optimistic) if u >= top - TIE]
    best_expected = max(expected)
    plausible = [i for i, u in enumerate(optimistic) if u >= best_expected - TIE]
    pmf = [0.0] * len(qualities)
    for i in leaders:
        pmf[i] += (1.0 - epsilon) / len(leaders)
    for i in plausible:
        pmf[i] += epsilon / len(plausible)
    return pmf


def apprentice_pmf(policy_pmf: Sequence[float], baseline: int, exploration: float) -> list[float]:
    """The pmf actually sampled: the baseline with probability 1 - ``exploration``, else the policy's own draw.

    Every model the policy gives a chance keeps a logged probability of at least ``exploration`` times it, so
    off-policy estimates of the policy stay unbiased on apprentice traffic."""
    pmf = [exploration * p for p in policy_pmf]
    pmf[baseline] += 1.0 - exploration
    return pmf


def uniform(key: str, seed: int) -> float:
    """A number in [0, 1) derived from ``key`` and the seed: the same key always draws the same number."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def sample_index(pmf: Sequence[float], decision_id: str, seed: int) -> int:
    """Draws an action from the pmf with a uniform number derived from the decision id and the seed,
    so the same decision under the same policy always takes the same action."""
    u = uniform(decision_id, seed)
    total = 0.0
    for index, p in enumerate(pmf):
        total += p
        if u < total:
            return index
    # Rounding left u above the last cumulative sum: take the last action with mass.
    return max(i for i, p in enumerate(pmf) if p > 0)
