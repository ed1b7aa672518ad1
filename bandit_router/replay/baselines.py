"""Baseline routers replayed on the same stream and reward as the bandit.

Each sees a feature vector per query and the models it may choose from (a scenario can add or remove
models mid-stream) and, except where said, only the reward of the model it chose.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float64]


class Baseline:
    """One router: ``choose`` a model index for a query's features, then ``learn_one`` its reward."""

    name = "baseline"
    # True for learners that are shown every model's reward (a ceiling, not a deployable router).
    full_information = False

    def choose(self, x: Vector, task: str, arms: Sequence[int]) -> int:
        """One of ``arms``, the indices of the models available for this query."""
        raise NotImplementedError

    def learn_one(self, x: Vector, task: str, arm: int, reward: float) -> None:
        """Bandit feedback: the reward of the chosen model only."""

    def learn_all(self, x: Vector, task: str, rewards: Sequence[float]) -> None:
        """Full-information feedback: every model's reward (only full-information learners get it)."""


class RandomRouter(Baseline):
    name = "random"

    def __init__(self, arms: int, seed: int) -> None:
        self.arms = arms
        self.rng = random.Random(seed)

    def choose(self, x: Vector, task: str, arms: Sequence[int]) -> int:
        return arms[self.rng.randrange(len(arms))]


class EpsilonGreedy(Baseline):
    """Per-task running mean reward of each model; explores uniformly with probability epsilon."""

    def __init__(self, arms: int, seed: int, epsilon: float = 0.1) -> None:
        self.name = f"epsilon-greedy ({epsilon:g}, per task)"
        self.arms = arms
        self.epsilon = epsilon
        self.rng = random.Random(seed)
        self.task_to_sums: dict[str, list[float]] = {}
        self.task_to_counts: dict[str, list[int]] = {}

    def choose(self, x: Vector, task: str, arms: Sequence[int]) -> int:
        counts = self.task_to_counts.get(task)
        if counts is None or self.rng.random() < self.epsilon:
            return arms[self.rng.randrange(len(arms))]
        untried = [a for a in arms if counts[a] == 0]
        if untried:
            return untried[0]
        sums = self.task_to_sums[task]
        return max(arms, key=lambda a: sums[a] / counts[a])

    def learn_one(self, x: Vector, task: str, arm: int, reward: float) -> None:
        self.task_to_sums.setdefault(task, [0.0] * self.arms)[arm] += reward
        self.task_to_counts.setdefault(task, [0] * self.arms)[arm] += 1


class LinUCB(Baseline):
    """Disjoint LinUCB (one ridge regression per model, upper confidence bound), GreenServ-style on task,
    semantic cluster and complexity features."""

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

    def choose(self, x: Vector, task: str, arms: Sequence[int]) -> int:
        return max(arms, key=lambda a: self._score(a, x, bonus=True))

    def learn_one(self, x: Vector, task: str, arm: int, reward: float) -> None:
        inverse = self.arm_to_inverse[arm]
        # Sherman-Morrison: the inverse of (A + x x^T) from the inverse of A.
        ix = inverse @ x
        self.arm_to_inverse[arm] = inverse - np.outer(ix, ix) / (1.0 + float(x @ ix))
        self.arm_to_b[arm] = self.arm_to_b[arm] + reward * x


class FullInformation(LinUCB):
    """The same ridge regressions, shown every model's reward after each query, choosing greedily: what
    a router with these features could reach if it saw every outcome."""

    full_information = True

    def __init__(self, arms: int, dimension: int) -> None:
        super().__init__(arms, dimension, alpha=0.0)
        self.name = "full information (ridge, every outcome seen)"

    def choose(self, x: Vector, task: str, arms: Sequence[int]) -> int:
        return max(arms, key=lambda a: self._score(a, x, bonus=False))

    def learn_one(self, x: Vector, task: str, arm: int, reward: float) -> None:
        """Learns in learn_all, from every model."""

    def learn_all(self, x: Vector, task: str, rewards: Sequence[float]) -> None:
        for arm, reward in enumerate(rewards):
            if math.isfinite(reward):  # a model unavailable for the query has no reward
                LinUCB.learn_one(self, x, task, arm, reward)
