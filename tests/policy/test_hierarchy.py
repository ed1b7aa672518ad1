"""The hierarchical prior: a model's mean in a cell shrunk toward its own mean moved by the cell's, and the
policy reading VW's estimate against it where a model has few rewards in a cell."""

from __future__ import annotations

import pytest

from bandit_router.config import FeaturesConfig, PolicyConfig
from bandit_router.policy.hierarchy import Means
from bandit_router.policy.vw import Policy, Snapshot
from bandit_router.policy.vwlines import Choice

MATH, CODE, CHAT = "|T math", "|T code", "|T chat"
BIG, SMALL = "|A big", "|A small"


def test_a_cell_the_model_was_never_tried_in_gets_its_own_mean_moved_by_the_cells() -> None:
    means = Means()
    for _ in range(100):
        means.add("big", ["T:code"], 0.9)
        means.add("small", ["T:math"], 0.3)
        means.add("small", ["T:code"], 0.7)
    # Weak shrinkage: the figures are close to the plain means they shrink.
    big_on_math = means.prior("big", ["T:math"], strength=0.01)
    overall = (100 * 0.9 + 100 * 0.3 + 100 * 0.7) / 300
    math_shift = 0.3 - overall
    assert big_on_math == pytest.approx(0.9 + math_shift, abs=0.01)
    # Where it was tried, its own mean there.
    assert means.prior("big", ["T:code"], strength=0.01) == pytest.approx(0.9, abs=0.01)
    # With no rewards at all, every model is at the middle.
    assert Means().prior("big", ["T:code"], strength=5.0) == 0.5


def test_shrinkage_pulls_a_thin_cell_toward_the_prior_by_strength_pseudo_rewards() -> None:
    means = Means()
    for _ in range(50):
        means.add("big", ["T:code"], 1.0)
    means.add("big", ["T:math"], 0.0)
    prior = means.prior("big", ["T:math"], strength=0.0001)
    strong = means.prior("big", ["T:math"], strength=50.0)
    # One reward of 0 on math: without shrinkage the cell says 0; strongly shrunk it stays near big's record.
    assert prior == pytest.approx(0.0, abs=0.01)
    assert strong > 0.5
    # The blend weighs VW's estimate by the model's rewards in the cell (1) against the strength.
    assert means.blend("big", ["T:math"], 0.0, strength=4.0) == pytest.approx(
        (1 * 0.0 + 4.0 * means.prior("big", ["T:math"], 4.0)) / 5
    )
    assert means.blend("big", ["T:math"], 0.3, strength=0.0) == 0.3


def learned_then_unlucky(strength: float) -> Policy:
    """big answers math and code well and had two bad answers on chat; small answers chat decently."""
    policy = Policy(PolicyConfig(prior_strength=strength, epsilon=0.05), FeaturesConfig(), dimension=4)
    for _ in range(100):
        policy.learn_quality(MATH, BIG, 0.9)
        policy.learn_quality(CODE, BIG, 0.9)
        policy.learn_quality(CHAT, SMALL, 0.7)
    for _ in range(2):
        policy.learn_quality(CHAT, BIG, 0.0)
    return policy


def test_one_unlucky_reward_no_longer_locks_the_best_model_out_of_a_cell() -> None:
    """VW alone takes big's two bad chat answers at their word: big's optimistic quality there falls below
    small's expected quality and the rule never tries it again. Read against the hierarchy (big earns 0.9 elsewhere),
    big keeps a chance on chat until tried there enough."""
    choice = Choice.of(CHAT, [BIG, SMALL])
    alone, read = learned_then_unlucky(0.0), learned_then_unlucky(5.0)
    assert alone.qualities(choice)[0] < read.qualities(choice)[0]
    assert alone.pmf(choice)[0] == 0.0
    assert read.pmf(choice)[0] > 0.0
    # Where both have evidence, the two agree.
    math = Choice.of(MATH, [BIG])
    assert read.qualities(math) == pytest.approx(alone.qualities(math), abs=0.05)


def test_the_means_travel_in_the_snapshot_and_an_older_snapshot_serves_vw_alone() -> None:
    policy = learned_then_unlucky(5.0)
    choice = Choice.of(CHAT, [BIG, SMALL])
    restored = Policy(policy.config, policy.features, 4, Snapshot.decode(policy.snapshot(1, "0-0").encode()))
    assert restored.qualities(choice) == policy.qualities(choice)
    assert restored.means.count("big", "T:chat") == 2
    # A snapshot from before the hierarchy: evidence, no means.
    old = policy.snapshot(1, "0-0")
    evidence = {k: v for k, v in old.evidence.items() if k != "means"}
    legacy = Policy(policy.config, policy.features, 4, Snapshot.decode(
        Snapshot(**{**old.__dict__, "evidence": evidence}).encode()
    ))  # fmt: skip
    vw_alone = Policy(PolicyConfig(prior_strength=0.0), policy.features, 4, Snapshot.decode(old.encode()))
    assert legacy.qualities(choice) == vw_alone.qualities(choice)
