"""Baseline routers replayed on the same stream and reward as the bandit, made as strong as the bandit's own
knowledge allows: each learns quality and subtracts the same known penalty (its own running pricing of what
it has observed), on the same context features.

Each sees a feature vector per query, the models it may choose from (a scenario can add or remove models
mid-stream) and each model's penalty, and, except where said, only the quality of the model it chose.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float64]


class Baseline:
    """One router: ``choose`` a model index for a query, then ``learn_one`` the chosen model's quality."""

    name = "baseline"
    # True for learners that are shown every model's outcome (a ceiling, not a deployable router).
    full_information = False

    def choose(self, x: Vector, task: str, arms: Sequence[int], penalties: Vector) -> int:
        """One of ``arms``, the indices of the models available for this query; ``penalties`` has one
        entry per model (all of them, available or not)."""
        raise NotImplementedError

    def learn_one(self, x: Vector, task: str, arm: int, quality: float) -> None:
        """Bandit feedback: the quality of the chosen model only."""

    def learn_all(self, x: Vector, task: str, qualities: Sequence[float]) -> None:
        """Full-information feedback: every model's quality (NaN where a model was unavailable); bandit
        learners get it only for warm-start rows, where an evaluation set holds every model's outcome."""
        for arm, quality in enumerate(qualities):
            if math.isfinite(quality):
                self.learn_one(x, task, arm, quality)


class RandomRouter(Baseline):
    name = "random"

    def __init__(self, arms: int, seed: int) -> None:
        self.arms = arms
        self.rng = random.Random(seed)

    def choose(self, x: Vector, task: str, arms: Sequence[int], penalties: Vector) -> int:
        return arms[self.rng.randrange(len(arms))]

    def learn_all(self, x: Vector, task: str, qualities: Sequence[float]) -> None:
        """Learns nothing."""


class EpsilonGreedy(Baseline):
    """Per-task mean quality of each model, minus its penalty; explores uniformly with probability epsilon."""

    def __init__(self, arms: int, seed: int, epsilon: float = 0.1) -> None:
        self.name = f"epsilon-greedy ({epsilon:g}, per task)"
        self.arms = arms
        self.epsilon = epsilon
        self.rng = random.Random(seed)
        self.task_to_sums: dict[str, list[float]] = {}
        self.task_to_counts: dict[str, list[int]] = {}

    def choose(self, x: Vector, task: str, arms: Sequence[int], penalties: Vector) -> int:
        counts = self.task_to_counts.get(task)
        if counts is None or self.rng.random() < self.epsilon:
            return arms[self.rng.randrange(len(arms))]
        untried = [a for a in arms if counts[a] == 0]
        if untried:
            return untried[0]
        sums = self.task_to_sums[task]
        return max(arms, key=lambda a: sums[a] / counts[a] - penalties[a])

    def learn_one(self, x: Vector, task: str, arm: int, quality: float) -> None:
        self.task_to_sums.setdefault(task, [0.0] * self.arms)[arm] += quality
        self.task_to_counts.setdefault(task, [0] * self.arms)[arm] += 1


class LinUCB(Baseline):
    """Disjoint LinUCB: one ridge regression of quality per model, scored at its upper confidence bound
    minus the model's penalty."""

    def __init__(self, arms: int, dimension: int, alpha: float = 1.0, ridge: float = 1.0) -> None:
        self.name = f"LinUCB (alpha {alpha:g})"
        self.alpha = alpha
        self.arm_to_inverse = [np.eye(dimension) / ridge for _ in range(arms)]
        self.arm_to_b = [np.zeros(dimension) for _ in range(arms)]

    def _score(self, arm: int, x: Vector, bonus: bool) -> float:
        inverse = self.arm_to_inverse[arm]
        theta = inverse @ self.arm_to_b[arm]
        mean = float(theta @ x)
        return mean + self.alpha * math.sqrt(max(float(x @ inverse @ x), 0.0)) if bonus else mean

    def choose(self, x: Vector, task: str, arms: Sequence[int], penalties: Vector) -> int:
        return max(arms, key=lambda a: self._score(a, x, bonus=True) - penalties[a])

    def learn_one(self, x: Vector, task: str, arm: int, quality: float) -> None:
        inverse = self.arm_to_inverse[arm]
        # Sherman-Morrison: the inverse of (A + x x^T) from the inverse of A.
        ix = inverse @ x
        self.arm_to_inverse[arm] = inverse - np.outer(ix, ix) / (1.0 + float(x @ ix))
        self.arm_to_b[arm] = self.arm_to_b[arm] + quality * x


class FullInformation(LinUCB):
    """The same ridge regressions, shown every model's quality after each query, choosing greedily: what a
    router with these features could reach if it saw every outcome. The first feature (the intercept) is
    regularised by 1 only, the rest by ``ridge``."""

    full_information = True

    def __init__(self, arms: int, dimension: int, ridge: float) -> None:
        super().__init__(arms, dimension, alpha=0.0)
        self.ridge = ridge
        diagonal = np.full(dimension, 1.0 / ridge)
        diagonal[0] = 1.0
        self.arm_to_inverse = [np.diag(diagonal) for _ in range(arms)]
        self.name = f"full information (ridge {ridge:g}, every outcome seen)"

    def choose(self, x: Vector, task: str, arms: Sequence[int], penalties: Vector) -> int:
        return max(arms, key=lambda a: self._score(a, x, bonus=False) - penalties[a])
