"""A query's context as the policy may condition on it: task, cluster, complexity and a projection of its
embedding, written in the VW namespaces (:mod:`bandit_router.policy.vwlines`)."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence

import numpy as np

from bandit_router.config import FeaturesConfig
from bandit_router.embedding.types import Embedded, FloatArray
from bandit_router.policy.clusters import Clusterer
from bandit_router.policy.tasks import TaskInferrer
from bandit_router.policy.vwlines import NS_CLUSTER, NS_COMPLEXITY, NS_EMBEDDING, NS_TASK, vw_token

_WORD = re.compile(r"[A-Za-z]+")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


def _syllables(word: str) -> int:
    groups = len(_VOWEL_GROUPS.findall(word.lower()))
    if word.lower().endswith("e") and groups > 1:
        groups -= 1
    return max(groups, 1)


@dataclasses.dataclass(frozen=True)
class Complexity:
    chars: int
    words: int
    tokens: int
    lines: int
    digit_fraction: float
    # Flesch reading ease: high is easy text; code and formulas score low.
    reading_ease: float

    @classmethod
    def of(cls, text: str, tokens: int) -> Complexity:
        words = _WORD.findall(text)
        sentences = max(1, len(re.findall(r"[.!?]+", text)))
        n_words = max(1, len(words))
        syllables = sum(_syllables(w) for w in words) if words else 0
        ease = 206.835 - 1.015 * (n_words / sentences) - 84.6 * (syllables / n_words)
        return cls(
            chars=len(text),
            words=len(text.split()),
            tokens=tokens,
            lines=text.count("\n") + 1,
            digit_fraction=sum(c.isdigit() for c in text) / max(1, len(text)),
            reading_ease=ease,
        )

    def values(self) -> dict[str, float]:
        """The figures as features: counts on a log scale, reading ease clamped to [-1, 1.2]."""
        return {
            "chars": math.log1p(self.chars) / 10,
            "words": math.log1p(self.words) / 8,
            "tokens": math.log1p(self.tokens) / 8,
            "lines": math.log1p(self.lines) / 5,
            "digits": self.digit_fraction,
            "ease": min(max(self.reading_ease, -100.0), 120.0) / 100.0,
        }

    def vw_features(self) -> str:
        return " ".join(f"{name}:{value:.4f}" for name, value in self.values().items())


class Projector:
    """A fixed, seeded Gaussian projection of the embedding to a few dense VW features."""

    def __init__(self, config: FeaturesConfig, dimension: int) -> None:
        rng = np.random.default_rng(config.seed)
        self.matrix = rng.standard_normal((dimension, config.projection_dim)).astype(np.float32)

    def vw_features(self, vector: FloatArray) -> str:
        return " ".join(f"e{i}:{v:.4f}" for i, v in enumerate(vector @ self.matrix))


@dataclasses.dataclass(frozen=True)
class Context:
    """Everything about a query that the policy may condition on."""

    task: str
    cluster: int
    complexity: Complexity
    projection: str

    def line(self, namespaces: Sequence[str]) -> str:
        """The context's VW features in the namespaces asked for, in that order."""
        cluster = f"c{self.cluster}" if self.cluster >= 0 else "none"
        parts = {
            NS_TASK: f"|{NS_TASK} {vw_token(self.task)}",
            NS_CLUSTER: f"|{NS_CLUSTER} {cluster}",
            NS_COMPLEXITY: f"|{NS_COMPLEXITY} {self.complexity.vw_features()}",
            NS_EMBEDDING: f"|{NS_EMBEDDING} {self.projection}",
        }
        return " ".join(parts[n] for n in namespaces)


class Featurizer:
    """Builds a query's context: its task (the hint, or inferred), cluster, complexity and projection."""

    def __init__(self, config: FeaturesConfig, embed: Callable[[Sequence[str]], list[Embedded]], dimension: int):
        self.config = config
        self.inferrer = TaskInferrer(embed)
        self.projector = Projector(config, dimension) if NS_EMBEDDING in config.context else None

    def context(self, query: str, embedded: Embedded, task_hint: str, clusterer: Clusterer) -> Context:
        return Context(
            task=task_hint.lower() if task_hint else self.inferrer.infer(embedded.vector),
            cluster=clusterer.assign(embedded.vector),
            complexity=Complexity.of(query, embedded.token_count),
            projection=self.projector.vw_features(embedded.vector) if self.projector is not None else "",
        )
