"""Context features: task inference, complexity, online clusters and the VW lines they make."""

from __future__ import annotations

import ast
import io
import math

import numpy as np
import pytest

from bandit_router.config import FeaturesConfig, load_config
from bandit_router.embedding.model import Embedder
from bandit_router.policy.clusters import Clusterer
from bandit_router.policy.features import Complexity, Context
from bandit_router.policy.tasks import TaskInferrer
from bandit_router.policy.vw import Policy
from bandit_router.policy.vwlines import Choice, action_line, namespaces, vw_number


@pytest.fixture(scope="module")
def inferrer(embedder: Embedder) -> TaskInferrer:
    return TaskInferrer(embedder.embed)


@pytest.mark.parametrize(
    ("query", "task"),
    [
        ("What is 348 multiplied by 12?", "math"),
        ("Write a poem about a quiet harbour at dawn.", "creative_writing"),
        ("Write a Python function that checks whether a string is a palindrome.", "code"),
        ("Translate 'where is the station' into Spanish.", "translation"),
        ("Who was the first president of the United States?", "factual_qa"),
    ],
)
def test_task_is_inferred_from_the_query(embedder: Embedder, inferrer: TaskInferrer, query: str, task: str) -> None:
    assert inferrer.infer(embedder.embed([query])[0].vector) == task


def test_complexity_tells_plain_prose_from_dense_text() -> None:
    easy = Complexity.of("The cat sat on the mat. It was happy.", tokens=11)
    hard = Complexity.of(
        "Characterize the thermodynamical irreversibility of quasi-static magnetohydrodynamic processes.", tokens=20
    )
    assert easy.reading_ease > hard.reading_ease
    assert Complexity.of("12 + 34 = ?", tokens=6).digit_fraction > 0.3


def test_clusters_open_join_and_round_trip() -> None:
    clusterer = Clusterer(FeaturesConfig(max_clusters=2, cluster_threshold=0.9), dimension=3)
    a, b, c = np.eye(3, dtype=np.float32)
    assert clusterer.assign(a) == -1
    assert clusterer.learn_one(a) == 0
    assert clusterer.learn_one(b) == 1
    # Full: the third direction joins its nearest cluster instead of opening one.
    assert clusterer.learn_one(c) in (0, 1) and len(clusterer.centroids) == 2
    assert np.allclose(np.linalg.norm(clusterer.centroids, axis=1), 1.0)
    copy = Clusterer(FeaturesConfig(), dimension=3)
    copy.load_bytes(clusterer.to_bytes())
    assert np.array_equal(copy.centroids, clusterer.centroids) and list(copy.counts) == list(clusterer.counts)
    with pytest.raises(ValueError, match="snapshot clusters have dimension 3, the embedder has 4"):
        Clusterer(FeaturesConfig(), dimension=4).load_bytes(clusterer.to_bytes())
    with pytest.raises(ValueError, match=r"snapshot clusters are \d+ bytes long, their header says \d+"):
        copy.load_bytes(clusterer.to_bytes()[:-1])
    # Snapshots written before the raw format held NumPy's .npz.
    old = io.BytesIO()
    np.savez(old, centroids=clusterer.centroids, counts=clusterer.counts)
    older = Clusterer(FeaturesConfig(), dimension=3)
    older.load_bytes(old.getvalue())
    assert np.array_equal(older.centroids, clusterer.centroids) and list(older.counts) == list(clusterer.counts)


def test_clusters_load_without_parsing_python(monkeypatch: pytest.MonkeyPatch) -> None:
    # Replicas swap snapshots in on threads of their own, and CPython 3.11's AST constructor fails now and
    # then on two threads at once (see Clusterer.to_bytes): loading clusters must not parse anything.
    clusterer = Clusterer(FeaturesConfig(), dimension=4)
    clusterer.learn_one(np.array([1.0, 0.0, 0.0, 0.0], np.float32))

    def parse(*args: object, **kwargs: object) -> object:
        raise AssertionError("clusters were loaded through ast")

    monkeypatch.setattr(ast, "literal_eval", parse)
    copy = Clusterer(FeaturesConfig(), dimension=4)
    copy.load_bytes(clusterer.to_bytes())
    assert np.array_equal(copy.centroids, clusterer.centroids)


def test_vw_lines_hold_the_namespaces_asked_for() -> None:
    context = Context("math", 3, Complexity.of("What is 2+2?", 6), "e0:0.1000 e1:-0.2000")
    assert context.line(["T"]) == "|T math"
    line = context.line(["T", "K", "E", "X"])
    assert line.startswith("|T math |K c3 |E e0:0.1000 e1:-0.2000 |X chars:")
    assert namespaces(line)["E"] == {"e0": 0.1, "e1": -0.2} and namespaces(line)["K"] == {"c3": 1.0}
    model = load_config(env={}).models[0]
    # Price and energy are not features: they enter each decision as its penalty.
    assert action_line(model) == f"|A {model.id}"
    with pytest.raises(ValueError, match="a choice needs one penalty per action, got 1 for 2 actions"):
        Choice("|T math", ("|A a", "|A b"), (0.0,))


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.25, "0.25"), (2.9e-213, "0"), (1e300, "1e+06"), (-1e300, "-1e+06"), (math.inf, "1e+06"), (math.nan, "0")],
)
def test_vw_numbers_stay_in_float32_range(value: float, text: str) -> None:
    assert vw_number(value) == text


@pytest.mark.parametrize("penalty", [2.9358829429182146e-213, 1e300, math.inf])
def test_extreme_penalties_give_a_proper_pmf(penalty: float) -> None:
    # Found by the RPC fuzzer when preferences were VW features: a weight VW could not hold made the pmf NaN.
    # Penalties never reach VW now; qualities do, and stay in [0, 1].
    config = load_config(env={})
    policy = Policy(config.policy, config.features, 8)
    choice = Choice.of("|T t", ["|A a0", "|A a1"], [penalty, 0.0])
    pmf = policy.pmf(choice)
    assert all(math.isfinite(p) for p in pmf) and sum(pmf) == pytest.approx(1.0)
    policy.learn_quality(choice.shared, "|A a0", 1.0)
    assert all(math.isfinite(p) for p in policy.pmf(choice)) and sum(policy.pmf(choice)) == pytest.approx(1.0)
