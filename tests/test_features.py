"""Context features: task inference, complexity, online clusters and the VW lines they make."""

from __future__ import annotations

import ast
import io
import math

import numpy as np
import pytest

from bandit_router.config import FeaturesConfig, load_config
from bandit_router.embedding import Embedder
from bandit_router.features import Clusterer, Complexity, Context, TaskInferrer, action_line, labelled, vw_number
from bandit_router.policy import Policy


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


def test_vw_lines_hold_every_namespace() -> None:
    context = Context("math", 3, Complexity.of("What is 2+2?", 6), 0.5, 0.0, "e0:0.1000 e1:-0.2000")
    line = context.shared_line()
    assert line.startswith("shared |T math |K c3 |E e0:0.1000")
    assert "|P energy:0.5 cost:0 const" in line and "|X chars:" in line
    model = load_config(env={}).models[0]
    action = action_line(model)
    assert action.startswith(f"|A {model.id} |M price:") and "|W" not in action
    assert action_line(model, penalty=1e300).endswith(" |W penalty:1e+06")
    assert labelled(action, -0.75, 0.25).startswith("0:-0.75:0.25 |A ")


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.25, "0.25"), (2.9e-213, "0"), (1e300, "1e+06"), (-1e300, "-1e+06"), (math.inf, "1e+06"), (math.nan, "0")],
)
def test_vw_numbers_stay_in_float32_range(value: float, text: str) -> None:
    assert vw_number(value) == text


@pytest.mark.parametrize("weight", [2.9358829429182146e-213, 1000.0])
def test_extreme_preferences_give_a_proper_pmf(weight: float) -> None:
    # Found by the RPC fuzzer: VW read energy:2.93588e-213 as a float32 it cannot hold, and the pmf was NaN.
    config = load_config(env={})
    policy = Policy(config.policy.vw_args, config.features, 8)
    context = Context("t", 0, Complexity.of("0", 1), weight, 0.1, "")
    pmf = policy.pmf(context.shared_line(), ["|A a0", "|A a1"])
    assert all(math.isfinite(p) for p in pmf) and sum(pmf) == pytest.approx(1.0)
    policy.learn_one(context.shared_line(), [labelled("|A a0", 1e300, 0.5), "|A a1"])
    assert all(math.isfinite(p) for p in policy.pmf(context.shared_line(), ["|A a0", "|A a1"]))
