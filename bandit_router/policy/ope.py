"""Off-policy estimates of a policy's value from logged bandit feedback: IPS, SNIPS and doubly robust.

Every estimate rests on the decisions that can speak for the target policy: :func:`support` says how many (the
share of decisions on which every action the target may take had a positive logging probability) and how evenly
(the effective sample size of the importance weights); below ``MIN_SUPPORT`` or ``MIN_ESS`` an estimate is not
shown as a number (an estimate of "always M" from a logger that almost never offered M elsewhere is a number about
M where M was chosen, not about M everywhere).

Each logged decision gives the context's target-policy probabilities ``target`` (one per action it offered:
a budget or a candidate list may narrow one decision's actions, a model added later widen another's), the
logged action, the probability the logging policy chose it with, and its reward. Doubly robust also takes
a reward model's predictions for every action. Intervals are normal approximations over the per-decision
terms for IPS and DR, and a seeded bootstrap for SNIPS, whose terms are not independent.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from bandit_router.domain.reward import bounded

Array = npt.NDArray[np.float64]


# Below these, an estimate is "not estimable": too few decisions can speak for the target policy.
MIN_SUPPORT = 0.95
MIN_ESS = 30.0


@dataclasses.dataclass(frozen=True)
class Support:
    """How much of a target policy logged decisions can speak for.

    Examples
    --------
    >>> s = support([[1.0, 0.0], [1.0, 0.0]], [[0.9, 0.1], [0.0, 1.0]], [0, 1], [0.9, 1.0])
    >>> s.share, round(s.ess, 2), s.estimable(), s.describe()
    (0.5, 1.0, False, 'support 50%, ESS 1')
    """

    # Decisions on which every action the target may take had a positive logging probability.
    share: float
    # (sum of weights)^2 / sum of squared weights: how many decisions the estimate effectively rests on.
    ess: float
    n: int

    def estimable(self, min_share: float = MIN_SUPPORT, min_ess: float = MIN_ESS) -> bool:
        """Enough support, and an effective sample size of ``min_ess`` (or, in a sample of fewer than twice that,
        half its decisions: a small sample's interval is already wide, and an on-policy estimate is never refused)."""
        return self.share >= min_share and self.ess >= min(min_ess, self.n / 2)

    def describe(self) -> str:
        return f"support {self.share:.0%}, ESS {self.ess:.0f}"


def support(
    target: Sequence[Sequence[float]],
    logging: Sequence[Sequence[float]],
    actions: Sequence[int],
    propensities: Sequence[float],
) -> Support:
    """The support of ``target`` in decisions logged with the full pmfs ``logging`` (one row per decision, over the
    actions it offered), and the effective sample size of its importance weights."""
    if not len(target) == len(logging) == len(actions) == len(propensities):
        raise ValueError("target, logging, actions and propensities must have one equal length")
    covered = sum(
        all(q > 0 for t, q in zip(row, logged, strict=True) if t > 0)
        for row, logged in zip(target, logging, strict=True)
    )
    weights = np.asarray([row[a] / p for row, a, p in zip(target, actions, propensities, strict=True)], dtype=float)
    squares = float((weights**2).sum())
    ess = float(weights.sum() ** 2 / squares) if squares > 0 else 0.0
    n = len(target)
    return Support(covered / n if n else 0.0, ess, n)


def logged_only(index: int, probability: float, k: int) -> list[float]:
    """A logging pmf where only the logged action's probability is known: the rest spread evenly over the others."""
    rest = (1.0 - probability) / (k - 1) if k > 1 else 0.0
    return [probability if i == index else rest for i in range(k)]


@dataclasses.dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    # Decisions the estimate rests on.
    n: int
    # The target policy's support in the log and its weights' effective sample size, where they were measured.
    support: float | None = None
    ess: float | None = None


def _as_arrays(
    target: Sequence[Sequence[float]], actions: Sequence[int], propensities: Sequence[float], rewards: Sequence[float]
) -> tuple[Array, Array]:
    """The importance weights target(logged action) / logged probability, and the bounded rewards. Each
    decision's target row is over the actions it offered, so rows may differ in length."""
    a = np.asarray(actions, dtype=np.int64)
    p = np.asarray(propensities, dtype=np.float64)
    r = np.asarray([bounded(x) for x in rewards], dtype=np.float64)
    if not (len(target) == len(a) == len(p) == len(r)) or len(r) == 0:
        lengths = [len(target), len(a), len(p), len(r)]
        raise ValueError(
            f"target, actions, propensities and rewards must have one equal, non-zero length, got {lengths}"
        )
    if np.any(p <= 0) or np.any(p > 1):
        raise ValueError(f"propensities must be in (0, 1], got min {p.min():g} and max {p.max():g}")
    outside = next((i for i, (row, j) in enumerate(zip(target, a, strict=True)) if not 0 <= j < len(row)), None)
    if outside is not None:
        raise ValueError(
            f"actions[{outside}] must index the {len(target[outside])} actions decision {outside} offered, "
            f"got {a[outside]}"
        )
    weights = np.asarray([row[j] for row, j in zip(target, a, strict=True)], dtype=np.float64) / p
    return weights, r


def _normal(terms: Array, z: float) -> Estimate:
    mean = float(terms.mean())
    half = z * float(terms.std(ddof=1)) / math.sqrt(len(terms)) if len(terms) > 1 else math.inf
    return Estimate(mean, mean - half, mean + half, len(terms))


def ips(
    target: Sequence[Sequence[float]],
    actions: Sequence[int],
    propensities: Sequence[float],
    rewards: Sequence[float],
    z: float = 1.96,
) -> Estimate:
    """Inverse propensity scoring: the mean of reward x target probability / logged probability. Unbiased."""
    weights, r = _as_arrays(target, actions, propensities, rewards)
    return _normal(weights * r, z)


def snips(
    target: Sequence[Sequence[float]],
    actions: Sequence[int],
    propensities: Sequence[float],
    rewards: Sequence[float],
    z: float = 1.96,
    resamples: int = 1000,
    seed: int = 0,
) -> Estimate:
    """Self-normalised IPS: the importance-weighted mean reward. Slightly biased, far less variable."""
    weights, r = _as_arrays(target, actions, propensities, rewards)
    if weights.sum() == 0:
        raise ValueError("the target policy gives probability 0 to every logged action: SNIPS is undefined")
    value = float((weights * r).sum() / weights.sum())
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(r), size=(resamples, len(r)))
    w, wr = weights[draws], (weights * r)[draws]
    totals = w.sum(axis=1)
    boot = wr.sum(axis=1) / np.where(totals > 0, totals, np.nan)
    boot = boot[np.isfinite(boot)]
    # A percentile interval of the same width (in z) as the normal ones.
    tail = 100 * (1 - math.erf(z / math.sqrt(2))) / 2
    return Estimate(value, float(np.percentile(boot, tail)), float(np.percentile(boot, 100 - tail)), len(r))


def doubly_robust(
    target: Sequence[Sequence[float]],
    actions: Sequence[int],
    propensities: Sequence[float],
    rewards: Sequence[float],
    predicted: Sequence[Sequence[float]],
    z: float = 1.96,
) -> Estimate:
    """The reward model's value of the target policy, corrected by importance-weighted residuals:
    unbiased if either the propensities or the reward model are right."""
    weights, r = _as_arrays(target, actions, propensities, rewards)
    if len(predicted) != len(r) or any(len(q) != len(t) for q, t in zip(predicted, target, strict=True)):
        raise ValueError("predicted must have one reward per action the target has, for every decision")
    direct = np.asarray([np.dot(t, q) for t, q in zip(target, predicted, strict=True)], dtype=np.float64)
    logged = np.asarray([q[j] for q, j in zip(predicted, actions, strict=True)], dtype=np.float64)
    return _normal(direct + weights * (r - logged), z)
