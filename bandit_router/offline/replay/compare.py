"""The baselines' side of a replay: their context features, and their run over the same stream as the bandit."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bandit_router.config import FeaturesConfig, ModelSpec, RewardConfig
from bandit_router.domain.pricing import Pricing, penalty
from bandit_router.embedding.types import Embedded
from bandit_router.offline.replay.baselines import Baseline, EpsilonGreedy, FullInformation, LinUCB, RandomRouter
from bandit_router.offline.replay.cadence import PUBLISH, REWARD, Op
from bandit_router.policy.clusters import Clusterer
from bandit_router.policy.features import Complexity, Projector
from bandit_router.policy.vwlines import NS_CLUSTER, NS_COMPLEXITY, NS_EMBEDDING, NS_TASK
from bandit_router.traffic.table import OutcomeTable, Trace

Vector = np.ndarray[Any, np.dtype[np.float64]]
# The full-information ceiling's ridge is chosen in hindsight among these (regularisation of everything but
# the per-model intercept): the best any of them reached is what the bandit is compared with.
FULL_INFORMATION_RIDGES = (0.1, 1.0, 10.0, 100.0)
FULL_INFORMATION = "full information"


def baseline_features(
    queries: Sequence[str], embedded: Sequence[Embedded], tasks: Sequence[str], config: FeaturesConfig
) -> list[Vector]:
    """The bandit's own context (``features.context``) as one vector per query: an intercept, then a one-hot
    of the task, of the online cluster, the complexity figures and the embedding's projection, as configured.
    Every baseline regresses per model, so each feature is crossed with the model, as the bandit's are."""
    vocabulary = sorted(set(tasks))
    clusters = Clusterer(config, dimension=len(embedded[0].vector))
    projector = Projector(config, len(embedded[0].vector)) if NS_EMBEDDING in config.context else None
    rows = []
    for query, e, task in zip(queries, embedded, tasks, strict=True):
        parts: list[Vector] = [np.ones(1)]
        if NS_TASK in config.context:
            parts.append(np.eye(len(vocabulary))[vocabulary.index(task)])
        if NS_CLUSTER in config.context:
            parts.append(np.eye(config.max_clusters)[clusters.learn_one(e.vector)])
        if NS_COMPLEXITY in config.context:
            parts.append(np.array(list(Complexity.of(query, e.token_count).values().values())))
        if projector is not None:
            parts.append(np.asarray(e.vector @ projector.matrix, dtype=np.float64))
        rows.append(np.concatenate(parts))
    return rows


class _Priced:
    """A baseline with its own running pricing of what it has observed, as the bandit has."""

    def __init__(self, learner: Baseline, models: Sequence[ModelSpec], weights: RewardConfig) -> None:
        self.learner = learner
        self.models = models
        self.weights = weights
        self.pricing = Pricing()

    def penalties(self, task: str, tokens: int) -> Vector:
        w = self.weights
        return np.array(
            [penalty(self.pricing.expected(m, task, tokens), w.energy_weight, w.cost_weight, w) for m in self.models]
        )

    def observe(self, table: OutcomeTable, i: int, task: str, arms: Sequence[int]) -> None:
        for j in arms:
            table.price(self.pricing, i, j, task)


def warm_baselines(
    learners: Sequence[_Priced], table: OutcomeTable, features: Sequence[Vector], tasks: Sequence[str]
) -> None:
    """Evaluation rows, every model's outcome known: each learner learns them all, as the bandit did."""
    for i, (x, task) in enumerate(zip(features, tasks, strict=True)):
        available = table.available(i)
        qualities = [float(table.quality[i, j]) if j in available else math.nan for j in range(len(table.arms))]
        for priced in learners:
            priced.learner.learn_all(x, task, qualities)
            priced.observe(table, i, task, available)


def replay_baselines(
    table: OutcomeTable,
    features: Sequence[Vector],
    tasks: Sequence[str],
    tokens: Sequence[int],
    models: Sequence[ModelSpec],
    weights: RewardConfig,
    seed: int,
    schedule: Sequence[Op],
    warm: tuple[OutcomeTable, Sequence[Vector], Sequence[str]] | None = None,
) -> tuple[dict[str, Trace], dict[str, float]]:
    """Every baseline's trace on the stream, the single models', the best single model in hindsight and the
    per-query oracle; and the mean reward of each full-information ridge tried (the best one is reported).

    The baselines follow the bandit's ``schedule``: a query's feedback comes back with its reward, and is learned
    when the router's learner next serves a snapshot, so every policy learns with the same delay."""
    arms = len(table.arms)
    dimension = len(features[0])
    learners: list[Baseline] = [
        RandomRouter(arms, seed),
        EpsilonGreedy(arms, seed),
        LinUCB(arms, dimension),
        *(FullInformation(arms, dimension, ridge) for ridge in FULL_INFORMATION_RIDGES),
    ]
    priced = [_Priced(learner, models, weights) for learner in learners]
    if warm is not None:
        warm_baselines(priced, *warm)
    traces = {b.name: Trace() for b in learners}
    # A single-model baseline only for models available on every query.
    always = [j for j in range(arms) if np.isfinite(table.reward[:, j]).all()]
    fixed = {f"always {table.arms[j]}": (j, Trace()) for j in always}
    oracle = Trace()
    # Each routed step's feedback for every learner, until its reward comes back; then until the next snapshot.
    owed: dict[int, list[Callable[[], None]]] = {}
    received: list[Callable[[], None]] = []
    for op in schedule:
        if op.kind == REWARD:
            received.extend(owed.pop(op.step))
            continue
        if op.kind == PUBLISH:
            for learn in received:
                learn()
            received.clear()
            continue
        i = op.step
        x, task = features[i], tasks[i]
        available = table.available(i)
        # Corrupted feedback reaches the learners as reward; the quality it implies is what they learn
        # (feedback - reward is the corruption: the penalty cancels).
        told = np.full(arms, np.nan)
        told[available] = table.quality[i, available] + table.feedback[i, available] - table.reward[i, available]
        owed[i] = []
        for p in priced:
            learner = p.learner
            arm = learner.choose(x, task, available, p.penalties(task, tokens[i]))
            table.step(traces[learner.name], i, arm)
            seen = available if learner.full_information else [arm]
            qualities = [float(told[j]) if j in seen else math.nan for j in range(arms)]
            owed[i].append(functools.partial(_learn, p, table, i, x, task, seen, qualities))
        for j, trace in fixed.values():
            table.step(trace, i, j)
        table.step(oracle, i, int(np.argmax(table.reward[i])))
    return _named(traces, {name: trace for name, (_, trace) in fixed.items()}, oracle)


def _named(
    traces: dict[str, Trace], fixed: dict[str, Trace], oracle: Trace
) -> tuple[dict[str, Trace], dict[str, float]]:
    """The traces a report shows: the learners (of the full-information ridges, the best in hindsight), each
    single model, the best of those in hindsight and the oracle; and each ridge's mean reward."""
    grid = {name: float(np.mean(trace.rewards)) for name, trace in traces.items() if name.startswith(FULL_INFORMATION)}
    best_ridge = max(grid, key=lambda n: grid[n])
    result = {n: t for n, t in traces.items() if not n.startswith(FULL_INFORMATION)}
    ridges = "/".join(f"{r:g}" for r in FULL_INFORMATION_RIDGES)
    label = best_ridge.replace("every outcome seen", f"every outcome seen; best of ridge {ridges} in hindsight")
    result[label] = traces[best_ridge]
    result.update(fixed)
    if fixed:
        best = max(fixed, key=lambda n: sum(fixed[n].rewards))
        result[f"best single model in hindsight ({best.removeprefix('always ')})"] = fixed[best]
    result["oracle (per query)"] = oracle
    return result, grid


def _learn(
    priced: _Priced,
    table: OutcomeTable,
    i: int,
    x: Vector,
    task: str,
    seen: Sequence[int],
    qualities: Sequence[float],
) -> None:
    if priced.learner.full_information:
        priced.learner.learn_all(x, task, qualities)
    else:
        priced.learner.learn_one(x, task, seen[0], qualities[seen[0]])
    priced.observe(table, i, task, seen)
