"""Context and action features of a routing decision, written as VW example lines, and the decision as the
policy sees it."""

from __future__ import annotations

import dataclasses
import io
import math
import re
import struct
import threading
from collections.abc import Callable, Sequence

import numpy as np

from bandit_router.config import FeaturesConfig, ModelSpec
from bandit_router.embedding.types import Embedded, FloatArray

# VW namespaces. The first letter is what --interactions refers to.
NS_TASK = "T"
NS_CLUSTER = "K"
NS_EMBEDDING = "E"
NS_COMPLEXITY = "X"
NS_ACTION = "A"
# Namespaces whose features name a cell (one feature of value 1): the policy counts rewards per model in each.
CATEGORICAL = (NS_TASK, NS_CLUSTER)

# A few phrasings per task; a query takes the task whose prototypes it is nearest to on average.
TASK_PROTOTYPES: dict[str, tuple[str, ...]] = {
    "math": (
        "What is 17 times 23?",
        "Solve for x: 3x + 5 = 20.",
        "Calculate the sum of 128 and 342.",
        "A train travels 60 miles in 1.5 hours. What is its average speed?",
        "Compute the derivative of x^2 sin(x).",
    ),
    "code": (
        "Write a Python function that reverses a linked list.",
        "def add(a, b): return a + b  # fix the bug in this code",
        "Implement binary search in JavaScript.",
        "Why does my SQL query return duplicate rows?",
    ),
    "creative_writing": (
        "Write a poem about the sea at night.",
        "Compose a short story about a dragon who is afraid of fire.",
        "Write song lyrics about autumn leaves.",
        "Write a haiku about the moon.",
    ),
    "factual_qa": (
        "Who wrote Pride and Prejudice?",
        "What is the capital of Australia?",
        "When did the Second World War end?",
        "Which element has the chemical symbol Fe?",
    ),
    "multiple_choice": (
        "Which of the following is a mammal? A) shark B) dolphin C) trout D) eel",
        "Choose the correct answer: (A) true (B) false",
        "Question: What do plants need for photosynthesis? Options: A. sunlight B. salt C. sand D. iron",
    ),
    "reasoning": (
        "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies?",
        "Three people stand in a line; Alice is not first and Bob is behind Carol. Who is first?",
        "Explain step by step which option is more logical and why.",
    ),
    "summarization": (
        "Summarize the following article in three sentences.",
        "Give me a TL;DR of this text.",
        "Condense this report into its key points.",
    ),
    "translation": (
        "Translate 'good morning' into French.",
        "How do you say 'thank you' in Japanese?",
        "Translate the following paragraph from German to English.",
    ),
    "chat": (
        "Hi, how are you today?",
        "Can you recommend a good movie for tonight?",
        "What should I cook for dinner?",
    ),
}

_WORD = re.compile(r"[A-Za-z]+")
_VOWEL_GROUPS = re.compile(r"[aeiouy]+")
_VW_UNSAFE = re.compile(r"[\s|:]")


def vw_token(text: str) -> str:
    """A VW feature name cannot hold spaces, ':' or '|'."""
    return _VW_UNSAFE.sub("_", text)


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


class TaskInferrer:
    """Infers a task for queries without a hint: the task whose prototype embeddings are nearest."""

    def __init__(self, embed: Callable[[Sequence[str]], list[Embedded]]) -> None:
        names: list[str] = []
        texts: list[str] = []
        for name, prototypes in TASK_PROTOTYPES.items():
            names.extend([name] * len(prototypes))
            texts.extend(prototypes)
        vectors = np.stack([e.vector for e in embed(texts)])
        self.tasks = tuple(TASK_PROTOTYPES)
        # One unit-length mean vector per task.
        means = np.stack([vectors[[i for i, n in enumerate(names) if n == t]].mean(axis=0) for t in self.tasks])
        self._means = means / np.linalg.norm(means, axis=1, keepdims=True)

    def infer(self, vector: FloatArray) -> str:
        return self.tasks[int(np.argmax(self._means @ vector))]


class Clusterer:
    """Online spherical k-means: a query joins its nearest centroid, or opens a new one while there is
    room and nothing is similar enough. Centroids drift with a running mean capped at ``horizon``."""

    def __init__(self, config: FeaturesConfig, dimension: int, horizon: int = 1000) -> None:
        self.max_clusters = config.max_clusters
        self.threshold = config.cluster_threshold
        self.horizon = horizon
        self.centroids = np.zeros((0, dimension), dtype=np.float32)
        self.counts = np.zeros(0, dtype=np.int64)

    def assign(self, vector: FloatArray) -> int:
        """The cluster the policy sees for this query; -1 while there are none."""
        if len(self.centroids) == 0:
            return -1
        return int(np.argmax(self.centroids @ vector))

    def learn_one(self, vector: FloatArray) -> int:
        if len(self.centroids):
            similarities = self.centroids @ vector
            best = int(np.argmax(similarities))
            if similarities[best] >= self.threshold or len(self.centroids) >= self.max_clusters:
                self.counts[best] += 1
                step = 1.0 / min(int(self.counts[best]), self.horizon)
                moved = self.centroids[best] + step * (vector - self.centroids[best])
                self.centroids[best] = moved / max(float(np.linalg.norm(moved)), 1e-12)
                return best
        self.centroids = np.vstack([self.centroids, vector[None, :]]).astype(np.float32)
        self.counts = np.append(self.counts, 1)
        return len(self.centroids) - 1

    def to_bytes(self) -> bytes:
        """The centroids and counts as raw little-endian arrays behind a fixed header.

        Not NumPy's .npz: reading one parses its header with ``ast.literal_eval``, and CPython 3.11's AST
        constructor keeps one recursion counter for all threads, so two replicas loading snapshots on two
        threads at once failed with "SystemError: AST constructor recursion depth mismatch"."""
        rows, dimension = self.centroids.shape
        header = _CLUSTERS_HEADER.pack(_CLUSTERS_MAGIC, rows, dimension)
        return header + self.centroids.astype("<f4").tobytes() + self.counts.astype("<i8").tobytes()

    def load_bytes(self, data: bytes) -> None:
        if data.startswith(b"PK"):  # written as .npz before the raw format
            with _NPZ_LOCK, np.load(io.BytesIO(data)) as arrays:
                centroids = arrays["centroids"].astype(np.float32)
                counts = arrays["counts"].astype(np.int64)
        else:
            if len(data) < _CLUSTERS_HEADER.size or not data.startswith(_CLUSTERS_MAGIC):
                raise ValueError("snapshot clusters do not start with the clusters header")
            _, rows, dimension = _CLUSTERS_HEADER.unpack_from(data)
            expected = _CLUSTERS_HEADER.size + rows * dimension * 4 + rows * 8
            if len(data) != expected:
                raise ValueError(f"snapshot clusters are {len(data)} bytes long, their header says {expected}")
            body = memoryview(data)[_CLUSTERS_HEADER.size :]
            centroids = np.frombuffer(body[: rows * dimension * 4], "<f4").reshape(rows, dimension).astype(np.float32)
            counts = np.frombuffer(body[rows * dimension * 4 :], "<i8").astype(np.int64)
        if centroids.ndim != 2 or centroids.shape[1] != self.centroids.shape[1]:
            raise ValueError(
                f"snapshot clusters have dimension {centroids.shape[-1]}, the embedder has {self.centroids.shape[1]}"
            )
        self.centroids, self.counts = centroids, counts


_CLUSTERS_MAGIC = b"BRCLU1\n\0"
# Magic, then the number of centroids and their dimension.
_CLUSTERS_HEADER = struct.Struct("<8sQQ")
# Old .npz clusters are read one at a time (see Clusterer.to_bytes).
_NPZ_LOCK = threading.Lock()


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


def action_line(model: ModelSpec) -> str:
    """The action's features: its id alone, so each model has its own quality (and, crossed with the
    context, its own quality per task or cluster). Its price and energy are not features: they are known,
    and enter the decision as its penalty."""
    return f"|{NS_ACTION} {vw_token(model.id)}"


@dataclasses.dataclass(frozen=True)
class Choice:
    """One decision as a policy sees it: the context line, one line per candidate, and each candidate's
    penalty (expected energy and cost at the request's weights). A policy's pmf is a function of these
    alone, so the gate, the dashboard and evaluation can ask any policy what it would have done."""

    shared: str
    actions: tuple[str, ...]
    penalties: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.actions) != len(self.penalties):
            raise ValueError(
                f"a choice needs one penalty per action, got {len(self.penalties)} for {len(self.actions)} actions"
            )

    @classmethod
    def of(cls, shared: str, actions: Sequence[str], penalties: Sequence[float] | None = None) -> Choice:
        return cls(shared, tuple(actions), tuple(penalties) if penalties is not None else (0.0,) * len(actions))


def namespaces(line: str) -> dict[str, dict[str, float]]:
    """``"|T math |E e0:0.5"`` -> ``{"T": {"math": 1.0}, "E": {"e0": 0.5}}``; anything before the first
    namespace (a label, ``shared``) is dropped."""
    found: dict[str, dict[str, float]] = {}
    for chunk in line.split("|")[1:]:
        name, *features = chunk.split()
        group = found.setdefault(name, {})
        for feature in features:
            key, _, value = feature.partition(":")
            group[key] = float(value) if value else 1.0
    return found


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


def vw_number(value: float, bound: float = 1e6) -> str:
    """A number as VW's text parser reads it right: VW parses float32, so a value beyond its range
    becomes inf or NaN (and a NaN prediction); magnitudes are clamped to ``bound`` and those under 1e-9 are 0."""
    if not math.isfinite(value):
        value = math.copysign(bound, value) if math.isinf(value) else 0.0
    clamped = max(-bound, min(bound, value))
    return "0" if abs(clamped) < 1e-9 else f"{clamped:.6g}"
